/*
** main.c: the `brood` host. Like lua.c it embeds Lua 5.4 and runs a
** script with `arg` set the same way; then it runs the loop until nothing
** referenced is left. brood.core is linked in and preloaded.
**
**   brood [-e stat] [-l mod] [-v] [--channel=stdio] [script [args]]
**
** --channel=stdio makes brood.parent a channel over the host's stdin and
** stdout (a pool's remote worker, started through ssh or srun): they move
** to fds of their own, fd 0 reads /dev/null and fd 1 writes to stderr, so
** that print and io.stdout cannot corrupt the frames.
**
** An uncaught error prints its traceback to stderr and exits 1. SIGINT,
** SIGTERM and SIGHUP without a script handler kill the cleanup children's
** whole trees first, then the host dies of the signal.
*/
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "../private.h"

#define BROOD_VERSION "0.1.0"

int luaopen_brood_core(lua_State* L);

static const char* progname = "brood";

static void usage(void) {
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -v        show version information\n"
          "  --channel=stdio  brood.parent is a channel over stdin/stdout\n"
          "            (print and io.stdout go to stderr)\n"
          "  --        stop handling options\n"
          "  -         run stdin as the script\n",
          progname);
}

static int msghandler(lua_State* L) {
  const char* msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;  /* an error object with its own text */
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  if (strstr(msg, "\nstack traceback:") != NULL) {
    lua_pushstring(L, msg);  /* raised again from the loop: traced already */
    return 1;
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static int report(lua_State* L, int status) {
  if (status != LUA_OK) {
    const char* msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: %s\n", progname, msg != NULL ? msg : "(error)");
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

static int docall(lua_State* L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

/* Fatal signals: children started with `cleanup` go first, with their
** trees (async-signal-safe), whatever loop waits for them: the default
** loop or the private one of a *_sync call. Then die of the signal. */
static void on_fatal_signal(int sig) {
  brood__process_kill_cleanup();
  signal(sig, SIG_DFL);
  raise(sig);  /* blocked while we run: delivered when the handler returns */
}

static void install_fatal_handler(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_fatal_signal;
  /* one cleanup at a time: its buffers are static */
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaddset(&sa.sa_mask, SIGHUP);
  sigaction(sig, &sa, NULL);
}

/* A script's on_signal handler for one of ours was stopped: libuv put back
** SIG_DFL; put back ours. */
static void on_signal_released(int sig) {
  if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP)
    install_fatal_handler(sig);
}

/* Look for Lua modules beside the executable first: <prefix>/bin/brood
** finds <prefix>/share/lua/5.4, and build/brood in a checkout finds lua/.
** First, so that the Lua layer matches the core linked into this host
** rather than another brood installed on the default path. */
static void add_module_paths(lua_State* L) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return;
  exe[n] = '\0';
  char* slash = strrchr(exe, '/');
  if (slash == NULL) return;
  *slash = '\0';
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L,
                  "%s/../share/lua/5.4/?.lua;%s/../share/lua/5.4/?/init.lua;"
                  "%s/../lua/?.lua;%s/../lua/?/init.lua;%s",
                  exe, exe, exe, exe, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

/* arg as lua.c builds it: arg[0] the script, negative indices the
** interpreter and its options, positive ones the script's arguments. */
static void create_arg_table(lua_State* L, char** argv, int argc,
                             int script) {
  lua_createtable(L, argc - script - 1, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int run_loop_if_used(lua_State* L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "brood");
  lua_remove(L, -2);
  lua_remove(L, -2);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return LUA_OK;
  }
  lua_getfield(L, -1, "run");
  lua_remove(L, -2);
  return report(L, docall(L, 0, 0));
}

typedef struct {
  int argc;
  char** argv;
  int status;
} host_args_t;

/* First pass: where the script starts (0: none), or -1 after printing
** the usage for a bad option. */
static int find_script(int argc, char** argv, int* stdio_channel) {
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0) return i;
    if (strcmp(a, "--channel=stdio") == 0) {
      *stdio_channel = 1;
      continue;
    }
    if (strcmp(a, "--") == 0) return i + 1 < argc ? i + 1 : 0;
    if ((a[1] == 'e' || a[1] == 'l')) {
      if (a[2] == '\0' && ++i >= argc) {  /* "-e stat" or "-estat" */
        usage();
        return -1;
      }
    } else if (strcmp(a, "-v") != 0) {
      fprintf(stderr, "%s: unrecognized option '%s'\n", progname, a);
      usage();
      return -1;
    }
  }
  return 0;
}

/* Second pass: run the options before `last` in order, as lua.c does.
** Returns 0 after an error (reported), else 1; *ran is set if one ran. */
static int run_options(lua_State* L, char** argv, int last, int* ran) {
  for (int i = 1; i < last; i++) {
    const char* a = argv[i];
    if (strcmp(a, "--") == 0) break;
    if (strcmp(a, "--channel=stdio") == 0) continue;
    if (strcmp(a, "-v") == 0) {
      printf("brood %s (%s, libuv %s)\n", BROOD_VERSION, LUA_RELEASE,
             uv_version_string());
      fflush(stdout);
      *ran = 1;
    } else if (a[1] == 'e') {
      const char* chunk = a[2] != '\0' ? a + 2 : argv[++i];
      *ran = 1;
      if (report(L, luaL_loadbuffer(L, chunk, strlen(chunk), "=(command line)"))
          != LUA_OK || report(L, docall(L, 0, 0)) != LUA_OK)
        return 0;
    } else if (a[1] == 'l') {
      const char* mod = a[2] != '\0' ? a + 2 : argv[++i];
      lua_getglobal(L, "require");
      lua_pushstring(L, mod);
      if (report(L, docall(L, 1, 1)) != LUA_OK) return 0;
      lua_setglobal(L, mod);
    }
  }
  return 1;
}

/* Run the script (argv[script], "-" for stdin) with its arguments, or,
** with no script and nothing run yet, stdin when it is not a terminal.
** Returns 0 after an error or the usage, else 1. */
static int run_script(lua_State* L, int argc, char** argv, int script,
                      int ran) {
  if (script > 0) {
    const char* fname = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
    if (report(L, luaL_loadfile(L, fname)) != LUA_OK) return 0;
    int nargs = argc - script - 1;
    luaL_checkstack(L, nargs, "too many arguments to script");
    for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    return report(L, docall(L, nargs, 0)) == LUA_OK;
  }
  if (ran) return 1;
  if (isatty(STDIN_FILENO)) {
    usage();
    return 0;
  }
  return report(L, luaL_loadfile(L, NULL)) == LUA_OK &&
         report(L, docall(L, 0, 0)) == LUA_OK;
}

/* --channel=stdio: the channel takes the host's stdin and stdout (moved
** to close-on-exec fds above 2, named to brood.fork by BROOD_CHANNEL_FD);
** fd 0 becomes /dev/null and fd 1 a copy of stderr, so that print, the
** script's io.stdout and inheriting children write to stderr. A remote
** worker does not spin its loop unless BROOD_SPIN_US says so (its peer is
** across a network). Returns 0 after printing why it cannot. */
static int take_stdio_channel(void) {
  int in = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
  int out = in < 0 ? -1 : fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  int null = out < 0 ? -1 : open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2(null, STDIN_FILENO) < 0 ||
      dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
    fprintf(stderr, "%s: --channel=stdio: cannot move stdin/stdout\n",
            progname);
    return 0;
  }
  close(null);
  setvbuf(stdout, NULL, _IOLBF, BUFSIZ);  /* as stderr shows it: promptly */
  char value[64];
  snprintf(value, sizeof(value), "stdio:%d:%d", in, out);
  setenv("BROOD_CHANNEL_FD", value, 1);
  setenv("BROOD_SPIN_US", "0", 0);
  return 1;
}

static int pmain(lua_State* L) {
  host_args_t* h = (host_args_t*)lua_touserdata(L, 1);
  int argc = h->argc;
  char** argv = h->argv;
  h->status = 1;
  luaL_checkversion(L);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_brood_core);
  lua_setfield(L, -2, "brood.core");
  lua_pop(L, 1);
  add_module_paths(L);
  int stdio_channel = 0;
  int script = find_script(argc, argv, &stdio_channel);
  if (script < 0) return 0;
  if (stdio_channel) {
    if (script == 0 || strcmp(argv[script], "-") == 0) {
      fprintf(stderr, "%s: --channel=stdio needs a script file (stdin is "
              "the channel)\n", progname);
      return 0;
    }
    if (!take_stdio_channel()) return 0;
  }
  /* no script: arg[0] is the host itself and arg[1..] its options, as
  ** lua.c does */
  create_arg_table(L, argv, argc, script);
  int ran = 0;
  if (!run_options(L, argv, script > 0 ? script : argc, &ran)) return 0;
  if (!run_script(L, argc, argv, script, ran)) return 0;
  if (run_loop_if_used(L) != LUA_OK) return 0;
  h->status = 0;
  return 0;
}

int main(int argc, char** argv) {
  if (argv[0] != NULL && argv[0][0] != '\0') progname = argv[0];
  install_fatal_handler(SIGINT);
  install_fatal_handler(SIGTERM);
  install_fatal_handler(SIGHUP);
  brood__signal_released = on_signal_released;

  brood__host_mode = 1;
  brood__setup_process();  /* before any fd of ours (scripts call it too) */
  lua_State* L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n", progname);
    return 1;
  }
  host_args_t h = {argc, argv, 1};
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, &h);
  int status = lua_pcall(L, 1, 0, 0);
  report(L, status);
  lua_close(L);  /* finalizers signal cleanup children, close handles */
  return (status == LUA_OK && h.status == 0) ? EXIT_SUCCESS : EXIT_FAILURE;
}

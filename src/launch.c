/*
** launch.c: how brood starts a program.
**
** clone(CLONE_VM | CLONE_VFORK) onto a stack of our own, as posix_spawn
** does, so a parent holding gigabytes pays no page-table copy. The child
** runs only async-signal-safe steps on memory the parent prepared (argv,
** envp, every PATH candidate), then execve. A step that fails writes
** {step, errno} to a close-on-exec pipe and _exits; the parent reads it
** and reaps the child: the caller gets the failing step and errno, no
** zombie, no silent exit status 127. Watching the child is process.c's.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "private.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* Functions run by the child before exec touch memory the parent owns and
** run on a stack the sanitizers do not know: keep them uninstrumented. */
#if defined(__GNUC__)
#define CHILD_CODE \
  __attribute__((no_sanitize_address, no_sanitize_undefined, noinline))
#else
#define CHILD_CODE
#endif

#define CHILD_STACK_SIZE (256 * 1024)

/* Steps of the launch that can fail, as reported by the child. */
enum {
  STEP_SETSID = 1, STEP_SETPGID, STEP_PDEATHSIG, STEP_DUP, STEP_CHDIR,
  STEP_SETGID, STEP_SETUID, STEP_EXEC
};
static const char* const step_names[] = {
  "clone", "setsid", "setpgid", "prctl", "dup2", "chdir", "setgid",
  "setuid", "exec"
};

const char* brood__launch_step_name(int step) {
  return step_names[step];
}

/* ----- the child ------------------------------------------------------- */

/* Kernel layout of struct sigaction for rt_sigaction (x86-64, arm64...);
** raw syscalls keep libc and sanitizer interceptors out of the child. */
struct kernel_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(void);
  uint64_t mask;
};

CHILD_CODE static void child_fail(const brood_launch_t* a, int step,
                                  int err) {
  int report[2] = {step, err};
  ssize_t n;
  do {
    n = write(a->errfd, report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  _exit(127);
}

CHILD_CODE static void child_close_fds(const brood_launch_t* a) {
  unsigned lo = (unsigned)a->nstdio, ef = (unsigned)a->errfd;
  if ((ef == lo || syscall(SYS_close_range, lo, ef - 1, 0) == 0) &&
      syscall(SYS_close_range, ef + 1, ~0U, 0) == 0)
    return;
  for (int fd = a->nstdio; fd < a->max_fd; fd++)
    if (fd != a->errfd) close(fd);
}

/* A stdio fd that came from a libuv stream (a brood stream given as a
** stdio entry) is a non-blocking pipe, and O_NONBLOCK belongs to the open
** file description, which the parent's loop shares and relies on. Give
** the child a blocking description of its own for the same pipe, through
** /proc/self/fd, so that it gets no EAGAIN and the parent's fd is left
** alone. (Opened non-blocking so a FIFO open cannot wait for a peer.)
** Sockets cannot be reopened: they stay as they are. */
CHILD_CODE static void child_own_blocking_pipes(const brood_launch_t* a) {
  for (int i = 0; i < a->nstdio; i++) {
    struct stat st;
    int flags = fcntl(i, F_GETFL);
    if (flags < 0 || !(flags & O_NONBLOCK)) continue;
    if (fstat(i, &st) < 0 || !S_ISFIFO(st.st_mode)) continue;
    char path[32] = "/proc/self/fd/";
    char digits[12];
    int n = 0, len = 14;
    unsigned v = (unsigned)i;
    do {
      digits[n++] = (char)('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) path[len++] = digits[--n];
    path[len] = '\0';
    int fd = open(path, (flags & (O_ACCMODE | O_APPEND)) | O_NONBLOCK |
                        O_CLOEXEC);
    if (fd < 0) continue;  /* no peer yet (ENXIO): leave it */
    int own = fcntl(fd, F_GETFL);
    if (own < 0 || fcntl(fd, F_SETFL, own & ~O_NONBLOCK) < 0 ||
        dup2(fd, i) < 0)
      child_fail(a, STEP_DUP, errno);
    close(fd);
  }
}

/* Default dispositions: the parent's handlers must not run here, and
** ignored signals (SIGPIPE) must not be inherited through exec. */
CHILD_CODE static void child_reset_signals(void) {
  struct kernel_sigaction dfl = {SIG_DFL, 0, NULL, 0};
  for (int i = 1; i < 65; i++)
    if (i != SIGKILL && i != SIGSTOP)
      syscall(SYS_rt_sigaction, i, &dfl, NULL, sizeof(uint64_t));
}

CHILD_CODE static void child_session(const brood_launch_t* a) {
  if (a->detached && setsid() < 0) child_fail(a, STEP_SETSID, errno);
  if (a->group && !a->detached && setpgid(0, 0) < 0)
    child_fail(a, STEP_SETPGID, errno);
  if (a->death_signal != 0) {
    if (prctl(PR_SET_PDEATHSIG, a->death_signal) < 0)
      child_fail(a, STEP_PDEATHSIG, errno);
    if (getppid() != a->parent) _exit(127);  /* the parent died already */
  }
}

/* Put each stdio source at its child fd. Sources below nstdio could be
** overwritten by an earlier dup2: move them above first (the array is
** the parent's scratch memory). */
CHILD_CODE static void child_stdio(const brood_launch_t* a) {
  int i;
  for (i = 0; i < a->nstdio; i++) {
    int src = a->stdio[i];
    if (src >= 0 && src < a->nstdio && src != i) {
      int moved = fcntl(src, F_DUPFD_CLOEXEC, a->nstdio);
      if (moved < 0) child_fail(a, STEP_DUP, errno);
      a->stdio[i] = moved;
    }
  }
  for (i = 0; i < a->nstdio; i++) {
    int src = a->stdio[i];
    if (src == i) {
      /* inherited as is; a closed parent fd simply stays closed */
      if (fcntl(i, F_SETFD, 0) < 0 && errno != EBADF)
        child_fail(a, STEP_DUP, errno);
    } else if (dup2(src, i) < 0) {
      child_fail(a, STEP_DUP, errno);
    }
  }
  child_own_blocking_pipes(a);
  child_close_fds(a);
}

/* Raw syscalls: glibc's setuid() & co. would broadcast to the threads of
** the process we share memory with (its setxid machinery). */
CHILD_CODE static void child_ids(const brood_launch_t* a) {
  if (a->set_gid || a->set_uid)
    (void)syscall(SYS_setgroups, 0, NULL);  /* best effort */
  if (a->set_gid && syscall(SYS_setresgid, a->gid, a->gid, a->gid) < 0)
    child_fail(a, STEP_SETGID, errno);
  if (a->set_uid && syscall(SYS_setresuid, a->uid, a->uid, a->uid) < 0)
    child_fail(a, STEP_SETUID, errno);
}

/* Try every candidate path; report the error that says most. */
CHILD_CODE static void child_exec(const brood_launch_t* a) {
  int err = ENOENT, saw_eacces = 0;
  for (int i = 0; i < a->ncandidates; i++) {
    execve(a->candidates[i], a->argv, a->envp);
    err = errno;
    if (err == EACCES) saw_eacces = 1;
    else if (err != ENOENT && err != ENOTDIR && err != ELOOP &&
             err != ENAMETOOLONG)
      break;  /* the program exists but cannot run: report that */
  }
  if (saw_eacces && (err == ENOENT || err == ENOTDIR)) err = EACCES;
  child_fail(a, STEP_EXEC, err);
}

CHILD_CODE static int child_main(void* arg) {
  const brood_launch_t* a = (const brood_launch_t*)arg;
  child_reset_signals();
  child_session(a);
  child_stdio(a);
  if (a->cwd != NULL && chdir(a->cwd) < 0) child_fail(a, STEP_CHDIR, errno);
  child_ids(a);
  /* last: an empty mask (the parent blocked every signal for the clone) */
  uint64_t empty = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, sizeof(empty));
  child_exec(a);
  return 127;
}

/* ----- the parent ------------------------------------------------------ */

extern char** environ;

/* ----- options: Lua normalised them; C still never trusts -------------- */

static const char* opt_string(lua_State* L, const char* key, int required) {
  lua_getfield(L, 2, key);
  const char* s = NULL;
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len)
      luaL_error(L, "brood.core.spawn: option '%s' contains a NUL byte", key);
  } else if (!lua_isnil(L, -1) || required) {
    luaL_error(L, "brood.core.spawn: option '%s' must be a string", key);
  }
  lua_pop(L, 1);  /* the string stays alive: opts holds it */
  return s;
}

static int opt_int(lua_State* L, const char* key, int* present) {
  lua_getfield(L, 2, key);
  int isnum;
  lua_Integer v = lua_tointegerx(L, -1, &isnum);
  *present = !lua_isnil(L, -1);
  if (*present && (!isnum || v < 0 || v > UINT32_MAX - 1))
    luaL_error(L, "brood.core.spawn: option '%s' must be an integer in "
                  "0..4294967294", key);
  lua_pop(L, 1);
  return (int)v;
}

static int opt_bool(lua_State* L, const char* key) {
  lua_getfield(L, 2, key);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* Fill out[0..n-1] with the strings of array opts[key]; out[n] = NULL.
** The array is left on the stack to keep the strings alive. */
static char** opt_strings(lua_State* L, const char* key, int* count) {
  lua_getfield(L, 2, key);
  if (lua_isnil(L, -1)) {
    *count = -1;
    return NULL;
  }
  if (!lua_istable(L, -1))
    luaL_error(L, "brood.core.spawn: option '%s' must be a table", key);
  lua_Unsigned len = lua_rawlen(L, -1);
  if (len >= INT32_MAX / sizeof(char*))
    luaL_error(L, "brood.core.spawn: option '%s' is too long", key);
  int n = (int)len;
  char** out = (char**)lua_newuserdatauv(L, (n + 1) * sizeof(char*), 0);
  lua_insert(L, -2);  /* scratch below the array: both stay on the stack */
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, -1, i + 1);
    size_t len;
    const char* s = lua_tolstring(L, -1, &len);
    if (lua_type(L, -1) != LUA_TSTRING || strlen(s) != len)
      luaL_error(L, "brood.core.spawn: option '%s' must hold strings "
                    "without NUL bytes", key);
    out[i] = (char*)s;
    lua_pop(L, 1);
  }
  out[n] = NULL;
  *count = n;
  return out;
}

/* Every path execve should try for `file`, in PATH order (the child's
** PATH, passed by Lua): built here because the child may not allocate. */
static char** exec_candidates(lua_State* L, const char* file,
                              const char* path, int* count) {
  if (strchr(file, '/') != NULL || *file == '\0') {
    char** one = (char**)lua_newuserdatauv(L, 2 * sizeof(char*), 0);
    one[0] = (char*)file;
    one[1] = NULL;
    *count = *file == '\0' ? 0 : 1;
    return one;
  }
  if (path == NULL) path = "/usr/local/bin:/usr/bin:/bin";
  size_t flen = strlen(file), plen = strlen(path);
  int n = 1;
  for (const char* c = path; *c; c++) n += *c == ':';
  /* pointers, then each "dir/file\0" (an empty dir is ".") */
  size_t size = (n + 1) * sizeof(char*) + plen + (size_t)n * (flen + 3);
  char** list = (char**)lua_newuserdatauv(L, size, 0);
  char* out = (char*)(list + n + 1);
  const char* dir = path;
  for (int i = 0; i < n; i++) {
    const char* end = strchr(dir, ':');
    size_t dlen = end != NULL ? (size_t)(end - dir) : strlen(dir);
    list[i] = out;
    if (dlen == 0) *out++ = '.';
    memcpy(out, dir, dlen);
    out += dlen;
    *out++ = '/';
    memcpy(out, file, flen + 1);
    out += flen + 1;
    dir = end != NULL ? end + 1 : dir + dlen;
  }
  list[n] = NULL;
  *count = n;
  return list;
}

static char* child_stack(void) {
  static char* stack = NULL;
  if (stack == NULL) {
    void* m = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return NULL;
    stack = (char*)m;
  }
  return stack + CHILD_STACK_SIZE;  /* stacks grow down */
}

/* Move fd to a number >= min (close-on-exec); closes the original. */
static int fd_at_least(int fd, int min) {
  if (fd < 0 || fd >= min) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, min);
  close(fd);
  return moved;
}

/* Read the stdio option: source fd per child fd (-1: /dev/null, opened
** by brood__launch). The array is scratch memory left on the stack. */
static void opt_stdio(lua_State* L, brood_launch_t* a) {
  lua_getfield(L, 2, "stdio");
  if (!lua_istable(L, -1))
    luaL_error(L, "brood.core.spawn: option 'stdio' must be a table");
  lua_Unsigned nstdio = lua_rawlen(L, -1);
  if (nstdio > 1024)
    luaL_error(L, "brood.core.spawn: too many stdio entries");
  a->nstdio = (int)nstdio;
  a->stdio = (int*)lua_newuserdatauv(L, (a->nstdio + 1) * sizeof(int), 0);
  for (int i = 0; i < a->nstdio; i++) {
    lua_rawgeti(L, -2, i + 1);
    int isnum;
    lua_Integer fd = lua_tointegerx(L, -1, &isnum);
    if (!isnum || fd < -1 || fd > INT32_MAX)
      luaL_error(L, "brood.core.spawn: stdio[%d] must be an fd", i + 1);
    a->stdio[i] = (int)fd;
    a->need_null |= fd == -1;
    lua_pop(L, 1);
  }
}

/* Fill *a from core.spawn's options at stack index 2 (normalised by
** lua/brood/process.lua): file, argv, env ("K=V" strings; nil inherits),
** path (the child's PATH), cwd, stdio, detached, group, uid, gid,
** death_signal (PR_SET_PDEATHSIG), and cleanup_signal for process.c.
** Raises on a malformed option; the strings and scratch arrays stay on
** the stack, which the caller keeps until brood__launch returns. */
void brood__launch_options(lua_State* L, brood_launch_t* a) {
  int present, nargv, nenv;
  memset(a, 0, sizeof(*a));
  const char* file = opt_string(L, "file", 1);
  const char* path = opt_string(L, "path", 0);
  a->cwd = opt_string(L, "cwd", 0);
  a->argv = opt_strings(L, "argv", &nargv);
  if (a->argv == NULL || nargv < 1)
    luaL_error(L, "brood.core.spawn: option 'argv' needs argv[0]");
  a->envp = opt_strings(L, "env", &nenv);
  if (a->envp == NULL) a->envp = environ;
  a->detached = opt_bool(L, "detached");
  a->group = opt_bool(L, "group");
  a->uid = (uid_t)opt_int(L, "uid", &a->set_uid);
  a->gid = (gid_t)opt_int(L, "gid", &a->set_gid);
  a->death_signal = opt_int(L, "death_signal", &present);
  a->cleanup_signal = opt_int(L, "cleanup_signal", &present);
  a->candidates = exec_candidates(L, file, path, &a->ncandidates);
  opt_stdio(L, a);
}

/* The parent's fds for the launch: the error pipe (its write end above
** the child's stdio) and /dev/null where stdio asks for it. */
static int launch_fds(brood_launch_t* a, int errpipe[2], int* devnull) {
  if (pipe2(errpipe, O_CLOEXEC) < 0) return errno;
  errpipe[1] = fd_at_least(errpipe[1], a->nstdio);
  if (a->need_null) *devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (errpipe[1] < 0 || (a->need_null && *devnull < 0)) return errno;
  for (int i = 0; i < a->nstdio; i++)
    if (a->stdio[i] == -1) a->stdio[i] = *devnull;
  a->errfd = errpipe[1];
  a->parent = getpid();
  struct rlimit rl;
  a->max_fd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536
                  ? (int)rl.rlim_cur : 65536;
  return 0;
}

/* Clone the child and wait for its exec (or its report of a failure,
** then reap it). Closes the error pipe's write end. */
static int launch_child(brood_launch_t* a, int errpipe[2], pid_t* pid,
                        int* step) {
  char* stack = child_stack();
  if (stack == NULL) return ENOMEM;
  /* With every signal blocked, no handler of ours can run in the child
  ** while it shares our memory; the child resets and unblocks. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  *pid = clone(child_main, stack, CLONE_VM | CLONE_VFORK | SIGCHLD, a);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(errpipe[1]);
  errpipe[1] = -1;
  if (*pid < 0) return clone_errno;
  int report[2] = {0, 0};
  ssize_t got;
  do {
    got = read(errpipe[0], report, sizeof(report));
  } while (got < 0 && errno == EINTR);
  if (got != (ssize_t)sizeof(report)) return 0;  /* exec'd */
  /* The child failed before exec and has exited: reap it now. */
  while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR) {}
  *step = report[0];
  return report[1];
}

/* Start the program *a describes: 0 with *pid, or an errno with *step,
** the child's failing step (0: "clone", the parent's own steps). */
int brood__launch(brood_launch_t* a, pid_t* pid, int* step) {
  int errpipe[2] = {-1, -1}, devnull = -1;
  *step = 0;
  int err = launch_fds(a, errpipe, &devnull);
  if (err == 0) err = launch_child(a, errpipe, pid, step);
  if (errpipe[0] >= 0) close(errpipe[0]);
  if (errpipe[1] >= 0) close(errpipe[1]);
  if (devnull >= 0) close(devnull);
  return err;
}

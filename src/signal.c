/*
** signal.c: signal names and numbers, and watching signals (uv_signal).
*/
#include <signal.h>
#include <string.h>
#include <strings.h>

#include "private.h"

static const struct { const char* name; int num; } signals[] = {
  {"SIGHUP", SIGHUP}, {"SIGINT", SIGINT}, {"SIGQUIT", SIGQUIT},
  {"SIGILL", SIGILL}, {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},
  {"SIGBUS", SIGBUS}, {"SIGFPE", SIGFPE}, {"SIGKILL", SIGKILL},
  {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
  {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
  {"SIGSTKFLT", SIGSTKFLT}, {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT},
  {"SIGSTOP", SIGSTOP}, {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},
  {"SIGTTOU", SIGTTOU}, {"SIGURG", SIGURG}, {"SIGXCPU", SIGXCPU},
  {"SIGXFSZ", SIGXFSZ}, {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF},
  {"SIGWINCH", SIGWINCH}, {"SIGIO", SIGIO}, {"SIGPWR", SIGPWR},
  {"SIGSYS", SIGSYS}, {NULL, 0}
};

/* Signal at idx: a name ("SIGTERM", also "TERM", in any case as Node
** and luv take them) or a number 0..64. Raises on anything else, naming
** the argument. */
int brood__signum(lua_State* L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = lua_tointeger(L, idx);
    if (!lua_isinteger(L, idx) || n < 0 || n > 64)
      return luaL_argerror(L, idx, "invalid signal number");
    return (int)n;
  }
  const char* name = luaL_checkstring(L, idx);
  const char* bare = strncasecmp(name, "SIG", 3) == 0 ? name + 3 : name;
  for (int i = 0; signals[i].name != NULL; i++)
    if (strcasecmp(signals[i].name + 3, bare) == 0) return signals[i].num;
  return luaL_argerror(L, idx,
                       lua_pushfstring(L, "unknown signal '%s'", name));
}

/* core.signum(sig) -> number (raises on an unknown signal) */
static int signal_signum(lua_State* L) {
  lua_pushinteger(L, brood__signum(L, 1));
  return 1;
}

/* core.signame(n) -> "SIGTERM", or nil for a number without a name */
static int signal_signame(lua_State* L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  for (int i = 0; signals[i].name != NULL; i++) {
    if (signals[i].num == n) {
      lua_pushstring(L, signals[i].name);
      return 1;
    }
  }
  luaL_pushfail(L);
  return 1;
}

typedef struct {
  brood_handle_t h;
  uv_signal_t signal;
  int signum;  /* started on this signal; 0: not started */
} brood_signal_t;

/* Watchers started, per signal. When the last watcher of a signal goes,
** libuv puts back SIG_DFL; the host (which sets this hook) reinstalls its
** own handler for the signals it handles (cleanup children first), and
** the loop's SIGINT interrupt hears of every change. */
static int started[65];
void (*brood__signal_released)(int signum) = NULL;

static void signal_forget(brood_signal_t* s) {
  int signum = s->signum;
  s->signum = 0;
  if (signum <= 0 || signum >= 65) return;
  started[signum]--;
  brood__interrupt_watch(signum, -1);
  if (started[signum] == 0 && brood__signal_released != NULL)
    brood__signal_released(signum);
}

static void signal_release(brood_handle_t* h);
static const brood_handle_ops_t signal_ops = {
  BROOD_SIGNAL_MT, NULL, signal_release
};

static void signal_release(brood_handle_t* h) {
  signal_forget((brood_signal_t*)h);
}

static void signal_cb(uv_signal_t* handle, int signum) {
  brood_signal_t* s = (brood_signal_t*)handle->data;
  if (brood__push_ref(s->h.loop, s->h.cb_ref)) {
    lua_pushinteger(s->h.loop->L, signum);
    brood__call(s->h.loop, 1);
  }
}

/* core.signal_new(loop) -> watcher */
static int signal_new(lua_State* L) {
  brood_signal_t* s = (brood_signal_t*)brood__handle_new(
      L, 1, sizeof(brood_signal_t), &signal_ops);
  int err = uv_signal_init(&s->h.loop->uv, &s->signal);
  if (err != 0) {
    brood__handle_abort(L, &s->h);
    return brood__push_error(L, err);
  }
  brood__handle_opened(L, &s->h, (uv_handle_t*)&s->signal);
  return 1;
}

/* watcher:start(sig, cb) -> true | nil, msg, code */
static int signal_start(lua_State* L) {
  brood_signal_t* s =
      (brood_signal_t*)brood__handle_check(L, 1, BROOD_SIGNAL_MT);
  int signum = brood__signum(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  brood__set_ref(L, 3, &s->h.cb_ref);
  int err = uv_signal_start(&s->signal, signal_cb, signum);
  if (err != 0) return brood__push_error(L, err);
  if (s->signum != signum) {  /* moved from another signal, maybe */
    signal_forget(s);
    if (signum > 0 && signum < 65) {
      started[signum]++;
      brood__interrupt_watch(signum, 1);
    }
    s->signum = signum;
  }
  lua_pushboolean(L, 1);
  return 1;
}

void brood__signal_open(lua_State* L) {
  static const luaL_Reg methods[] = {
    {"start", signal_start},
    {NULL, NULL}
  };
  brood__handle_class(L, BROOD_SIGNAL_MT, methods);
  lua_pushcfunction(L, signal_new);
  lua_setfield(L, -2, "signal_new");
  lua_pushcfunction(L, signal_signum);
  lua_setfield(L, -2, "signum");
  lua_pushcfunction(L, signal_signame);
  lua_setfield(L, -2, "signame");
}

/*
** system.c: process-wide facts and actions that need no handle:
** clocks, kill by pid, the environment, the process table under /proc.
*/
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "private.h"

extern char** environ;

static int system_hrtime(lua_State* L) {
  lua_pushinteger(L, (lua_Integer)uv_hrtime());
  return 1;
}

/* core.kill(pid, sig) -> true | nil, msg, code; pid <= 0 addresses groups */
static int system_kill(lua_State* L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  luaL_argcheck(L, pid >= INT32_MIN && pid <= INT32_MAX, 1, "pid out of range");
  int sig = brood__signum(L, 2);
  if (kill((pid_t)pid, sig) != 0) return brood__push_error(L, -errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.environ() -> {name = value} of this process */
static int system_environ(lua_State* L) {
  lua_newtable(L);
  for (char** e = environ; e != NULL && *e != NULL; e++) {
    const char* eq = strchr(*e, '=');
    if (eq == NULL || eq == *e) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

/* core.unsetenv(name): forget a variable this process was started with. */
static int system_unsetenv(lua_State* L) {
  unsetenv(luaL_checkstring(L, 1));
  return 0;
}

static int system_getpid(lua_State* L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static int system_cpu_count(lua_State* L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

static int system_exepath(lua_State* L) {
  char buf[4096];
  size_t len = sizeof(buf);
  int err = uv_exepath(buf, &len);
  if (err != 0) return brood__push_error(L, err);
  lua_pushlstring(L, buf, len);
  return 1;
}

/* Parse /proc/<pid>/stat: state and parent pid. Returns 0 on success. */
static int read_stat(const char* pid, char* state, long* ppid) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%s/stat", pid);
  FILE* f = fopen(path, "re");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char* close_paren = strrchr(buf, ')');  /* comm may hold spaces */
  if (close_paren == NULL) return -1;
  return sscanf(close_paren + 1, " %c %ld", state, ppid) == 2 ? 0 : -1;
}

typedef struct { long pid, ppid; char state; } proc_entry_t;

/* Snapshot of every process: pid, parent and state. Caller frees. */
static proc_entry_t* snapshot(size_t* count) {
  DIR* dir = opendir("/proc");
  if (dir == NULL) return NULL;
  size_t n = 0, cap = 256;
  proc_entry_t* all = (proc_entry_t*)malloc(cap * sizeof(*all));
  struct dirent* e;
  while (all != NULL && (e = readdir(dir)) != NULL) {
    if (!isdigit((unsigned char)e->d_name[0])) continue;
    proc_entry_t p;
    if (read_stat(e->d_name, &p.state, &p.ppid) != 0) continue;
    p.pid = atol(e->d_name);
    if (n == cap) {
      proc_entry_t* grown =
          (proc_entry_t*)realloc(all, 2 * cap * sizeof(*all));
      if (grown == NULL) break;
      all = grown;
      cap *= 2;
    }
    all[n++] = p;
  }
  closedir(dir);
  *count = n;
  return all;
}

/* core.descendants(pid) -> {pid...}: children, grandchildren... of pid,
** parents before their children, found through /proc. */
static int system_descendants(lua_State* L) {
  lua_Integer root = luaL_checkinteger(L, 1);
  size_t n = 0;
  proc_entry_t* all = snapshot(&n);
  if (all == NULL) return brood__push_error(L, UV_ENOMEM);
  lua_newtable(L);
  lua_Integer found = 0, scanned = 0;
  long parent = (long)root;
  for (;;) {  /* breadth first: the result table doubles as the queue */
    for (size_t i = 0; i < n; i++) {
      if (all[i].ppid == parent) {
        lua_pushinteger(L, all[i].pid);
        lua_rawseti(L, -2, ++found);
      }
    }
    if (scanned == found) break;
    lua_rawgeti(L, -1, ++scanned);
    parent = (long)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  free(all);
  return 1;
}

/* core.zombies() -> {pid...}: children of this process not yet reaped */
static int system_zombies(lua_State* L) {
  size_t n = 0;
  proc_entry_t* all = snapshot(&n);
  if (all == NULL) return brood__push_error(L, UV_ENOMEM);
  long self = (long)getpid();
  lua_newtable(L);
  lua_Integer k = 0;
  for (size_t i = 0; i < n; i++) {
    if (all[i].ppid == self && all[i].state == 'Z') {
      lua_pushinteger(L, all[i].pid);
      lua_rawseti(L, -2, ++k);
    }
  }
  free(all);
  return 1;
}

void brood__system_open(lua_State* L) {
  static const luaL_Reg funcs[] = {
    {"hrtime", system_hrtime},
    {"kill", system_kill},
    {"environ", system_environ},
    {"getpid", system_getpid},
    {"unsetenv", system_unsetenv},
    {"cpu_count", system_cpu_count},
    {"exepath", system_exepath},
    {"descendants", system_descendants},
    {"zombies", system_zombies},
    {NULL, NULL}
  };
  luaL_setfuncs(L, funcs, 0);
}

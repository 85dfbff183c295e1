/*
** core.c: luaopen_brood_core, the only exported symbol. Builds the module
** table from each concept's file, and core.configure, which sets the
** options policy (lua/brood/init.lua) chooses. Opening the module changes
** nothing process-wide: core.setup_process() does that, when called.
*/
#include "private.h"

#if defined(__GNUC__)
#define BROOD_EXPORT __attribute__((visibility("default")))
#else
#define BROOD_EXPORT
#endif

BROOD_EXPORT int luaopen_brood_core(lua_State* L);

/* [-0, +0] core.exit_watch: "pidfd" or "sigchld", for diagnostics. */
static void set_exit_watch(lua_State* L, int core_idx) {
  lua_pushstring(L, brood__process_pidfds() ? "pidfd" : "sigchld");
  lua_setfield(L, core_idx, "exit_watch");
}

/* core.configure{spin_us = n, pidfd = bool}: options, each left as it is
** when absent. spin_us: the spin ceiling before a poll while an IPC
** channel is open (0: no spinning); pidfd = false watches exits through
** SIGCHLD instead of pidfds. */
static int core_configure(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "spin_us");
  if (!lua_isnil(L, -1)) brood__loop_set_spin(luaL_checkinteger(L, -1));
  lua_getfield(L, 1, "pidfd");
  if (!lua_isnil(L, -1)) {
    brood__process_set_pidfd(lua_toboolean(L, -1));
    set_exit_watch(L, lua_upvalueindex(1));
  }
  return 0;
}

/* core.setup_process(): the process-wide settings brood relies on (see
** system.c); init.lua and the host call it. */
static int core_setup_process(lua_State* L) {
  (void)L;
  brood__setup_process();
  return 0;
}

int luaopen_brood_core(lua_State* L) {
  lua_newtable(L);
  brood__loop_open(L);
  brood__timer_open(L);
  brood__signal_open(L);
  brood__stream_open(L);
  brood__process_open(L);
  brood__fd_open(L);
  brood__system_open(L);
  brood__codec_open(L);
  brood__net_open(L);
  brood__channel_open(L);
  set_exit_watch(L, lua_gettop(L));
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, core_configure, 1);
  lua_setfield(L, -2, "configure");
  lua_pushcfunction(L, core_setup_process);
  lua_setfield(L, -2, "setup_process");
  lua_pushboolean(L, brood__host_mode);
  lua_setfield(L, -2, "host");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "uv_version");
  return 1;
}

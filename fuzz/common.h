/*
** common.h: what the libFuzzer harnesses share: a Lua 5.4 state with
** brood.core loaded (linked in, as the host links it), made once per
** process; each input runs in it and leaves it as it found it.
*/
#ifndef BROOD_FUZZ_COMMON_H
#define BROOD_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_brood_core(lua_State* L);

/* Anything unexpected is a finding: abort so libFuzzer keeps the input. */
static inline void fuzz_die(lua_State* L, const char* where) {
  fprintf(stderr, "fuzz: %s: %s\n", where,
          L != NULL && lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
  abort();
}

/* A state with the standard libraries and core = require "brood.core"
** as a global. */
static inline lua_State* fuzz_state(void) {
  lua_State* L = luaL_newstate();
  if (L == NULL) fuzz_die(NULL, "luaL_newstate");
  luaL_openlibs(L);
  luaL_requiref(L, "brood.core", luaopen_brood_core, 0);
  lua_setglobal(L, "core");
  return L;
}

/* Run a chunk of Lua at start-up (definitions). */
static inline void fuzz_dostring(lua_State* L, const char* code) {
  if (luaL_dostring(L, code) != LUA_OK) fuzz_die(L, "start-up chunk");
}

#endif

/*
** call.c: what every C function bound to Lua shares: the loop argument,
** registry refs, and calls into Lua from libuv callbacks.
**
** Every Lua callback runs through brood__call: under a message handler
** that appends a traceback, on the thread that called loop:run(). The
** first error a callback raises is kept and the loop stopped; run() then
** returns it, and the Lua layer raises it again (lua.c's scheme, so the
** library itself never prints or exits).
*/
#include <string.h>

#include "private.h"

brood_loop_t* brood__check_loop(lua_State* L, int idx) {
  brood_loop_box_t* box =
      (brood_loop_box_t*)luaL_checkudata(L, idx, BROOD_LOOP_MT);
  if (box->loop == NULL) luaL_error(L, "attempt to use a closed brood.loop");
  return box->loop;
}

/* The message handler of every callback: loop:run() pushes it once. */
int brood__msghandler(lua_State* L) {
  const char* msg = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
  if (msg != NULL && strstr(msg, "\nstack traceback:") == NULL)
    luaL_traceback(L, L, msg, 1);
  else
    lua_settop(L, 1);  /* error objects, and errors traced already, travel
                       ** unchanged (a task's error raised by task:wait) */
  return 1;
}

/* [-1, +0] Keep the value on top of L's stack as the loop's error
** (unless one is kept already) and stop the loop: run() returns it. */
void brood__fail(brood_loop_t* loop, lua_State* L) {
  if (loop->error_ref == LUA_NOREF)
    loop->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  uv_stop(&loop->uv);
  loop->stop_requested = 1;
}

/* [-(nargs+1), +0] Call the function below nargs arguments on loop->L.
** Returns 1 if it ran without error; else keeps the first error, stops
** the loop and returns 0. */
int brood__call(brood_loop_t* loop, int nargs) {
  loop->calls++;
  /* the message handler waits in loop_run's frame, pushed once a run */
  if (lua_pcall(loop->L, nargs, 0, loop->msgh) == LUA_OK) return 1;
  brood__fail(loop, loop->L);
  return 0;
}

/* Replace *ref with a ref to the value at idx (nil clears it). */
void brood__set_ref(lua_State* L, int idx, int* ref) {
  idx = lua_absindex(L, idx);
  if (*ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
  if (!lua_isnoneornil(L, idx)) {
    lua_pushvalue(L, idx);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

void brood__unref(lua_State* L, int* ref) {
  if (*ref != LUA_NOREF && L != NULL) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* Push the registry value `ref` on the running thread, if user code may
** run now. Returns 0 (pushing nothing) when it may not. */
int brood__push_ref(brood_loop_t* loop, int ref) {
  if (ref == LUA_NOREF || loop->L == NULL || loop->closing ||
      loop->torn_down)
    return 0;
  lua_rawgeti(loop->L, LUA_REGISTRYINDEX, ref);
  return 1;
}

/* Call the callback at registry ref with (nil) or (error name), if user
** code may run now: the shape of every request's completion. */
void brood__call_status(brood_loop_t* loop, int ref, int status) {
  if (!brood__push_ref(loop, ref)) return;
  if (status == 0) lua_pushnil(loop->L);
  else lua_pushstring(loop->L, brood__err_name(status));
  brood__call(loop, 1);
}

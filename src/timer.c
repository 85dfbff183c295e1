/*
** timer.c: libuv timers. The Lua layer builds set_timeout, set_interval,
** sleep and every timeout policy on start/stop.
*/
#include "private.h"

typedef struct {
  brood_handle_t h;
  uv_timer_t timer;
} brood_timer_t;

static const brood_handle_ops_t timer_ops = {BROOD_TIMER_MT, NULL, NULL};

static void timer_cb(uv_timer_t* timer) {
  brood_timer_t* t = (brood_timer_t*)timer->data;
  if (brood__push_ref(t->h.loop, t->h.cb_ref)) brood__call(t->h.loop, 0);
}

/* core.timer_new(loop) -> timer */
static int timer_new(lua_State* L) {
  brood_timer_t* t = (brood_timer_t*)brood__handle_new(
      L, 1, sizeof(brood_timer_t), &timer_ops);
  uv_timer_init(&t->h.loop->uv, &t->timer);  /* cannot fail */
  brood__handle_opened(L, &t->h, (uv_handle_t*)&t->timer);
  return 1;
}

/* timer:start(timeout_ms, repeat_ms, cb) */
static int timer_start(lua_State* L) {
  brood_timer_t* t = (brood_timer_t*)brood__handle_check(L, 1, BROOD_TIMER_MT);
  lua_Integer timeout = luaL_checkinteger(L, 2);
  lua_Integer repeat = luaL_checkinteger(L, 3);
  luaL_argcheck(L, timeout >= 0, 2, "must not be negative");
  luaL_argcheck(L, repeat >= 0, 3, "must not be negative");
  luaL_checktype(L, 4, LUA_TFUNCTION);
  brood__set_ref(L, 4, &t->h.cb_ref);
  /* libuv counts from the loop's cached time, which stands still while
  ** the script runs synchronously (busy Lua, a *_sync call on its private
  ** loop): refresh it, so every timer counts from the moment it is set. */
  uv_update_time(&t->h.loop->uv);
  uv_timer_start(&t->timer, timer_cb, (uint64_t)timeout, (uint64_t)repeat);
  return 0;
}

static int timer_stop(lua_State* L) {
  brood_timer_t* t = (brood_timer_t*)brood__handle_check(L, 1, BROOD_TIMER_MT);
  uv_timer_stop(&t->timer);
  return 0;
}

void brood__timer_open(lua_State* L) {
  static const luaL_Reg methods[] = {
    {"start", timer_start},
    {"stop", timer_stop},
    {NULL, NULL}
  };
  brood__handle_class(L, BROOD_TIMER_MT, methods);
  lua_pushcfunction(L, timer_new);
  lua_setfield(L, -2, "timer_new");
}

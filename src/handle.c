/*
** handle.c: the box every libuv handle of brood lives in.
**
** The userdata holds one pointer (the box) to a malloc'd block that embeds
** the uv handle. A block is NEW until its uv handle is initialised, then
** OPEN: from brood__handle_opened to the close callback it pins its
** userdata with a registry ref, so an open handle is never collected.
** Closing makes it CLOSING (CLOSE_DEFERRED first while a write still sends
** its fd); the close callback makes it CLOSED, releases its parts and
** frees it (libuv: "the handle's memory can only be reclaimed ... inside
** the uv_close_cb"). __gc is reached with a live block only at lua_close:
** it then detaches the block, which closes without touching Lua again.
*/
#include <stdlib.h>
#include <string.h>

#include "private.h"

/* [-0, +1] Pushes a new closed box of type ops with the loop at loop_idx
** as user value (so a private loop outlives its handles) and returns a
** zeroed NEW block of `size` bytes. On allocation failure raises. */
void* brood__handle_new(lua_State* L, int loop_idx, size_t size,
                        const brood_handle_ops_t* ops) {
  brood_loop_t* loop = brood__check_loop(L, loop_idx);
  loop_idx = lua_absindex(L, loop_idx);
  void** box = (void**)lua_newuserdatauv(L, sizeof(void*), 1);
  *box = NULL;  /* born closed, as liolib does */
  luaL_setmetatable(L, ops->name);
  lua_pushvalue(L, loop_idx);
  lua_setiuservalue(L, -2, 1);
  brood_handle_t* h = (brood_handle_t*)calloc(1, size);
  if (h == NULL) luaL_error(L, "brood: out of memory");
  h->loop = loop;
  h->ops = ops;
  h->state = BROOD_NEW;
  h->self_ref = h->cb_ref = h->close_ref = LUA_NOREF;
  return h;
}

/* The uv handle of a NEW block could not be initialised: free the block;
** the closed box stays on the stack for the caller to drop. */
void brood__handle_abort(lua_State* L, brood_handle_t* h) {
  (void)L;
  free(h);
}

/* [-0, +0] The uv handle was initialised: bind it to the box on top of
** the stack and pin that userdata until the close callback. */
void brood__handle_opened(lua_State* L, brood_handle_t* h, uv_handle_t* uv) {
  void** box = (void**)lua_touserdata(L, -1);
  h->uv = uv;
  uv->data = h;
  h->box = box;
  *box = h;
  h->state = BROOD_OPEN;
  lua_pushvalue(L, -1);
  h->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* unref: handle_close_cb */
  h->loop->handles++;
}

static void handle_close_cb(uv_handle_t* uv) {
  brood_handle_t* h = (brood_handle_t*)uv->data;
  brood_loop_t* loop = h->loop;
  h->state = BROOD_CLOSED;
  if (h->ops->release != NULL) h->ops->release(h);
  loop->handles--;
  if (!h->detached && !loop->torn_down) {
    lua_State* M = loop->main;
    if (brood__push_ref(loop, h->close_ref)) brood__call(loop, 0);
    if (h->box != NULL) *h->box = NULL;
    brood__unref(M, &h->close_ref);
    brood__unref(M, &h->cb_ref);
    brood__unref(M, &h->self_ref);
  }
  free(h);
}

/* Start closing an OPEN block; idempotent. The block lives until
** handle_close_cb. While pinned the uv_close waits for the last unpin. */
void brood__handle_close(brood_handle_t* h) {
  if (h->state != BROOD_OPEN) return;
  if (h->pins > 0) {
    h->state = BROOD_CLOSE_DEFERRED;  /* brood__handle_unpin closes it */
    return;
  }
  h->state = BROOD_CLOSING;
  uv_close(h->uv, handle_close_cb);
}

/* The handle's loop goes away (loop:close(), lua_close): let its type act
** on the world outside first (process.c signals cleanup children). */
void brood__handle_teardown(brood_handle_t* h) {
  if (h->ops->teardown != NULL) h->ops->teardown(h);
}

void brood__handle_pin(brood_handle_t* h) {
  h->pins++;
}

void brood__handle_unpin(brood_handle_t* h) {
  if (--h->pins == 0 && h->state == BROOD_CLOSE_DEFERRED) {
    h->state = BROOD_CLOSING;
    uv_close(h->uv, handle_close_cb);
  }
}

/* Open handle at idx, or raise: methods on a closed handle are mistakes. */
void* brood__handle_check(lua_State* L, int idx, const char* mt) {
  void** box = (void**)luaL_checkudata(L, idx, mt);
  brood_handle_t* h = (brood_handle_t*)*box;
  if (h == NULL || h->state != BROOD_OPEN)
    luaL_error(L, "attempt to use a closed %s", mt);
  return h;
}

static brood_handle_t* handle_peek(lua_State* L) {
  luaL_checktype(L, 1, LUA_TUSERDATA);
  void** box = (void**)lua_touserdata(L, 1);
  if (!lua_getmetatable(L, 1)) luaL_argerror(L, 1, "brood handle expected");
  lua_getfield(L, -1, "__brood_handle");
  int ok = lua_toboolean(L, -1);
  lua_pop(L, 2);
  if (!ok) luaL_argerror(L, 1, "brood handle expected");
  return (brood_handle_t*)*box;
}

/* h:close([cb]) -> true; closing twice is a no-op. */
static int handle_close_method(lua_State* L) {
  brood_handle_t* h = handle_peek(L);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  if (h != NULL && h->state == BROOD_OPEN) {
    brood__set_ref(L, 2, &h->close_ref);
    brood__handle_close(h);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* __close(h, err): a to-be-closed variable going out of scope (maybe by
** an error, which arrives as the second argument): close, no callback. */
static int handle_tbc_close(lua_State* L) {
  brood_handle_t* h = handle_peek(L);
  if (h != NULL) brood__handle_close(h);
  return 0;
}

/* __gc: reached with a live block only at lua_close (open blocks are
** pinned), when its loop goes away too: tear it down, then detach it: its
** close callback frees without Lua. */
static int handle_gc(lua_State* L) {
  void** box = (void**)lua_touserdata(L, 1);
  brood_handle_t* h = (brood_handle_t*)*box;
  if (h == NULL) return 0;
  *box = NULL;
  h->box = NULL;
  h->detached = 1;
  brood__handle_teardown(h);
  brood__handle_close(h);
  return 0;
}

static int handle_ref(lua_State* L) {
  brood_handle_t* h = handle_peek(L);
  if (h != NULL && h->state == BROOD_OPEN) uv_ref(h->uv);
  return 0;
}

static int handle_unref(lua_State* L) {
  brood_handle_t* h = handle_peek(L);
  if (h != NULL && h->state == BROOD_OPEN) uv_unref(h->uv);
  return 0;
}

static int handle_is_closed(lua_State* L) {
  brood_handle_t* h = handle_peek(L);
  lua_pushboolean(L, h == NULL || h->state != BROOD_OPEN);
  return 1;
}

static int handle_tostring(lua_State* L) {
  brood_handle_t* h = handle_peek(L);
  luaL_getmetafield(L, 1, "__name");
  const char* name = lua_tostring(L, -1);
  if (h == NULL)
    lua_pushfstring(L, "%s (closed)", name);
  else
    lua_pushfstring(L, "%s (%p)", name, (void*)h);
  return 1;
}

/* [-0, +0] Create metatable `name` with `methods` (plus the common handle
** methods) in __index, and __gc, __close, __tostring. */
void brood__handle_class(lua_State* L, const char* name,
                         const luaL_Reg* methods) {
  static const luaL_Reg common[] = {
    {"close", handle_close_method},
    {"ref", handle_ref},
    {"unref", handle_unref},
    {"is_closed", handle_is_closed},
    {NULL, NULL}
  };
  static const luaL_Reg common_meta[] = {
    {"__gc", handle_gc},
    {"__close", handle_tbc_close},
    {"__tostring", handle_tostring},
    {NULL, NULL}
  };
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, common_meta, 0);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "__brood_handle");
  lua_newtable(L);  /* method table */
  luaL_setfuncs(L, common, 0);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);  /* pop metatable */
}

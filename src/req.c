/*
** req.c: requests in flight (luv's scheme). One struct for every libuv
** request brood makes (a stream's write or shutdown, a connect, an IPC
** channel's batch and shutdown) and for the handle a channel takes only
** to close it: the loop, the Lua callback, the Lua value kept alive until
** libuv is done with it, and one free site, brood__req_done.
*/
#include <stdlib.h>

#include "private.h"

/* A zeroed request of `size` bytes (at least a brood_req_t: an owner may
** extend it) on loop, or NULL without memory. Its refs are taken once
** libuv has queued it (brood__req_refs): a request libuv refused goes
** back through brood__req_done with nothing to call. */
brood_req_t* brood__req_new(brood_loop_t* loop, size_t size) {
  brood_req_t* r = (brood_req_t*)calloc(1, size);
  if (r == NULL) return NULL;
  r->loop = loop;
  r->cb_ref = r->data_ref = LUA_NOREF;
  return r;
}

/* As brood__req_new, raising without memory. */
brood_req_t* brood__req_check(lua_State* L, brood_loop_t* loop) {
  brood_req_t* r = brood__req_new(loop, sizeof(brood_req_t));
  if (r == NULL) luaL_error(L, "brood: out of memory");
  return r;
}

/* The request is queued: keep the values at data_idx and cb_idx (0 or a
** nil: none) until it is done. */
void brood__req_refs(lua_State* L, brood_req_t* r, int data_idx,
                     int cb_idx) {
  if (data_idx != 0) brood__set_ref(L, data_idx, &r->data_ref);
  if (cb_idx != 0) brood__set_ref(L, cb_idx, &r->cb_ref);
}

/* [-0, +1|3] The end of a Lua method that queued request r (err from
** libuv): true with the refs taken, or nil, msg, code with r freed. */
int brood__req_queued(lua_State* L, brood_req_t* r, int err, int data_idx,
                      int cb_idx) {
  if (err != 0) {
    brood__req_done(r, 0);
    return brood__push_error(L, err);
  }
  brood__req_refs(L, r, data_idx, cb_idx);
  lua_pushboolean(L, 1);
  return 1;
}

/* Done (or never queued): cb(nil | error name) if user code may run,
** release the refs, free the request. */
void brood__req_done(brood_req_t* r, int status) {
  brood_loop_t* loop = r->loop;
  if (!loop->torn_down) {
    brood__call_status(loop, r->cb_ref, status);
    brood__unref(loop->main, &r->cb_ref);
    brood__unref(loop->main, &r->data_ref);
  }
  free(r);
}

/* The usual libuv callbacks: the request is the first member. */
void brood__req_write_cb(uv_write_t* req, int status) {
  brood__req_done((brood_req_t*)req, status);
}

void brood__req_shutdown_cb(uv_shutdown_t* req, int status) {
  brood__req_done((brood_req_t*)req, status);
}

void brood__req_connect_cb(uv_connect_t* req, int status) {
  brood__req_done((brood_req_t*)req, status);
}

static void junk_close_cb(uv_handle_t* handle) {
  brood__req_done((brood_req_t*)handle, 0);
}

/* Take what is pending on the IPC pipe `ipc` only to close it (a handle
** brood cannot use), so the next frames get their own. Returns 0 or a
** libuv error. */
int brood__req_discard_pending(brood_loop_t* loop, uv_pipe_t* ipc) {
  brood_req_t* r = brood__req_new(loop, sizeof(brood_req_t));
  if (r == NULL) return UV_ENOMEM;
  int err = uv_pipe_init(&loop->uv, &r->u.junk, 0);
  if (err != 0) {
    brood__req_done(r, 0);
    return err;
  }
  r->u.junk.data = NULL;  /* not a brood handle (loop.c's close walk) */
  err = uv_accept((uv_stream_t*)ipc, (uv_stream_t*)&r->u.junk);
  uv_close((uv_handle_t*)&r->u.junk, junk_close_cb);
  return err;
}

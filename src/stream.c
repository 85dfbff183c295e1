/*
** stream.c: byte streams over libuv (pipes now; sockets later share it).
** Reads are copied into Lua strings at once from one buffer per loop;
** writes keep their Lua string alive with a registry ref until libuv's
** write callback, so no byte is copied (luv's data_ref scheme).
*/
#include <stdlib.h>
#include <unistd.h>

#include "private.h"

typedef struct {
  uv_write_t req;
  brood_loop_t* loop;
  int data_ref;   /* the string being written; unref: stream_write_cb */
  int cb_ref;     /* the caller's callback or LUA_NOREF */
} brood_write_t;

typedef struct {
  uv_shutdown_t req;
  brood_loop_t* loop;
  int cb_ref;
} brood_shutdown_t;

#define check_stream(L) \
  ((brood_stream_t*)brood__handle_check(L, 1, BROOD_STREAM_MT))

/* [-0, +1] Push a new, not yet open stream box on the loop at loop_idx;
** the caller initialises one member of the union, then calls
** brood__handle_opened (or brood__handle_abort). net.c and channel.c
** make their sockets and accepted handles with it. */
brood_stream_t* brood__stream_new(lua_State* L, int loop_idx) {
  return (brood_stream_t*)brood__handle_new(L, loop_idx, sizeof(brood_stream_t),
                                            BROOD_STREAM_MT);
}

/* The open stream at idx (raises if it is not one, or closed). */
brood_stream_t* brood__stream_check(lua_State* L, int idx) {
  return (brood_stream_t*)brood__handle_check(L, idx, BROOD_STREAM_MT);
}

/* core.pipe_open(loop, fd) -> stream | nil, msg, code. The stream owns fd
** from then on; on failure the caller still owns it. */
static int stream_pipe_open(lua_State* L) {
  lua_Integer fd = luaL_checkinteger(L, 2);
  luaL_argcheck(L, fd >= 0 && fd <= INT32_MAX, 2, "invalid fd");
  brood_stream_t* s = brood__stream_new(L, 1);
  int err = uv_pipe_init(&s->h.loop->uv, &s->u.pipe, 0);
  if (err == 0) err = uv_pipe_open(&s->u.pipe, (uv_file)fd);
  if (err != 0) {
    if (s->u.pipe.loop != NULL) {
      /* initialised but not opened: it still needs uv_close */
      brood__handle_opened(L, &s->h, (uv_handle_t*)&s->u.pipe);
      brood__handle_close(&s->h);
    } else {
      brood__handle_abort(L, &s->h);
    }
    return brood__push_error(L, err);
  }
  brood__handle_opened(L, &s->h, (uv_handle_t*)&s->u.pipe);
  return 1;
}

static void stream_alloc_cb(uv_handle_t* handle, size_t suggested,
                            uv_buf_t* buf) {
  brood_stream_t* s = (brood_stream_t*)handle->data;
  (void)suggested;
  buf->base = s->h.loop->read_buffer;
  buf->len = sizeof(s->h.loop->read_buffer);
}

/* cb(chunk) for data, cb(nil) at EOF, cb(nil, code) on error; reading
** stops by itself after EOF or an error. */
static void stream_read_cb(uv_stream_t* stream, ssize_t nread,
                           const uv_buf_t* buf) {
  brood_stream_t* s = (brood_stream_t*)stream->data;
  brood_loop_t* loop = s->h.loop;
  if (nread == 0) return;  /* EAGAIN: nothing to do */
  if (nread < 0) uv_read_stop(stream);
  if (!brood__push_ref(loop, s->h.cb_ref)) return;
  if (nread > 0) {
    lua_pushlstring(loop->L, buf->base, (size_t)nread);
    brood__call(loop, 1);
  } else if (nread == UV_EOF) {
    lua_pushnil(loop->L);
    brood__call(loop, 1);
  } else {
    lua_pushnil(loop->L);
    lua_pushstring(loop->L, brood__err_name((int)nread));
    brood__call(loop, 2);
  }
}

/* stream:read_start(cb) -> true | nil, msg, code */
static int stream_read_start(lua_State* L) {
  brood_stream_t* s = check_stream(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  brood__set_ref(L, 2, &s->h.cb_ref);
  int err = uv_read_start(&s->u.stream, stream_alloc_cb, stream_read_cb);
  if (err != 0 && err != UV_EALREADY) return brood__push_error(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int stream_read_stop(lua_State* L) {
  uv_read_stop(&check_stream(L)->u.stream);
  return 0;
}

static void stream_write_cb(uv_write_t* req, int status) {
  brood_write_t* w = (brood_write_t*)req->data;
  brood_loop_t* loop = w->loop;
  if (!loop->torn_down) {
    brood__call_status(loop, w->cb_ref, status);
    brood__unref(loop->main, &w->cb_ref);
    brood__unref(loop->main, &w->data_ref);
  }
  free(w);
}

/* stream:write(data[, cb]) -> true | nil, msg, code. cb(code|nil) runs
** once the bytes are handed to the kernel (or failed). */
static int stream_write(lua_State* L) {
  brood_stream_t* s = check_stream(L);
  size_t len;
  const char* data = luaL_checklstring(L, 2, &len);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TFUNCTION);
  brood_write_t* w = (brood_write_t*)malloc(sizeof(*w));
  if (w == NULL) return luaL_error(L, "brood: out of memory");
  w->loop = s->h.loop;
  w->req.data = w;
  w->data_ref = w->cb_ref = LUA_NOREF;
  /* not uv_buf_init, whose unsigned int length would cut 4 GiB or more
  ** (uv_buf_t.len is a size_t on Unix) */
  uv_buf_t buf;
  buf.base = (char*)data;
  buf.len = len;
  int err = uv_write(&w->req, &s->u.stream, &buf, 1, stream_write_cb);
  if (err != 0) {
    free(w);
    return brood__push_error(L, err);
  }
  /* The request is queued: only now take the refs it releases. */
  brood__set_ref(L, 2, &w->data_ref);
  brood__set_ref(L, 3, &w->cb_ref);
  lua_pushboolean(L, 1);
  return 1;
}

static int stream_write_queue_size(lua_State* L) {
  lua_pushinteger(L,
                  (lua_Integer)uv_stream_get_write_queue_size(
                      &check_stream(L)->u.stream));
  return 1;
}

static void stream_shutdown_cb(uv_shutdown_t* req, int status) {
  brood_shutdown_t* sd = (brood_shutdown_t*)req->data;
  brood_loop_t* loop = sd->loop;
  if (!loop->torn_down) {
    brood__call_status(loop, sd->cb_ref, status);
    brood__unref(loop->main, &sd->cb_ref);
  }
  free(sd);
}

/* stream:shutdown([cb]) -> true | nil, msg, code: EOF after queued writes */
static int stream_shutdown(lua_State* L) {
  brood_stream_t* s = check_stream(L);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  brood_shutdown_t* sd = (brood_shutdown_t*)malloc(sizeof(*sd));
  if (sd == NULL) return luaL_error(L, "brood: out of memory");
  sd->loop = s->h.loop;
  sd->req.data = sd;
  sd->cb_ref = LUA_NOREF;
  int err = uv_shutdown(&sd->req, &s->u.stream, stream_shutdown_cb);
  if (err != 0) {
    free(sd);
    return brood__push_error(L, err);
  }
  brood__set_ref(L, 2, &sd->cb_ref);
  lua_pushboolean(L, 1);
  return 1;
}

static int stream_fileno(lua_State* L) {
  uv_os_fd_t fd;
  int err = uv_fileno((uv_handle_t*)&check_stream(L)->u.stream, &fd);
  if (err != 0) return brood__push_error(L, err);
  lua_pushinteger(L, fd);
  return 1;
}

void brood__stream_open(lua_State* L) {
  static const luaL_Reg methods[] = {
    {"read_start", stream_read_start},
    {"read_stop", stream_read_stop},
    {"write", stream_write},
    {"write_queue_size", stream_write_queue_size},
    {"shutdown", stream_shutdown},
    {"fileno", stream_fileno},
    {NULL, NULL}
  };
  brood__newclass(L, BROOD_STREAM_MT, methods, NULL);
  lua_pushcfunction(L, stream_pipe_open);
  lua_setfield(L, -2, "pipe_open");
}

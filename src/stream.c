/*
** stream.c: byte streams over libuv: pipes, unix and TCP sockets (made
** and accepted here by type, for net.c and channel.c too).
** Reads are copied into Lua strings at once from one shared buffer;
** writes keep their Lua string alive with a registry ref until libuv's
** write callback, so no byte is copied (luv's data_ref scheme, req.c).
*/
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "private.h"

const brood_handle_ops_t brood__stream_ops = {BROOD_STREAM_MT, NULL, NULL};

/* Bytes handed to libuv for each read. Chunks are copied into Lua strings
** at once, so one buffer serves every stream of every loop. */
#define READ_BUFFER (64 * 1024)
static char read_buffer[READ_BUFFER];

#define check_stream(L) \
  ((brood_stream_t*)brood__handle_check(L, 1, BROOD_STREAM_MT))

/* [-0, +1] Push a new box of type ops (a stream, or net.c's server) on
** the loop at loop_idx around a TCP socket or a pipe, by `type`; returns
** the OPEN block, or NULL with *err set and a closed box pushed. The one
** place that sets up a stream by type. */
brood_stream_t* brood__stream_init(lua_State* L, int loop_idx,
                                   uv_handle_type type,
                                   const brood_handle_ops_t* ops, int* err) {
  brood_stream_t* s = (brood_stream_t*)brood__handle_new(
      L, loop_idx, sizeof(brood_stream_t), ops);
  uv_loop_t* uv = &s->h.loop->uv;
  *err = type == UV_TCP ? uv_tcp_init(uv, &s->u.tcp)
         : type == UV_NAMED_PIPE ? uv_pipe_init(uv, &s->u.pipe, 0)
         : UV_EINVAL;
  if (*err != 0) {
    brood__handle_abort(L, &s->h);
    return NULL;
  }
  brood__handle_opened(L, &s->h, (uv_handle_t*)&s->u.stream);
  return s;
}

/* [-0, +1] Push a new box of type ops whose handle accepts what is
** pending on `from`: a connection on a listening socket, or a handle
** passed over an IPC pipe (channel.c). Returns 0, or a libuv error with
** a closed box pushed. */
int brood__stream_accept(lua_State* L, int loop_idx, uv_stream_t* from,
                         uv_handle_type type, const brood_handle_ops_t* ops) {
  int err;
  brood_stream_t* s = brood__stream_init(L, loop_idx, type, ops, &err);
  if (s == NULL) return err;
  err = uv_accept(from, &s->u.stream);
  if (err != 0) brood__handle_close(&s->h);
  return err;
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
  int err;
  brood_stream_t* s = brood__stream_init(L, 1, UV_NAMED_PIPE,
                                         &brood__stream_ops, &err);
  if (s == NULL) return brood__push_error(L, err);
  err = uv_pipe_open(&s->u.pipe, (uv_file)fd);
  if (err != 0) {
    brood__handle_close(&s->h);  /* initialised: it still needs uv_close */
    return brood__push_error(L, err);
  }
  return 1;
}

/* [-0, +1] Push {address=, family="IPv4"|"IPv6", port=} for addr, or
** push nothing and return the libuv error. */
static int push_sockaddr(lua_State* L, const struct sockaddr* addr) {
  char ip[INET6_ADDRSTRLEN];
  int port, err;
  const char* family;
  if (addr->sa_family == AF_INET) {
    const struct sockaddr_in* in = (const struct sockaddr_in*)addr;
    err = uv_ip4_name(in, ip, sizeof(ip));
    port = ntohs(in->sin_port);
    family = "IPv4";
  } else if (addr->sa_family == AF_INET6) {
    const struct sockaddr_in6* in6 = (const struct sockaddr_in6*)addr;
    err = uv_ip6_name(in6, ip, sizeof(ip));
    port = ntohs(in6->sin6_port);
    family = "IPv6";
  } else {
    return UV_EAFNOSUPPORT;
  }
  if (err != 0) return err;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, ip);
  lua_setfield(L, -2, "address");
  lua_pushstring(L, family);
  lua_setfield(L, -2, "family");
  lua_pushinteger(L, port);
  lua_setfield(L, -2, "port");
  return 0;
}

/* [-0, +1|3] The local (peer = 0) or remote (peer = 1) name of a TCP or
** unix socket: the address table for TCP, the path for a unix socket (""
** when unbound). Returns the number of values pushed (nil, msg, code on
** failure). For stream:getsockname() and net.c's servers. */
int brood__stream_name(lua_State* L, uv_stream_t* stream, int peer) {
  int err;
  if (stream->type == UV_TCP) {
    struct sockaddr_storage addr;
    int len = (int)sizeof(addr);
    uv_tcp_t* tcp = (uv_tcp_t*)stream;
    err = peer ? uv_tcp_getpeername(tcp, (struct sockaddr*)&addr, &len)
               : uv_tcp_getsockname(tcp, (struct sockaddr*)&addr, &len);
    if (err == 0) err = push_sockaddr(L, (struct sockaddr*)&addr);
  } else if (stream->type == UV_NAMED_PIPE) {
    /* libuv 1.44 reads path[0] even when it copies nothing (an unbound
    ** socketpair end): give it a defined byte (valgrind). */
    char path[sizeof(((struct sockaddr_un*)0)->sun_path) + 1] = "";
    size_t len = sizeof(path);
    uv_pipe_t* pipe = (uv_pipe_t*)stream;
    err = peer ? uv_pipe_getpeername(pipe, path, &len)
               : uv_pipe_getsockname(pipe, path, &len);
    if (err == 0) lua_pushlstring(L, path, len);
  } else {
    err = UV_EINVAL;
  }
  if (err != 0) return brood__push_error(L, err);
  return 1;
}

/* stream:getsockname() / stream:getpeername() for socket streams. */
static int stream_getsockname(lua_State* L) {
  return brood__stream_name(L, &check_stream(L)->u.stream, 0);
}

static int stream_getpeername(lua_State* L) {
  return brood__stream_name(L, &check_stream(L)->u.stream, 1);
}

static void stream_alloc_cb(uv_handle_t* handle, size_t suggested,
                            uv_buf_t* buf) {
  (void)handle;
  (void)suggested;
  buf->base = read_buffer;
  buf->len = sizeof(read_buffer);
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

/* stream:write(data[, cb]) -> true | nil, msg, code. cb(code|nil) runs
** once the bytes are handed to the kernel (or failed). */
static int stream_write(lua_State* L) {
  brood_stream_t* s = check_stream(L);
  size_t len;
  const char* data = luaL_checklstring(L, 2, &len);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TFUNCTION);
  brood_req_t* r = brood__req_check(L, s->h.loop);
  /* not uv_buf_init, whose unsigned int length would cut 4 GiB or more
  ** (uv_buf_t.len is a size_t on Unix) */
  uv_buf_t buf;
  buf.base = (char*)data;
  buf.len = len;
  int err = uv_write(&r->u.write, &s->u.stream, &buf, 1, brood__req_write_cb);
  return brood__req_queued(L, r, err, 2, 3);  /* the string lives until cb */
}

static int stream_write_queue_size(lua_State* L) {
  lua_pushinteger(L,
                  (lua_Integer)uv_stream_get_write_queue_size(
                      &check_stream(L)->u.stream));
  return 1;
}

/* stream:shutdown([cb]) -> true | nil, msg, code: EOF after queued writes */
static int stream_shutdown(lua_State* L) {
  brood_stream_t* s = check_stream(L);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  brood_req_t* r = brood__req_check(L, s->h.loop);
  int err = uv_shutdown(&r->u.shutdown, &s->u.stream, brood__req_shutdown_cb);
  return brood__req_queued(L, r, err, 0, 2);
}

/* [-0, +1|3] The fd of a stream (or of net.c's server): fd | nil, msg,
** code. */
int brood__stream_fileno(lua_State* L, uv_stream_t* stream) {
  uv_os_fd_t fd;
  int err = uv_fileno((uv_handle_t*)stream, &fd);
  if (err != 0) return brood__push_error(L, err);
  lua_pushinteger(L, fd);
  return 1;
}

static int stream_fileno(lua_State* L) {
  return brood__stream_fileno(L, &check_stream(L)->u.stream);
}

void brood__stream_open(lua_State* L) {
  static const luaL_Reg methods[] = {
    {"read_start", stream_read_start},
    {"read_stop", stream_read_stop},
    {"write", stream_write},
    {"write_queue_size", stream_write_queue_size},
    {"shutdown", stream_shutdown},
    {"fileno", stream_fileno},
    {"getsockname", stream_getsockname},
    {"getpeername", stream_getpeername},
    {NULL, NULL}
  };
  brood__handle_class(L, BROOD_STREAM_MT, methods);
  lua_pushcfunction(L, stream_pipe_open);
  lua_setfield(L, -2, "pipe_open");
}

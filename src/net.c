/*
** net.c: listening and connecting, over TCP and unix-domain sockets.
**
** A server is a handle box ("brood.server") around a uv_tcp_t or
** uv_pipe_t that binds, listens and accepts; each accepted connection,
** and each outgoing connection, is an ordinary "brood.stream" (stream.c),
** so sockets read, write and shut down like pipes. Names and ports travel
** as numeric addresses only: resolving host names is policy for Lua.
** Lua could not do this: sockaddr structs, uv_accept and connect requests
** are libuv memory.
*/
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "private.h"

/* A listening socket: the same box as a stream (a TCP or pipe handle);
** its handle's cb_ref is the on_connection callback. */
typedef brood_stream_t brood_server_t;

/* Exported for channel.c, which adopts servers passed over IPC with
** brood__stream_accept: bound and listening at the OS level already, Lua
** calls listen() on them to start accepting. */
const brood_handle_ops_t brood__server_ops = {BROOD_SERVER_MT, NULL, NULL};

#define check_server(L) \
  ((brood_server_t*)brood__handle_check(L, 1, BROOD_SERVER_MT))

/* Longest unix socket path: libuv 1.44 would silently truncate longer
** ones, binding or reaching another file. */
#define NET_PATH_MAX (sizeof(((struct sockaddr_un*)0)->sun_path) - 1)

/* Fill *addr from a numeric IPv4 or IPv6 address. 0 or UV_EINVAL. */
static int net_addr(const char* host, int port,
                    struct sockaddr_storage* addr) {
  memset(addr, 0, sizeof(*addr));
  if (strchr(host, ':') != NULL)
    return uv_ip6_addr(host, port, (struct sockaddr_in6*)addr);
  return uv_ip4_addr(host, port, (struct sockaddr_in*)addr);
}

static int net_check_port(lua_State* L, int idx) {
  lua_Integer port = luaL_checkinteger(L, idx);
  luaL_argcheck(L, port >= 0 && port <= 65535, idx, "port out of range");
  return (int)port;
}

static const char* net_check_path(lua_State* L, int idx) {
  size_t len;
  const char* path = luaL_checklstring(L, idx, &len);
  luaL_argcheck(L, strlen(path) == len, idx, "path contains a NUL byte");
  return path;
}

/* ----- servers --------------------------------------------------------- */

static void net_connection_cb(uv_stream_t* stream, int status) {
  brood_server_t* sv = (brood_server_t*)stream->data;
  brood_loop_t* loop = sv->h.loop;
  if (!brood__push_ref(loop, sv->h.cb_ref)) return;
  if (status == 0)
    lua_pushnil(loop->L);
  else
    lua_pushstring(loop->L, brood__err_name(status));
  brood__call(loop, 1);
}

/* [-0, +1] core.tcp_server(loop) / core.pipe_server(loop) -> server. */
static int net_server_new(lua_State* L, uv_handle_type type) {
  int err;
  if (brood__stream_init(L, 1, type, &brood__server_ops, &err) == NULL)
    return brood__push_error(L, err);
  return 1;
}

static int net_tcp_server(lua_State* L) {
  return net_server_new(L, UV_TCP);
}

static int net_pipe_server(lua_State* L) {
  return net_server_new(L, UV_NAMED_PIPE);
}

/* server:bind(host, port) for TCP, server:bind(path) for unix sockets
** -> true | nil, msg, code. A host that is not a numeric address gives
** EINVAL; TCP's EADDRINUSE shows only at listen (libuv defers it). */
static int net_server_bind(lua_State* L) {
  brood_server_t* sv = check_server(L);
  int err;
  if (sv->u.stream.type == UV_TCP) {
    const char* host = luaL_checkstring(L, 2);
    int port = net_check_port(L, 3);
    struct sockaddr_storage addr;
    err = net_addr(host, port, &addr);
    if (err == 0) err = uv_tcp_bind(&sv->u.tcp, (struct sockaddr*)&addr, 0);
  } else {
    const char* path = net_check_path(L, 2);
    err = strlen(path) > NET_PATH_MAX ? UV_ENAMETOOLONG
                                      : uv_pipe_bind(&sv->u.pipe, path);
  }
  if (err != 0) return brood__push_error(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* server:listen(backlog, on_connection) -> true | nil, msg, code.
** on_connection(code|nil) runs once per pending connection; it should
** call accept() (libuv stops watching the socket until it does). */
static int net_server_listen(lua_State* L) {
  brood_server_t* sv = check_server(L);
  lua_Integer backlog = luaL_checkinteger(L, 2);
  luaL_argcheck(L, backlog > 0 && backlog <= INT32_MAX, 2,
                "backlog out of range");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  int err = uv_listen(&sv->u.stream, (int)backlog, net_connection_cb);
  if (err != 0) return brood__push_error(L, err);
  brood__set_ref(L, 3, &sv->h.cb_ref);  /* unref: handle_close_cb */
  lua_pushboolean(L, 1);
  return 1;
}

/* server:accept() -> stream | nil, msg, code (EAGAIN: nothing pending). */
static int net_server_accept(lua_State* L) {
  brood_server_t* sv = check_server(L);
  lua_getiuservalue(L, 1, 1);  /* the loop */
  int err = brood__stream_accept(L, -1, &sv->u.stream, sv->u.stream.type,
                                 &brood__stream_ops);
  if (err != 0) return brood__push_error(L, err);
  return 1;
}

/* server:getsockname() -> {address=, family=, port=} | path */
static int net_server_getsockname(lua_State* L) {
  return brood__stream_name(L, &check_server(L)->u.stream, 0);
}

static int net_server_fileno(lua_State* L) {
  return brood__stream_fileno(L, &check_server(L)->u.stream);
}

/* server:kind() -> "tcp" | "pipe" */
static int net_server_kind(lua_State* L) {
  brood_server_t* sv = check_server(L);
  lua_pushstring(L, sv->u.stream.type == UV_TCP ? "tcp" : "pipe");
  return 1;
}

/* ----- connecting ------------------------------------------------------ */

/* [-1|0, +1|3] The end of a connect: the stream on top of the stack
** (still connecting; cb(code|nil) later), or nil, msg, code with the
** stream closed. */
static int net_connecting(lua_State* L, brood_stream_t* s, brood_req_t* r,
                          int err, int cb_idx) {
  if (err != 0) {
    brood__req_done(r, 0);
    brood__handle_close(&s->h);
    return brood__push_error(L, err);
  }
  brood__req_refs(L, r, 0, cb_idx);  /* unref: brood__req_connect_cb */
  return 1;
}

/* core.tcp_connect(loop, host, port, cb) -> stream | nil, msg, code.
** The stream is returned at once, still connecting; cb(code|nil) runs
** when the connection is made or fails (ECONNREFUSED...). A host that
** is not a numeric IPv4/IPv6 address returns nil, msg, "EINVAL" at once;
** wrong argument types raise. */
static int net_tcp_connect(lua_State* L) {
  brood_loop_t* loop = brood__check_loop(L, 1);
  const char* host = luaL_checkstring(L, 2);
  int port = net_check_port(L, 3);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  struct sockaddr_storage addr;
  int err = net_addr(host, port, &addr);
  if (err != 0) return brood__push_error(L, err);
  brood_stream_t* s = brood__stream_init(L, 1, UV_TCP, &brood__stream_ops,
                                         &err);
  if (s == NULL) return brood__push_error(L, err);
  brood_req_t* r = brood__req_check(L, loop);
  err = uv_tcp_connect(&r->u.connect, &s->u.tcp, (struct sockaddr*)&addr,
                       brood__req_connect_cb);
  return net_connecting(L, s, r, err, 4);
}

/* core.pipe_connect(loop, path, cb) -> stream | nil, msg, code. As
** tcp_connect; ENOENT and ECONNREFUSED come to cb, a path too long for a
** unix socket returns nil, msg, "ENAMETOOLONG" at once. */
static int net_pipe_connect(lua_State* L) {
  brood_loop_t* loop = brood__check_loop(L, 1);
  const char* path = net_check_path(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (strlen(path) > NET_PATH_MAX)
    return brood__push_error(L, UV_ENAMETOOLONG);
  int err;
  brood_stream_t* s = brood__stream_init(L, 1, UV_NAMED_PIPE,
                                         &brood__stream_ops, &err);
  if (s == NULL) return brood__push_error(L, err);
  brood_req_t* r = brood__req_check(L, loop);
  uv_pipe_connect(&r->u.connect, &s->u.pipe, path, brood__req_connect_cb);
  return net_connecting(L, s, r, 0, 3);
}

/* [-0, +0] Register the server class and the constructors into the table
** on top of the stack. */
void brood__net_open(lua_State* L) {
  static const luaL_Reg server_methods[] = {
    {"bind", net_server_bind},
    {"listen", net_server_listen},
    {"accept", net_server_accept},
    {"getsockname", net_server_getsockname},
    {"fileno", net_server_fileno},
    {"kind", net_server_kind},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"tcp_server", net_tcp_server},
    {"pipe_server", net_pipe_server},
    {"tcp_connect", net_tcp_connect},
    {"pipe_connect", net_pipe_connect},
    {NULL, NULL}
  };
  brood__handle_class(L, BROOD_SERVER_MT, server_methods);
  luaL_setfuncs(L, funcs, 0);
}

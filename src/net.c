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

/* One connect in flight; it pins the callback, not the stream (the
** stream is pinned by its own box while open). */
typedef struct {
  uv_connect_t req;
  brood_loop_t* loop;
  int cb_ref;     /* the caller's callback; unref: net_connect_cb */
} brood_connect_t;

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

/* [-0, +1] Push {address=, family="IPv4"|"IPv6", port=} for addr, or
** push nothing and return the libuv error. */
static int net_push_sockaddr(lua_State* L, const struct sockaddr* addr) {
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
** failure). */
static int net_name(lua_State* L, uv_stream_t* stream, int peer) {
  int err;
  if (stream->type == UV_TCP) {
    struct sockaddr_storage addr;
    int len = (int)sizeof(addr);
    uv_tcp_t* tcp = (uv_tcp_t*)stream;
    err = peer ? uv_tcp_getpeername(tcp, (struct sockaddr*)&addr, &len)
               : uv_tcp_getsockname(tcp, (struct sockaddr*)&addr, &len);
    if (err == 0) err = net_push_sockaddr(L, (struct sockaddr*)&addr);
  } else if (stream->type == UV_NAMED_PIPE) {
    char path[NET_PATH_MAX + 2];
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

/* ----- servers ----------------------------------------------------------- */

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
static int net_server_new(lua_State* L, int tcp) {
  brood_server_t* sv = (brood_server_t*)brood__handle_new(
      L, 1, sizeof(brood_server_t), BROOD_SERVER_MT);
  int err = tcp ? uv_tcp_init(&sv->h.loop->uv, &sv->u.tcp)
                : uv_pipe_init(&sv->h.loop->uv, &sv->u.pipe, 0);
  if (err != 0) {
    brood__handle_abort(L, &sv->h);
    return brood__push_error(L, err);
  }
  brood__handle_opened(L, &sv->h, (uv_handle_t*)&sv->u.stream);
  return 1;
}

static int net_tcp_server(lua_State* L) {
  return net_server_new(L, 1);
}

static int net_pipe_server(lua_State* L) {
  return net_server_new(L, 0);
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
  brood_stream_t* s = brood__stream_new(L, -1);
  int err = sv->u.stream.type == UV_TCP
                ? uv_tcp_init(&sv->h.loop->uv, &s->u.tcp)
                : uv_pipe_init(&sv->h.loop->uv, &s->u.pipe, 0);
  if (err != 0) {
    brood__handle_abort(L, &s->h);
    return brood__push_error(L, err);
  }
  brood__handle_opened(L, &s->h, (uv_handle_t*)&s->u.stream);
  err = uv_accept(&sv->u.stream, &s->u.stream);
  if (err != 0) {
    brood__handle_close(&s->h);
    return brood__push_error(L, err);
  }
  return 1;
}

/* [-0, +1] Push a server adopting the listening socket pending on the IPC
** pipe `ipc` (handle passing, channel.c), of libuv type `type`; returns 0,
** or a libuv error with a closed box pushed instead. The new server
** is bound and listening at the OS level already: Lua calls listen() on
** it to start accepting. */
int brood__server_accept_from(lua_State* L, int loop_idx, uv_stream_t* ipc,
                              uv_handle_type type) {
  brood_server_t* sv = (brood_server_t*)brood__handle_new(
      L, loop_idx, sizeof(brood_server_t), BROOD_SERVER_MT);
  int err = type == UV_TCP ? uv_tcp_init(&sv->h.loop->uv, &sv->u.tcp)
            : type == UV_NAMED_PIPE ? uv_pipe_init(&sv->h.loop->uv,
                                                   &sv->u.pipe, 0)
            : UV_EINVAL;
  if (err != 0) {
    brood__handle_abort(L, &sv->h);
    return err;
  }
  brood__handle_opened(L, &sv->h, (uv_handle_t*)&sv->u.stream);
  err = uv_accept(ipc, &sv->u.stream);
  if (err != 0) brood__handle_close(&sv->h);
  return err;
}

/* server:getsockname() -> {address=, family=, port=} | path */
static int net_server_getsockname(lua_State* L) {
  return net_name(L, &check_server(L)->u.stream, 0);
}

static int net_server_fileno(lua_State* L) {
  uv_os_fd_t fd;
  int err = uv_fileno((uv_handle_t*)&check_server(L)->u.stream, &fd);
  if (err != 0) return brood__push_error(L, err);
  lua_pushinteger(L, fd);
  return 1;
}

/* server:kind() -> "tcp" | "pipe" */
static int net_server_kind(lua_State* L) {
  brood_server_t* sv = check_server(L);
  lua_pushstring(L, sv->u.stream.type == UV_TCP ? "tcp" : "pipe");
  return 1;
}

/* ----- connecting -------------------------------------------------------- */

static void net_connect_cb(uv_connect_t* req, int status) {
  brood_connect_t* c = (brood_connect_t*)req->data;
  brood_loop_t* loop = c->loop;
  if (!loop->torn_down) {
    brood__call_status(loop, c->cb_ref, status);
    brood__unref(loop->main, &c->cb_ref);
  }
  free(c);
}

/* [-0, +0] A new connect request on loop (its callback is set once the
** request is queued), or raise. */
static brood_connect_t* net_connect_req(lua_State* L, brood_loop_t* loop) {
  brood_connect_t* c = (brood_connect_t*)malloc(sizeof(*c));
  if (c == NULL) luaL_error(L, "brood: out of memory");
  c->req.data = c;
  c->loop = loop;
  c->cb_ref = LUA_NOREF;
  return c;
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
  brood_stream_t* s = brood__stream_new(L, 1);
  err = uv_tcp_init(&loop->uv, &s->u.tcp);
  if (err != 0) {
    brood__handle_abort(L, &s->h);
    return brood__push_error(L, err);
  }
  brood__handle_opened(L, &s->h, (uv_handle_t*)&s->u.tcp);
  brood_connect_t* c = net_connect_req(L, loop);
  err = uv_tcp_connect(&c->req, &s->u.tcp, (struct sockaddr*)&addr,
                       net_connect_cb);
  if (err != 0) {
    free(c);
    brood__handle_close(&s->h);
    return brood__push_error(L, err);
  }
  brood__set_ref(L, 4, &c->cb_ref);  /* unref: net_connect_cb */
  return 1;
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
  brood_stream_t* s = brood__stream_new(L, 1);
  int err = uv_pipe_init(&loop->uv, &s->u.pipe, 0);
  if (err != 0) {
    brood__handle_abort(L, &s->h);
    return brood__push_error(L, err);
  }
  brood__handle_opened(L, &s->h, (uv_handle_t*)&s->u.pipe);
  brood_connect_t* c = net_connect_req(L, loop);
  uv_pipe_connect(&c->req, &s->u.pipe, path, net_connect_cb);
  brood__set_ref(L, 3, &c->cb_ref);  /* unref: net_connect_cb */
  return 1;
}

/* stream:getsockname() / stream:getpeername() for socket streams. */
static int net_stream_getsockname(lua_State* L) {
  return net_name(L, &brood__stream_check(L, 1)->u.stream, 0);
}

static int net_stream_getpeername(lua_State* L) {
  return net_name(L, &brood__stream_check(L, 1)->u.stream, 1);
}

/* [-0, +0] Register the server class, the constructors into the table on
** top of the stack, and the socket name methods into brood.stream's
** method table (so stream.c stays about bytes). */
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
  static const luaL_Reg stream_methods[] = {
    {"getsockname", net_stream_getsockname},
    {"getpeername", net_stream_getpeername},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"tcp_server", net_tcp_server},
    {"pipe_server", net_pipe_server},
    {"tcp_connect", net_tcp_connect},
    {"pipe_connect", net_pipe_connect},
    {NULL, NULL}
  };
  brood__newclass(L, BROOD_SERVER_MT, server_methods, NULL);
  luaL_getmetatable(L, BROOD_STREAM_MT);
  lua_getfield(L, -1, "__index");
  luaL_setfuncs(L, stream_methods, 0);
  lua_pop(L, 2);
  luaL_setfuncs(L, funcs, 0);
}

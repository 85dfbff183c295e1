/*
** fd.c: raw file descriptors for stdio plumbing. Every fd made here is
** close-on-exec: a child gets only the fds its stdio names (process.c).
*/
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "private.h"

/* A new fd may get number 0, 1 or 2 when the process runs with those
** closed; libuv refuses to close such an fd (it asserts), and a child's
** stdio plumbing expects the parent's stdio there. Move both fds of a pair
** to 3 and up. Returns 0, or -errno with both fds closed. */
static int fd_above_stdio(int fds[2]) {
  for (int i = 0; i < 2; i++) {
    if (fds[i] > 2) continue;
    int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    if (moved < 0) {
      int err = errno;
      close(fds[0]);
      close(fds[1]);
      return -err;
    }
    close(fds[i]);
    fds[i] = moved;
  }
  return 0;
}

/* core.pipe() -> read_fd, write_fd | nil, msg, code */
static int fd_pipe(lua_State* L) {
  int fds[2], err;
  if (pipe2(fds, O_CLOEXEC) != 0) return brood__push_error(L, -errno);
  if ((err = fd_above_stdio(fds)) != 0) return brood__push_error(L, err);
  lua_pushinteger(L, fds[0]);
  lua_pushinteger(L, fds[1]);
  return 2;
}

/* core.socketpair([bufsize]) -> fd, fd | nil, msg, code (for "duplex"
** and the IPC channel). bufsize asks the kernel for socket buffers that
** large (it caps them at net.core.[rw]mem_max): fewer wake-ups per large
** message. */
static int fd_socketpair(lua_State* L) {
  int fds[2], err;
  lua_Integer bufsize = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, bufsize >= 0 && bufsize <= INT32_MAX, 1, "out of range");
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    return brood__push_error(L, -errno);
  if ((err = fd_above_stdio(fds)) != 0) return brood__push_error(L, err);
  if (bufsize > 0) {
    int size = (int)bufsize;
    for (int i = 0; i < 2; i++) {  /* best effort: a refusal is harmless */
      (void)setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
      (void)setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
  }
  lua_pushinteger(L, fds[0]);
  lua_pushinteger(L, fds[1]);
  return 2;
}

/* core.close_fd(fd) -> true | nil, msg, code */
static int fd_close(lua_State* L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= INT32_MAX, 1, "invalid fd");
  if (close((int)fd) != 0 && errno != EINTR)
    return brood__push_error(L, -errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.file_fd(file) -> fd of a Lua file handle (raises if closed) */
static int fd_file_fd(lua_State* L) {
  luaL_Stream* p = (luaL_Stream*)luaL_checkudata(L, 1, LUA_FILEHANDLE);
  if (p->closef == NULL) return luaL_argerror(L, 1, "closed file");
  lua_pushinteger(L, fileno(p->f));
  return 1;
}

/* core.fd_count() -> open fds of this process (leak checks in specs) */
static int fd_count(lua_State* L) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == NULL) return brood__push_error(L, -errno);
  lua_Integer n = 0;
  struct dirent* e;
  while ((e = readdir(dir)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(dir);
  lua_pushinteger(L, n - 1);  /* not the directory's own fd */
  return 1;
}

void brood__fd_open(lua_State* L) {
  static const luaL_Reg funcs[] = {
    {"pipe", fd_pipe},
    {"socketpair", fd_socketpair},
    {"close_fd", fd_close},
    {"file_fd", fd_file_fd},
    {"fd_count", fd_count},
    {NULL, NULL}
  };
  luaL_setfuncs(L, funcs, 0);
}

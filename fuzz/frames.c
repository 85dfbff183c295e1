/*
** frames.c: the IPC channel's frame parser (src/channel.c) through its
** public path: a real channel (core.channel_open) on a socketpair in a
** private loop, the fuzz input written to the peer end in chunks the
** input also chooses, the loop run between chunks so that each chunk is
** a read of its own, then the peer's end closed. The channel must end
** with exactly one report (nil, code) and no more messages after it; the
** loop must close with nothing left open, and no descriptor may leak
** (fds passed with frames included).
**
** Input: byte 0 options (max_message_size, whether an fd is passed with
** the first chunk, whether the handler raises now and then), byte 1 the
** seed of the chunk sizes, then the byte stream.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

static lua_State* L;

/* fz_send(fd, s, pass_fd) -> bytes written (0: the socket is full);
** with pass_fd, a pipe's read end travels with the bytes (SCM_RIGHTS). */
static int fz_send(lua_State* L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char* s = luaL_checklstring(L, 2, &len);
  int pass = lua_toboolean(L, 3);
  struct iovec iov = {(void*)s, len};
  struct msghdr msg;
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  int p[2] = {-1, -1};
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (pass) {
    if (pipe(p) != 0) fuzz_die(NULL, "pipe");
    memset(&ctl, 0, sizeof(ctl));
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &p[0], sizeof(int));
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (pass) {  /* the peer holds its own copy now (or none) */
    close(p[0]);
    close(p[1]);
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) n = 0;
  if (n < 0) n = -errno;  /* the channel end is gone */
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int fz_close(lua_State* L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

/* Lowest free descriptor: equal before and after, or something leaked. */
static int fz_lowest_fd(lua_State* L) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) fuzz_die(NULL, "open /dev/null");
  close(fd);
  lua_pushinteger(L, fd);
  return 1;
}

static const char DRIVER[] =
  "local core, send, close_fd, lowest = core, fz_send, fz_close, fz_lowest\n"
  "local MAX = {16, 4096, 1 << 20, 1 << 24}\n"
  "core.configure{spin_us = 0}  -- nowait turns: nothing to spin for\n"
  "function fz_run(input)\n"
  "  if #input < 2 then return end\n"
  "  local opt, seed = input:byte(1, 2)\n"
  "  local stream = input:sub(3)\n"
  "  local base = lowest()\n"
  "  local lp = core.loop_new()\n"
  "  local a, b = assert(core.socketpair())\n"
  "  local ch = assert(core.channel_open(lp, a, MAX[opt % 4 + 1], 1 << 20))\n"
  "  local ended, after, n = nil, 0, 0\n"
  "  local raises = opt & 8 ~= 0\n"
  "  assert(ch:read_start(function(...)\n"
  "    local msg, handle, kind = ...\n"
  "    if select('#', ...) == 3 and msg == nil and type(handle) == 'string'\n"
  "    then  -- a report: (nil, code, message), the last thing delivered\n"
  "      if ended ~= nil then after = after + 1 end\n"
  "      ended = handle\n"
  "      return\n"
  "    end\n"
  "    if handle ~= nil then handle:close() end\n"
  "    if ended ~= nil then after = after + 1 end\n"
  "    n = n + 1\n"
  "    if raises and n % 3 == 0 then error('handler raised') end\n"
  "  end))\n"
  "  local function run(mode)\n"
  "    local ok, err = pcall(lp.run, lp, mode)\n"
  "    if not ok and not tostring(err):find('handler raised', 1, true) then\n"
  "      error(err, 0)\n"
  "    end\n"
  "  end\n"
  "  local pos, x = 1, seed * 2654435761 + 1\n"
  "  local first, stuck = true, 0\n"
  "  while pos <= #stream do\n"
  "    x = (x * 1103515245 + 12345) & 0x7fffffff\n"
  "    local size = (opt & 48 == 0) and #stream or\n"
  "                 (opt & 48 == 16) and (x % 7 + 1) or\n"
  "                 (opt & 48 == 32) and (x % 300 + 1) or (x % 70000 + 1)\n"
  "    local w = send(b, stream:sub(pos, pos + size - 1),\n"
  "                   first and opt & 4 ~= 0)\n"
  "    first = false\n"
  "    if w < 0 or ended then break end  -- it has given up: it reads no more\n"
  "    pos = pos + w\n"
  "    stuck = w == 0 and stuck + 1 or 0\n"
  "    if stuck > 1000 then error('the channel stopped reading') end\n"
  "    run('nowait')\n"
  "  end\n"
  "  close_fd(b)\n"
  "  for _ = 1, 1000 do\n"
  "    if ch:is_closed() then break end\n"
  "    run('nowait')\n"
  "    if ended then break end\n"
  "  end\n"
  "  if ended == nil then error('the channel never reported its end') end\n"
  "  if after ~= 0 then error('delivered after its end: ' .. after) end\n"
  "  ch:close()\n"
  "  lp:close()\n"
  "  collectgarbage()\n"
  "  if lowest() ~= base then\n"
  "    error(('fd leak: lowest free fd %d, was %d'):format(lowest(), base))\n"
  "  end\n"
  "end\n";

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (L == NULL) {
    L = fuzz_state();
    lua_register(L, "fz_send", fz_send);
    lua_register(L, "fz_close", fz_close);
    lua_register(L, "fz_lowest", fz_lowest_fd);
    fuzz_dostring(L, DRIVER);
  }
  lua_getglobal(L, "fz_run");
  lua_pushlstring(L, (const char*)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) fuzz_die(L, "fz_run");
  return 0;
}

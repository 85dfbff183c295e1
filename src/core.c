/*
** core.c: luaopen_brood_core, the only exported symbol. Builds the module
** table from each concept's file; no logic of its own beyond the
** process-wide signal dispositions brood relies on.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "private.h"

#if defined(__GNUC__)
#define BROOD_EXPORT __attribute__((visibility("default")))
#else
#define BROOD_EXPORT
#endif

BROOD_EXPORT int luaopen_brood_core(lua_State* L);

/* Set by the `brood` host, which links this module in: brood.fork then
** starts the running executable. */
int brood__host_mode = 0;

int luaopen_brood_core(lua_State* L) {
  /* A write to a gone reader must give EPIPE, never kill the host; and a
  ** SIGCHLD inherited as ignored would make the kernel reap our children
  ** before we can read their status. */
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  if (sigaction(SIGCHLD, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
    signal(SIGCHLD, SIG_DFL);

  /* A host started with fd 0, 1 or 2 closed would hand that number to the
  ** loop's own fds, which libuv refuses to close later (an abort): fill
  ** the gaps with /dev/null first, as Node.js does. */
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      int null_fd = open("/dev/null", O_RDWR);
      if (null_fd >= 0 && null_fd != fd) close(null_fd);
    }
  }

  lua_newtable(L);
  brood__loop_open(L);  /* first: the default loop is finalized last */
  brood__timer_open(L);
  brood__signal_open(L);
  brood__stream_open(L);
  brood__process_open(L);
  brood__fd_open(L);
  brood__system_open(L);
  brood__codec_open(L);
  brood__net_open(L);
  brood__channel_open(L);
  lua_pushboolean(L, brood__host_mode);
  lua_setfield(L, -2, "host");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "uv_version");
  return 1;
}

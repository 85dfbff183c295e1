/*
** system.c: process-wide facts and actions that need no handle:
** clocks, kill by pid, the environment, the process table under /proc.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "private.h"

extern char** environ;

static int system_hrtime(lua_State* L) {
  lua_pushinteger(L, (lua_Integer)uv_hrtime());
  return 1;
}

/* core.kill(pid, sig) -> true | nil, msg, code; pid <= 0 addresses groups */
static int system_kill(lua_State* L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  luaL_argcheck(L, pid >= INT32_MIN && pid <= INT32_MAX, 1, "pid out of range");
  int sig = brood__signum(L, 2);
  if (kill((pid_t)pid, sig) != 0) return brood__push_error(L, -errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.environ() -> {name = value} of this process */
static int system_environ(lua_State* L) {
  lua_newtable(L);
  for (char** e = environ; e != NULL && *e != NULL; e++) {
    const char* eq = strchr(*e, '=');
    if (eq == NULL || eq == *e) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

/* core.unsetenv(name): forget a variable this process was started with. */
static int system_unsetenv(lua_State* L) {
  unsetenv(luaL_checkstring(L, 1));
  return 0;
}

static int system_getpid(lua_State* L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static int system_cpu_count(lua_State* L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

/* [-0, +1|3] The path libuv's `get` fills in | nil, msg, code. */
static int push_path(lua_State* L, int (*get)(char* buf, size_t* len)) {
  char buf[4096];
  size_t len = sizeof(buf);
  int err = get(buf, &len);
  if (err != 0) return brood__push_error(L, err);
  lua_pushlstring(L, buf, len);
  return 1;
}

static int system_exepath(lua_State* L) {
  return push_path(L, uv_exepath);
}

/* core.cwd() -> the working directory | nil, msg, code: fork makes the
** host's path absolute with it, so that a child's own cwd cannot break
** it. */
static int system_cwd(lua_State* L) {
  return push_path(L, uv_cwd);
}

/* ----- the process table, async-signal-safe ----------------------------
** The host's fatal-signal handler walks it (to kill cleanup children's
** trees), so only syscalls here: no malloc, no stdio, no opendir. */

struct linux_dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

/* "/proc/" name "/stat" into path (64 bytes); 0 if the name is not a pid. */
static int stat_path(char* path, const char* name) {
  static const char head[] = "/proc/", tail[] = "/stat";
  size_t n = 0, i;
  for (i = 0; head[i] != '\0'; i++) path[n++] = head[i];
  for (i = 0; name[i] != '\0'; i++) {
    if (name[i] < '0' || name[i] > '9' || i > 20) return 0;
    path[n++] = name[i];
  }
  if (i == 0) return 0;
  for (i = 0; i < sizeof(tail); i++) path[n++] = tail[i];  /* with NUL */
  return 1;
}

static long parse_long(const char** p) {
  long v = 0;
  while (**p >= '0' && **p <= '9') v = v * 10 + (*(*p)++ - '0');
  return v;
}

/* Read pid, state and parent pid from /proc/<name>/stat. */
static int read_stat(const char* name, brood_proc_t* out) {
  char path[64], buf[512];
  if (!stat_path(path, name)) return -1;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n;
  do {
    n = read(fd, buf, sizeof(buf) - 1);
  } while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  /* "pid (comm) S ppid ...": comm may hold spaces and parentheses */
  const char* close_paren = NULL;
  for (ssize_t i = 0; i < n; i++)
    if (buf[i] == ')') close_paren = buf + i;
  if (close_paren == NULL || close_paren[1] != ' ' || close_paren[2] == '\0'
      || close_paren[3] != ' ')
    return -1;
  const char* p = buf;
  out->pid = (int)parse_long(&p);
  out->state = close_paren[2];
  p = close_paren + 4;
  out->ppid = (int)parse_long(&p);
  return 0;
}

size_t brood__proc_scan(brood_proc_t* out, size_t cap, int* full) {
  static const int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  /* the buffer is the caller's stack frame: no shared state, so two
  ** scans (a signal handler interrupting a scan) do not collide */
  union { char bytes[4096]; uint64_t align; } u;  /* dirents: 8-aligned */
  char* buf = u.bytes;
  size_t count = 0;
  *full = 0;
  int dir = open("/proc", flags);
  if (dir < 0) return 0;
  for (;;) {
    long got = syscall(SYS_getdents64, dir, buf, sizeof(u.bytes));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    for (long off = 0; off < got;) {
      struct linux_dirent64* e = (struct linux_dirent64*)(buf + off);
      off += e->d_reclen;
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      if (out == NULL) {  /* counting only */
        count++;
        continue;
      }
      if (count == cap) {
        *full = 1;
        close(dir);
        return count;
      }
      if (read_stat(e->d_name, &out[count]) == 0) count++;
    }
  }
  close(dir);
  return count;
}

size_t brood__proc_count(void) {
  int full;
  return brood__proc_scan(NULL, 0, &full);
}

char brood__proc_state(int pid) {
  char name[24];
  int n = 0;
  char digits[24];
  if (pid <= 0) return 0;
  while (pid > 0) {
    digits[n++] = (char)('0' + pid % 10);
    pid /= 10;
  }
  for (int i = 0; i < n; i++) name[i] = digits[n - 1 - i];
  name[n] = '\0';
  brood_proc_t p;
  return read_stat(name, &p) == 0 ? p.state : 0;
}

/* Snapshot of every process: pid, parent and state. Caller frees. */
static brood_proc_t* snapshot(size_t* count) {
  size_t cap = 512;
  for (;;) {
    brood_proc_t* all = (brood_proc_t*)malloc(cap * sizeof(*all));
    if (all == NULL) return NULL;
    int full;
    *count = brood__proc_scan(all, cap, &full);
    if (!full) return all;
    free(all);
    cap *= 2;
  }
}

/* core.descendants(pid) -> {pid...}: children, grandchildren... of pid,
** parents before their children, found through /proc. */
static int system_descendants(lua_State* L) {
  lua_Integer root = luaL_checkinteger(L, 1);
  size_t n = 0;
  brood_proc_t* all = snapshot(&n);
  if (all == NULL) return brood__push_error(L, UV_ENOMEM);
  lua_newtable(L);
  lua_Integer found = 0, scanned = 0;
  long parent = (long)root;
  for (;;) {  /* breadth first: the result table doubles as the queue */
    for (size_t i = 0; i < n; i++) {
      if (all[i].ppid == parent) {
        lua_pushinteger(L, all[i].pid);
        lua_rawseti(L, -2, ++found);
      }
    }
    if (scanned == found) break;
    lua_rawgeti(L, -1, ++scanned);
    parent = (long)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  free(all);
  return 1;
}

/* core.zombies() -> {pid...}: children of this process not yet reaped */
static int system_zombies(lua_State* L) {
  size_t n = 0;
  brood_proc_t* all = snapshot(&n);
  if (all == NULL) return brood__push_error(L, UV_ENOMEM);
  long self = (long)getpid();
  lua_newtable(L);
  lua_Integer k = 0;
  for (size_t i = 0; i < n; i++) {
    if (all[i].ppid == self && all[i].state == 'Z') {
      lua_pushinteger(L, all[i].pid);
      lua_rawseti(L, -2, ++k);
    }
  }
  free(all);
  return 1;
}

/* The process-wide settings brood relies on; idempotent. Call it before
** the default loop is first used (its fds must not take 0-2):
** - SIGPIPE ignored: a write to a gone reader gives EPIPE rather than
**   killing the script (children get the default back, launch.c);
** - SIGCHLD not ignored: inherited as ignored, it would make the kernel
**   reap our children before we can read their status;
** - fds 0, 1 and 2 open: a process started with one closed would hand
**   that number to a loop's own fds, which libuv refuses to close later
**   (an abort); the gaps get /dev/null, as Node.js does. */
void brood__setup_process(void) {
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  if (sigaction(SIGCHLD, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
    signal(SIGCHLD, SIG_DFL);
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      int null_fd = open("/dev/null", O_RDWR);
      if (null_fd >= 0 && null_fd != fd) close(null_fd);
    }
  }
}

void brood__system_open(lua_State* L) {
  static const luaL_Reg funcs[] = {
    {"hrtime", system_hrtime},
    {"kill", system_kill},
    {"environ", system_environ},
    {"getpid", system_getpid},
    {"unsetenv", system_unsetenv},
    {"cpu_count", system_cpu_count},
    {"exepath", system_exepath},
    {"cwd", system_cwd},
    {"descendants", system_descendants},
    {"zombies", system_zombies},
    {NULL, NULL}
  };
  luaL_setfuncs(L, funcs, 0);
}

/*
** process.c: the one file that knows how brood starts, watches and
** signals processes.
**
** Launch: clone(CLONE_VM | CLONE_VFORK) onto a stack of our own, as
** posix_spawn does, so a parent holding gigabytes pays no page-table copy.
** The child runs only async-signal-safe steps on memory the parent
** prepared (argv, envp, every PATH candidate), then execve. A step that
** fails writes {step, errno} to a close-on-exec pipe and _exits; the parent
** reads it, reaps the child and returns `nil, msg, code, step`: no zombie,
** no silent exit status 127.
**
** Exit: a pidfd polled by libuv; wait4 reaps and yields resource usage.
** Without pidfds (old kernels, or BROOD_NO_PIDFD=1) each process watches
** SIGCHLD and tries wait4 on its own pid. Signals go through the pidfd, so
** a reused pid is never signalled. libuv's own process machinery is never
** used, so nothing else reaps our children.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "private.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* Functions run by the child before exec touch memory the parent owns and
** run on a stack the sanitizers do not know: keep them uninstrumented. */
#if defined(__GNUC__)
#define CHILD_CODE \
  __attribute__((no_sanitize_address, no_sanitize_undefined, noinline))
#else
#define CHILD_CODE
#endif

#define CHILD_STACK_SIZE (256 * 1024)

typedef struct brood_process_s brood_process_t;
struct brood_process_s {
  brood_handle_t h;
  union {
    uv_poll_t poll;        /* readable pidfd: the child has exited */
    uv_signal_t sigchld;   /* fallback without pidfds */
  } w;
  int pidfd;               /* -1 in the SIGCHLD fallback */
  pid_t pid;
  int reaped;
  int cleanup_signal;      /* sent at teardown while alive; 0: none */
  int leads_group;         /* detached or group: pid is a process group */
  uint64_t started;        /* uv_hrtime() at launch */
  brood_process_t* prev;   /* live (unreaped) processes of every loop */
  brood_process_t* next;
};

static brood_process_t* live_head = NULL;

/* Steps of the launch that can fail, as reported by the child. */
enum {
  STEP_SETSID = 1, STEP_SETPGID, STEP_PDEATHSIG, STEP_DUP, STEP_CHDIR,
  STEP_SETGID, STEP_SETUID, STEP_EXEC
};
static const char* const step_names[] = {
  "clone", "setsid", "setpgid", "prctl", "dup2", "chdir", "setgid",
  "setuid", "exec"
};

/* All the child needs, prepared by the parent: the child allocates
** nothing. */
typedef struct {
  char* const* candidates;  /* paths to try with execve, in order */
  int ncandidates;
  char* const* argv;
  char* const* envp;
  const char* cwd;          /* NULL: stay */
  int* stdio;               /* source fd for child fd i */
  int nstdio;
  int errfd;                /* >= nstdio, close-on-exec */
  int detached, group;
  int set_uid, set_gid;
  uid_t uid;
  gid_t gid;
  int death_signal;         /* PR_SET_PDEATHSIG, 0: none */
  pid_t parent;
  int max_fd;               /* for closing fds without close_range */
} launch_t;

/* Kernel layout of struct sigaction for rt_sigaction (x86-64, arm64...);
** raw syscalls keep libc and sanitizer interceptors out of the child. */
struct kernel_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(void);
  uint64_t mask;
};

CHILD_CODE static void child_fail(const launch_t* a, int step, int err) {
  int report[2] = {step, err};
  ssize_t n;
  do {
    n = write(a->errfd, report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  _exit(127);
}

CHILD_CODE static void child_close_fds(const launch_t* a) {
  unsigned lo = (unsigned)a->nstdio, ef = (unsigned)a->errfd;
  if ((ef == lo || syscall(SYS_close_range, lo, ef - 1, 0) == 0) &&
      syscall(SYS_close_range, ef + 1, ~0U, 0) == 0)
    return;
  for (int fd = a->nstdio; fd < a->max_fd; fd++)
    if (fd != a->errfd) close(fd);
}

/* A stdio fd that came from a libuv stream (a brood stream given as a
** stdio entry) is a non-blocking pipe, and O_NONBLOCK belongs to the open
** file description, which the parent's loop shares and relies on. Give
** the child a blocking description of its own for the same pipe, through
** /proc/self/fd, so that it gets no EAGAIN and the parent's fd is left
** alone. (Opened non-blocking so a FIFO open cannot wait for a peer.)
** Sockets cannot be reopened: they stay as they are. */
CHILD_CODE static void child_own_blocking_pipes(const launch_t* a) {
  for (int i = 0; i < a->nstdio; i++) {
    struct stat st;
    int flags = fcntl(i, F_GETFL);
    if (flags < 0 || !(flags & O_NONBLOCK)) continue;
    if (fstat(i, &st) < 0 || !S_ISFIFO(st.st_mode)) continue;
    char path[32] = "/proc/self/fd/";
    char digits[12];
    int n = 0, len = 14;
    unsigned v = (unsigned)i;
    do {
      digits[n++] = (char)('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) path[len++] = digits[--n];
    path[len] = '\0';
    int fd = open(path, (flags & (O_ACCMODE | O_APPEND)) | O_NONBLOCK |
                        O_CLOEXEC);
    if (fd < 0) continue;  /* no peer yet (ENXIO): leave it */
    int own = fcntl(fd, F_GETFL);
    if (own < 0 || fcntl(fd, F_SETFL, own & ~O_NONBLOCK) < 0 ||
        dup2(fd, i) < 0)
      child_fail(a, STEP_DUP, errno);
    close(fd);
  }
}

CHILD_CODE static int child_main(void* arg) {
  const launch_t* a = (const launch_t*)arg;
  int i;

  /* Default dispositions and (below, last) an empty mask: the parent's
  ** handlers must not run here, and ignored signals (SIGPIPE) must not be
  ** inherited through exec. */
  struct kernel_sigaction dfl = {SIG_DFL, 0, NULL, 0};
  for (i = 1; i < 65; i++)
    if (i != SIGKILL && i != SIGSTOP)
      syscall(SYS_rt_sigaction, i, &dfl, NULL, sizeof(uint64_t));

  if (a->detached && setsid() < 0) child_fail(a, STEP_SETSID, errno);
  if (a->group && !a->detached && setpgid(0, 0) < 0)
    child_fail(a, STEP_SETPGID, errno);

  if (a->death_signal != 0) {
    if (prctl(PR_SET_PDEATHSIG, a->death_signal) < 0)
      child_fail(a, STEP_PDEATHSIG, errno);
    if (getppid() != a->parent) _exit(127);  /* the parent died already */
  }

  /* Sources below nstdio could be overwritten by an earlier dup2: move
  ** them above first. The array is the parent's scratch memory. */
  for (i = 0; i < a->nstdio; i++) {
    int src = a->stdio[i];
    if (src >= 0 && src < a->nstdio && src != i) {
      int moved = fcntl(src, F_DUPFD_CLOEXEC, a->nstdio);
      if (moved < 0) child_fail(a, STEP_DUP, errno);
      a->stdio[i] = moved;
    }
  }
  for (i = 0; i < a->nstdio; i++) {
    int src = a->stdio[i];
    if (src == i) {
      /* inherited as is; a closed parent fd simply stays closed */
      if (fcntl(i, F_SETFD, 0) < 0 && errno != EBADF)
        child_fail(a, STEP_DUP, errno);
    } else if (dup2(src, i) < 0) {
      child_fail(a, STEP_DUP, errno);
    }
  }
  child_own_blocking_pipes(a);
  child_close_fds(a);

  if (a->cwd != NULL && chdir(a->cwd) < 0) child_fail(a, STEP_CHDIR, errno);
  /* Raw syscalls: glibc's setuid() & co. would broadcast to the threads
  ** of the process we share memory with (its setxid machinery). */
  if (a->set_gid || a->set_uid)
    (void)syscall(SYS_setgroups, 0, NULL);  /* best effort */
  if (a->set_gid && syscall(SYS_setresgid, a->gid, a->gid, a->gid) < 0)
    child_fail(a, STEP_SETGID, errno);
  if (a->set_uid && syscall(SYS_setresuid, a->uid, a->uid, a->uid) < 0)
    child_fail(a, STEP_SETUID, errno);

  uint64_t empty = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, sizeof(empty));

  int err = ENOENT, saw_eacces = 0;
  for (i = 0; i < a->ncandidates; i++) {
    execve(a->candidates[i], a->argv, a->envp);
    err = errno;
    if (err == EACCES) saw_eacces = 1;
    else if (err != ENOENT && err != ENOTDIR && err != ELOOP &&
             err != ENAMETOOLONG)
      break;  /* the program exists but cannot run: report that */
  }
  if (saw_eacces && (err == ENOENT || err == ENOTDIR)) err = EACCES;
  child_fail(a, STEP_EXEC, err);
  return 127;
}

/* ----- the parent side -------------------------------------------------- */

extern char** environ;

static int pidfd_mode = -1;  /* 1: pidfds, 0: SIGCHLD fallback, -1: unknown */

static int use_pidfds(void) {
  if (pidfd_mode < 0) {
    const char* no = getenv("BROOD_NO_PIDFD");
    int fd = -1;
    if (no == NULL || *no == '\0' || strcmp(no, "0") == 0)
      fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    pidfd_mode = fd >= 0;
    if (fd >= 0) close(fd);
  }
  return pidfd_mode;
}

static void live_remove(brood_process_t* p) {
  if (p->prev != NULL) p->prev->next = p->next;
  else if (live_head == p) live_head = p->next;
  if (p->next != NULL) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

static void live_add(brood_process_t* p) {
  p->prev = NULL;
  p->next = live_head;
  if (live_head != NULL) live_head->prev = p;
  live_head = p;
}

/* Children whose handle closed before they were reaped (closed by hand,
** or with their loop): reaped with WNOHANG at each spawn and each exit, so
** they do not stay zombies. */
static pid_t* orphans = NULL;
static size_t n_orphans = 0, cap_orphans = 0;

static void orphans_reap(void) {
  for (size_t i = 0; i < n_orphans;) {
    pid_t r = waitpid(orphans[i], NULL, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) {
      i++;
    } else {  /* reaped, or not ours any more (ECHILD) */
      orphans[i] = orphans[--n_orphans];
    }
  }
}

static void orphans_add(pid_t pid) {
  if (n_orphans == cap_orphans) {
    size_t cap = cap_orphans ? cap_orphans * 2 : 16;
    pid_t* grown = (pid_t*)realloc(orphans, cap * sizeof(pid_t));
    if (grown == NULL) return;  /* it stays a zombie until we exit */
    orphans = grown;
    cap_orphans = cap;
  }
  orphans[n_orphans++] = pid;
}

static int send_signal(brood_process_t* p, int sig) {
  if (p->pidfd >= 0)
    return (int)syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0);
  return kill(p->pid, sig);  /* unreaped, so the pid is still ours */
}

/* Deliver the exit: cb(code|nil, signal|nil, maxrss_kb, utime_s, stime_s,
** duration_ms), then close the handle (which closes the pidfd). */
static void process_try_reap(brood_process_t* p) {
  int status = 0;
  struct rusage ru;
  pid_t r;
  if (p->reaped) return;
  memset(&ru, 0, sizeof(ru));
  do {
    r = wait4(p->pid, &status, WNOHANG, &ru);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return;  /* still running (a SIGCHLD for someone else) */
  p->reaped = 1;
  if (n_orphans > 0) orphans_reap();
  live_remove(p);
  if (p->pidfd >= 0) uv_poll_stop(&p->w.poll);
  else uv_signal_stop(&p->w.sigchld);
  brood_loop_t* loop = p->h.loop;
  if (brood__push_ref(loop, p->h.cb_ref)) {
    lua_State* L = loop->L;
    if (r > 0 && WIFEXITED(status)) lua_pushinteger(L, WEXITSTATUS(status));
    else lua_pushnil(L);
    if (r > 0 && WIFSIGNALED(status)) lua_pushinteger(L, WTERMSIG(status));
    else lua_pushnil(L);
    lua_pushinteger(L, ru.ru_maxrss);
    lua_pushnumber(L, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6);
    lua_pushnumber(L, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    lua_pushnumber(L, (uv_hrtime() - p->started) / 1e6);
    brood__call(loop, 6);
  }
  brood__handle_close(&p->h);
}

static void process_poll_cb(uv_poll_t* poll, int status, int events) {
  (void)status;
  (void)events;
  process_try_reap((brood_process_t*)poll->data);
}

static void process_sigchld_cb(uv_signal_t* handle, int signum) {
  (void)signum;
  process_try_reap((brood_process_t*)handle->data);
}

static void process_release(brood_handle_t* h) {
  brood_process_t* p = (brood_process_t*)h;
  if (!p->reaped && p->pid > 0) orphans_add(p->pid);
  if (!p->reaped) live_remove(p);
  if (p->pidfd >= 0) close(p->pidfd);
  p->pidfd = -1;
}

/* ----- cleanup: killing children's trees -------------------------------
** A cleanup child dies with its whole tree, as a timeout kills it
** (DESIGN §8): its process group where it leads one, else every
** descendant found under /proc (first, so that none escapes to init when
** the child dies), then the child. */

/* Signal the descendants of root found in table[0..n-1], breadth first,
** parents before children; queue has room for cap pids. */
static void kill_descendants(const brood_proc_t* table, size_t n, int* queue,
                             size_t cap, pid_t root, int sig) {
  size_t head = 0, tail = 0;
  int parent = (int)root;
  for (;;) {
    for (size_t i = 0; i < n && tail < cap; i++)
      if (table[i].ppid == parent && table[i].pid > 0)
        queue[tail++] = table[i].pid;
    if (head == tail) break;
    parent = queue[head++];
  }
  for (size_t i = 0; i < tail; i++) kill((pid_t)queue[i], sig);
}

static int is_cleanup_child(const brood_process_t* p,
                            const brood_loop_t* only) {
  return (only == NULL || p->h.loop == only) && p->cleanup_signal != 0;
}

/* Does some cleanup child (of `only`, or of any loop when NULL) need the
** process table, having no process group of its own? */
static int needs_table(const brood_loop_t* only) {
  for (brood_process_t* p = live_head; p != NULL; p = p->next)
    if (is_cleanup_child(p, only) && !p->leads_group) return 1;
  return 0;
}

/* Kill the tree of every live cleanup child (of `only`, or of every loop
** when NULL), descendants looked up in table[0..n-1] (n = 0: none known);
** queue has room for n pids. Async-signal-safe. */
static void kill_cleanup_trees(const brood_loop_t* only,
                               const brood_proc_t* table, size_t n,
                               int* queue) {
  for (brood_process_t* p = live_head; p != NULL; p = p->next) {
    if (!is_cleanup_child(p, only)) continue;
    if (p->leads_group) {
      kill(-p->pid, p->cleanup_signal);  /* unreaped: the group is ours */
      continue;
    }
    kill_descendants(table, n, queue, n, p->pid, p->cleanup_signal);
    send_signal(p, p->cleanup_signal);
  }
}

/* At teardown (lua_close, or loop:close()) cleanup children still alive
** are killed with their trees; they are reaped by init once we are gone.
** Not in a signal handler: the buffers come from malloc (without memory,
** only the children themselves are signalled). */
void brood__process_teardown(brood_loop_t* loop) {
  brood_proc_t* table = NULL;
  int* queue = NULL;
  size_t n = 0;
  if (needs_table(loop)) {
    for (size_t cap = 1024;; cap *= 2) {  /* room for every process */
      table = (brood_proc_t*)malloc(cap * sizeof(*table));
      if (table == NULL) break;
      int full;
      n = brood__proc_scan(table, cap, &full);
      if (!full) break;
      free(table);
      table = NULL;
    }
    queue = table != NULL ? (int*)malloc((n + 1) * sizeof(*queue)) : NULL;
    if (queue == NULL) n = 0;
  }
  kill_cleanup_trees(loop, table, n, queue);
  free(table);
  free(queue);
}

/* For fatal signals (the host's handler, and SIGINT while a loop runs
** under plain lua5.4): async-signal-safe, so static buffers. Callers
** block the other fatal signals meanwhile, so it never runs twice at once.
** Processes past the table's room are left out of the search. */
#define CLEANUP_TABLE_MAX 65536
void brood__process_kill_cleanup(void) {
  static brood_proc_t table[CLEANUP_TABLE_MAX];
  static int queue[CLEANUP_TABLE_MAX];
  size_t n = 0;
  int full;
  if (needs_table(NULL))
    n = brood__proc_scan(table, CLEANUP_TABLE_MAX, &full);
  kill_cleanup_trees(NULL, table, n, queue);
}

/* ----- option reading: Lua normalised them; C still never trusts ------- */

static const char* opt_string(lua_State* L, const char* key, int required) {
  lua_getfield(L, 2, key);
  const char* s = NULL;
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len)
      luaL_error(L, "brood.core.spawn: option '%s' contains a NUL byte", key);
  } else if (!lua_isnil(L, -1) || required) {
    luaL_error(L, "brood.core.spawn: option '%s' must be a string", key);
  }
  lua_pop(L, 1);  /* the string stays alive: opts holds it */
  return s;
}

static int opt_int(lua_State* L, const char* key, int* present) {
  lua_getfield(L, 2, key);
  int isnum;
  lua_Integer v = lua_tointegerx(L, -1, &isnum);
  *present = !lua_isnil(L, -1);
  if (*present && (!isnum || v < 0 || v > UINT32_MAX - 1))
    luaL_error(L, "brood.core.spawn: option '%s' must be an integer in "
                  "0..4294967294", key);
  lua_pop(L, 1);
  return (int)v;
}

static int opt_bool(lua_State* L, const char* key) {
  lua_getfield(L, 2, key);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* Fill out[0..n-1] with the strings of array opts[key]; out[n] = NULL.
** The array is left on the stack to keep the strings alive. */
static char** opt_strings(lua_State* L, const char* key, int* count) {
  lua_getfield(L, 2, key);
  if (lua_isnil(L, -1)) {
    *count = -1;
    return NULL;
  }
  if (!lua_istable(L, -1))
    luaL_error(L, "brood.core.spawn: option '%s' must be a table", key);
  lua_Unsigned len = lua_rawlen(L, -1);
  if (len >= INT32_MAX / sizeof(char*))
    luaL_error(L, "brood.core.spawn: option '%s' is too long", key);
  int n = (int)len;
  char** out = (char**)lua_newuserdatauv(L, (n + 1) * sizeof(char*), 0);
  lua_insert(L, -2);  /* scratch below the array: both stay on the stack */
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, -1, i + 1);
    size_t len;
    const char* s = lua_tolstring(L, -1, &len);
    if (lua_type(L, -1) != LUA_TSTRING || strlen(s) != len)
      luaL_error(L, "brood.core.spawn: option '%s' must hold strings "
                    "without NUL bytes", key);
    out[i] = (char*)s;
    lua_pop(L, 1);
  }
  out[n] = NULL;
  *count = n;
  return out;
}

/* Every path execve should try for `file`, in PATH order (the child's
** PATH, passed by Lua): built here because the child may not allocate. */
static char** exec_candidates(lua_State* L, const char* file,
                              const char* path, int* count) {
  if (strchr(file, '/') != NULL || *file == '\0') {
    char** one = (char**)lua_newuserdatauv(L, 2 * sizeof(char*), 0);
    one[0] = (char*)file;
    one[1] = NULL;
    *count = *file == '\0' ? 0 : 1;
    return one;
  }
  if (path == NULL) path = "/usr/local/bin:/usr/bin:/bin";
  size_t flen = strlen(file), plen = strlen(path);
  int n = 1;
  for (const char* c = path; *c; c++) n += *c == ':';
  /* pointers, then each "dir/file\0" (an empty dir is ".") */
  size_t size = (n + 1) * sizeof(char*) + plen + (size_t)n * (flen + 3);
  char** list = (char**)lua_newuserdatauv(L, size, 0);
  char* out = (char*)(list + n + 1);
  const char* dir = path;
  for (int i = 0; i < n; i++) {
    const char* end = strchr(dir, ':');
    size_t dlen = end != NULL ? (size_t)(end - dir) : strlen(dir);
    list[i] = out;
    if (dlen == 0) *out++ = '.';
    memcpy(out, dir, dlen);
    out += dlen;
    *out++ = '/';
    memcpy(out, file, flen + 1);
    out += flen + 1;
    dir = end != NULL ? end + 1 : dir + dlen;
  }
  list[n] = NULL;
  *count = n;
  return list;
}

static char* child_stack(void) {
  static char* stack = NULL;
  if (stack == NULL) {
    void* m = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return NULL;
    stack = (char*)m;
  }
  return stack + CHILD_STACK_SIZE;  /* stacks grow down */
}

/* Move fd to a number >= min (close-on-exec); closes the original. */
static int fd_at_least(int fd, int min) {
  if (fd < 0 || fd >= min) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, min);
  close(fd);
  return moved;
}

static int spawn_failure(lua_State* L, int err, int step) {
  brood__push_error(L, -err);
  lua_pushstring(L, step_names[step]);
  lua_pushinteger(L, err);
  return 5;
}

/* core.spawn(loop, opts, on_exit) -> process, pid
**                                   | nil, msg, code, step, errno
**
** opts (normalised by lua/brood/process.lua): file, argv, env ("K=V"
** strings; nil inherits), path (the child's PATH), cwd, stdio (source fd
** per child fd; -1: /dev/null), detached, group, uid, gid, death_signal
** (PR_SET_PDEATHSIG), cleanup_signal (sent at teardown).
** on_exit(code, signal, maxrss_kb, utime, stime, duration_ms). */
static int process_spawn(lua_State* L) {
  int loop_idx = 1;
  brood_loop_t* loop = brood__check_loop(L, loop_idx);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);

  launch_t a;
  memset(&a, 0, sizeof(a));
  int present, nargv, nenv;
  const char* file = opt_string(L, "file", 1);
  const char* path = opt_string(L, "path", 0);
  a.cwd = opt_string(L, "cwd", 0);
  a.argv = opt_strings(L, "argv", &nargv);
  if (a.argv == NULL || nargv < 1)
    return luaL_error(L, "brood.core.spawn: option 'argv' needs argv[0]");
  a.envp = opt_strings(L, "env", &nenv);
  if (a.envp == NULL) a.envp = environ;
  a.detached = opt_bool(L, "detached");
  a.group = opt_bool(L, "group");
  a.uid = (uid_t)opt_int(L, "uid", &a.set_uid);
  a.gid = (gid_t)opt_int(L, "gid", &a.set_gid);
  a.death_signal = opt_int(L, "death_signal", &present);
  int cleanup_signal = opt_int(L, "cleanup_signal", &present);
  a.candidates = exec_candidates(L, file, path, &a.ncandidates);

  /* stdio: source fd per child fd; -1 becomes /dev/null */
  lua_getfield(L, 2, "stdio");
  if (!lua_istable(L, -1))
    return luaL_error(L, "brood.core.spawn: option 'stdio' must be a table");
  lua_Unsigned nstdio = lua_rawlen(L, -1);
  if (nstdio > 1024)
    return luaL_error(L, "brood.core.spawn: too many stdio entries");
  a.nstdio = (int)nstdio;
  a.stdio = (int*)lua_newuserdatauv(L, (a.nstdio + 1) * sizeof(int), 0);
  int need_null = 0;
  for (int i = 0; i < a.nstdio; i++) {
    lua_rawgeti(L, -2, i + 1);
    int isnum;
    lua_Integer fd = lua_tointegerx(L, -1, &isnum);
    if (!isnum || fd < -1 || fd > INT32_MAX)
      return luaL_error(L, "brood.core.spawn: stdio[%d] must be an fd", i + 1);
    a.stdio[i] = (int)fd;
    need_null |= fd == -1;
    lua_pop(L, 1);
  }

  brood_process_t* p = (brood_process_t*)brood__handle_new(
      L, loop_idx, sizeof(brood_process_t), BROOD_PROCESS_MT);
  p->pidfd = -1;
  p->h.release = process_release;
  int pidfds = use_pidfds();
  if (n_orphans > 0) orphans_reap();
  if (!pidfds) {
    /* Watch SIGCHLD before the child exists, so its exit is not missed. */
    uv_signal_init(&loop->uv, &p->w.sigchld);
    brood__handle_opened(L, &p->h, (uv_handle_t*)&p->w.sigchld);
    uv_signal_start(&p->w.sigchld, process_sigchld_cb, SIGCHLD);
  }

  int errpipe[2] = {-1, -1}, devnull = -1, err = 0, step = 0;
  char* stack = child_stack();
  if (stack == NULL) {
    err = ENOMEM;
    goto fail;
  }
  if (pipe2(errpipe, O_CLOEXEC) < 0) {
    err = errno;
    goto fail;
  }
  errpipe[1] = fd_at_least(errpipe[1], a.nstdio);
  if (need_null) devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (errpipe[1] < 0 || (need_null && devnull < 0)) {
    err = errno;
    goto fail;
  }
  for (int i = 0; i < a.nstdio; i++)
    if (a.stdio[i] == -1) a.stdio[i] = devnull;
  a.errfd = errpipe[1];
  a.parent = getpid();
  struct rlimit rl;
  a.max_fd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536
                 ? (int)rl.rlim_cur : 65536;

  /* With every signal blocked, no handler of ours can run in the child
  ** while it shares our memory; the child resets and unblocks. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = clone(child_main, stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(errpipe[1]);
  errpipe[1] = -1;
  if (pid < 0) {
    err = clone_errno;
    goto fail;
  }

  int report[2] = {0, 0};
  ssize_t got;
  do {
    got = read(errpipe[0], report, sizeof(report));
  } while (got < 0 && errno == EINTR);
  if (got == (ssize_t)sizeof(report)) {
    /* The child failed before exec and has exited: reap it now. */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    err = report[1];
    step = report[0];
    goto fail;
  }

  p->pid = pid;
  p->started = uv_hrtime();
  p->cleanup_signal = cleanup_signal;
  p->leads_group = a.detached || a.group;
  if (pidfds) {
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int uverr = p->pidfd < 0 ? -errno
                             : uv_poll_init(&loop->uv, &p->w.poll, p->pidfd);
    if (uverr == 0) {
      brood__handle_opened(L, &p->h, (uv_handle_t*)&p->w.poll);
      uv_poll_start(&p->w.poll, UV_READABLE, process_poll_cb);
    } else {
      /* Cannot watch it: do not leave it running unwatched. */
      kill(pid, SIGKILL);
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
      if (p->pidfd >= 0) close(p->pidfd);
      p->pidfd = -1;
      err = -uverr;
      goto fail;
    }
  }
  live_add(p);
  brood__set_ref(L, 3, &p->h.cb_ref);
  close(errpipe[0]);
  if (devnull >= 0) close(devnull);
  lua_pushinteger(L, pid);
  return 2;

fail:
  if (errpipe[0] >= 0) close(errpipe[0]);
  if (errpipe[1] >= 0) close(errpipe[1]);
  if (devnull >= 0) close(devnull);
  if (p->h.state == BROOD_OPEN && p->h.uv != NULL) {
    p->reaped = 1;  /* nothing to watch */
    brood__handle_close(&p->h);
  } else {
    brood__handle_abort(L, &p->h);
  }
  return spawn_failure(L, err, step);
}

#define check_process(L) \
  ((brood_process_t*)brood__handle_check(L, 1, BROOD_PROCESS_MT))

static brood_process_t* peek_process(lua_State* L) {
  void** box = (void**)luaL_checkudata(L, 1, BROOD_PROCESS_MT);
  return (brood_process_t*)*box;
}

/* Has the child exited, reaped or not? A zombie's exit is still waiting
** for the loop to deliver it; waitid with WNOWAIT looks without reaping,
** so the loop's own wait4 still gets the status and rusage. */
static int process_exited(brood_process_t* p) {
  if (p->reaped) return 1;
  siginfo_t info;
  int r;
  memset(&info, 0, sizeof(info));
  do {
    r = waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG | WNOWAIT);
  } while (r < 0 && errno == EINTR);
  return r == 0 && info.si_pid == p->pid;
}

/* process:kill(sig) -> true | false (exited, reaped or not) | nil, msg,
** code */
static int process_kill(lua_State* L) {
  brood_process_t* p = peek_process(L);
  int sig = brood__signum(L, 2);
  if (p == NULL || process_exited(p)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (send_signal(p, sig) != 0) return brood__push_error(L, -errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* process:kill_group(sig) -> true | false (no group of its own, or
** exited) | nil, msg, code */
static int process_kill_group(lua_State* L) {
  brood_process_t* p = peek_process(L);
  int sig = brood__signum(L, 2);
  if (p == NULL || !p->leads_group || process_exited(p)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (kill(-p->pid, sig) != 0) return brood__push_error(L, -errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int process_pid(lua_State* L) {
  lua_pushinteger(L, check_process(L)->pid);
  return 1;
}

/* process:set_cleanup(sig|0): change the signal sent at teardown. */
static int process_set_cleanup(lua_State* L) {
  brood_process_t* p = check_process(L);
  p->cleanup_signal = lua_toboolean(L, 2) ? brood__signum(L, 2) : 0;
  return 0;
}

void brood__process_open(lua_State* L) {
  static const luaL_Reg methods[] = {
    {"kill", process_kill},
    {"kill_group", process_kill_group},
    {"pid", process_pid},
    {"set_cleanup", process_set_cleanup},
    {NULL, NULL}
  };
  brood__newclass(L, BROOD_PROCESS_MT, methods, NULL);
  lua_pushcfunction(L, process_spawn);
  lua_setfield(L, -2, "spawn");
  lua_pushstring(L, use_pidfds() ? "pidfd" : "sigchld");
  lua_setfield(L, -2, "exit_watch");
}

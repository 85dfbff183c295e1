/*
** process.c: the process handle: watching a child's exit, signalling it,
** and killing the trees of cleanup children. Starting it is launch.c's.
**
** Exit: a pidfd polled by libuv; wait4 reaps and yields resource usage.
** Without pidfds (old kernels, or core.configure{pidfd = false}) each
** process watches SIGCHLD and tries wait4 on its own pid. Signals go
** through the pidfd, so a reused pid is never signalled. libuv's own
** process machinery is never used, so nothing else reaps our children.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

static int pidfd_mode = -1;  /* 1: pidfds, 0: SIGCHLD fallback, -1: unknown */

/* core.configure{pidfd = false} turns pidfds off (true: on where the
** kernel has them). Each process keeps the watch it started with. */
void brood__process_set_pidfd(int allowed) {
  int fd = allowed ? (int)syscall(SYS_pidfd_open, getpid(), 0) : -1;
  pidfd_mode = fd >= 0;
  if (fd >= 0) close(fd);
}

/* 1: exits are watched through pidfds; 0: through SIGCHLD. */
int brood__process_pidfds(void) {
  if (pidfd_mode < 0) brood__process_set_pidfd(1);
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
** (DESIGN §8): its process group where it leads one (one kill reaches
** the group at once), else the child and every descendant found under
** /proc, frozen first (tree.c) so that none escapes to init. */

/* Room to freeze trees: a process table, and a queue and members list
** (room for cap each); table NULL: none (only the roots get signalled). */
typedef struct {
  brood_proc_t* table;
  size_t table_cap;
  brood_tree_member_t* queue;
  brood_tree_member_t* members;
  size_t cap;
} tree_room_t;

#define TREE_BATCH 256  /* roots frozen together */

/* Freezing would undo these: they are sent as they are. */
static int freezes(int sig) {
  return sig != 0 && sig != SIGSTOP && sig != SIGTSTP && sig != SIGTTIN &&
         sig != SIGTTOU && sig != SIGCONT;
}

/* Signal procs[i] and its descendants with sigs[i], for i < n (1 to
** TREE_BATCH; the signals all freeze, or n is 1), in room; returns 0, or
** the errno of a root that could not be signalled. Async-signal-safe. */
static int kill_trees(brood_process_t* const* procs, const int* sigs,
                      size_t n, const tree_room_t* room) {
  int roots[TREE_BATCH] = {0};  /* (all set below; gcc cannot tell) */
  int stop = freezes(sigs[0]);
  for (size_t i = 0; i < n; i++) {
    roots[i] = procs[i]->pid;
    if (stop) send_signal(procs[i], SIGSTOP);
  }
  size_t m = 0;
  if (room->table != NULL)
    m = brood__tree_freeze(roots, n, stop, room->table, room->table_cap,
                           room->queue, room->members, room->cap);
  int err = 0;
  for (size_t i = 0; i < n; i++)
    if (send_signal(procs[i], sigs[i]) != 0) err = errno;
  brood__tree_signal(room->members, m, sigs);
  if (stop) {
    brood__tree_continue(room->members, m);
    for (size_t i = 0; i < n; i++) send_signal(procs[i], SIGCONT);
  }
  return err;
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
** when NULL). Async-signal-safe. */
static void kill_cleanup_trees(const brood_loop_t* only,
                               const tree_room_t* room) {
  brood_process_t* batch[TREE_BATCH];
  int sigs[TREE_BATCH];
  size_t n = 0;
  for (brood_process_t* p = live_head; p != NULL; p = p->next) {
    if (!is_cleanup_child(p, only)) continue;
    if (p->leads_group) {
      kill(-p->pid, p->cleanup_signal);  /* unreaped: the group is ours */
      continue;
    }
    if (!freezes(p->cleanup_signal)) {  /* by itself */
      kill_trees(&p, &p->cleanup_signal, 1, room);
      continue;
    }
    batch[n] = p;
    sigs[n++] = p->cleanup_signal;
    if (n == TREE_BATCH) {
      kill_trees(batch, sigs, n, room);
      n = 0;
    }
  }
  if (n > 0) kill_trees(batch, sigs, n, room);
}

static void room_free(tree_room_t* room) {
  free(room->table);
  free(room->queue);
  free(room->members);
}

/* Room for freezing trees, from malloc, for every process there is now
** and as many more; table NULL without memory. */
static void room_alloc(tree_room_t* room) {
  memset(room, 0, sizeof(*room));
  size_t cap = 2 * brood__proc_count() + 256;
  room->table = (brood_proc_t*)malloc(cap * sizeof(*room->table));
  room->queue = (brood_tree_member_t*)malloc((cap + TREE_BATCH) *
                                             sizeof(*room->queue));
  room->members = (brood_tree_member_t*)malloc((cap + TREE_BATCH) *
                                               sizeof(*room->members));
  if (room->table == NULL || room->queue == NULL || room->members == NULL) {
    room_free(room);
    memset(room, 0, sizeof(*room));
    return;
  }
  room->table_cap = cap;
  room->cap = cap + TREE_BATCH;
}

/* Kill the trees of the loop's cleanup children still alive, once: the
** first process torn down with its loop (lua_close, or loop:close())
** does it for all, so that /proc is read once. They are reaped by init
** once we are gone. Not in a signal handler: the room comes from malloc
** (without memory, only the children themselves are signalled). */
static void process_teardown(brood_handle_t* h) {
  brood_loop_t* loop = h->loop;
  tree_room_t room;
  memset(&room, 0, sizeof(room));
  if (needs_table(loop)) room_alloc(&room);
  kill_cleanup_trees(loop, &room);
  room_free(&room);
  for (brood_process_t* p = live_head; p != NULL; p = p->next)
    if (p->h.loop == loop) p->cleanup_signal = 0;  /* signalled: done */
}

static const brood_handle_ops_t process_ops = {
  BROOD_PROCESS_MT, process_teardown, process_release
};

/* For fatal signals (the host's handler, and SIGINT while a loop runs
** under plain lua5.4): async-signal-safe, so static buffers. Callers
** block the other fatal signals meanwhile, so it never runs twice at once.
** Processes past the table's room are left out of the search. */
#define CLEANUP_TABLE_MAX 65536
void brood__process_kill_cleanup(void) {
  static brood_proc_t table[CLEANUP_TABLE_MAX];
  static brood_tree_member_t queue[CLEANUP_TABLE_MAX + TREE_BATCH];
  static brood_tree_member_t members[CLEANUP_TABLE_MAX + TREE_BATCH];
  tree_room_t room = {NULL, 0, queue, members, CLEANUP_TABLE_MAX + TREE_BATCH};
  if (needs_table(NULL)) {
    room.table = table;
    room.table_cap = CLEANUP_TABLE_MAX;
  }
  kill_cleanup_trees(NULL, &room);
}

/* Watch SIGCHLD before the child exists, so its exit is not missed. */
static void watch_sigchld(lua_State* L, brood_process_t* p) {
  uv_signal_init(&p->h.loop->uv, &p->w.sigchld);
  brood__handle_opened(L, &p->h, (uv_handle_t*)&p->w.sigchld);
  uv_signal_start(&p->w.sigchld, process_sigchld_cb, SIGCHLD);
}

/* Watch the new child's pidfd; returns 0, or an errno with the child
** killed and reaped (it must not run unwatched). */
static int watch_pidfd(lua_State* L, brood_process_t* p) {
  p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
  int uverr = p->pidfd < 0 ? -errno
                           : uv_poll_init(&p->h.loop->uv, &p->w.poll, p->pidfd);
  if (uverr == 0) {
    brood__handle_opened(L, &p->h, (uv_handle_t*)&p->w.poll);
    uv_poll_start(&p->w.poll, UV_READABLE, process_poll_cb);
    return 0;
  }
  kill(p->pid, SIGKILL);
  while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {}
  if (p->pidfd >= 0) close(p->pidfd);
  p->pidfd = -1;
  return -uverr;
}

/* [-0, +5] The launch failed: drop the handle, push nil, msg, code,
** step, errno. */
static int spawn_failed(lua_State* L, brood_process_t* p, int err,
                        int step) {
  if (p->h.state == BROOD_OPEN) {
    p->reaped = 1;  /* nothing to watch */
    brood__handle_close(&p->h);
  } else {
    brood__handle_abort(L, &p->h);
  }
  brood__push_error(L, -err);
  lua_pushstring(L, brood__launch_step_name(step));
  lua_pushinteger(L, err);
  return 5;
}

/* core.spawn(loop, opts, on_exit) -> process, pid
**                                   | nil, msg, code, step, errno
** opts: launch.c's (brood__launch_options), with cleanup_signal (sent at
** teardown). on_exit(code, signal, maxrss_kb, utime, stime, duration_ms). */
static int process_spawn(lua_State* L) {
  brood__check_loop(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  brood_launch_t a;
  brood__launch_options(L, &a);
  brood_process_t* p = (brood_process_t*)brood__handle_new(
      L, 1, sizeof(brood_process_t), &process_ops);
  p->pidfd = -1;
  int pidfds = brood__process_pidfds();
  if (n_orphans > 0) orphans_reap();
  if (!pidfds) watch_sigchld(L, p);
  int step;
  int err = brood__launch(&a, &p->pid, &step);
  if (err == 0 && pidfds) err = watch_pidfd(L, p);
  if (err != 0) return spawn_failed(L, p, err, step);
  p->started = uv_hrtime();
  p->cleanup_signal = a.cleanup_signal;
  p->leads_group = a.detached || a.group;
  live_add(p);
  brood__set_ref(L, 3, &p->h.cb_ref);
  lua_pushinteger(L, p->pid);
  return 2;
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

/* process:kill_tree(sig) -> true | false (exited) | nil, msg, code: its
** process group where it leads one, else it and every descendant, the
** tree frozen first so that none escapes. */
static int process_kill_tree(lua_State* L) {
  brood_process_t* p = peek_process(L);
  int sig = brood__signum(L, 2);
  if (p == NULL || process_exited(p)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int err = 0;
  if (sig == 0) {  /* a probe: whether it is there, not its tree */
    if (send_signal(p, 0) != 0) err = errno;
  } else if (p->leads_group) {
    if (kill(-p->pid, sig) != 0) err = errno;
  } else {
    tree_room_t room;
    room_alloc(&room);
    err = kill_trees(&p, &sig, 1, &room);
    room_free(&room);
  }
  if (err != 0) return brood__push_error(L, -err);
  lua_pushboolean(L, 1);
  return 1;
}

static int process_pid(lua_State* L) {
  lua_pushinteger(L, check_process(L)->pid);
  return 1;
}

void brood__process_open(lua_State* L) {
  static const luaL_Reg methods[] = {
    {"kill", process_kill},
    {"kill_tree", process_kill_tree},
    {"pid", process_pid},
    {NULL, NULL}
  };
  brood__handle_class(L, BROOD_PROCESS_MT, methods);
  lua_pushcfunction(L, process_spawn);
  lua_setfield(L, -2, "spawn");
  /* SIGINT under plain lua5.4 (loop.c) kills the cleanup trees first */
  brood__interrupt_cleanup = brood__process_kill_cleanup;
}

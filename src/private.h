/*
** private.h: declarations shared by the C files of brood.core.
** Only luaopen_brood_core is exported; everything here is internal and
** named brood__* (libuv's uv__ rule).
*/
#ifndef BROOD_PRIVATE_H
#define BROOD_PRIVATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#define BROOD_LOOP_MT    "brood.loop"
#define BROOD_TIMER_MT   "brood.timer"
#define BROOD_SIGNAL_MT  "brood.signal"
#define BROOD_STREAM_MT  "brood.stream"
#define BROOD_PROCESS_MT "brood.process"
#define BROOD_CHANNEL_MT "brood.channel"
#define BROOD_SERVER_MT  "brood.server"

typedef struct brood_loop_s brood_loop_t;
typedef struct brood_handle_s brood_handle_t;
typedef struct brood_job_s brood_job_t;

/* ----- the ladder ---------------------------------------------------------
** Each file calls only files below it (docs/architecture-c.md):
**   codec.c                      (standalone)
**   error.c < call.c < handle.c < loop.c < req.c           the runtime
**   stream.c, launch.c, fd.c, system.c, signal.c, timer.c  mechanisms
**   process.c, net.c, channel.c                            handle kinds
**   core.c; host/main.c
** A lower file that needs something done above it offers a hook: a job
** (brood__loop_schedule), a handle type's ops, or a function pointer the
** upper file sets when it opens. */

/* A unit of work the loop runs before its next poll (loop.c). The owner
** embeds it and sets run and data; eager jobs also run as a run starts,
** before the timers due then. */
struct brood_job_s {
  void (*run)(brood_job_t* job);
  void* data;
  int eager;
  int scheduled;           /* in the loop's queue (loop.c) */
  uint64_t stamp;          /* the pass it was scheduled in (loop.c) */
  brood_job_t* prev;
  brood_job_t* next;
};

/* A loop's spinning state (loop.c): the budget adapts to how long waits
** last, and spinning backs off while it only takes the CPU from others. */
typedef struct {
  uint64_t budget;    /* ns to spin before the next block */
  uint64_t cpus_at;   /* uv_hrtime() when `cpus` was read (0: never) */
  int cpus;           /* CPUs this process may run on */
  int online;         /* CPUs of the machine */
  uint64_t load_at;   /* uv_hrtime() when `load_room` was read (0: never) */
  int load_room;      /* fewer tasks running then than CPUs online */
  int skip;           /* turns left that block at once (backing off) */
  int skip_next;      /* turns to skip after the next contended spin */
  /* counters, for loop:spin_stats() */
  uint64_t spins, won, contended, skipped, blocks;
} brood_spin_t;

/* One loop: the default loop of the module or a private loop of a *_sync
** call. Lua callbacks run on `L`, the thread that called loop:run(). It
** holds only the loop's own state: the layers above reach it through jobs,
** spin holds and handle counts. */
struct brood_loop_s {
  uv_loop_t uv;
  lua_State* main;       /* main thread: registry work at any time */
  lua_State* L;          /* thread running the loop; NULL when not running */
  int msgh;              /* stack index of the message handler on L */
  int error_ref;         /* first error raised by a callback, or LUA_NOREF */
  int closing;           /* loop:close() runs: no user callbacks any more */
  int torn_down;         /* lua_close runs: no Lua at all, free memory only */
  int handles;           /* open brood handles, for leak checks */
  int stop_requested;    /* stop() or an error: run() returns */
  uint64_t calls;        /* Lua callbacks run: progress, for spinning */
  brood_spin_t spin;     /* spinning before the poll (loop.c) */
  int spin_holds;        /* brood__loop_spin_hold: spinning pays off */
  brood_job_t* jobs_head;     /* scheduled jobs, oldest first */
  brood_job_t* jobs_tail;
  uint64_t job_pass;          /* passes over the jobs so far */
  uv_prepare_t jobs_prepare;  /* runs the jobs right before polling */
  brood_job_t tick;           /* the Lua tick: loop:set_tick, loop:tick */
  int tick_ref;               /* Lua function flushing the deferred queue */
  uv_async_t interrupt_async; /* SIGINT under plain lua5.4 wakes the run */
};

/* Lifetime of a handle block (handle.c). */
typedef enum {
  BROOD_NEW = 0,          /* allocated, zeroed; no uv handle: free() it */
  BROOD_OPEN,             /* uv handle initialised; the userdata is pinned */
  BROOD_CLOSE_DEFERRED,   /* closing, but pinned (a write sends its fd):
                          ** uv_close waits for the last unpin */
  BROOD_CLOSING,          /* uv_close called; the close callback comes */
  BROOD_CLOSED            /* in the close callback: released, then freed */
} brood_state_t;

/* What one kind of handle adds to the common life cycle. */
typedef struct {
  const char* name;                     /* its metatable (BROOD_*_MT) */
  void (*teardown)(brood_handle_t* h);  /* its loop goes away (loop:close(),
                                        ** lua_close): act outside first */
  void (*release)(brood_handle_t* h);   /* close callback: free its parts */
} brood_handle_ops_t;

/* The common head of every handle block. The Lua userdata is a box that
** holds a pointer to the malloc'd block (luv's scheme), so libuv memory
** never lives inside Lua memory and can outlive the userdata. */
struct brood_handle_s {
  brood_loop_t* loop;
  const brood_handle_ops_t* ops;
  uv_handle_t* uv;       /* the libuv handle embedded in the block */
  void** box;            /* the userdata's box; NULL once detached */
  brood_state_t state;
  int self_ref;          /* pins the userdata while open (handle.c) */
  int cb_ref;            /* the handle's Lua callback, or LUA_NOREF */
  int close_ref;         /* callback for close(cb), or LUA_NOREF */
  int detached;          /* set by __gc at lua_close: no Lua in callbacks */
  int pins;              /* writes sending this handle's fd: close waits */
};

/* A byte stream: an OS pipe, a unix socket or a TCP socket (stream.c). */
typedef struct {
  brood_handle_t h;
  union {
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } u;
} brood_stream_t;

/* From error.c: push nil, message, code name (and return 3). */
int brood__push_error(lua_State* L, int uverr);
const char* brood__err_name(int uverr);

/* From call.c: the loop argument, registry refs, and calls into Lua from
** libuv callbacks. */
typedef struct { brood_loop_t* loop; } brood_loop_box_t;
brood_loop_t* brood__check_loop(lua_State* L, int idx);
int brood__msghandler(lua_State* L);
int brood__call(brood_loop_t* loop, int nargs);
void brood__fail(brood_loop_t* loop, lua_State* L);
void brood__set_ref(lua_State* L, int idx, int* ref);
void brood__unref(lua_State* L, int* ref);
int brood__push_ref(brood_loop_t* loop, int ref);
void brood__call_status(brood_loop_t* loop, int ref, int status);

/* From handle.c */
void* brood__handle_new(lua_State* L, int loop_idx, size_t size,
                        const brood_handle_ops_t* ops);
void brood__handle_abort(lua_State* L, brood_handle_t* h);
void* brood__handle_check(lua_State* L, int idx, const char* mt);
void brood__handle_opened(lua_State* L, brood_handle_t* h, uv_handle_t* uv);
void brood__handle_close(brood_handle_t* h);
void brood__handle_teardown(brood_handle_t* h);
void brood__handle_pin(brood_handle_t* h);
void brood__handle_unpin(brood_handle_t* h);
void brood__handle_class(lua_State* L, const char* name,
                         const luaL_Reg* methods);

/* From loop.c */
extern int brood__host_mode;  /* 1 inside the `brood` host (set by it) */
void brood__loop_open(lua_State* L);
void brood__loop_schedule(brood_loop_t* loop, brood_job_t* job);
void brood__loop_cancel(brood_loop_t* loop, brood_job_t* job);
void brood__loop_spin_hold(brood_loop_t* loop, int delta);
void brood__loop_set_spin(int64_t ceiling_us);
/* Hooks of the SIGINT interrupt (plain lua5.4): process.c sets the
** async-signal-safe cleanup, signal.c reports script watchers. */
extern void (*brood__interrupt_cleanup)(void);
void brood__interrupt_watch(int signum, int delta);

/* A request in flight (req.c). The libuv request comes first, so its
** callbacks cast back; an owner may extend the struct (channel.c). */
typedef struct {
  union {
    uv_write_t write;
    uv_shutdown_t shutdown;
    uv_connect_t connect;
    uv_pipe_t junk;      /* a passed handle taken only to be closed */
  } u;
  brood_loop_t* loop;
  int cb_ref;            /* the caller's callback, or LUA_NOREF */
  int data_ref;          /* kept alive until done (a string being written,
                         ** a handle being sent), or LUA_NOREF */
  void* owner;           /* the owner's, if it needs one */
} brood_req_t;

/* From req.c */
brood_req_t* brood__req_new(brood_loop_t* loop, size_t size);
brood_req_t* brood__req_check(lua_State* L, brood_loop_t* loop);
void brood__req_refs(lua_State* L, brood_req_t* r, int data_idx, int cb_idx);
int brood__req_queued(lua_State* L, brood_req_t* r, int err, int data_idx,
                      int cb_idx);
void brood__req_done(brood_req_t* r, int status);
void brood__req_write_cb(uv_write_t* req, int status);
void brood__req_shutdown_cb(uv_shutdown_t* req, int status);
void brood__req_connect_cb(uv_connect_t* req, int status);
int brood__req_discard_pending(brood_loop_t* loop, uv_pipe_t* ipc);

/* From stream.c */
void brood__stream_open(lua_State* L);
brood_stream_t* brood__stream_check(lua_State* L, int idx);
brood_stream_t* brood__stream_init(lua_State* L, int loop_idx,
                                   uv_handle_type type,
                                   const brood_handle_ops_t* ops, int* err);
int brood__stream_accept(lua_State* L, int loop_idx, uv_stream_t* from,
                         uv_handle_type type, const brood_handle_ops_t* ops);
int brood__stream_name(lua_State* L, uv_stream_t* stream, int peer);
int brood__stream_fileno(lua_State* L, uv_stream_t* stream);
extern const brood_handle_ops_t brood__stream_ops;

/* From timer.c, signal.c, fd.c, system.c */
void brood__timer_open(lua_State* L);
void brood__signal_open(lua_State* L);
int brood__signum(lua_State* L, int idx);
/* From signal.c: called when the last watcher of a signal is gone (the
** host sets it). */
extern void (*brood__signal_released)(int signum);
void brood__fd_open(lua_State* L);
void brood__system_open(lua_State* L);
void brood__setup_process(void);
/* From system.c: one process of the table under /proc. */
typedef struct { int pid, ppid; char state; } brood_proc_t;
/* Fill out with up to cap processes; *full set if more may exist; out
** NULL: only count them (nothing read). Async-signal-safe (syscalls
** only, buffers on the stack). */
size_t brood__proc_scan(brood_proc_t* out, size_t cap, int* full);
/* How many processes there are (entries of /proc, nothing read). */
size_t brood__proc_count(void);
/* pid's state letter ('R', 'S', 'T', 'Z'...), 0 once it is gone. */
char brood__proc_state(int pid);

/* From tree.c: freezing process trees before they are signalled. A
** member is a descendant and the index of its root in the caller's
** roots. Async-signal-safe. */
typedef struct { int pid, root; } brood_tree_member_t;
/* SIGSTOP every descendant of roots[0..nroots-1] (stopped already by the
** caller), scanning /proc into table until a scan finds nothing new;
** queue and members have room for cap. Returns the members stopped,
** parents before children. stop = 0: one scan, nothing stopped (for a
** signal that freezing would undo). */
size_t brood__tree_freeze(const int* roots, size_t nroots, int stop,
                          brood_proc_t* table, size_t table_cap,
                          brood_tree_member_t* queue,
                          brood_tree_member_t* members, size_t cap);
/* Send each member its root's signal from signals[]; then SIGCONT. */
void brood__tree_signal(const brood_tree_member_t* members, size_t n,
                        const int* signals);
void brood__tree_continue(const brood_tree_member_t* members, size_t n);

/* From launch.c: starting a program. All the child needs, prepared by
** the parent: the child allocates nothing. */
typedef struct {
  char* const* candidates;  /* paths to try with execve, in order */
  int ncandidates;
  char* const* argv;
  char* const* envp;
  const char* cwd;          /* NULL: stay */
  int* stdio;               /* source fd for child fd i (-1: /dev/null) */
  int nstdio;
  int need_null;            /* some stdio entry is -1 */
  int errfd;                /* >= nstdio, close-on-exec */
  int detached, group;
  int set_uid, set_gid;
  uid_t uid;
  gid_t gid;
  int death_signal;         /* PR_SET_PDEATHSIG, 0: none */
  int cleanup_signal;       /* an option for process.c, read with the rest */
  pid_t parent;
  int max_fd;               /* for closing fds without close_range */
} brood_launch_t;
void brood__launch_options(lua_State* L, brood_launch_t* a);
int brood__launch(brood_launch_t* a, pid_t* pid, int* step);
const char* brood__launch_step_name(int step);

/* From process.c */
void brood__process_open(lua_State* L);
void brood__process_kill_cleanup(void);
void brood__process_set_pidfd(int allowed);
int brood__process_pidfds(void);

/* From codec.c (standalone), channel.c, net.c */
void brood__codec_open(lua_State* L);
void brood__channel_open(lua_State* L);
void brood__net_open(lua_State* L);
extern const brood_handle_ops_t brood__server_ops;

#endif

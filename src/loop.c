/*
** loop.c: running a libuv loop from Lua.
**
** Callbacks run through brood__call (call.c). Besides the handles, a loop
** runs jobs (brood__loop_schedule): each runs once, right before the next
** poll, and eager ones also as a run starts. The layers above use them
** for work that must wait until the code that asked for it has returned:
** the Lua tick (the deferred queue), each IPC channel's flush. Spinning
** before a poll is asked for by holds (brood__loop_spin_hold), and each
** handle type's teardown runs when the loop goes away: the loop knows no
** layer above it.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "private.h"

/* Set by the `brood` host, which links this module in and handles SIGINT
** itself. */
int brood__host_mode = 0;

/* ----- jobs ------------------------------------------------------------ */

static void jobs_prepare_cb(uv_prepare_t* prepare);

/* Queue job to run before the next poll (after the code now running has
** returned); idempotent. A job scheduled while jobs run waits for the
** next pass. */
void brood__loop_schedule(brood_loop_t* loop, brood_job_t* job) {
  if (job->scheduled || loop->closing) return;  /* closing: none would run */
  job->scheduled = 1;
  job->stamp = loop->job_pass;
  job->next = NULL;
  job->prev = loop->jobs_tail;
  if (loop->jobs_tail != NULL) loop->jobs_tail->next = job;
  else loop->jobs_head = job;
  loop->jobs_tail = job;
  if (job->prev == NULL) uv_prepare_start(&loop->jobs_prepare, jobs_prepare_cb);
}

void brood__loop_cancel(brood_loop_t* loop, brood_job_t* job) {
  if (!job->scheduled) return;
  job->scheduled = 0;
  if (job->prev != NULL) job->prev->next = job->next;
  else loop->jobs_head = job->next;
  if (job->next != NULL) job->next->prev = job->prev;
  else loop->jobs_tail = job->prev;
  job->prev = job->next = NULL;
  if (loop->jobs_head == NULL) uv_prepare_stop(&loop->jobs_prepare);
}

/* The oldest job scheduled before pass `pass` (eager only, if asked). */
static brood_job_t* jobs_next(brood_loop_t* loop, uint64_t pass, int eager) {
  for (brood_job_t* j = loop->jobs_head; j != NULL && j->stamp < pass;
       j = j->next)
    if (!eager || j->eager) return j;
  return NULL;
}

/* Run the jobs, oldest first, pass after pass (a job may schedule more)
** until none is left or the loop is stopping. Each job is unqueued before
** it runs, so it may schedule itself again. */
static void jobs_run(brood_loop_t* loop, int eager_only) {
  for (;;) {
    uint64_t pass = ++loop->job_pass;
    brood_job_t* job = jobs_next(loop, pass, eager_only);
    if (job == NULL) return;
    do {
      brood__loop_cancel(loop, job);
      job->run(job);
    } while ((job = jobs_next(loop, pass, eager_only)) != NULL);
    if (loop->stop_requested) return;
  }
}

static void jobs_prepare_cb(uv_prepare_t* prepare) {
  jobs_run((brood_loop_t*)prepare->data, 0);
}

/* The Lua tick: one job calling the function of loop:set_tick. */
static void tick_run(brood_job_t* job) {
  brood_loop_t* loop = (brood_loop_t*)job->data;
  if (brood__push_ref(loop, loop->tick_ref)) brood__call(loop, 0);
}

/* Whether a turn made progress (a Lua callback ran) or the run ends. */
static int turn_done(brood_loop_t* loop, uint64_t calls, int alive) {
  return loop->calls != calls || !alive || loop->stop_requested;
}

/* ----- spinning --------------------------------------------------------
** Before blocking in the poll, spin a little with non-blocking turns:
** a peer process that answers within microseconds (IPC ping-pong, a pool
** worker) is then served without a sleep and a wake-up through the
** kernel, which cost far more than the spin on most machines. A loop spins
** only while something holds it spinning (an open IPC channel: a spawned
** child, on the other hand, starts on this CPU and a spin would delay it).
** core.configure{spin_us =} sets the ceiling (default 100; 0: off).
**
** A spin pays only while the peer runs on another CPU. When it must share
** ours (both pinned to one CPU, more runnable processes than CPUs), every
** microsecond spun is taken from the answer we wait for. So:
** - the budget adapts to the waits: after a block shorter than the
**   ceiling (a spin would have caught it) it is the ceiling, after a
**   longer one it halves, so a loop that mostly waits soon blocks at once;
** - a process allowed on one CPU only never spins (sched_getaffinity,
**   read again every second: taskset may change it);
** - the spin yields the CPU between its turns. A yield that comes back
**   late means another task ran on this CPU: the CPU is contended, and
**   spinning backs off, blocking at once for the next 1, 2, 4 ... 1024
**   turns (doubling while probes stay contended), until a spin wins with
**   the CPU to itself. Turns, not time: false alarms (an interrupt, a
**   short task) then cost one turn, not milliseconds. */

static uint64_t spin_ceiling = 100 * 1000;  /* ns */

/* A sched_yield() that switches to nothing returns in 1-2 us, even in a
** VM; one that let another task run costs two context switches and that
** task's run (an IPC peer's answer: well above this). */
#define SPIN_YIELD_SWITCHED_NS (5 * 1000)
#define SPIN_SKIP_MAX 1024
#define SPIN_CPUS_REFRESH_NS (1000 * 1000 * 1000ULL)
#define SPIN_LOAD_NS (10 * 1000 * 1000)

void brood__loop_set_spin(int64_t ceiling_us) {
  spin_ceiling = ceiling_us > 0 ? (uint64_t)ceiling_us * 1000 : 0;
}

void brood__loop_spin_hold(brood_loop_t* loop, int delta) {
  loop->spin_holds += delta;
}

/* CPUs this process may run on (2 where that cannot be told: spin). */
static int spin_cpu_count(void) {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
#endif
  return 2;
}

/* Tasks running or runnable right now, machine-wide, this one included
** (/proc/loadavg's "running/total"); 0 where that cannot be told. */
static int spin_runnable(void) {
  char buf[128];
  int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  int running = 0;
  if (sscanf(buf, "%*s %*s %*s %d/", &running) != 1) return 0;
  return running;
}

/* Whether the peer may find an idle CPU while this process spins: this
** process may run on two CPUs or more, and the tasks running now (this
** one and the peer among them) do not fill the machine's. Both are read
** rarely (a second, SPIN_LOAD_NS): a spin costs less than reading them. */
static int spin_room(brood_spin_t* s, uint64_t now) {
  if (s->cpus_at == 0 || now - s->cpus_at > SPIN_CPUS_REFRESH_NS) {
    s->cpus = spin_cpu_count();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    s->online = online > 0 ? (int)online : s->cpus;
    s->cpus_at = now;
  }
  if (s->cpus < 2) return 0;
  if (s->load_at == 0 || now - s->load_at > SPIN_LOAD_NS) {
    int running = spin_runnable();
    s->load_room = running <= s->online;
    s->load_at = now;
  }
  return s->load_room;
}

/* Whether to spin before this block. */
static int spin_may(brood_loop_t* loop) {
  brood_spin_t* s = &loop->spin;
  if (loop->spin_holds == 0 || s->budget == 0) return 0;
  if (s->skip > 0) {
    s->skip--;
    s->skipped++;
    return 0;
  }
  if (!spin_room(s, uv_hrtime())) {
    s->skipped++;
    return 0;
  }
  return 1;
}

/* Spin for the budget: non-blocking turns until the turn is done (returns
** 1) or the budget is spent, yielding the CPU between them after the first
** SPIN_YIELD_AFTER_NS. A late yield stops it: someone else needs this
** CPU, and the block that follows gives it up. */
static int spin_run(brood_loop_t* loop, uint64_t calls, int* alive) {
  brood_spin_t* s = &loop->spin;
  uint64_t start = uv_hrtime(), now = start;
  int contended = 0;
  s->spins++;
  while (!contended && now - start < s->budget) {
    if (now - start >= spin_ceiling / 2) {
      sched_yield();
      uint64_t back = uv_hrtime();
      contended = back - now > SPIN_YIELD_SWITCHED_NS;
    }
    *alive = uv_run(&loop->uv, UV_RUN_NOWAIT);
    if (turn_done(loop, calls, *alive)) break;
    now = uv_hrtime();
  }
  if (contended) {  /* back off, longer each time in a row */
    s->contended++;
    s->skip = s->skip_next;
    if (s->skip_next < SPIN_SKIP_MAX) s->skip_next *= 2;
  }
  if (!turn_done(loop, calls, *alive)) return 0;
  if (!contended) {
    s->won++;
    s->skip_next = 1;
  }
  return 1;
}

/* After a block: if the wait was shorter than the ceiling, spinning would
** have caught it: spin in full next time; else spin half as long. */
static void spin_adapt(brood_loop_t* loop, uint64_t blocked_ns) {
  brood_spin_t* s = &loop->spin;
  s->blocks++;
  if (blocked_ns < spin_ceiling) s->budget = spin_ceiling;
  else s->budget /= 2;
}

/* ----- SIGINT under plain lua5.4 -----------------------------------------
** lua.c's SIGINT handler only sets a hook that raises "interrupted!" at
** the next Lua instruction, and no Lua runs while uv_run waits: Ctrl-C
** would be ignored until the wait ends. So while a loop runs outside the
** host, with no script watcher on SIGINT, our own handler takes over: it
** kills the cleanup children's trees (async-signal-safe) and wakes the
** innermost running loop through its uv_async_t, whose callback stops the
** run with the error "interrupted!" (no traceback: lua.c adds one). The
** host handles SIGINT itself (src/host/main.c). */

void (*brood__interrupt_cleanup)(void) = NULL;

static struct sigaction interrupt_saved;  /* lua.c's, put back at the end */
static int sigint_watchers = 0;           /* script watchers (signal.c) */
static int interrupt_depth = 0;           /* runs under our handler */
static brood_loop_t* volatile interrupt_target = NULL;  /* innermost run */
static volatile sig_atomic_t interrupted = 0;  /* not yet turned into an
                                               ** error */

static const char INTERRUPTED[] = "interrupted!";

static void on_interrupt(int sig) {
  (void)sig;
  int saved_errno = errno;
  interrupted = 1;
  if (brood__interrupt_cleanup != NULL) brood__interrupt_cleanup();
  brood_loop_t* target = interrupt_target;
  if (target != NULL) uv_async_send(&target->interrupt_async);
  errno = saved_errno;
}

static void install_interrupt_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_interrupt;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);  /* the host's fatal signals wait meanwhile */
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaddset(&sa.sa_mask, SIGHUP);
  sigaction(SIGINT, &sa, NULL);
}

/* signal.c: script watchers of signum started (delta 1) or gone (-1).
** When the last SIGINT watcher stops during a run, libuv has put back
** SIG_DFL: put ours back for the rest of the run. */
void brood__interrupt_watch(int signum, int delta) {
  if (signum != SIGINT) return;
  sigint_watchers += delta;
  if (sigint_watchers == 0 && interrupt_depth > 0)
    install_interrupt_handler();
}

/* Keep the interrupt as loop's error (unless one is kept) and stop it. */
static void interrupt_fail(brood_loop_t* loop) {
  interrupted = 0;
  if (loop->L != NULL) {
    lua_pushstring(loop->L, INTERRUPTED);
    brood__fail(loop, loop->L);
  } else {
    uv_stop(&loop->uv);
    loop->stop_requested = 1;
  }
}

static void interrupt_async_cb(uv_async_t* async) {
  brood_loop_t* loop = (brood_loop_t*)async->data;
  if (interrupted && interrupt_target == loop) interrupt_fail(loop);
}

/* At the start of a run: take SIGINT over if the run qualifies. Returns
** whether this run must call interrupt_end. */
static int interrupt_begin(brood_loop_t* loop) {
  if (brood__host_mode) return 0;
  if (interrupt_depth > 0) {  /* nested in a run under our handler */
    interrupt_target = loop;
    interrupt_depth++;
    return 1;
  }
  struct sigaction old;
  if (sigint_watchers > 0 || sigaction(SIGINT, NULL, &old) != 0 ||
      old.sa_handler == SIG_IGN)
    return 0;  /* the script's, or ignored (a background job): leave it */
  interrupt_saved = old;
  interrupted = 0;
  interrupt_target = loop;
  interrupt_depth = 1;
  install_interrupt_handler();
  return 1;
}

/* At the end of a run that began under our handler: an interrupt that
** arrived too late for the async callback still fails this run; the
** outermost run puts lua.c's handler back (unless a script's watcher has
** taken SIGINT since). */
static void interrupt_end(brood_loop_t* loop, brood_loop_t* outer) {
  if (interrupted && interrupt_target == loop) interrupt_fail(loop);
  interrupt_target = outer;
  if (--interrupt_depth > 0) {
    /* arrived just now: the outer run is the one to fail */
    if (interrupted) uv_async_send(&outer->interrupt_async);
    return;
  }
  interrupt_target = NULL;
  if (sigint_watchers == 0) sigaction(SIGINT, &interrupt_saved, NULL);
  /* a SIGINT between the check above and now still ends the script:
  ** lua.c's hook raises it at the next Lua instruction */
  if (interrupted) {
    interrupted = 0;
    raise(SIGINT);
  }
}

/* Initialise the loop's own handles; returns a libuv error or 0 (then
** the loop is closed again). */
static int loop_init(brood_loop_t* loop) {
  int err = uv_loop_init(&loop->uv);
  if (err != 0) return err;
  loop->error_ref = loop->tick_ref = LUA_NOREF;
  loop->spin.skip_next = 1;
  uv_prepare_init(&loop->uv, &loop->jobs_prepare);
  loop->jobs_prepare.data = loop;
  loop->tick.run = tick_run;
  loop->tick.data = loop;
  err = uv_async_init(&loop->uv, &loop->interrupt_async, interrupt_async_cb);
  if (err != 0) {
    uv_close((uv_handle_t*)&loop->jobs_prepare, NULL);
    uv_run(&loop->uv, UV_RUN_NOWAIT);
    uv_loop_close(&loop->uv);
    return err;
  }
  loop->interrupt_async.data = loop;
  uv_unref((uv_handle_t*)&loop->interrupt_async);
  loop->uv.data = loop;
  return 0;
}

/* [-0, +1] Push a new loop userdata (the main thread is taken from L). */
static brood_loop_t* loop_push_new(lua_State* L) {
  brood_loop_box_t* box =
      (brood_loop_box_t*)lua_newuserdatauv(L, sizeof(*box), 0);
  box->loop = NULL;
  luaL_setmetatable(L, BROOD_LOOP_MT);
  brood_loop_t* loop = (brood_loop_t*)calloc(1, sizeof(*loop));
  if (loop == NULL) luaL_error(L, "brood: out of memory");
  int err = loop_init(loop);
  if (err != 0) {
    free(loop);
    luaL_error(L, "brood: cannot create a loop: %s", uv_strerror(err));
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  loop->main = lua_tothread(L, -1);
  lua_pop(L, 1);
  box->loop = loop;
  return loop;
}

/* Every handle of the loop is the loop's own or a brood handle block
** (even while closing: the block lives until its close callback), but
** for a junk handle closing already (req.c, data NULL). Each block's type
** tears down first, closing or not: a process closed by hand may still
** have its cleanup child to kill. */
static void walk_close_cb(uv_handle_t* uv, void* arg) {
  brood_loop_t* loop = (brood_loop_t*)arg;
  if (uv == (uv_handle_t*)&loop->jobs_prepare ||
      uv == (uv_handle_t*)&loop->interrupt_async) {
    if (!uv_is_closing(uv)) uv_close(uv, NULL);
    return;
  }
  brood_handle_t* h = (brood_handle_t*)uv->data;
  if (h == NULL) return;
  brood__handle_teardown(h);
  brood__handle_close(h);  /* no-op unless OPEN */
}

static void count_cb(uv_handle_t* uv, void* arg) {
  (void)uv;
  (*(int*)arg)++;
}

/* Handles of the loop not yet through their close callback. */
static int open_handles(brood_loop_t* loop) {
  int n = 0;
  uv_walk(&loop->uv, count_cb, &n);
  return n;
}

/* How long teardown waits for the close callbacks: a handle closes in a
** turn or two, but one can be held open from elsewhere (a stream whose fd
** a channel of another loop is still sending, a request in the thread
** pool). Past this, give up rather than spin forever. */
#define TEARDOWN_BUDGET_NS (500 * 1000 * 1000ULL)

/* Close every handle (each type tearing down first), let the close
** callbacks run, close the loop and free it. With torn_down set no Lua is
** touched (lua_close). Returns 0, or, when something stays open past the
** budget, the number of handles still open (-1: only requests): the loop
** is then neither closed nor freed, since libuv still uses its memory. */
static int loop_teardown(brood_loop_t* loop) {
  loop->closing = 1;
  loop->L = NULL;
  uv_walk(&loop->uv, walk_close_cb, loop);
  uint64_t start = uv_hrtime();
  for (int turns = 0; uv_loop_close(&loop->uv) == UV_EBUSY; turns++) {
    if (uv_hrtime() - start > TEARDOWN_BUDGET_NS) {
      int n = open_handles(loop);
      return n > 0 ? n : -1;
    }
    uv_run(&loop->uv, UV_RUN_NOWAIT);
    if (turns >= 16) {  /* not a matter of a turn or two: do not spin */
      struct timespec ms = {0, 1000 * 1000};
      nanosleep(&ms, NULL);
    }
  }
  if (!loop->torn_down) {
    brood__unref(loop->main, &loop->error_ref);
    brood__unref(loop->main, &loop->tick_ref);
  }
  free(loop);
  return 0;
}

static int loop_gc(lua_State* L) {
  brood_loop_box_t* box =
      (brood_loop_box_t*)luaL_checkudata(L, 1, BROOD_LOOP_MT);
  if (box->loop == NULL) return 0;
  box->loop->torn_down = 1;
  /* nothing can be reported at lua_close: a loop that does not close is
  ** left behind (leaked), never freed under libuv's feet */
  (void)loop_teardown(box->loop);
  box->loop = NULL;
  return 0;
}

/* loop:close(): close every handle on a private loop and the loop. Raises
** if a handle stays open; the loop is kept, and close() may be tried
** again once whatever holds the handle lets go. */
static int loop_close(lua_State* L) {
  brood_loop_box_t* box =
      (brood_loop_box_t*)luaL_checkudata(L, 1, BROOD_LOOP_MT);
  if (box->loop == NULL) return 0;
  if (box->loop->L != NULL) luaL_error(L, "brood: cannot close a running loop");
  int left = loop_teardown(box->loop);
  if (left > 0)
    return luaL_error(L, "brood: cannot close the loop: %d handle%s still "
                      "open", left, left == 1 ? "" : "s");
  if (left < 0)
    return luaL_error(L, "brood: cannot close the loop: requests still "
                      "pending");
  box->loop = NULL;
  return 0;
}

/* Whether something is due before the next poll: jobs, timers that are
** due, callbacks libuv has pending, handles closing. A turn that calls Lua
** from these must not block in its poll afterwards (the script may be
** waiting for just that), so it starts with a non-blocking turn. */
static int work_due(brood_loop_t* loop) {
  if (loop->jobs_head != NULL) return 1;
  uv_update_time(&loop->uv);
  return uv_backend_timeout(&loop->uv) == 0;
}

/* One turn in "once" mode, spinning first when it may: returns uv_run's
** alive. When nothing is due and no spin comes first, the turn is one
** blocking uv_run: a non-blocking one first would only cost a poll (a
** system call) per turn. */
static int loop_turn(brood_loop_t* loop) {
  uint64_t calls = loop->calls;
  int alive;
  /* the frames sent in the last turn go out first: their writes are no
  ** reason for a non-blocking turn */
  jobs_run(loop, 1);
  if (loop->calls != calls || loop->stop_requested)
    return uv_loop_alive(&loop->uv);
  int spin = loop->spin_holds != 0 && spin_may(loop);
  if (spin || work_due(loop)) {
    alive = uv_run(&loop->uv, UV_RUN_NOWAIT);
    if (turn_done(loop, calls, alive)) return alive;
    if (spin && spin_run(loop, calls, &alive)) return alive;
  }
  if (loop->spin_holds == 0) return uv_run(&loop->uv, UV_RUN_ONCE);
  uint64_t blocked = uv_hrtime();
  alive = uv_run(&loop->uv, UV_RUN_ONCE);
  spin_adapt(loop, uv_hrtime() - blocked);
  return alive;
}

/* loop:run([mode]) -> alive, err: runs "default", "once" or "nowait".
** err is the first error a callback raised (the loop stopped for it). */
static int loop_run(lua_State* L) {
  static const char* const modes[] = {"default", "once", "nowait", NULL};
  brood_loop_t* loop = brood__check_loop(L, 1);
  int mode = luaL_checkoption(L, 2, "default", modes);
  if (loop->L != NULL)
    return luaL_error(L, "brood: the loop is already running");
  loop->L = L;
  loop->stop_requested = 0;
  lua_pushcfunction(L, brood__msghandler);
  loop->msgh = lua_gettop(L);  /* for every brood__call of this run */
  /* eager jobs first: frames sent before the run do not wait behind the
  ** timers due now */
  jobs_run(loop, 1);
  brood_loop_t* outer = interrupt_target;
  int took_sigint = interrupt_begin(loop);
  int alive;
  if (mode == 2) {
    alive = uv_run(&loop->uv, UV_RUN_NOWAIT);
  } else {
    do {
      alive = loop_turn(loop);
    } while (mode == 0 && alive && !loop->stop_requested);
  }
  if (took_sigint) interrupt_end(loop, outer);
  loop->stop_requested = 0;
  loop->L = NULL;
  lua_settop(L, loop->msgh - 1);
  lua_pushboolean(L, alive);
  if (loop->error_ref == LUA_NOREF) return 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->error_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, loop->error_ref);
  loop->error_ref = LUA_NOREF;
  return 2;
}

/* loop:fail(err): keep err as the loop's error, unless one is kept
** already, and stop the loop: run() returns it. For Lua code that runs
** several user callbacks in one core callback (the deferred queue). */
static int loop_fail(lua_State* L) {
  brood_loop_t* loop = brood__check_loop(L, 1);
  lua_settop(L, 2);
  brood__fail(loop, L);
  return 0;
}

static int loop_stop(lua_State* L) {
  brood_loop_t* loop = brood__check_loop(L, 1);
  uv_stop(&loop->uv);
  loop->stop_requested = 1;
  return 0;
}

static int loop_running(lua_State* L) {
  lua_pushboolean(L, brood__check_loop(L, 1)->L != NULL);
  return 1;
}

static int loop_alive(lua_State* L) {
  lua_pushboolean(L, uv_loop_alive(&brood__check_loop(L, 1)->uv));
  return 1;
}

/* Loop time in ms, refreshed first: libuv caches it at the start of each
** iteration, which may lie long ago after synchronous work. Refreshing
** also moves the base that timers set afterwards count from. */
static int loop_now(lua_State* L) {
  brood_loop_t* loop = brood__check_loop(L, 1);
  uv_update_time(&loop->uv);
  lua_pushinteger(L, (lua_Integer)uv_now(&loop->uv));
  return 1;
}

/* Open brood handles on this loop: leak checks in the specs use it. */
static int loop_handle_count(lua_State* L) {
  lua_pushinteger(L, brood__check_loop(L, 1)->handles);
  return 1;
}

/* loop:spin_stats() -> {spins, won, contended, skipped}: spins started,
** those that ended the turn with the CPU to themselves, those that found
** it contended, and blocks that did not spin though held (backing off, or
** one CPU). For the specs and for tuning. */
static int loop_spin_stats(lua_State* L) {
  brood_spin_t* s = &brood__check_loop(L, 1)->spin;
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)s->blocks);
  lua_setfield(L, -2, "blocks");
  lua_pushinteger(L, (lua_Integer)s->spins);
  lua_setfield(L, -2, "spins");
  lua_pushinteger(L, (lua_Integer)s->won);
  lua_setfield(L, -2, "won");
  lua_pushinteger(L, (lua_Integer)s->contended);
  lua_setfield(L, -2, "contended");
  lua_pushinteger(L, (lua_Integer)s->skipped);
  lua_setfield(L, -2, "skipped");
  return 1;
}

/* loop:set_tick(fn): fn runs before each poll while the tick is on. */
static int loop_set_tick(lua_State* L) {
  brood_loop_t* loop = brood__check_loop(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  brood__set_ref(L, 2, &loop->tick_ref);
  return 0;
}

/* loop:tick(on): deferred work pending (true) or done (false). The tick
** runs before the next poll, once; Lua turns it on again for more. */
static int loop_tick(lua_State* L) {
  brood_loop_t* loop = brood__check_loop(L, 1);
  if (lua_toboolean(L, 2)) brood__loop_schedule(loop, &loop->tick);
  else brood__loop_cancel(loop, &loop->tick);
  return 0;
}

static int loop_tostring(lua_State* L) {
  brood_loop_box_t* box =
      (brood_loop_box_t*)luaL_checkudata(L, 1, BROOD_LOOP_MT);
  lua_pushfstring(L, "brood.loop (%p)", (void*)box->loop);
  return 1;
}

/* core.loop_new() -> a private loop (the *_sync calls run on one). */
static int loop_new(lua_State* L) {
  loop_push_new(L);
  return 1;
}

/* __index of the module table: makes core.default_loop on first use. */
static int loop_index_default(lua_State* L) {
  if (lua_type(L, 2) != LUA_TSTRING ||
      strcmp(lua_tostring(L, 2), "default_loop") != 0)
    return 0;
  loop_push_new(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, 1, "default_loop");
  return 1;
}

void brood__loop_open(lua_State* L) {
  static const luaL_Reg methods[] = {
    {"run", loop_run},
    {"stop", loop_stop},
    {"fail", loop_fail},
    {"close", loop_close},
    {"running", loop_running},
    {"alive", loop_alive},
    {"now", loop_now},
    {"handle_count", loop_handle_count},
    {"spin_stats", loop_spin_stats},
    {"set_tick", loop_set_tick},
    {"tick", loop_tick},
    {NULL, NULL}
  };
  luaL_newmetatable(L, BROOD_LOOP_MT);
  lua_pushcfunction(L, loop_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, loop_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  /* core.default_loop is made at its first use: after core.setup_process()
  ** (its fds must not take 0-2), and before any handle on it, so that
  ** lua_close runs its finalizer after theirs (finalizers run in reverse
  ** order of marking). */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, loop_index_default);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pushcfunction(L, loop_new);
  lua_setfield(L, -2, "loop_new");
}

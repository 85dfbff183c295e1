/*
** private.h: declarations shared by the C files of brood.core.
** Only luaopen_brood_core is exported; everything here is internal and
** named brood__* (libuv's uv__ rule).
*/
#ifndef BROOD_PRIVATE_H
#define BROOD_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

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

/* Bytes handed to libuv for each read; chunks are copied into Lua strings
** at once, so one buffer per loop serves every stream. */
#define BROOD_READ_BUFFER (64 * 1024)

typedef struct brood_loop_s brood_loop_t;
typedef struct brood_handle_s brood_handle_t;

/* State of a handle: OPEN until close() or teardown starts uv_close,
** CLOSING until libuv calls the close callback, which frees the block. */
enum { BROOD_OPEN = 0, BROOD_CLOSING = 1 };

/* One loop: the default loop of the module or a private loop of a *_sync
** call. Lua callbacks run on `L`, the thread that called loop:run(). */
struct brood_loop_s {
  uv_loop_t uv;
  lua_State* main;       /* main thread: registry work at any time */
  lua_State* L;          /* thread running the loop; NULL when not running */
  int msgh;              /* stack index of the message handler on L */
  int error_ref;         /* first error raised by a callback, or LUA_NOREF */
  int tick_ref;          /* Lua function flushing the deferred queue */
  int closing;           /* loop:close() runs: no user callbacks any more */
  int torn_down;         /* lua_close runs: no Lua at all, free memory only */
  int handles;           /* open brood handles, for leak checks */
  int stop_requested;    /* stop() or an error: run() returns */
  uint64_t calls;        /* Lua callbacks run: progress, for spinning */
  uint64_t spin_ns;      /* current spin budget before blocking */
  int spinners;          /* open IPC channels: spinning pays only for them */
  uv_prepare_t tick_prepare;  /* runs deferred work right before polling */
  uv_idle_t tick_idle;        /* keeps the poll from blocking meanwhile */
  uv_prepare_t flush_prepare; /* writes the channels' queued frames */
  uv_async_t interrupt_async; /* SIGINT under plain lua5.4 wakes the run */
  void* flush_head;           /* channels with frames to write (channel.c) */
  char read_buffer[BROOD_READ_BUFFER];
};

/* The common head of every handle block. The Lua userdata is a box that
** holds a pointer to the malloc'd block (luv's scheme), so libuv memory
** never lives inside Lua memory and can outlive the userdata. */
struct brood_handle_s {
  brood_loop_t* loop;
  uv_handle_t* uv;       /* the libuv handle embedded in the block */
  void** box;            /* the userdata's box; NULL once detached */
  int state;             /* BROOD_OPEN or BROOD_CLOSING */
  int self_ref;          /* pins the userdata while open (handle.c) */
  int cb_ref;            /* the handle's Lua callback, or LUA_NOREF */
  int close_ref;         /* callback for close(cb), or LUA_NOREF */
  int detached;          /* set by __gc at lua_close: no Lua in callbacks */
  int pins;              /* writes sending this handle's fd: close waits */
  void (*release)(brood_handle_t* h);  /* type-specific cleanup, or NULL */
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

/* From core.c: 1 inside the `brood` host. */
extern int brood__host_mode;

/* From loop.c */
brood_loop_t* brood__check_loop(lua_State* L, int idx);
int brood__call(brood_loop_t* loop, int nargs);
void brood__loop_open(lua_State* L);

/* From handle.c */
void* brood__handle_new(lua_State* L, int loop_idx, size_t size,
                        const char* mt);
void brood__handle_abort(lua_State* L, brood_handle_t* h);
void* brood__handle_check(lua_State* L, int idx, const char* mt);
void brood__handle_opened(lua_State* L, brood_handle_t* h, uv_handle_t* uv);
void brood__handle_close(brood_handle_t* h);
void brood__handle_pin(brood_handle_t* h);
void brood__handle_unpin(brood_handle_t* h);
void brood__set_ref(lua_State* L, int idx, int* ref);
void brood__unref(lua_State* L, int* ref);
int brood__push_ref(brood_loop_t* loop, int ref);
void brood__call_status(brood_loop_t* loop, int ref, int status);
int brood__handle_gc(lua_State* L);
int brood__handle_close_method(lua_State* L);
int brood__handle_ref(lua_State* L);
int brood__handle_unref(lua_State* L);
int brood__handle_has_ref(lua_State* L);
int brood__handle_is_closed(lua_State* L);
int brood__handle_tostring(lua_State* L);

/* From error.c: push nil, message, code name (and return 3). */
int brood__push_error(lua_State* L, int uverr);
const char* brood__err_name(int uverr);

/* From timer.c, signal.c, stream.c, process.c, fd.c, system.c */
void brood__timer_open(lua_State* L);
void brood__signal_open(lua_State* L);
int brood__signum(lua_State* L, int idx);
/* From signal.c: called when the last watcher of a signal is gone. */
extern void (*brood__signal_released)(int signum);
/* From signal.c: does a script's watcher handle signum now? */
int brood__signal_watched(int signum);
void brood__stream_open(lua_State* L);
brood_stream_t* brood__stream_new(lua_State* L, int loop_idx);
brood_stream_t* brood__stream_check(lua_State* L, int idx);
void brood__process_open(lua_State* L);
void brood__process_teardown(brood_loop_t* loop);
void brood__process_kill_cleanup(void);
void brood__fd_open(lua_State* L);
void brood__system_open(lua_State* L);
/* From system.c: one process of the table under /proc. */
typedef struct { int pid, ppid; char state; } brood_proc_t;
/* Fill out with up to cap processes; *full set if more may exist.
** Async-signal-safe (syscalls only, buffers on the stack). */
size_t brood__proc_scan(brood_proc_t* out, size_t cap, int* full);
void brood__codec_open(lua_State* L);

/* From channel.c */
void brood__channel_open(lua_State* L);
void brood__channel_flush_pending(brood_loop_t* loop);

/* From net.c */
void brood__net_open(lua_State* L);
/* From net.c: push a server adopting the listening handle pending on an
** IPC pipe (handle passing); returns a libuv error or 0. */
int brood__server_accept_from(lua_State* L, int loop_idx, uv_stream_t* ipc,
                              uv_handle_type type);

/* Register funcs into the table on top of the stack. */
void brood__setfuncs(lua_State* L, const luaL_Reg* funcs);
/* Create a metatable with methods in __index and the given metamethods. */
void brood__newclass(lua_State* L, const char* name, const luaL_Reg* methods,
                     const luaL_Reg* metamethods);

#endif

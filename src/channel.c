/*
** channel.c: the IPC channel. Length-prefixed MessagePack frames over a
** socketpair, opened as a libuv pipe with ipc = 1 so it can carry handles
** (docs/wire-format.md is the specification):
**
**   frame = length (u32, big-endian: bytes of body) . kind (u8) . body
**   kind  = 0 message; 1 message + TCP server; 2 message + TCP socket;
**           3 message + pipe or unix socket (the fd travels with the frame)
**   body  = one MessagePack value
**
** Sending encodes straight from the Lua stack into the channel's output
** buffer, except the bytes of large strings (32 KiB or more, anywhere in
** the value): only their MessagePack headers go into the buffer, and the
** write takes the string's own bytes as one more iovec (a segment), the
** string kept alive by a registry ref until its write is done. So a large
** message costs no copy and no fresh memory however many are queued (a
** string sent 200 times is queued 200 times, held once). Frames queued in
** one loop turn are written together (by the channel's job, which the
** loop runs before it polls); once 64 KiB are queued they go out at once,
** so a large frame is one write of its own. A frame with a handle ends the
** write it belongs to (uv_write2). The buffer and its segments are handed
** to the write request (or a buffer without segments written at once with
** uv_try_write when nothing is queued), never copied; a small buffer
** comes back to the channel when its write is done, for the next frames.
**
** Receiving reads into one input buffer; a frame's length is checked
** against max_message_size before room is made for it, and a large frame
** is read straight into room made once, so receiving is linear in its
** size. Each complete frame is decoded into Lua and delivered at once,
** under one protected call per read (a peer's message that Lua has no
** memory for fails that channel, not the loop). The end of the stream is
** delivered after every complete frame before it.
**
** Every send callback runs exactly once, after its send returned: once
** written, with the error of a failed write, or ECANCELED when the
** channel closes first.
*/
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "private.h"

#define FRAME_HEADER 5
#define WRITE_CHUNK (64 * 1024)  /* flush at once past this many bytes */
#define READ_CHUNK (64 * 1024)
#define KIND_MAX 3

typedef struct brood_channel_s brood_channel_t;

/* One write: a buffer of frames, the segments it is interleaved with
** (their refs are released in batch_done, exactly once), and the
** callbacks of the sends in it (a request, req.c, whose data_ref keeps the
** handle sent with it alive).
** Every callback runs exactly once: from batch_write_cb, or, for a write
** that libuv refused at once, from the channel's list of failed batches
** (batches_fail), never before the send that queued it has returned. */
typedef struct batch_s {
  brood_req_t r;
  brood_buf_t buf;
  brood_segs_t segs;  /* large strings between the buffer's bytes */
  int* cbs;           /* registry refs; released in batch_done */
  int ncbs;
  brood_handle_t* pinned;  /* the handle sent: its block may not close
                           ** before the write is done */
  int status;         /* a refused write: its libuv error */
  struct batch_s* next;    /* in the channel's list of failed batches */
} batch_t;

struct brood_channel_s {
  brood_handle_t h;     /* h.cb_ref: on_message(msg, handle) / (nil, code) */
  uv_pipe_t pipe;
  brood_buf_t in;       /* bytes read, from in_pos on not yet parsed */
  size_t in_pos;
  size_t max_message;   /* body bytes */
  brood_buf_t out;      /* frames queued, not yet handed to libuv */
  brood_segs_t segs;    /* the large strings of the frames in `out` */
  brood_buf_t spare;    /* a small buffer back from a write, for `out` */
  int* out_cbs;         /* callbacks of the sends in `out` */
  int n_out_cbs, cap_out_cbs;
  size_t hwm;           /* send() reports "full" from this many bytes */
  int want_drain;       /* a send reported full: call drain_ref when empty */
  int drain_ref;
  int reading;           /* Lua wants messages (read_start, not read_stop) */
  int eof;               /* the end of reading: UV_EOF or a read error */
  int parse_pending;    /* frames wait in `in` since a read_stop */
  batch_t* failed;      /* writes refused at once: callbacks still due */
  brood_job_t flush;    /* writes `out`, reports failures, parses (loop) */
};

#define check_channel(L) \
  ((brood_channel_t*)brood__handle_check(L, 1, BROOD_CHANNEL_MT))

/* ----- writing --------------------------------------------------------- */

static void channel_parse(brood_channel_t* ch);

/* Bytes of the frames in `out`, segments included. */
static size_t out_bytes(brood_channel_t* ch) {
  return ch->out.len + ch->segs.bytes;
}

static size_t queued_bytes(brood_channel_t* ch) {
  return uv_stream_get_write_queue_size((uv_stream_t*)&ch->pipe) +
         out_bytes(ch);
}

/* Keep a small buffer whose write is done for the next batch (while the
** channel is open: channel_release frees the spare); else free it. */
static void buf_recycle(brood_channel_t* ch, brood_buf_t* buf) {
  if (ch != NULL && ch->h.state == BROOD_OPEN && ch->spare.data == NULL &&
      buf->cap <= 2 * WRITE_CHUNK) {
    ch->spare = *buf;
    ch->spare.len = 0;
    memset(buf, 0, sizeof(*buf));
    return;
  }
  brood__buf_free(buf);
}

/* Call the batch's callbacks with status, release its refs (the strings
** of its segments too; without touching Lua once the state is going),
** give its buffer back to ch (or free it), free it. */
static void batch_done(batch_t* b, brood_channel_t* ch, int status) {
  brood_loop_t* loop = b->r.loop;
  if (b->pinned != NULL) brood__handle_unpin(b->pinned);
  brood__segs_free(loop->torn_down ? NULL : loop->main, &b->segs);
  if (!loop->torn_down) {
    for (int i = 0; i < b->ncbs; i++) {
      brood__call_status(loop, b->cbs[i], status);
      brood__unref(loop->main, &b->cbs[i]);
    }
  }
  buf_recycle(loop->torn_down ? NULL : ch, &b->buf);
  free(b->cbs);
  brood__req_done(&b->r, status);
}

/* Run the callbacks of the writes libuv refused (in the order they were
** refused: the list is kept oldest first). */
static void batches_fail(brood_channel_t* ch) {
  while (ch->failed != NULL) {
    batch_t* b = ch->failed;
    ch->failed = b->next;
    batch_done(b, ch, b->status);
  }
}

/* on_drain() once the queue is empty after a send reported "full". */
static void maybe_drain(brood_channel_t* ch) {
  if (ch->h.state != BROOD_OPEN || !ch->want_drain || queued_bytes(ch) != 0)
    return;
  ch->want_drain = 0;
  if (brood__push_ref(ch->h.loop, ch->drain_ref)) brood__call(ch->h.loop, 0);
}

static void batch_write_cb(uv_write_t* req, int status) {
  brood_loop_t* loop = ((batch_t*)req)->r.loop;
  brood_channel_t* ch = (brood_channel_t*)req->handle->data;
  batch_done((batch_t*)req, ch, status);
  if (!loop->torn_down && ch != NULL) maybe_drain(ch);
}

static void schedule_flush(brood_channel_t* ch) {
  brood__loop_schedule(ch->h.loop, &ch->flush);
}

/* A uv_buf_t over len bytes: uv_buf_init takes an unsigned int, which
** would cut a write of 4 GiB or more (uv_buf_t.len is a size_t on Unix). */
static uv_buf_t whole_buf(char* data, size_t len) {
  uv_buf_t buf;
  buf.base = data;
  buf.len = len;
  return buf;
}

/* Write `out` at once, without a request, when nothing is to be called
** back and nothing is queued before it (no poll registration, no callback
** round, buffer kept). Returns 1 if all of it went. */
static int flush_now(brood_channel_t* ch) {
  uv_stream_t* stream = (uv_stream_t*)&ch->pipe;
  if (ch->n_out_cbs != 0 || ch->segs.n != 0 ||
      uv_stream_get_write_queue_size(stream) != 0)
    return 0;
  uv_buf_t now = whole_buf(ch->out.data, ch->out.len);
  int n = uv_try_write(stream, &now, 1);
  if (n >= 0 && (size_t)n == ch->out.len) {
    ch->out.len = 0;
    if (ch->out.cap > 4 * WRITE_CHUNK) brood__buf_free(&ch->out);
    return 1;
  }
  if (n > 0) {
    memmove(ch->out.data, ch->out.data + n, ch->out.len - (size_t)n);
    ch->out.len -= (size_t)n;
  }
  return 0;
}

/* A batch taking `out` and its callbacks over (zero-copy), or NULL without
** memory (then nothing is taken). */
static batch_t* batch_take(brood_channel_t* ch) {
  batch_t* b = (batch_t*)brood__req_new(ch->h.loop, sizeof(batch_t));
  if (b == NULL) return NULL;
  b->buf = ch->out;
  b->segs = ch->segs;
  b->cbs = ch->out_cbs;
  b->ncbs = ch->n_out_cbs;
  memset(&ch->segs, 0, sizeof(ch->segs));
  ch->out_cbs = NULL;
  ch->n_out_cbs = ch->cap_out_cbs = 0;
  /* the next frames go into a buffer back from a write, or one of a
  ** write's size at once, rather than one regrown from nothing */
  ch->out = ch->spare;
  memset(&ch->spare, 0, sizeof(ch->spare));
  if (ch->out.data == NULL)
    (void)brood__buf_reserve(&ch->out, b->buf.len < WRITE_CHUNK
                                           ? b->buf.len : WRITE_CHUNK);
  return b;
}

/* Up to this many iovecs on the stack; libuv copies them into the
** request (past 4, into memory of its own). */
#define IOVECS_ON_STACK 16

/* The batch's bytes as iovecs: the buffer cut at each segment, the
** segment's string between. Returns the count, or -1 without memory;
** *bufs is `stack` or a malloc'd array. */
static int batch_iovecs(batch_t* b, uv_buf_t* stack, uv_buf_t** bufs) {
  size_t most = 2 * (size_t)b->segs.n + 1;
  uv_buf_t* v = stack;
  if (most > IOVECS_ON_STACK) {
    if (most > INT_MAX / sizeof(uv_buf_t) ||
        (v = (uv_buf_t*)malloc(most * sizeof(uv_buf_t))) == NULL)
      return -1;
  }
  int n = 0;
  size_t pos = 0;
  for (int i = 0; i < b->segs.n; i++) {
    const brood_seg_t* seg = &b->segs.v[i];
    if (seg->off > pos) v[n++] = whole_buf(b->buf.data + pos, seg->off - pos);
    v[n++] = whole_buf((char*)seg->data, seg->len);
    pos = seg->off;
  }
  if (b->buf.len > pos || n == 0)
    v[n++] = whole_buf(b->buf.data + pos, b->buf.len - pos);
  *bufs = v;
  return n;
}

/* libuv refused the write: it will not call back, so the loop does, with
** the error, once the send that got here has returned (the list is kept
** oldest first). */
static void batch_refused(brood_channel_t* ch, batch_t* b, int err) {
  batch_t** tail = &ch->failed;
  while (*tail != NULL) tail = &(*tail)->next;
  b->status = err;
  *tail = b;
  schedule_flush(ch);
}

/* Hand `out` (and its callbacks) to libuv as one write; with `sent`, that
** handle's fd travels with it (kept alive by handle_ref). Returns a libuv
** error or 0. On an error the callbacks are not lost: the batch waits in
** ch->failed, whose callbacks run from the loop (channel_flush_job) or at
** close. */
static int channel_flush(brood_channel_t* ch, brood_handle_t* sent,
                         int handle_ref) {
  uv_stream_t* send_handle = sent != NULL ? (uv_stream_t*)sent->uv : NULL;
  if (out_bytes(ch) == 0 && send_handle == NULL) return 0;
  if (send_handle == NULL && flush_now(ch)) return 0;
  batch_t* b = batch_take(ch);
  if (b == NULL) {
    /* Nothing taken: `out` and its callbacks stay queued for the next
    ** flush (a handle's fd is then not sent), or for channel_release. Not
    ** rescheduled here: the job would spin while memory lacks. */
    brood__unref(ch->h.loop->main, &handle_ref);
    return UV_ENOMEM;
  }
  b->r.data_ref = handle_ref;  /* unref: brood__req_done */
  uv_buf_t stack[IOVECS_ON_STACK];
  uv_buf_t* bufs;
  int nbufs = batch_iovecs(b, stack, &bufs);
  uv_stream_t* stream = (uv_stream_t*)&ch->pipe;
  int err = nbufs < 0 ? UV_ENOMEM
      : send_handle != NULL
      ? uv_write2(&b->r.u.write, stream, bufs, (unsigned)nbufs, send_handle,
                  batch_write_cb)
      : uv_write(&b->r.u.write, stream, bufs, (unsigned)nbufs,
                 batch_write_cb);
  if (bufs != stack && nbufs >= 0) free(bufs);
  if (err != 0) {
    batch_refused(ch, b, err);
  } else if (sent != NULL) {
    brood__handle_pin(sent);  /* unpinned in batch_done */
    b->pinned = sent;
  }
  return err;
}

/* The channel's job, run by the loop before it polls (and as a run
** starts): write the frames queued in this loop turn, run the callbacks
** of refused writes, call on_drain if the queue emptied at once, and
** deliver frames left waiting in the input buffer. */
static void channel_flush_job(brood_job_t* job) {
  brood_channel_t* ch = (brood_channel_t*)job->data;
  brood_loop_t* loop = ch->h.loop;
  if (loop->stop_requested) {
    schedule_flush(ch);  /* not while the loop stops: when it runs again */
    return;
  }
  if (ch->h.state != BROOD_OPEN) return;
  channel_flush(ch, NULL, LUA_NOREF);
  batches_fail(ch);
  maybe_drain(ch);  /* written at once: no write callback comes */
  if (ch->parse_pending) {
    ch->parse_pending = 0;
    channel_parse(ch);
  }
}

static int push_out_cb(brood_channel_t* ch, lua_State* L, int idx) {
  if (ch->n_out_cbs == ch->cap_out_cbs) {
    int cap = ch->cap_out_cbs ? ch->cap_out_cbs * 2 : 8;
    int* grown = (int*)realloc(ch->out_cbs, (size_t)cap * sizeof(int));
    if (grown == NULL) return -1;
    ch->out_cbs = grown;
    ch->cap_out_cbs = cap;
  }
  lua_pushvalue(L, idx);
  ch->out_cbs[ch->n_out_cbs++] = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* [-0, +0|3] Encode the value at stack index 2 as a frame of `kind` at
** the end of `out`. Returns 0, or the values pushed with `out` as it was:
** nil, msg, EMSGSIZE; or nil, why, ERR_CANNOT_ENCODE for a value the
** codec cannot carry (the Lua side raises that at the script's line). */
static int frame_encode(lua_State* L, brood_channel_t* ch, int kind) {
  brood_buf_t* out = &ch->out;
  size_t start = out->len;
  size_t seg_bytes = ch->segs.bytes;
  int seg0 = ch->segs.n;
  if (brood__buf_reserve(out, FRAME_HEADER) != 0)
    return luaL_error(L, "brood: out of memory");
  out->len += FRAME_HEADER;
  const char* err = brood__encode_segs(L, 2, out, &ch->segs);
  if (err != NULL) {
    out->len = start;
    brood__segs_truncate(L, &ch->segs, seg0);
    luaL_pushfail(L);
    lua_pushstring(L, err);
    lua_pushliteral(L, "ERR_CANNOT_ENCODE");
    return 3;
  }
  size_t body = out->len - start - FRAME_HEADER + ch->segs.bytes - seg_bytes;
  if (body > ch->max_message) {
    out->len = start;
    brood__segs_truncate(L, &ch->segs, seg0);
    luaL_pushfail(L);
    lua_pushfstring(L, "message of %I bytes exceeds max_message_size (%I)",
                    (lua_Integer)body, (lua_Integer)ch->max_message);
    lua_pushliteral(L, "EMSGSIZE");
    return 3;
  }
  unsigned char* hdr = (unsigned char*)out->data + start;
  hdr[0] = (unsigned char)(body >> 24);
  hdr[1] = (unsigned char)(body >> 16);
  hdr[2] = (unsigned char)(body >> 8);
  hdr[3] = (unsigned char)body;
  hdr[4] = (unsigned char)kind;
  return 0;
}

/* The frame just encoded is queued (its callback taken): write it with
** its handle now, or once 64 KiB are queued, or from the loop. Returns a
** libuv error of a refused write, which reaches the callbacks. */
static int frame_queued(lua_State* L, brood_channel_t* ch,
                        brood_handle_t* sent) {
  if (sent != NULL) {
    lua_pushvalue(L, 4);
    int handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* unref: batch_done */
    return channel_flush(ch, sent, handle_ref);
  }
  if (out_bytes(ch) >= WRITE_CHUNK) return channel_flush(ch, NULL, LUA_NOREF);
  schedule_flush(ch);
  return 0;
}

/* ch:send(value, kind, handle, cb) -> queued bytes, full (boolean)
**                                   | nil, msg, code (EMSGSIZE, ...)
** Raises when value cannot be encoded; the channel stays as it was. kind
** 1..3 comes with a brood stream or server handle whose fd is sent. With
** nil, msg, code nothing was queued and cb is not taken; otherwise cb(nil
** | error name) runs exactly once, after this returns: once written, or
** with the error of a write that failed, or ECANCELED at close. */
static int channel_send(lua_State* L) {
  brood_channel_t* ch = check_channel(L);
  luaL_checkany(L, 2);
  lua_Integer kind = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, kind >= 0 && kind <= KIND_MAX, 3, "invalid frame kind");
  if (!lua_isnoneornil(L, 5)) luaL_checktype(L, 5, LUA_TFUNCTION);
  brood_handle_t* sent = NULL;
  if (kind != 0) {
    const char* mt = luaL_testudata(L, 4, BROOD_SERVER_MT) != NULL
                         ? BROOD_SERVER_MT : BROOD_STREAM_MT;
    sent = (brood_handle_t*)brood__handle_check(L, 4, mt);
    uv_os_fd_t fd;
    int fderr = uv_fileno(sent->uv, &fd);  /* e.g. a server never bound */
    if (fderr != 0) return brood__push_error(L, fderr);
  }
  size_t start = ch->out.len;
  int seg0 = ch->segs.n;
  int failed = frame_encode(L, ch, (int)kind);
  if (failed) return failed;
  if (!lua_isnoneornil(L, 5) && push_out_cb(ch, L, 5) != 0) {
    ch->out.len = start;
    brood__segs_truncate(L, &ch->segs, seg0);
    return luaL_error(L, "brood: out of memory");
  }
  /* From here on the frame is queued and cb taken: a write that fails
  ** reaches cb (from the loop), so the send itself succeeds. */
  int uverr = frame_queued(L, ch, sent);
  size_t queued = queued_bytes(ch);
  /* a refused write: the channel is failing; report it "full" */
  int full = uverr != 0 || queued >= ch->hwm;
  if (full && uverr == 0) ch->want_drain = 1;
  lua_pushinteger(L, (lua_Integer)queued);
  lua_pushboolean(L, full);
  return 2;
}

static int channel_queued(lua_State* L) {
  lua_pushinteger(L, (lua_Integer)queued_bytes(check_channel(L)));
  return 1;
}

/* ch:on_drain(fn): fn() once the queue empties after a "full" send. */
static int channel_on_drain(lua_State* L) {
  brood_channel_t* ch = check_channel(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  brood__set_ref(L, 2, &ch->drain_ref);
  return 0;
}

/* ----- reading --------------------------------------------------------- */

static void channel_alloc_cb(uv_handle_t* handle, size_t suggested,
                             uv_buf_t* buf) {
  brood_channel_t* ch = (brood_channel_t*)handle->data;
  (void)suggested;
  if (brood__buf_reserve(&ch->in, READ_CHUNK) != 0) {
    buf->base = NULL;
    buf->len = 0;  /* libuv reports UV_ENOBUFS */
    return;
  }
  buf->base = ch->in.data + ch->in.len;
  buf->len = ch->in.cap - ch->in.len;
}

/* Report a failure to Lua: on_message(nil, code, message) (told from a
** frame with a handle by the string in second place). */
static void channel_report(brood_channel_t* ch, const char* code,
                           const char* msg) {
  brood_loop_t* loop = ch->h.loop;
  uv_read_stop((uv_stream_t*)&ch->pipe);
  ch->reading = 0;
  if (!brood__push_ref(loop, ch->h.cb_ref)) return;
  lua_pushnil(loop->L);
  lua_pushstring(loop->L, code);
  lua_pushstring(loop->L, msg);
  brood__call(loop, 3);
}

/* Accept the handle that came with a frame of `kind` and push it (a
** brood stream; a server for kind 1), or push nil and return -1. */
static int accept_handle(brood_channel_t* ch, int kind, lua_State* L) {
  uv_pipe_t* pipe = &ch->pipe;
  if (uv_pipe_pending_count(pipe) == 0) return -1;
  uv_handle_type type = uv_pipe_pending_type(pipe);
  if (type != UV_TCP && type != UV_NAMED_PIPE) {
    /* A file, a UDP socket...: nothing brood can serve as a stream. Take
    ** it off the queue (so later frames get their own fds) and close it. */
    (void)brood__req_discard_pending(ch->h.loop, pipe);
    return -1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->h.self_ref);
  lua_getiuservalue(L, -1, 1);  /* the loop userdata */
  lua_remove(L, -2);
  int loop_idx = lua_gettop(L);
  int err = brood__stream_accept(L, loop_idx, (uv_stream_t*)pipe, type,
                                 kind == 1 ? &brood__server_ops
                                           : &brood__stream_ops);
  lua_remove(L, loop_idx);
  if (err != 0) {
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* Room for a whole frame of `size` bytes at the start of the input
** buffer: exactly that much for a large frame (doubling would ask for up
** to twice a message's size: 8 GiB for a 4 GiB one). */
static int in_reserve_frame(brood_channel_t* ch, size_t size) {
  if (ch->in.cap >= size) return 0;
  if (size <= 2 * ch->in.cap)
    return brood__buf_reserve(&ch->in, size - ch->in.len);
  char* data = (char*)realloc(ch->in.data, size);
  if (data == NULL) return -1;
  ch->in.data = data;
  ch->in.cap = size;
  return 0;
}

/* The end of reading, once every complete frame before it is delivered:
** a frame cut short is the peer's fault; otherwise EOF or the read error. */
static void channel_end(brood_channel_t* ch) {
  if (ch->in.len > ch->in_pos) {
    channel_report(ch, "EBADMSG",
                   "the peer closed the channel in the middle of a message");
    return;
  }
  if (ch->eof == UV_EOF) channel_report(ch, "EOF", "channel closed");
  else channel_report(ch, brood__err_name(ch->eof), "read failed");
}

/* The frame at in_pos: 1 complete (*body and *kind set), 0 not yet (room
** is made for all of it at once: the rest is read into it), -1 one that
** will never do (reported: reading stops). */
static int frame_next(brood_channel_t* ch, size_t* body, int* kind) {
  size_t avail = ch->in.len - ch->in_pos;
  if (avail < FRAME_HEADER) return 0;
  const unsigned char* p = (const unsigned char*)ch->in.data + ch->in_pos;
  *body = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) |
          ((size_t)p[2] << 8) | p[3];
  *kind = p[4];
  if (*body > ch->max_message) {
    char msg[128];
    snprintf(msg, sizeof(msg), "the peer sent a message of %zu bytes, "
             "over max_message_size (%zu)", *body, ch->max_message);
    channel_report(ch, "EMSGSIZE", msg);
    return -1;
  }
  if (*kind > KIND_MAX) {
    channel_report(ch, "EBADMSG", "the peer sent a frame of unknown kind");
    return -1;
  }
  if (avail - FRAME_HEADER >= *body) return 1;
  if (ch->eof != 0) return 0;  /* it will never complete: channel_end */
  if (ch->in_pos > 0) {
    memmove(ch->in.data, ch->in.data + ch->in_pos, avail);
    ch->in.len = avail;
    ch->in_pos = 0;
  }
  if (in_reserve_frame(ch, FRAME_HEADER + *body) != 0) {
    channel_report(ch, "ENOMEM", "out of memory for a message");
    return -1;
  }
  return 0;
}

/* Decode the complete frame at in_pos and call on_message(msg) with it,
** or on_message(msg, handle, kind), handle nil if it could not be taken
** (the peer sent no fd: the message is still delivered). Returns 1 if
** delivered, 0 if the handler raised (the loop stops for it), -1 if it
** could not be (no Lua now, or malformed: reported). */
static int frame_deliver(brood_channel_t* ch, size_t body, int kind) {
  brood_loop_t* loop = ch->h.loop;
  if (!brood__push_ref(loop, ch->h.cb_ref)) return -1;
  lua_State* L = loop->L;
  const char* p = ch->in.data + ch->in_pos;
  const char* err = brood__decode(L, p + FRAME_HEADER, body);
  if (err != NULL) {
    lua_pop(L, 1);
    char msg[160];
    snprintf(msg, sizeof(msg), "the peer sent malformed MessagePack: %s",
             err);
    channel_report(ch, "EBADMSG", msg);
    return -1;
  }
  ch->in_pos += FRAME_HEADER + body;
  if (kind == 0) return brood__call(loop, 1);
  if (accept_handle(ch, kind, L) != 0) lua_pushnil(L);
  lua_pushinteger(L, kind);
  return brood__call(loop, 3);
}

/* Keep only the unparsed tail; give back a big buffer once drained. */
static void in_compact(brood_channel_t* ch) {
  if (ch->in_pos > 0) {
    size_t rest = ch->in.len - ch->in_pos;
    memmove(ch->in.data, ch->in.data + ch->in_pos, rest);
    ch->in.len = rest;
    ch->in_pos = 0;
  }
  if (ch->in.len == 0 && ch->in.cap > 4 * READ_CHUNK) brood__buf_free(&ch->in);
}

/* Decode and deliver every complete frame in the input buffer, then the
** end of reading if it came. Runs under lua_pcall (channel_parse): the
** decoding pushes onto the loop's thread and may raise (out of memory for
** a peer's large message), which must not unwind through libuv. Each
** handler runs under its own brood__call, so its errors stay there. */
static void parse_frames(brood_channel_t* ch) {
  int delivered = 1;  /* 0 once a handler raised: the loop stops for it */
  while (delivered && ch->reading && ch->h.state == BROOD_OPEN) {
    size_t body;
    int kind;
    int ready = frame_next(ch, &body, &kind);
    if (ready < 0) return;
    if (ready == 0) break;
    delivered = frame_deliver(ch, body, kind);
    if (delivered < 0) return;
  }
  if (!delivered && ch->in.len > ch->in_pos) {
    /* A handler raised and the loop stops to raise it: the frames left
    ** are delivered when it runs again, none is lost. */
    ch->parse_pending = 1;
    schedule_flush(ch);
  }
  in_compact(ch);
  if (delivered && ch->eof != 0 && ch->reading &&
      ch->h.state == BROOD_OPEN)
    channel_end(ch);
}

/* lua_pcall'd by channel_parse: (message handler, channel). The handler
** is passed down because brood__call names it by its stack index, which
** must be one of this frame's. */
static int parse_protected(lua_State* L) {
  brood_channel_t* ch = (brood_channel_t*)lua_touserdata(L, 2);
  ch->h.loop->msgh = 1;
  parse_frames(ch);
  return 0;
}

/* Deliver what the input buffer holds. A Lua error out of the decoding
** (memory, above all) fails this channel with an "error" on its owner;
** the loop and every other channel carry on. */
static void channel_parse(brood_channel_t* ch) {
  brood_loop_t* loop = ch->h.loop;
  lua_State* L = loop->L;
  if (L == NULL || loop->closing || loop->torn_down) return;
  int msgh = loop->msgh;
  lua_pushcfunction(L, parse_protected);
  lua_pushvalue(L, msgh);
  lua_pushlightuserdata(L, ch);
  int status = lua_pcall(L, 2, 0, 0);
  loop->msgh = msgh;
  if (status == LUA_OK) return;
  char msg[200];
  const char* what = lua_tostring(L, -1);
  snprintf(msg, sizeof(msg), "cannot take in a message: %s",
           what != NULL ? what : "error object");
  lua_pop(L, 1);
  if (ch->h.state != BROOD_OPEN) return;
  channel_report(ch, status == LUA_ERRMEM ? "ENOMEM" : "EBADMSG", msg);
}

/* Is something still to be read on the channel's socket? */
static int channel_unread(brood_channel_t* ch) {
  uv_os_fd_t fd;
  int n = 0;
  if (uv_fileno((uv_handle_t*)&ch->pipe, &fd) != 0) return 0;
  return ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

static void channel_read_cb(uv_stream_t* stream, ssize_t nread,
                            const uv_buf_t* buf) {
  brood_channel_t* ch = (brood_channel_t*)stream->data;
  (void)buf;
  if (nread > 0) {
    ch->in.len += (size_t)nread;
    channel_parse(ch);
    return;
  }
  if (nread == 0) return;
  /* libuv (1.44 at least) takes a hang-up after a short read for the end
  ** of the stream; but the kernel ends a read at each passed fd, so bytes
  ** may wait behind it: the peer's last messages. Read on, then. */
  if (nread == UV_EOF && channel_unread(ch) &&
      uv_read_start(stream, channel_alloc_cb, channel_read_cb) == 0)
    return;
  uv_read_stop(stream);
  ch->eof = (int)nread;
  channel_parse(ch);  /* the complete frames first, then the end */
}

/* ch:read_start(on_message) -> true | nil, msg, code */
static int channel_read_start(lua_State* L) {
  brood_channel_t* ch = check_channel(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  brood__set_ref(L, 2, &ch->h.cb_ref);
  if (!ch->reading) {
    if (ch->eof == 0) {
      int err = uv_read_start((uv_stream_t*)&ch->pipe, channel_alloc_cb,
                              channel_read_cb);
      if (err != 0) return brood__push_error(L, err);
    }
    ch->reading = 1;
    /* Frames may wait in the buffer from before a read_stop (or the end
    ** of reading): deliver them from the loop, never before this returns. */
    if (ch->in.len > ch->in_pos || ch->eof != 0) {
      ch->parse_pending = 1;
      schedule_flush(ch);
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int channel_read_stop(lua_State* L) {
  brood_channel_t* ch = check_channel(L);
  uv_read_stop((uv_stream_t*)&ch->pipe);
  ch->reading = 0;
  return 0;
}

/* ----- life cycle ------------------------------------------------------ */

/* Closed (the close callback): the sends whose writes failed hear of it,
** then those never handed to libuv get ECANCELED ("channel closed"). */
static void channel_release(brood_handle_t* h) {
  brood_channel_t* ch = (brood_channel_t*)h;
  brood_loop_t* loop = h->loop;
  brood__loop_spin_hold(loop, -1);
  brood__loop_cancel(loop, &ch->flush);
  batches_fail(ch);
  brood__buf_free(&ch->in);
  brood__buf_free(&ch->out);
  brood__buf_free(&ch->spare);
  /* the strings of frames never handed to libuv */
  brood__segs_free(loop->torn_down ? NULL : loop->main, &ch->segs);
  if (!loop->torn_down) {
    for (int i = 0; i < ch->n_out_cbs; i++) {
      brood__call_status(loop, ch->out_cbs[i], UV_ECANCELED);
      brood__unref(loop->main, &ch->out_cbs[i]);
    }
    brood__unref(loop->main, &ch->drain_ref);
  }
  free(ch->out_cbs);
  ch->out_cbs = NULL;
  ch->n_out_cbs = ch->cap_out_cbs = 0;
}

static const brood_handle_ops_t channel_ops = {
  BROOD_CHANNEL_MT, NULL, channel_release
};

/* The EOF is written (or the peer is gone): close; the callback of
** disconnect(cb) runs once closed. */
static void channel_shutdown_cb(uv_shutdown_t* req, int status) {
  brood_req_t* r = (brood_req_t*)req;
  brood_channel_t* ch = (brood_channel_t*)r->owner;
  (void)status;
  if (!r->loop->torn_down && ch->h.state == BROOD_OPEN) {
    ch->h.close_ref = r->cb_ref;  /* runs once closed */
    r->cb_ref = LUA_NOREF;
    brood__handle_close(&ch->h);
  } else if (!r->loop->torn_down) {
    brood__unref(r->loop->main, &r->cb_ref);  /* closed without it */
  }
  brood__req_done(r, 0);
}

/* ch:disconnect([cb]): stop reading, write everything queued, send EOF,
** then close; cb() once closed. */
static int channel_disconnect(lua_State* L) {
  brood_channel_t* ch = check_channel(L);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  uv_read_stop((uv_stream_t*)&ch->pipe);
  ch->reading = 0;
  brood__loop_cancel(ch->h.loop, &ch->flush);
  channel_flush(ch, NULL, LUA_NOREF);
  brood_req_t* r = brood__req_check(L, ch->h.loop);
  r->owner = ch;
  int err = uv_shutdown(&r->u.shutdown, (uv_stream_t*)&ch->pipe,
                        channel_shutdown_cb);
  if (err != 0) {
    brood__req_done(r, 0);
    brood__set_ref(L, 2, &ch->h.close_ref);
    brood__handle_close(&ch->h);  /* the peer is gone already */
  } else {
    brood__req_refs(L, r, 0, 2);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.channel_open(loop, fd, max_message_size, hwm) -> channel |
** nil, msg, code. The channel owns fd from then on. */
static int channel_open(lua_State* L) {
  lua_Integer fd = luaL_checkinteger(L, 2);
  lua_Integer max = luaL_checkinteger(L, 3);
  lua_Integer hwm = luaL_checkinteger(L, 4);
  luaL_argcheck(L, fd >= 0 && fd <= INT32_MAX, 2, "invalid fd");
  luaL_argcheck(L, max > 0 && max <= UINT32_MAX, 3, "out of range");
  luaL_argcheck(L, hwm > 0, 4, "must be positive");
  brood_channel_t* ch = (brood_channel_t*)brood__handle_new(
      L, 1, sizeof(brood_channel_t), &channel_ops);
  ch->max_message = (size_t)max;
  ch->hwm = (size_t)hwm;
  ch->drain_ref = LUA_NOREF;
  ch->flush.run = channel_flush_job;
  ch->flush.data = ch;
  ch->flush.eager = 1;  /* frames sent before a run do not wait on timers */
  uv_pipe_init(&ch->h.loop->uv, &ch->pipe, 1);
  brood__handle_opened(L, &ch->h, (uv_handle_t*)&ch->pipe);
  /* an IPC peer answers within microseconds: spin for it (until
  ** channel_release) */
  brood__loop_spin_hold(ch->h.loop, 1);
  /* A forked script inherits it at a fixed number: keep it from its own
  ** children. */
  fcntl((int)fd, F_SETFD, FD_CLOEXEC);
  int err = uv_pipe_open(&ch->pipe, (uv_file)fd);
  if (err != 0) {
    brood__handle_close(&ch->h);
    return brood__push_error(L, err);
  }
  return 1;
}

void brood__channel_open(lua_State* L) {
  static const luaL_Reg methods[] = {
    {"send", channel_send},
    {"queued", channel_queued},
    {"on_drain", channel_on_drain},
    {"read_start", channel_read_start},
    {"read_stop", channel_read_stop},
    {"disconnect", channel_disconnect},
    {NULL, NULL}
  };
  brood__handle_class(L, BROOD_CHANNEL_MT, methods);
  lua_pushcfunction(L, channel_open);
  lua_setfield(L, -2, "channel_open");
}


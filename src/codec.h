/*
** codec.h: Lua values <-> MessagePack, straight between the Lua stack and
** a byte buffer (no intermediate object tree). Used by brood.msgpack and
** by the IPC channel, which encodes into its frame buffer and has large
** strings written from Lua's own copy (segments) rather than copied.
*/
#ifndef BROOD_CODEC_H
#define BROOD_CODEC_H

#include <stddef.h>

#include <lua.h>

/* Tables nested deeper than this (or cycles) do not encode or decode. */
#define BROOD_CODEC_MAX_DEPTH 128

/* A growable byte buffer (malloc'd). */
typedef struct {
  char* data;
  size_t len;
  size_t cap;
} brood_buf_t;

/* Make room for `extra` more bytes; 0 on success, -1 when out of memory. */
int brood__buf_reserve(brood_buf_t* b, size_t extra);
void brood__buf_free(brood_buf_t* b);

/* Append the MessagePack encoding of the value at idx to b. Returns NULL on
** success; on failure returns a static message (b->len is restored, so the
** buffer holds what it held before). Does not raise, except for memory
** errors of Lua itself. */
const char* brood__encode(lua_State* L, int idx, brood_buf_t* b);

/* Strings of at least this many bytes are worth writing from where Lua
** keeps them: below it, copying costs less than a registry ref and one
** more iovec. */
#define BROOD_CODEC_SEGMENT_MIN (32 * 1024)

/* A string's bytes left out of the buffer: they belong at `off` (after
** the buffer's bytes before it), and `ref` keeps the string alive. */
typedef struct {
  size_t off;
  const char* data;
  size_t len;
  int ref;  /* in the registry of the state that encoded it */
} brood_seg_t;

/* The segments of an encoding, in order of `off` (malloc'd). */
typedef struct {
  brood_seg_t* v;
  int n, cap;
  size_t bytes;  /* the sum of their lengths */
} brood_segs_t;

/* As brood__encode, but each string of BROOD_CODEC_SEGMENT_MIN bytes or
** more, anywhere in the value, is not copied: only its MessagePack header
** goes into b, and the string is appended to segs (ref'd). On failure b
** and segs are as they were (the refs taken are released). */
const char* brood__encode_segs(lua_State* L, int idx, brood_buf_t* b,
                               brood_segs_t* segs);

/* Drop the segments from index `from` on; their refs are released in L's
** registry unless L is NULL (the state is gone: nothing to release). */
void brood__segs_truncate(lua_State* L, brood_segs_t* segs, int from);

/* Drop them all and free the array. */
void brood__segs_free(lua_State* L, brood_segs_t* segs);

/* Decode exactly one value from data[0..len) and push it. Returns NULL on
** success; on failure pushes nothing and returns a static message. */
const char* brood__decode(lua_State* L, const char* data, size_t len);

#endif

/*
** codec.h: Lua values <-> MessagePack, straight between the Lua stack and
** a byte buffer (no intermediate object tree). Used by brood.msgpack and
** by the IPC channel, which encodes into its frame buffer.
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

/* Decode exactly one value from data[0..len) and push it. Returns NULL on
** success; on failure pushes nothing and returns a static message. */
const char* brood__decode(lua_State* L, const char* data, size_t len);

#endif

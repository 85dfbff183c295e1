/*
** codec.c: Lua values <-> MessagePack.
**
** Encoding goes straight from the Lua stack into a byte buffer through
** msgpack-c's packer. Decoding is our own single pass from bytes to Lua
** values: msgpack-c's unpacker would first build an object tree in a zone
** and we would walk it again. Every length read from the input is checked
** against the bytes left before anything is allocated for it, so hostile
** input costs at most its own size.
**
** Values: nil, booleans, integers (kept as integers), floats (always as
** float 64, so 1.0 stays a float), strings (str when valid UTF-8, else bin;
** both decode to Lua strings), tables: an array when its keys are exactly
** 1..n (n >= 1) or when brood.array marked it, else a map.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "codec.h"
#include "private.h"

/* Registry key of the weak set of tables marked as arrays. */
#define ARRAY_MARKS "brood.array_marks"

int brood__buf_reserve(brood_buf_t* b, size_t extra) {
  if (b->cap - b->len >= extra) return 0;
  size_t need = b->len + extra;
  if (need < b->len) return -1;  /* overflow */
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  char* data = (char*)realloc(b->data, cap);
  if (data == NULL) return -1;
  b->data = data;
  b->cap = cap;
  return 0;
}

void brood__buf_free(brood_buf_t* b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ----- encoding -------------------------------------------------------- */

/* msgpack-c's packer, instantiated from its template with an append that
** writes straight into our buffer: the stock msgpack_packer calls a
** function pointer for every item, which costs more than the packing. */
static inline int buf_append(brood_buf_t* b, const char* bytes, size_t len) {
  if (b->cap - b->len < len && brood__buf_reserve(b, len) != 0) return -1;
  memcpy(b->data + b->len, bytes, len);
  b->len += len;
  return 0;
}

#define msgpack_pack_inline_func(name) static inline int brood_mp##name
#define msgpack_pack_inline_func_cint(name) static inline int brood_mp##name
#define msgpack_pack_inline_func_fixint(name) \
  static inline int brood_mp_fix##name
#define msgpack_pack_user brood_buf_t*
#define msgpack_pack_append_buffer(user, buf, len) \
  return buf_append(user, (const char*)(buf), len)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include <msgpack/pack_template.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

typedef struct {
  lua_State* L;
  brood_buf_t* b;
  brood_segs_t* segs;  /* NULL: every string is copied into b */
  int depth;
  const void* path[BROOD_CODEC_MAX_DEPTH];  /* tables being encoded */
  const char* err;
} encoder_t;

/* Is s valid UTF-8? ASCII runs are skipped eight bytes at a time. */
static int utf8_valid(const unsigned char* s, size_t len) {
  size_t i = 0;
  /* Long ASCII runs (most payloads): 32 bytes a step. */
  while (i + 32 <= len) {
    uint64_t a, b, c, d;
    memcpy(&a, s + i, 8);
    memcpy(&b, s + i + 8, 8);
    memcpy(&c, s + i + 16, 8);
    memcpy(&d, s + i + 24, 8);
    if (((a | b | c | d) & 0x8080808080808080ULL) != 0) break;
    i += 32;
  }
  while (i < len) {
    if (i + 8 <= len) {
      uint64_t chunk;
      memcpy(&chunk, s + i, 8);
      if ((chunk & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    unsigned char c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) { i++; continue; }
    else if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
    else return 0;
    if (len - i - 1 < n) return 0;
    for (size_t k = 1; k <= n; k++) {
      unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
      return 0;
    i += n + 1;
  }
  return 1;
}

static int encode_value(encoder_t* e, int idx);

/* ----- segments: large strings written from Lua's copy ----------------- */

void brood__segs_truncate(lua_State* L, brood_segs_t* segs, int from) {
  for (int i = from; i < segs->n; i++) {
    if (L != NULL) luaL_unref(L, LUA_REGISTRYINDEX, segs->v[i].ref);
    segs->bytes -= segs->v[i].len;
  }
  if (from < segs->n) segs->n = from;
}

void brood__segs_free(lua_State* L, brood_segs_t* segs) {
  brood__segs_truncate(L, segs, 0);
  free(segs->v);
  segs->v = NULL;
  segs->n = segs->cap = 0;
  segs->bytes = 0;
}

/* lua_pcall'd: a ref to the string given (luaL_ref may raise for memory,
** which must not unwind through an encoding half done). */
static int take_ref(lua_State* L) {
  lua_pushinteger(L, luaL_ref(L, LUA_REGISTRYINDEX));
  return 1;
}

/* The string at idx (s, len; its header is in the buffer) becomes a
** segment at the buffer's end rather than being copied. */
static int segment_add(encoder_t* e, int idx, const char* s, size_t len) {
  lua_State* L = e->L;
  brood_segs_t* segs = e->segs;
  if (segs->n == segs->cap) {
    int cap = segs->cap ? segs->cap * 2 : 4;
    brood_seg_t* v =
        (brood_seg_t*)realloc(segs->v, (size_t)cap * sizeof(*v));
    if (v == NULL) return -1;
    segs->v = v;
    segs->cap = cap;
  }
  if (!lua_checkstack(L, 2)) {
    e->err = "Lua stack overflow";
    return -1;
  }
  lua_pushcfunction(L, take_ref);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return -1;  /* out of memory */
  }
  brood_seg_t* seg = &segs->v[segs->n++];
  seg->ref = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  seg->off = e->b->len;
  seg->data = s;
  seg->len = len;
  segs->bytes += len;
  return 0;
}

static int segs_count(encoder_t* e) {
  return e->segs != NULL ? e->segs->n : 0;
}

/* The buffer went back to a length it had with `n` segments: drop the
** ones recorded since. */
static void segs_rewind(encoder_t* e, int n) {
  if (e->segs != NULL) brood__segs_truncate(e->L, e->segs, n);
}

/* Did brood.array mark the table at idx? (Asked only of empty tables and
** tables that are not plain sequences, so the set is fetched lazily.) */
static int is_marked(encoder_t* e, int idx) {
  lua_State* L = e->L;
  lua_getfield(L, LUA_REGISTRYINDEX, ARRAY_MARKS);
  lua_pushvalue(L, idx);
  int marked = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return marked;
}

/* Are the keys of the table at idx exactly 1..n? (The slow, general check,
** for tables whose traversal order is not 1, 2, ... n.) */
static int keys_are_sequence(lua_State* L, int idx, lua_Unsigned n) {
  lua_Unsigned total = 0;
  int ok = n > 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    total++;
    if (ok && (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
               (lua_Unsigned)lua_tointeger(L, -1) > n))
      ok = 0;
  }
  return ok && total == n;
}

/* The key at `key` is k, in order: do the keys after it in traversal
** order run k+1, ..., n and then end? */
static int rest_in_order(lua_State* L, int idx, int key, lua_Unsigned n) {
  lua_Integer expect = lua_tointeger(L, key) + 1;
  lua_pushvalue(L, key);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) != expect) {
      lua_pop(L, 1);
      return 0;
    }
    expect++;
  }
  return (lua_Unsigned)expect == n + 1;
}

static int encode_array_part(encoder_t* e, int idx, lua_Unsigned n) {
  int rc = brood_mp_array(e->b, (size_t)n);
  int slot = lua_gettop(e->L) + 1;
  for (lua_Unsigned i = 1; rc == 0 && i <= n; i++) {
    lua_rawgeti(e->L, idx, (lua_Integer)i);
    rc = encode_value(e, slot);
    lua_pop(e->L, 1);
  }
  return rc;
}

/* A map in one pass: a 5-byte header is reserved, the entries encoded and
** counted, then the header written in its shortest form. */
static int encode_map(encoder_t* e, int idx) {
  lua_State* L = e->L;
  brood_buf_t* b = e->b;
  size_t start = b->len;
  int seg0 = segs_count(e);
  if (brood__buf_reserve(b, 5) != 0) return -1;
  b->len += 5;
  size_t count = 0;
  int rc = 0;
  int key = lua_gettop(L) + 1;  /* lua_next leaves key, value there */
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    rc = encode_value(e, key);
    if (rc == 0) rc = encode_value(e, key + 1);
    lua_pop(L, 1);
    if (rc != 0) {
      lua_pop(L, 1);  /* the key */
      return rc;
    }
    count++;
  }
  size_t body = b->len - start - 5;
  unsigned char hdr[5];
  size_t h;
  if (count < 16) {
    hdr[0] = (unsigned char)(0x80 | count);
    h = 1;
  } else if (count < 0x10000) {
    hdr[0] = 0xde; hdr[1] = (unsigned char)(count >> 8);
    hdr[2] = (unsigned char)count;
    h = 3;
  } else {
    hdr[0] = 0xdf; hdr[1] = (unsigned char)(count >> 24);
    hdr[2] = (unsigned char)(count >> 16); hdr[3] = (unsigned char)(count >> 8);
    hdr[4] = (unsigned char)count;
    h = 5;
  }
  if (h != 5) {
    memmove(b->data + start + h, b->data + start + 5, body);
    /* the segments in the body moved with it */
    for (int i = seg0; i < segs_count(e); i++) e->segs->v[i].off -= 5 - h;
  }
  memcpy(b->data + start, hdr, h);
  b->len = start + h + body;
  return 0;
}

/* Enter the table `self`: not too deep, not a cycle, stack room. */
static int encode_enter(encoder_t* e, const void* self) {
  if (e->depth >= BROOD_CODEC_MAX_DEPTH) {
    e->err = "nesting deeper than 128 levels";
    return -1;
  }
  for (int i = 0; i < e->depth; i++) {
    if (e->path[i] == self) {
      e->err = "cannot encode a table that contains itself (a cycle)";
      return -1;
    }
  }
  if (!lua_checkstack(e->L, 4)) {
    e->err = "Lua stack overflow";
    return -1;
  }
  e->path[e->depth++] = self;
  return 0;
}

static int encode_table(encoder_t* e, int idx) {
  lua_State* L = e->L;
  if (encode_enter(e, lua_topointer(L, idx)) != 0) return -1;
  int rc;
  lua_Unsigned n = lua_rawlen(L, idx);
  size_t start = e->b->len;
  int seg0 = segs_count(e);
  if (n > 0) {
    /* Fast path: traversal yields 1, 2, ... n and then ends. Elements
    ** are encoded as they come, but before the first one that is a table
    ** the rest of the keys are checked: a table found out of order
    ** halfway then encodes again only the scalars before that point.
    ** (Encoding nested tables again at every level of a nest is
    ** exponential in its depth.) */
    rc = brood_mp_array(e->b, (size_t)n);
    lua_Integer expect = 1;
    int checked = 0;
    int key = lua_gettop(L) + 1;
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, idx) != 0) {
      if (!lua_isinteger(L, key) || lua_tointeger(L, key) != expect ||
          (!checked && lua_type(L, key + 1) == LUA_TTABLE &&
           !(checked = rest_in_order(L, idx, key, n)))) {
        lua_pop(L, 2);
        expect = -1;
        break;
      }
      rc = encode_value(e, key + 1);
      lua_pop(L, 1);
      expect++;
      if (rc != 0) lua_pop(L, 1);  /* the key */
    }
    if (rc == 0 && expect == (lua_Integer)n + 1) goto done;
    if (rc != 0) goto done;
    e->b->len = start;  /* not in order: decide the slow way */
    segs_rewind(e, seg0);
    if (is_marked(e, idx) || keys_are_sequence(L, idx, n))
      rc = encode_array_part(e, idx, n);
    else
      rc = encode_map(e, idx);
  } else {
    /* No border at 1: a map, unless it is empty and brood.array marked
    ** it (asked only then: the mark lookup costs). */
    lua_pushnil(L);
    int empty = lua_next(L, idx) == 0;
    if (!empty) lua_pop(L, 2);
    if (empty && is_marked(e, idx))
      rc = brood_mp_array(e->b, 0);
    else
      rc = encode_map(e, idx);
  }
done:
  e->depth--;
  return rc;
}

static int encode_value(encoder_t* e, int idx) {
  lua_State* L = e->L;
  int rc;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      rc = brood_mp_nil(e->b);
      break;
    case LUA_TBOOLEAN:
      rc = lua_toboolean(L, idx) ? brood_mp_true(e->b)
                                 : brood_mp_false(e->b);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        rc = brood_mp_int64(e->b, (int64_t)lua_tointeger(L, idx));
      else
        rc = brood_mp_double(e->b, (double)lua_tonumber(L, idx));
      break;
    case LUA_TSTRING: {
      size_t len;
      const char* s = lua_tolstring(L, idx, &len);
      if (len > UINT32_MAX) {
        e->err = "string longer than 4 GiB";
        return -1;
      }
      rc = utf8_valid((const unsigned char*)s, len) ? brood_mp_str(e->b, len)
                                                    : brood_mp_bin(e->b, len);
      if (rc != 0) break;
      if (len >= BROOD_CODEC_SEGMENT_MIN && e->segs != NULL)
        rc = segment_add(e, idx, s, len);
      else
        rc = buf_append(e->b, s, len);
      break;
    }
    case LUA_TTABLE:
      return encode_table(e, idx);
    default:
      e->err = lua_type(L, idx) == LUA_TFUNCTION ? "cannot encode a function"
             : lua_type(L, idx) == LUA_TTHREAD   ? "cannot encode a thread"
                                                 : "cannot encode a userdata";
      return -1;
  }
  if (rc != 0 && e->err == NULL) e->err = "out of memory";
  return rc;
}

const char* brood__encode_segs(lua_State* L, int idx, brood_buf_t* b,
                               brood_segs_t* segs) {
  encoder_t e;
  idx = lua_absindex(L, idx);
  size_t before = b->len;
  e.L = L;
  e.b = b;
  e.segs = segs;
  int seg0 = segs_count(&e);
  e.depth = 0;
  e.err = NULL;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8)) return "Lua stack overflow";
  int rc = encode_value(&e, idx);
  lua_settop(L, top);
  if (rc != 0) {
    b->len = before;
    segs_rewind(&e, seg0);
    return e.err != NULL ? e.err : "out of memory";
  }
  return NULL;
}

const char* brood__encode(lua_State* L, int idx, brood_buf_t* b) {
  return brood__encode_segs(L, idx, b, NULL);
}

/* ----- decoding -------------------------------------------------------- */

typedef struct {
  lua_State* L;
  const unsigned char* p;
  const unsigned char* end;
  int depth;
  const char* err;
} decoder_t;

static int need(decoder_t* d, size_t n) {
  if ((size_t)(d->end - d->p) < n) {
    d->err = "truncated MessagePack data";
    return -1;
  }
  return 0;
}

static uint64_t read_be(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

static int decode_value(decoder_t* d);

static int decode_bytes(decoder_t* d, size_t len) {
  if (need(d, len) != 0) return -1;
  lua_pushlstring(d->L, (const char*)d->p, len);
  d->p += len;
  return 0;
}

static int decode_array(decoder_t* d, size_t n) {
  lua_State* L = d->L;
  if ((size_t)(d->end - d->p) < n) {  /* each element takes a byte at least */
    d->err = "truncated MessagePack data";
    return -1;
  }
  /* The count is the peer's claim: presize for what fits in the bytes
  ** left, and no more than a modest table; Lua grows it if need be. */
  lua_createtable(L, (int)(n < 4096 ? n : 4096), 0);
  if (n == 0) {  /* keep it an array across a round trip */
    lua_getfield(L, LUA_REGISTRYINDEX, ARRAY_MARKS);
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  for (size_t i = 1; i <= n; i++) {
    if (decode_value(d) != 0) return -1;
    lua_rawseti(L, -2, (lua_Integer)i);
  }
  return 0;
}

static int decode_map(decoder_t* d, size_t n) {
  lua_State* L = d->L;
  if ((size_t)(d->end - d->p) / 2 < n) {  /* two bytes per entry at least */
    d->err = "truncated MessagePack data";
    return -1;
  }
  lua_createtable(L, 0, (int)(n < 1024 ? n : 1024));
  for (size_t i = 0; i < n; i++) {
    /* Only nil and floats can make bad keys: the format byte tells. */
    if (need(d, 1) != 0) return -1;
    unsigned char f = *d->p;
    if (f == 0xc0) {
      d->err = "map key is nil or NaN";
      return -1;
    }
    if (decode_value(d) != 0) return -1;
    if ((f == 0xca || f == 0xcb) &&
        lua_tonumber(L, -1) != lua_tonumber(L, -1)) {
      d->err = "map key is nil or NaN";
      return -1;
    }
    if (decode_value(d) != 0) return -1;
    lua_rawset(L, -3);
  }
  return 0;
}

static int decode_container(decoder_t* d, int is_map, size_t n) {
  if (d->depth >= BROOD_CODEC_MAX_DEPTH) {
    d->err = "nesting deeper than 128 levels";
    return -1;
  }
  if (!lua_checkstack(d->L, 4)) {
    d->err = "Lua stack overflow";
    return -1;
  }
  d->depth++;
  int rc = is_map ? decode_map(d, n) : decode_array(d, n);
  d->depth--;
  return rc;
}

/* float 32 (width 4) or float 64 (width 8) */
static int decode_float(decoder_t* d, int width) {
  if (need(d, width) != 0) return -1;
  uint64_t bits = read_be(d->p, width);
  d->p += width;
  if (width == 4) {
    uint32_t bits32 = (uint32_t)bits;
    float f;
    memcpy(&f, &bits32, 4);
    lua_pushnumber(d->L, (lua_Number)f);
  } else {
    double f;
    memcpy(&f, &bits, 8);
    lua_pushnumber(d->L, (lua_Number)f);
  }
  return 0;
}

static int decode_uint(decoder_t* d, int width) {
  if (need(d, width) != 0) return -1;
  uint64_t u = read_be(d->p, width);
  d->p += width;
  if (u > (uint64_t)INT64_MAX)
    lua_pushnumber(d->L, (lua_Number)u);  /* beyond Lua's integers */
  else
    lua_pushinteger(d->L, (lua_Integer)u);
  return 0;
}

static int decode_int(decoder_t* d, int width) {
  if (need(d, width) != 0) return -1;
  uint64_t u = read_be(d->p, width);
  d->p += width;
  int64_t v;
  if (width == 1) v = (int8_t)u;
  else if (width == 2) v = (int16_t)u;
  else if (width == 4) v = (int32_t)u;
  else memcpy(&v, &u, 8);
  lua_pushinteger(d->L, (lua_Integer)v);
  return 0;
}

static int decode_value(decoder_t* d) {
  lua_State* L = d->L;
  if (need(d, 1) != 0) return -1;
  unsigned char c = *d->p++;
  if (c <= 0x7f) { lua_pushinteger(L, c); return 0; }
  if (c >= 0xe0) { lua_pushinteger(L, (int8_t)c); return 0; }
  if (c >= 0xa0 && c <= 0xbf) return decode_bytes(d, c & 0x1f);
  if (c >= 0x90 && c <= 0x9f) return decode_container(d, 0, c & 0x0f);
  if (c >= 0x80 && c <= 0x8f) return decode_container(d, 1, c & 0x0f);
  int width;
  switch (c) {
    case 0xc0: lua_pushnil(L); return 0;
    case 0xc2: lua_pushboolean(L, 0); return 0;
    case 0xc3: lua_pushboolean(L, 1); return 0;
    case 0xc4: case 0xd9: width = 1; goto bytes;
    case 0xc5: case 0xda: width = 2; goto bytes;
    case 0xc6: case 0xdb: width = 4;
    bytes:
      if (need(d, width) != 0) return -1;
      d->p += width;
      return decode_bytes(d, (size_t)read_be(d->p - width, width));
    case 0xca: return decode_float(d, 4);
    case 0xcb: return decode_float(d, 8);
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
      return decode_uint(d, 1 << (c - 0xcc));
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
      return decode_int(d, 1 << (c - 0xd0));
    case 0xdc: case 0xdd: case 0xde: case 0xdf: {
      width = (c == 0xdc || c == 0xde) ? 2 : 4;
      if (need(d, width) != 0) return -1;
      size_t n = (size_t)read_be(d->p, width);
      d->p += width;
      return decode_container(d, c >= 0xde, n);
    }
    default:
      d->err = (c == 0xc1) ? "invalid MessagePack byte 0xc1"
                           : "MessagePack ext types are not supported";
      return -1;
  }
}

const char* brood__decode(lua_State* L, const char* data, size_t len) {
  decoder_t d;
  d.L = L;
  d.p = (const unsigned char*)data;
  d.end = d.p + len;
  d.depth = 0;
  d.err = NULL;
  int top = lua_gettop(L);
  luaL_checkstack(L, 8, "brood: decoding");
  if (decode_value(&d) != 0) {
    lua_settop(L, top);
    return d.err;
  }
  if (d.p != d.end) {
    lua_settop(L, top);
    return "extra bytes after the MessagePack value";
  }
  return NULL;
}

/* ----- brood.msgpack --------------------------------------------------- */

static int codec_buffer_gc(lua_State* L) {
  brood__buf_free((brood_buf_t*)lua_touserdata(L, 1));
  return 0;
}

/* core.msgpack_encode(v) -> string (raises on a value that cannot be
** encoded: a caller's mistake). The buffer is reused between calls. */
static int codec_encode(lua_State* L) {
  luaL_checkany(L, 1);
  brood_buf_t* b = (brood_buf_t*)lua_touserdata(L, lua_upvalueindex(1));
  b->len = 0;
  const char* err = brood__encode(L, 1, b);
  if (err != NULL) return luaL_argerror(L, 1, err);
  lua_pushlstring(L, b->data, b->len);
  if (b->cap > 1024 * 1024) brood__buf_free(b);  /* do not hoard */
  return 1;
}

/* core.msgpack_decode(s) -> value | nil, msg, "EBADMSG" */
static int codec_decode(lua_State* L) {
  size_t len;
  luaL_checktype(L, 1, LUA_TSTRING);  /* not a number made into a string */
  const char* s = lua_tolstring(L, 1, &len);
  lua_settop(L, 1);
  const char* err = brood__decode(L, s, len);
  if (err != NULL) {
    luaL_pushfail(L);
    lua_pushfstring(L, "brood.msgpack.decode: %s", err);
    lua_pushliteral(L, "EBADMSG");
    return 3;
  }
  return 1;
}

void brood__codec_open(lua_State* L) {
  /* the weak set of tables brood.array marked */
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, ARRAY_MARKS);
  lua_setfield(L, -2, "array_marks");

  brood_buf_t* b = (brood_buf_t*)lua_newuserdatauv(L, sizeof(*b), 0);
  memset(b, 0, sizeof(*b));
  lua_newtable(L);
  lua_pushcfunction(L, codec_buffer_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, codec_encode, 1);
  lua_setfield(L, -2, "msgpack_encode");
  lua_pushcfunction(L, codec_decode);
  lua_setfield(L, -2, "msgpack_decode");
}

/*
** roundtrip.c: a Lua value built from the fuzzer's bytes (nil, booleans,
** integers at every MessagePack width boundary, floats including NaN,
** infinities and -0.0, strings of every length class, arrays and maps
** nested up to and past BROOD_CODEC_MAX_DEPTH), encoded with
** brood__encode and decoded with brood__decode: the result must equal the
** value, integers and floats kept apart (math.type), NaN equal to NaN,
** -0.0 kept. Nesting past the limit must fail to encode, never crash.
*/
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../src/codec.h"
#include "common.h"

static lua_State* L;

typedef struct {
  const uint8_t* p;
  const uint8_t* end;
  int deepest;  /* how deep the tables built go */
  int wide;     /* wide tables and long strings so far: one at most, and
                   only in inputs of a few bytes, so the corpus does not
                   fill with slow descendants of one wide seed */
} src_t;

static unsigned byte(src_t* s) { return s->p < s->end ? *s->p++ : 0; }

static uint64_t u64(src_t* s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | byte(s);
  return v;
}

static const lua_Integer INTS[] = {
    0, 1, -1, 127, 128, -32, -33, -127, -128, -129, 255, 256, 32767, 32768,
    -32768, -32769, 65535, 65536, 2147483647, 2147483648LL, -2147483648LL,
    -2147483649LL, 4294967295LL, 4294967296LL, INT64_MAX, INT64_MIN,
    INT64_MAX - 1, INT64_MIN + 1, 9007199254740993LL};
#define NINTS (sizeof(INTS) / sizeof(INTS[0]))

static const size_t LENS[] = {0, 1, 31, 32, 255, 256, 65535, 65536,
                              32 * 1024 - 1, 32 * 1024, 100000};
#define NLENS (sizeof(LENS) / sizeof(LENS[0]))

static double special_float(unsigned i) {
  switch (i % 12) {
    case 0: return 0.0;
    case 1: return -0.0;
    case 2: return INFINITY;
    case 3: return -INFINITY;
    case 4: return NAN;
    case 5: return -NAN;
    case 6: return 1.0;
    case 7: return 0.5;
    case 8: return 9007199254740992.0;
    case 9: return 1e300;
    case 10: return 4.9e-324;
    default: return -1.5;
  }
}

static void build(src_t* s, int depth);

/* A key: never nil or NaN (Lua refuses them). */
static void build_key(src_t* s) {
  unsigned op = byte(s);
  switch (op % 6) {
    case 0: lua_pushinteger(L, INTS[byte(s) % NINTS]); break;
    case 1: lua_pushinteger(L, (lua_Integer)(int8_t)byte(s)); break;
    case 2: {
      double d = special_float(byte(s));
      if (isnan(d)) d = 2.5;
      lua_pushnumber(L, d);
      break;
    }
    case 3: lua_pushboolean(L, op & 8); break;
    default: {
      char k[16];
      unsigned n = byte(s) % sizeof(k);
      for (unsigned i = 0; i < n; i++) k[i] = (char)byte(s);
      lua_pushlstring(L, k, n);
    }
  }
}

static void build(src_t* s, int depth) {
  if (depth > s->deepest) s->deepest = depth;
  unsigned op = byte(s);
  if (s->p >= s->end && depth > 0) op = 0;  /* out of bytes: a leaf */
  switch (op % 14) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushboolean(L, op & 16); break;
    case 2: lua_pushinteger(L, (lua_Integer)(int8_t)byte(s)); break;
    case 3: lua_pushinteger(L, (lua_Integer)u64(s)); break;
    case 4: lua_pushinteger(L, INTS[byte(s) % NINTS]); break;
    case 5: {
      uint64_t bits = u64(s);
      double d;
      memcpy(&d, &bits, sizeof(d));
      lua_pushnumber(L, d);
      break;
    }
    case 6: lua_pushnumber(L, special_float(byte(s))); break;
    case 7: {
      char str[32];
      unsigned n = byte(s) % sizeof(str);
      for (unsigned i = 0; i < n; i++) str[i] = (char)byte(s);
      lua_pushlstring(L, str, n);
      break;
    }
    case 8: {  /* a string at a length boundary: valid UTF-8 or not */
      size_t n = LENS[byte(s) % NLENS];
      if (n > 256 && s->wide++ > 0) n = 256;
      luaL_Buffer b;
      char* p = luaL_buffinitsize(L, &b, n);
      memset(p, (char)byte(s), n);
      luaL_pushresultsize(&b, n);
      break;
    }
    case 9:
    case 10: {  /* an array: short, or at a width boundary (rarely: the
                   wide ones cost a thousand short inputs) */
      if (depth >= 200) { lua_pushnil(L); break; }
      unsigned sel = byte(s);
      size_t n = (sel & 0xfe) == 0x80 && s->wide++ == 0
                     ? (size_t)(65535 + (sel & 1))
                     : (size_t)(sel % 20);
      lua_createtable(L, (int)n, 0);
      for (size_t i = 1; i <= n; i++) {
        if (i > 20) lua_pushinteger(L, (lua_Integer)i);  /* wide: cheap */
        else build(s, depth + 1);
        lua_rawseti(L, -2, (lua_Integer)i);
      }
      break;
    }
    case 11: {  /* a map: short, or at a width boundary */
      if (depth >= 200) { lua_pushnil(L); break; }
      unsigned sel = byte(s);
      size_t n = sel == 0x80 && s->wide++ == 0 ? (size_t)65536
                 : sel >= 0xf0                    ? (size_t)(15 + sel % 3)
                                                  : (size_t)(sel % 12);
      lua_createtable(L, 0, (int)n);
      for (size_t i = 0; i < n; i++) {
        if (i >= 12) {
          lua_pushinteger(L, -(lua_Integer)i);
          lua_pushboolean(L, 1);
        } else {
          build_key(s);
          build(s, depth + 1);
        }
        lua_rawset(L, -3);
      }
      break;
    }
    case 12: {  /* a chain of one-element tables, maybe past the limit */
      unsigned n = byte(s) % 160;
      if (depth + (int)n > s->deepest) s->deepest = depth + (int)n;
      build(s, depth + (int)n);
      for (unsigned i = 0; i < n; i++) {
        lua_createtable(L, 1, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
      }
      break;
    }
    default: {  /* a sparse array: holes make a map */
      if (depth >= 200) { lua_pushnil(L); break; }
      unsigned n = byte(s) % 8;
      lua_createtable(L, 0, 0);
      for (unsigned i = 0; i < n; i++) {
        build(s, depth + 1);
        lua_rawseti(L, -2, (lua_Integer)(byte(s) % 10) + 1);
      }
    }
  }
}

/* Deep equality, integers and floats apart, NaN == NaN, -0.0 != 0.0. */
static int same(int a, int b) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  int t = lua_type(L, a);
  if (t != lua_type(L, b)) return 0;
  switch (t) {
    case LUA_TNIL: return 1;
    case LUA_TBOOLEAN: return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TNUMBER: {
      if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
      if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
      double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
      if (isnan(x) || isnan(y)) return isnan(x) && isnan(y);
      return x == y && signbit(x) == signbit(y);
    }
    case LUA_TSTRING: {
      size_t n, m;
      const char* x = lua_tolstring(L, a, &n);
      const char* y = lua_tolstring(L, b, &m);
      return n == m && memcmp(x, y, n) == 0;
    }
    case LUA_TTABLE: {
      /* every key of a is in b with the same value, and b has no more */
      size_t na = 0, nb = 0;
      lua_pushnil(L);
      while (lua_next(L, a) != 0) {
        na++;
        lua_pushvalue(L, -2);
        lua_rawget(L, b);
        int ok = same(-2, -1);
        lua_pop(L, 2);
        if (!ok) { lua_pop(L, 1); return 0; }
      }
      lua_pushnil(L);
      while (lua_next(L, b) != 0) { nb++; lua_pop(L, 1); }
      return na == nb;
    }
    default: return 0;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (L == NULL) L = fuzz_state();
  int top = lua_gettop(L);
  src_t s = {data, data + size, 0, size > 8};
  luaL_checkstack(L, 600, "fuzz");
  build(&s, 0);
  brood_buf_t b = {NULL, 0, 0};
  const char* err = brood__encode(L, -1, &b);
  if (err != NULL) {
    if (s.deepest < BROOD_CODEC_MAX_DEPTH) {
      fprintf(stderr, "fuzz: value %d deep does not encode: %s\n",
              s.deepest, err);
      abort();
    }
    if (b.len != 0) fuzz_die(L, "failed encode left bytes");
  } else {
    err = brood__decode(L, b.data, b.len);
    if (err != NULL) {
      fprintf(stderr, "fuzz: encoding does not decode: %s\n", err);
      abort();
    }
    if (!same(-2, -1)) {
      fprintf(stderr, "fuzz: the value decoded differs\n");
      abort();
    }
  }
  brood__buf_free(&b);
  lua_settop(L, top);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}

/*
** decode.c: brood__decode on arbitrary bytes. It must push exactly one
** value or nothing and name why; a value it gives back must encode again
** and decode to a value once more (nothing decoded is unsendable).
*/
#include <stddef.h>
#include <stdint.h>

#include "../src/codec.h"
#include "common.h"

static lua_State* L;

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (L == NULL) L = fuzz_state();
  int top = lua_gettop(L);
  const char* err = brood__decode(L, (const char*)data, size);
  if (err != NULL) {
    if (lua_gettop(L) != top) fuzz_die(L, "failed decode left values");
  } else {
    if (lua_gettop(L) != top + 1) fuzz_die(L, "decode pushed not one value");
    brood_buf_t b = {NULL, 0, 0};
    err = brood__encode(L, -1, &b);
    if (err != NULL) {
      fprintf(stderr, "fuzz: decoded value does not encode: %s\n", err);
      abort();
    }
    err = brood__decode(L, b.data, b.len);
    if (err != NULL) {
      fprintf(stderr, "fuzz: re-encoded value does not decode: %s\n", err);
      abort();
    }
    brood__buf_free(&b);
  }
  lua_settop(L, top);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}

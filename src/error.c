/*
** error.c: operational failures as Lua's `nil, message, code` triple.
** The code is libuv's portable name ("ENOENT"), as in luv and Node.js;
** the Lua layer wraps message and code into a brood.Error with context.
*/
#define _GNU_SOURCE
#include <string.h>

#include "private.h"

/* libuv names the errors it knows; for the others (ENOEXEC...) ask libc,
** so a code is always a name and never "Unknown system error -8". */
const char* brood__err_name(int uverr) {
  const char* name = uv_err_name(uverr);
  if (strncmp(name, "Unknown", 7) == 0 && uverr < 0) {
    const char* libc = strerrorname_np(-uverr);
    if (libc != NULL) return libc;
  }
  return name;
}

static const char* err_text(int uverr) {
  const char* text = uv_strerror(uverr);
  if (strncmp(text, "Unknown", 7) == 0 && uverr < 0) return strerror(-uverr);
  return text;
}

/* [-0, +3] Push nil, "ENOENT: no such file or directory", "ENOENT". */
int brood__push_error(lua_State* L, int uverr) {
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", brood__err_name(uverr), err_text(uverr));
  lua_pushstring(L, brood__err_name(uverr));
  return 3;
}

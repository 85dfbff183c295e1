/*
** error.c: operational failures as Lua's `nil, message, code` triple.
** The code is libuv's portable name ("ENOENT"), as in luv and Node.js;
** the Lua layer wraps message and code into a brood.Error with context.
*/
#define _GNU_SOURCE
#include <string.h>

#include "private.h"

/* libuv names the errors it knows; for the others (ENOEXEC...) ask libc,
** so a code is always a name and never "Unknown system error -8".
** (The _r variants: the plain ones strdup a text for unknown codes.)
** The result lives until the next call: push it at once. */
const char* brood__err_name(int uverr) {
  static char name[64];
  uv_err_name_r(uverr, name, sizeof(name));
  if (strncmp(name, "Unknown", 7) == 0 && uverr < 0) {
    const char* libc = strerrorname_np(-uverr);
    if (libc != NULL) return libc;
  }
  return name;
}

static const char* err_text(int uverr) {
  static char text[128];
  uv_strerror_r(uverr, text, sizeof(text));
  if (strncmp(text, "Unknown", 7) == 0 && uverr < 0) return strerror(-uverr);
  return text;
}

/* [-0, +3] Push nil, "ENOENT: no such file or directory", "ENOENT". */
int brood__push_error(lua_State* L, int uverr) {
  luaL_pushfail(L);
  lua_pushstring(L, brood__err_name(uverr));
  lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), err_text(uverr));
  lua_insert(L, -2);  /* nil, message, code */
  return 3;
}

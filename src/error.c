/*
** error.c: operational failures as Lua's `nil, message, code` triple.
** The code is libuv's portable name ("ENOENT"), as in luv and Node.js;
** the Lua layer wraps message and code into a brood.Error with context.
*/
#include "private.h"

const char* brood__err_name(int uverr) {
  return uv_err_name(uverr);
}

/* [-0, +3] Push nil, "ENOENT: no such file or directory", "ENOENT". */
int brood__push_error(lua_State* L, int uverr) {
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(uverr), uv_strerror(uverr));
  lua_pushstring(L, uv_err_name(uverr));
  return 3;
}

rockspec_format = "3.0"
package = "brood"
version = "scm-1"
source = {
  url = "git+https://example.invalid/brood.git",
}
description = {
  summary = "Node.js-style child processes for Lua 5.4, on libuv",
  detailed = [[
spawn, exec/exec_file with buffered output, synchronous variants, signals
and streams for Lua 5.4, on a small C core over libuv; plus the `brood`
host executable that runs orchestration scripts.
]],
  license = "MIT",
}
-- Offline: Lua itself is the only rock dependency; libuv and msgpack-c
-- are system libraries (Debian: libuv1-dev, libmsgpack-dev).
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  MSGPACK = { header = "msgpack.h" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_C_FLAGS = "$(CFLAGS)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
  },
}
test = {
  type = "command",
  command = ".ci/run",
}

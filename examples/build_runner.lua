-- A parallel build runner: compile a set of C files, a few at a time,
-- with a progress line, and stop at the first failure (the compiles
-- still running are killed, no new one starts). It generates its own
-- small project in a temp dir, builds it, links it and runs the result.
--
--   brood examples/build_runner.lua            build, link, run
--   brood examples/build_runner.lua --broken   one unit does not compile:
--                                              exit 1 with cc's message
--
-- Without a C compiler it "compiles" with sh commands, so it runs anywhere.
local brood = require "brood"

local broken = arg and arg[1] == "--broken"
local UNITS = 8

local function have(program)
  local r = brood.exec_sync("command -v " .. brood.shell_quote(program),
                            {check = false})
  return r.code == 0
end
local cc = have("cc") and "cc" or nil

local dir = brood.exec_sync("mktemp -d"):gsub("\n$", "")
local function path(name) return dir .. "/" .. name end
local function write(name, text)
  local f = assert(io.open(path(name), "w"))
  f:write(text)
  f:close()
end

-- the project: unit k defines unit_k() returning k * k; main adds them up
local sources, main = {}, {"#include <stdio.h>\n"}
for k = 1, UNITS do
  local name = ("unit%d.c"):format(k)
  local body = ("int unit_%d(void) { return %d * %d; }\n"):format(k, k, k)
  if broken and k == 5 then body = "int unit_5(void) { return 5 * ; }\n" end
  write(name, body)
  sources[#sources + 1] = name
  main[#main + 1] = ("int unit_%d(void);\n"):format(k)
end
main[#main + 1] = "int main(void) {\n  int sum = 0;\n"
for k = 1, UNITS do main[#main + 1] = ("  sum += unit_%d();\n"):format(k) end
main[#main + 1] = '  printf("sum of squares 1..%d = %d\\n", ' ..
                  UNITS .. ', sum);\n  return 0;\n}\n'
write("main.c", table.concat(main))
sources[#sources + 1] = "main.c"

-- One compile: argv, no shell. exec_file returns nil, err on a non-zero
-- exit; assert raises that error, and brood.map then cancels the compiles
-- still running (killing them), starts no more, and raises it.
local done = 0
local function compile(src)
  local obj = src:gsub("%.c$", ".o")
  if cc then
    assert(brood.exec_file(cc, {"-c", "-O2", "-Wall", "-o", path(obj),
                                path(src)}, {timeout = 60000}))
  else
    -- no compiler here: check the source has no lone "* ;" and copy it
    assert(brood.exec_file("sh", {"-c", 'if grep -q "\\* ;" "$1"; then ' ..
      'echo "$1: error: expected expression" >&2; exit 1; fi; ' ..
      'cp "$1" "$2"', "sh", path(src), path(obj)}, {timeout = 60000}))
  end
  done = done + 1
  print(("[%d/%d] %s"):format(done, #sources, src))
  return obj
end

-- progress = true draws a progress line on stderr when it is a terminal
local ok, objs = pcall(brood.map, sources, compile,
                       {concurrency = 4, progress = true})

local status = 0
if not ok then
  local err = objs
  io.stderr:write("build failed: ", tostring(err and err.cmd or err), "\n",
                  tostring(err and err.stderr or ""), "\n")
  print("build failed")
  status = 1
elseif cc then
  local argv = {"-o", path("app")}
  for _, o in ipairs(objs) do argv[#argv + 1] = path(o) end
  brood.exec_file_sync(cc, argv)
  io.write(brood.exec_file_sync(path("app")))
  print("build ok")
else
  print(("sum of squares 1..%d = %d"):format(UNITS,
        UNITS * (UNITS + 1) * (2 * UNITS + 1) // 6))
  print("build ok (no C compiler: sources only checked)")
end

brood.exec_file_sync("rm", {"-rf", dir})
os.exit(status)

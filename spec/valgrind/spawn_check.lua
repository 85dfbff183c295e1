-- The spawn engine's main paths, run under valgrind by ctest
-- (valgrind_spawn): launch with pipes, launch failures at each step,
-- kill, exit watching, exec buffering and the sync variants. Plain asserts:
-- busted under valgrind would take minutes.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local brood = require "brood"
local core = require "brood.core"

local c = assert(brood.spawn("/bin/echo", {"hi"}))
assert(c.stdout:read_all() == "hi\n")
assert(c:wait() == 0)

local none, err, code = brood.spawn("no-such-program-anywhere")
assert(none == nil and code == "ENOENT" and err.message:find("no%-such"))
none, err, code = brood.spawn("ls", {}, {cwd = "/no/such/dir"})
assert(none == nil and code == "ENOENT" and err.path == "/no/such/dir")

local sleeper = assert(brood.spawn("sleep", {"10"}))
assert(sleeper:kill("SIGKILL"))
local _, sig = sleeper:wait()
assert(sig == "SIGKILL")
assert(sleeper:kill() == false)

local cat = assert(brood.spawn("cat"))
cat.stdin:close(("x"):rep(100000))
assert(#cat.stdout:read_all() == 100000)
assert(cat:wait() == 0)

local r = assert(brood.exec("echo out; echo err >&2"))
assert(r.stdout == "out\n" and r.stderr == "err\n")
local _, e = brood.exec("yes", {max_buffer = 4096})
assert(e.code == "ERR_CHILD_PROCESS_STDIO_MAXBUFFER" and #e.stdout == 4096)
assert(brood.exec_sync("echo sync") == "sync\n")
local s = brood.spawn_sync("sleep", {"10"}, {timeout = 50})
assert(s.error.code == "ETIMEDOUT" and s.signal == "SIGTERM")

-- handles closed by the last calls finish closing in the next turns
for _ = 1, 100 do
  if core.default_loop:handle_count() == 0 then break end
  brood.sleep(5)
  core.default_loop:run("nowait")
end
assert(core.default_loop:handle_count() == 0)
assert(#core.zombies() == 0)
print("valgrind spawn check: ok")

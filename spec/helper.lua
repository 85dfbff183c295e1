--- Shared by every spec file: load brood from this checkout's build, and
-- after each test prove that nothing leaked: no open brood handle, no fd
-- more than before the test, no zombie child.
--
--   local H = require "spec.helper"
--   describe("...", function() H.guard() ... end)
local M = {}

local build = os.getenv("BROOD_BUILD") or "./build"
package.cpath = build .. "/lib/?.so;" .. package.cpath
M.build = build
M.host = os.getenv("BROOD_HOST") or (build .. "/brood")
M.fixtures = "spec/fixtures"

local brood = require "brood"
local core = require "brood.core"
M.brood, M.core = brood, core
-- the build directory as an absolute path (for scripts run elsewhere)
M.build_abs = build:sub(1, 1) == "/" and build or
              (assert(core.cwd()) .. "/" .. build:gsub("^%./", ""))

-- Is this an AddressSanitizer build? Its host carries the ASan runtime.
do
  local f = assert(io.open(M.host, "rb"))
  M.sanitized = f:read("a"):find("__asan_init", 1, true) ~= nil
  f:close()
end

-- Plain lua5.4 is not instrumented: to load a sanitized brood.core it
-- needs the ASan runtime preloaded ("ASan runtime does not come first"
-- otherwise). Its leaks are not ours to check, and lua5.4 leaves a
-- loop open at exit on purpose, so LeakSanitizer stays off there.
M.lua54_env = {}
if M.sanitized then
  local p = assert(io.popen("gcc -print-file-name=libasan.so"))
  M.lua54_env = {LD_PRELOAD = p:read("l"), ASAN_OPTIONS = "detect_leaks=0"}
  p:close()
end

--- How to start plain lua5.4 with `args`, in any build: returns file,
-- argv for brood.spawn and friends (through env(1) when sanitized, so
-- the pid is still lua5.4's).
function M.lua54(args)
  if not M.sanitized then return "lua5.4", args end
  local argv = {}
  for k, v in pairs(M.lua54_env) do argv[#argv + 1] = k .. "=" .. v end
  table.sort(argv)
  argv[#argv + 1] = "lua5.4"
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return "env", argv
end

--- The same as words for a sh -c command line ("lua5.4" when not
-- sanitized; "env LD_PRELOAD=... ASAN_OPTIONS=... lua5.4" when
-- sanitized), usable after sh's exec or env(1) as well.
function M.lua54_sh()
  if not M.sanitized then return "lua5.4" end
  local words = {}
  for k, v in pairs(M.lua54_env) do
    words[#words + 1] = k .. "='" .. v:gsub("'", "'\\''") .. "'"
  end
  table.sort(words)
  table.insert(words, 1, "env")
  words[#words + 1] = "lua5.4"
  return table.concat(words, " ")
end

-- libuv reserves one fd per loop (its EMFILE fallback, /dev/null) when
-- the loop's first stream opens, and keeps it: open one now, so that a
-- spec's first stream does not look like a leaked fd.
do
  local r, w = assert(core.pipe())
  local h = assert(core.pipe_open(core.default_loop, r))
  h:close()
  core.close_fd(w)
  core.default_loop:run("nowait")
end

--- Run the default loop until pred() is true or ms pass; returns pred().
function M.run_until(pred, ms)
  local deadline = core.hrtime() + (ms or 5000) * 1e6
  while not pred() and core.hrtime() < deadline do
    local _, err = core.default_loop:run("nowait")
    if err ~= nil then error(err, 0) end
    if not pred() then
      -- a short sleep keeps this from spinning a core while children run
      local t = core.timer_new(core.default_loop)
      t:start(2, 0, function() t:close() end)
      local _, err2 = core.default_loop:run("once")
      if err2 ~= nil then error(err2, 0) end
    end
  end
  return pred()
end

local function settle()
  collectgarbage("collect")
  collectgarbage("collect")
  M.run_until(function()
    return core.default_loop:handle_count() == 0 and #core.zombies() == 0
  end, 3000)
end

--- Register the leak checks around each test of the enclosing describe.
function M.guard()
  -- busted gives spec files, not required modules, its functions as
  -- globals; its module table reaches them from here.
  local busted = require "busted"
  local before_each, after_each = busted.before_each, busted.after_each
  local fds_before
  before_each(function()
    settle()
    fds_before = core.fd_count()
  end)
  after_each(function()
    settle()
    local handles = core.default_loop:handle_count()
    local zombies = core.zombies()
    local fds = core.fd_count()
    assert(handles == 0, ("%d brood handle(s) still open"):format(handles))
    assert(#zombies == 0, ("zombie children: %s"):format(
      table.concat(zombies, " ")))
    assert(fds == fds_before, ("fd count %d after the test, %d before")
      :format(fds, fds_before))
  end)
end

--- Is a process alive (and not a zombie)?
function M.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  local state = stat:match("%) (%a)")
  return state ~= nil and state ~= "Z"
end

--- Wait (up to ms) until pid is gone; true if it is.
function M.gone(pid, ms)
  return M.run_until(function() return not M.alive(pid) end, ms or 3000)
end

--- Write a throwaway file; returns its path.
function M.tmpfile(content, mode)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(content or "")
  f:close()
  if mode then os.execute(("chmod %s %s"):format(mode, path)) end
  return path
end


--- fn(...) must raise exactly `msg` (a caller mistake, raised where the
-- function was called: pcall makes that position empty).
function M.raises(msg, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error: " .. msg)
  assert(err == msg, ("expected error %q, got %q"):format(msg, tostring(err)))
end

--- This process has no child at all (no real spawn ran).
function M.no_real_children()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  f = io.open(("/proc/%d/task/%d/children"):format(pid, pid))
  if not f then return true end
  local s = f:read("a")
  f:close()
  return s == ""
end


--- A forked fixture script that greets with "ready": the child, once the
-- greeting has arrived.
function M.fork_ready(script, opts)
  local child = assert(M.brood.fork(script, {}, opts))
  assert(child:recv() == "ready", "the fixture did not say ready")
  return child
end

--- Ask a fixture forked by fork_ready to exit ({op = "exit"}), if still
-- connected; returns child:wait().
function M.finish(child)
  if child.connected then child:send({op = "exit"}) end
  return child:wait()
end

return M

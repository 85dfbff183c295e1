--- The default loop (DESIGN §3): running and stopping it, deferred calls,
-- timers, signal handlers and kill. Tasks and waiting are brood.tasks.
-- @module brood.loop
local core = require "brood.core"
local Error = require "brood.error"
local check = require "brood.check"
local queue = require "brood.queue"

local M = {}

--- The core loop every brood object lives on (brood.sync makes private
-- loops of its own).
local default_loop = core.default_loop
M.default = default_loop

local pack, unpack = table.pack, table.unpack

--- The message handler of tasks and deferred calls: a string gets a
-- traceback, unless it has one already (an error raised again, such as a
-- task's error from task:wait()); error objects travel unchanged.
function M.traceback(e)
  if type(e) == "string" and not e:find("\nstack traceback:", 1, true) then
    return debug.traceback(e, 2)
  end
  return e
end
local traceback = M.traceback

-- Deferred calls: run before the loop next polls, in order. Callbacks
-- given to brood functions run from here, never before the function
-- returns. An error in one ends the loop (brood.run raises it) but the
-- rest of the queue still runs first: the loop finishes its iteration
-- anyway, and a "spawn" event must not arrive after that child's I/O.
local deferred = queue.new()

local function run_deferred()
  while deferred.length > 0 do
    local call = deferred:shift()
    local ok, err = xpcall(call[1], traceback, unpack(call, 2, call.n))
    if not ok then default_loop:fail(err) end
  end
  default_loop:tick(false)
end
default_loop:set_tick(run_deferred)

--- Call fn(...) soon: before the loop polls for I/O again.
function M.defer(fn, ...)
  deferred:push(pack(fn, ...))
  if deferred.length == 1 then default_loop:tick(true) end
end

--- Is the loop running (inside brood.run, or driven by a wait)?
function M.running()
  return default_loop:running()
end

--- Run the loop until nothing referenced is left or stop() is called. A
-- callback's error ends the loop and is raised here.
function M.run()
  if default_loop:running() then
    check.raise("brood.run: the loop is already running")
  end
  local _, err = default_loop:run("default")
  if err ~= nil then error(err, 0) end
end

--- Run the loop once (block for I/O at most once): false when nothing
-- referenced keeps it alive. A callback's error is raised here.
function M.run_once()
  local alive, err = default_loop:run("once")
  if err ~= nil then error(err, 0) end
  return alive
end

--- Make the running brood.run return once the current callback ends.
-- Outside a run it does nothing (a stale stop would make the next run
-- return at once).
function M.stop()
  if default_loop:running() then default_loop:stop() end
end

function M.now() return default_loop:now() end
M.hrtime = core.hrtime

-- ----- timers and signals -------------------------------------------------

-- A timer or a signal handler: a core handle with stop, ref and unref.
local function handle_class(name, what)
  local class = {__name = name}
  class.__index = class
  --- Stop it: it will not fire again. Idempotent.
  function class:stop() self._h:close() end
  --- Let the loop end while it is pending (and back).
  function class:unref() self._h:unref(); return self end
  function class:ref() self._h:ref(); return self end
  return check.methods(class, what, {"stop", "unref", "ref"})
end

local Timer = handle_class("brood.Timer", "timer")

--- A timer on the default loop: fn() after ms milliseconds (a handle
-- that closes itself once fired unless `interval`), then every ms.
-- Below 1 ms is 1 ms, as in Node.js: libuv runs a timer that is due again
-- within the same pass, so a chain of 0 ms timers would never let the
-- loop poll for I/O.
function M.start_timer(ms, fn, interval)
  local h = core.timer_new(default_loop)
  ms = math.max(math.floor(ms), 1)
  h:start(ms, interval and ms or 0, function()
    if not interval then h:close() end
    fn()
  end)
  return h
end

local function new_timer(fname, ms, fn, interval, ...)
  check.ms(fname, 1, ms)
  check.func(fname, 2, fn)
  local args = pack(...)
  local h = M.start_timer(ms, function() fn(unpack(args, 1, args.n)) end,
                          interval)
  return setmetatable({_h = h}, Timer)
end

--- fn(...) once after ms milliseconds; returns a timer with :stop().
function M.set_timeout(ms, fn, ...)
  return new_timer("set_timeout", ms, fn, false, ...)
end

--- fn(...) every ms milliseconds; returns a timer with :stop().
function M.set_interval(ms, fn, ...)
  return new_timer("set_interval", ms, fn, true, ...)
end

local SignalHandler = handle_class("brood.SignalHandler", "handler")

--- fn(signal_name) on each delivery of `sig`; returns a handler with
-- :stop(). While it exists the signal no longer has its default effect.
function M.on_signal(sig, fn)
  local num = check.signal("on_signal", 1, sig)
  check.func("on_signal", 2, fn)
  local h = assert(core.signal_new(default_loop))
  local name = core.signame(num) or num
  local ok, msg, code = h:start(num, function() fn(name) end)
  if not ok then
    h:close()
    return Error.fail(Error.from_core(("on_signal '%s'"):format(name), msg,
                                      code, {syscall = "signal"}))
  end
  return setmetatable({_h = h}, SignalHandler)
end

--- Send sig (default "SIGTERM") to a pid: true | nil, err, code.
function M.kill(pid, sig)
  if math.type(pid) ~= "integer" then
    check.fail("kill", 1, ("integer pid expected, got %s"):format(type(pid)))
  end
  local num = check.signal("kill", 2, sig or "SIGTERM")
  local ok, msg, code = core.kill(pid, num)
  if ok then return true end
  return Error.fail(Error.from_core("kill " .. pid, msg, code,
                                    {syscall = "kill"}))
end

return M

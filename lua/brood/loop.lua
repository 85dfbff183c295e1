--- The loop, deferred work, tasks and waiting (DESIGN §3).
--
-- Waiting operations call `M.await(start)`: inside a task (a coroutine
-- started by `go`) they yield until `start`'s `done` is called; at the top
-- level of a script, when the loop is not running, they drive the loop
-- until then; inside a plain callback they raise, since a callback cannot
-- be suspended.
-- @module brood.loop
local core = require "brood.core"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}
local default_loop = core.default_loop
M.core_loop = default_loop

local pack, unpack = table.pack, table.unpack
local co_running, co_resume, co_yield, co_create, co_status =
  coroutine.running, coroutine.resume, coroutine.yield, coroutine.create,
  coroutine.status

M.CANNOT_WAIT = "brood: cannot wait outside a task (use brood.go)"

-- The message handler of tasks and deferred calls: a string gets a
-- traceback, unless it has one already (an error raised again, such as a
-- task's error from task:wait()); error objects travel unchanged.
local function traceback(e)
  if type(e) == "string" and not e:find("\nstack traceback:", 1, true) then
    return debug.traceback(e, 2)
  end
  return e
end

-- Deferred calls: run before the loop next polls, in order. Callbacks
-- given to brood functions run from here, never before the function
-- returns. An error in one ends the loop (brood.run raises it) but the
-- rest of the queue still runs first: the loop finishes its iteration
-- anyway, and a "spawn" event must not arrive after that child's I/O.
local queue, head, tail = {}, 1, 0

local function flush()
  while head <= tail do
    local item = queue[head]
    queue[head] = nil
    head = head + 1
    local ok, err = xpcall(item[1], traceback, unpack(item, 2, item.n))
    if not ok then default_loop:fail(err) end
  end
  head, tail = 1, 0
  default_loop:tick(false)
end
default_loop:set_tick(flush)

--- Call fn(...) soon: before the loop polls for I/O again.
function M.defer(fn, ...)
  tail = tail + 1
  queue[tail] = pack(fn, ...)
  if tail == head then default_loop:tick(true) end
end

-- ----- tasks ----------------------------------------------------------

local Task = {__name = "brood.Task"}
Task.__index = Task
local tasks = setmetatable({}, {__mode = "k"})  -- coroutine -> task

local function wake(list, ...)
  for i = 1, #list do list[i](...) end
end

-- Resume a task and deal with its end: results to its waiters; an error
-- with no waiter escapes (and so ends the loop, raised from brood.run).
local function step(task, ...)
  local co = task._co
  local ok, err = co_resume(co, ...)
  if not ok then error(err, 0) end  -- a bug in brood itself
  if co_status(co) ~= "dead" then return end
  task.done = true
  local waiters = task._waiters
  task._waiters = nil
  if task._error ~= nil and #waiters == 0 then
    -- Nobody waits yet: the caller of go() may still call task:wait()
    -- (a task can fail before go returns). If nobody has by the time
    -- deferred work runs, the error escapes and ends the loop, as an
    -- unhandled rejection does in Node.js.
    task._unhandled = true
    M.defer(function()
      if task._unhandled then
        task._unhandled = nil
        default_loop:fail(task._error)
      end
    end)
    return
  end
  wake(waiters)
end

local function body(task, fn, ...)
  local r = pack(xpcall(fn, traceback, ...))
  if r[1] then
    task._results = pack(unpack(r, 2, r.n))
  else
    task._error = r[2]
  end
end

--- Start fn(...) as a task; it runs at once until it first waits.
function M.go(fn, ...)
  if type(fn) ~= "function" then
    error(("bad argument #1 to 'go' (function expected, got %s)")
          :format(type(fn)), 2)
  end
  local task = setmetatable({done = false, _waiters = {}}, Task)
  local co = co_create(body)
  task._co = co
  tasks[co] = task
  step(task, task, fn, ...)
  return task
end

--- The running task, or nil outside tasks.
function M.current()
  return tasks[co_running()]
end

--- Can the caller wait here (in a task, or with the loop not running)?
function M.can_wait()
  return tasks[co_running()] ~= nil or not default_loop:running()
end

--- Raise "cannot wait" unless the caller may wait here. Every waiting
-- operation calls it first, so that it raises every time in a plain
-- callback, not only when its result is not there yet. `level` is the
-- waiting operation's level as error() counts it (1: the function that
-- calls must_wait): the error points at that function's caller.
function M.must_wait(level)
  if tasks[co_running()] == nil and default_loop:running() then
    error(M.CANNOT_WAIT, (level or 1) + 2)
  end
end

--- Wait for `start(done)` to call done(...); returns done's arguments.
-- `done` may be called any number of times: only the first call counts.
function M.await(start)
  local task = tasks[co_running()]
  local state, result = "starting", nil
  if task then
    start(function(...)
      if state == "starting" then
        state, result = "done", pack(...)
      elseif state == "waiting" then
        state = "done"
        step(task, ...)
      end
    end)
    if state == "done" then return unpack(result, 1, result.n) end
    state = "waiting"
    return co_yield()
  end
  if default_loop:running() then error(M.CANNOT_WAIT, 3) end
  start(function(...)
    if state ~= "done" then state, result = "done", pack(...) end
  end)
  while state ~= "done" do
    local alive, err = default_loop:run("once")
    if err ~= nil then error(err, 0) end
    if state ~= "done" and not alive then
      error("brood: this wait can never finish: nothing referenced keeps " ..
            "the loop alive", 3)
    end
  end
  return unpack(result, 1, result.n)
end

--- task:wait() -> the task function's results, or raises its error.
function Task:wait()
  check.self(self, Task, "task", "wait")
  M.must_wait(1)
  self._unhandled = nil
  if not self.done then
    M.await(function(done) self._waiters[#self._waiters + 1] = done end)
  end
  if self._error ~= nil then error(self._error, 0) end
  return unpack(self._results, 1, self._results.n)
end

-- ----- running the loop ---------------------------------------------------

--- Run the loop until nothing referenced is left or stop() is called;
-- with fn, first start fn as a task. A callback's or a task's error ends
-- the loop and is raised here.
function M.run(fn)
  if fn ~= nil and type(fn) ~= "function" then
    error(("bad argument #1 to 'run' (function expected, got %s)")
          :format(type(fn)), 2)
  end
  if default_loop:running() then
    error("brood.run: the loop is already running", 2)
  end
  local task = fn and M.go(fn)
  local _, err = default_loop:run("default")
  if err ~= nil then error(err, 0) end
  if task and task.done and task._results then
    return unpack(task._results, 1, task._results.n)
  end
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

local Timer = {__name = "brood.Timer"}
Timer.__index = Timer

--- Stop the timer; it will not fire again. Idempotent.
function Timer:stop()
  check.self(self, Timer, "timer", "stop")
  self._h:close()
end
--- Let the loop end while this timer is pending (and back).
function Timer:unref() self._h:unref(); return self end
function Timer:ref() self._h:ref(); return self end

-- ms must be a finite number >= 0; raises naming fname at `level`.
local function check_ms(fname, ms, level)
  if type(ms) ~= "number" then
    error(("bad argument #1 to '%s' (number expected, got %s)")
          :format(fname, ms == nil and "no value" or type(ms)), level + 1)
  end
  if ms ~= ms or ms < 0 or ms == math.huge then
    error(("bad argument #1 to '%s' (milliseconds >= 0 expected, got %s)")
          :format(fname, tostring(ms)), level + 1)
  end
end

local function new_timer(fname, ms, fn, interval, ...)
  check_ms(fname, ms, 3)
  if type(fn) ~= "function" then
    error(("bad argument #2 to '%s' (function expected, got %s)")
          :format(fname, type(fn)), 3)
  end
  local h = core.timer_new(default_loop)
  local args = pack(...)
  local timer = setmetatable({_h = h}, Timer)
  ms = math.floor(ms)
  h:start(ms, interval and math.max(ms, 1) or 0, function()
    if not interval then h:close() end
    fn(unpack(args, 1, args.n))
  end)
  return timer
end

--- fn(...) once after ms milliseconds; returns a timer with :stop().
function M.set_timeout(ms, fn, ...)
  local timer = new_timer("set_timeout", ms, fn, false, ...)
  return timer  -- not a tail call: errors name the caller's line
end

--- fn(...) every ms milliseconds; returns a timer with :stop().
function M.set_interval(ms, fn, ...)
  local timer = new_timer("set_interval", ms, fn, true, ...)
  return timer  -- not a tail call: errors name the caller's line
end

--- Wait ms milliseconds (a waiting operation).
function M.sleep(ms)
  check_ms("sleep", ms, 2)
  M.must_wait(1)
  M.await(function(done)
    local h = core.timer_new(default_loop)
    h:start(math.floor(ms), 0, function() h:close(); done() end)
  end)
end

--- Resolve a signal name or number, raising with the caller's name.
function M.signum(fname, n, sig)
  local t = type(sig)
  if t ~= "string" and t ~= "number" then
    error(("bad argument #%d to '%s' (signal name or number expected, " ..
           "got %s)"):format(n, fname, sig == nil and "no value" or t), 3)
  end
  local ok, num = pcall(core.signum, sig)
  if not ok then
    error(("bad argument #%d to '%s' (unknown signal '%s')")
          :format(n, fname, tostring(sig)), 3)
  end
  return num
end

local Watcher = {__name = "brood.SignalHandler"}
Watcher.__index = Watcher
function Watcher:stop()
  check.self(self, Watcher, "handler", "stop")
  self._h:close()
end
function Watcher:unref() self._h:unref(); return self end
function Watcher:ref() self._h:ref(); return self end

--- fn(signal_name) on each delivery of `sig`; returns a handler with
-- :stop(). While it exists the signal no longer has its default effect.
function M.on_signal(sig, fn)
  local num = M.signum("on_signal", 1, sig)
  if type(fn) ~= "function" then
    error(("bad argument #2 to 'on_signal' (function expected, got %s)")
          :format(type(fn)), 2)
  end
  local h = assert(core.signal_new(default_loop))
  local name = core.signame(num) or num
  local ok, msg, code = h:start(num, function() fn(name) end)
  if not ok then
    h:close()
    return Error.fail(Error.from_core(("on_signal '%s'"):format(name), msg,
                                      code, {syscall = "signal"}))
  end
  return setmetatable({_h = h}, Watcher)
end

--- Send sig (default "SIGTERM") to a pid: true | nil, err, code.
function M.kill(pid, sig)
  if math.type(pid) ~= "integer" then
    error(("bad argument #1 to 'kill' (integer pid expected, got %s)")
          :format(type(pid)), 2)
  end
  local num = M.signum("kill", 2, sig or "SIGTERM")
  local ok, msg, code = core.kill(pid, num)
  if ok then return true end
  return Error.fail(Error.from_core("kill " .. pid, msg, code,
                                    {syscall = "kill"}))
end

return M

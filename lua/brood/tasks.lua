--- Tasks and waiting (DESIGN §3).
--
-- Waiting operations call `M.await(start)`: inside a task (a coroutine
-- started by `go`) they yield until `start`'s `done` is called; at the top
-- level of a script, when the loop is not running, they drive the loop
-- until then; inside a plain callback they raise, since a callback cannot
-- be suspended.
-- @module brood.tasks
local loop = require "brood.loop"
local check = require "brood.check"

local M = {}

local default_loop = loop.default
local pack, unpack = table.pack, table.unpack
local co_running, co_resume, co_yield, co_create, co_status =
  coroutine.running, coroutine.resume, coroutine.yield, coroutine.create,
  coroutine.status

M.CANNOT_WAIT = "brood: cannot wait outside a task (use brood.go)"

local Task = {__name = "brood.Task"}
Task.__index = Task
M.Task = Task
local tasks = setmetatable({}, {__mode = "k"})  -- coroutine -> task

-- The task failed and nobody waits yet: the caller of go() may still
-- call task:wait() (a task can fail before go returns). If nobody has by
-- the time deferred work runs, the error escapes and ends the loop, as an
-- unhandled rejection does in Node.js.
local function unhandled(task)
  task._unhandled = true
  loop.defer(function()
    if task._unhandled then
      task._unhandled = nil
      default_loop:fail(task._error)
    end
  end)
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
  if task._error ~= nil and #waiters == 0 then return unhandled(task) end
  for i = 1, #waiters do waiters[i]() end
end

local function body(task, fn, ...)
  local r = pack(xpcall(fn, loop.traceback, ...))
  if r[1] then
    task._results = pack(unpack(r, 2, r.n))
  else
    task._error = r[2]
  end
end

--- Start fn(...) as a task; it runs at once until it first waits.
function M.go(fn, ...)
  check.func("go", 1, fn)
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

--- Raise "cannot wait" (at the script's line) unless the caller may wait
-- here. Every waiting operation calls it first, so that it raises every
-- time in a plain callback, not only when its result is not there yet.
function M.must_wait()
  if tasks[co_running()] == nil and default_loop:running() then
    check.raise(M.CANNOT_WAIT)
  end
end

-- Inside a task: yield until done(...) is called (at once if start
-- calls it itself).
local function await_in_task(task, start)
  local state, result = "starting", nil
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

--- Wait for `start(done)` to call done(...); returns done's arguments.
-- `done` may be called any number of times: only the first call counts.
function M.await(start)
  local task = tasks[co_running()]
  if task then return await_in_task(task, start) end
  M.must_wait()
  local result
  start(function(...)
    if result == nil then result = pack(...) end
  end)
  while result == nil do
    if not loop.run_once() and result == nil then
      check.raise("brood: this wait can never finish: nothing referenced " ..
                  "keeps the loop alive")
    end
  end
  return unpack(result, 1, result.n)
end

--- task:wait() -> the task function's results, or raises its error.
function Task:wait()
  M.must_wait()
  self._unhandled = nil
  if not self.done then
    M.await(function(done) self._waiters[#self._waiters + 1] = done end)
  end
  if self._error ~= nil then error(self._error, 0) end
  return unpack(self._results, 1, self._results.n)
end
check.methods(Task, "task", {"wait"})

--- Wait ms milliseconds (a waiting operation).
function M.sleep(ms)
  check.ms("sleep", 1, ms)
  M.must_wait()
  M.await(function(done) loop.start_timer(ms, done) end)
end

--- Run the loop until nothing referenced is left or stop() is called;
-- with fn, first start fn as a task, and return its results. A
-- callback's or a task's error ends the loop and is raised here.
function M.run(fn)
  check.func("run", 1, fn, true)
  if default_loop:running() then
    check.raise("brood.run: the loop is already running")
  end
  local task = fn and M.go(fn)
  loop.run()
  if task and task.done and task._results then
    return unpack(task._results, 1, task._results.n)
  end
end

return M

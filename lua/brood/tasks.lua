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
local Error = require "brood.error"

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

-- What await returns when its `ms` ran out, and what a cancelled task is
-- resumed with: values no caller can produce.
local TIMEDOUT = setmetatable({}, {__name = "brood.TIMEDOUT"})
M.TIMEDOUT = TIMEDOUT
local CANCELLED = setmetatable({}, {__name = "brood.CANCELLED"})

--- The error a cancelled task's wait raises.
function M.cancel_error()
  return Error.new({message = "brood: the task was cancelled",
                    code = "ECANCELED"})
end

--- The error of a wait whose timeout ran out (`what` names the wait).
function M.timeout_error(what, ms)
  return Error.new({message = ("%s timed out after %s ms"):format(what, ms),
                    code = "ETIMEDOUT"})
end

-- A cancel asked for while the task was not waiting: its next wait raises
-- it (before taking anything), and only once.
local function take_cancel(task)
  if task and task._cancel then
    task._cancel = nil
    error(M.cancel_error(), 0)
  end
end

--- Raise "cannot wait" (at the script's line) unless the caller may wait
-- here. Every waiting operation calls it first, so that it raises every
-- time in a plain callback, not only when its result is not there yet.
function M.must_wait()
  local task = tasks[co_running()]
  if task == nil then
    if default_loop:running() then check.raise(M.CANNOT_WAIT) end
  elseif task._cancel then
    take_cancel(task)
  end
end

-- Inside a task: yield until done(...) is called (at once if start
-- calls it itself), `ms` runs out or the task is cancelled.
local function await_in_task(task, start, ms)
  take_cancel(task)
  local state, result, timer = "starting", nil, nil
  local withdraw = start(function(...)
    if state == "starting" then
      state, result = "done", pack(...)
    elseif state == "waiting" then
      state = "done"
      if timer then timer:close() end
      task._interrupt = nil
      step(task, ...)
    end
  end)
  if state == "done" then return unpack(result, 1, result.n) end
  state = "waiting"
  -- end the wait early: withdraw from what we waited for, so that nothing
  -- it delivers later (a chunk, a message) goes to a wait that is over
  local function interrupt(why)
    if state ~= "waiting" then return end
    state = "done"
    if timer and not timer:is_closed() then timer:close() end
    task._interrupt = nil
    if type(withdraw) == "function" then withdraw() end
    if why == CANCELLED then
      loop.defer(step, task, CANCELLED)
    else
      step(task, TIMEDOUT)
    end
  end
  if ms then timer = loop.start_timer(ms, interrupt) end
  task._interrupt = interrupt
  local r = pack(co_yield())
  if r[1] == CANCELLED then error(M.cancel_error(), 0) end
  return unpack(r, 1, r.n)
end

--- Wait for `start(done)` to call done(...); returns done's arguments.
-- `done` may be called any number of times: only the first call counts.
-- `start` may return a function that withdraws the wait (called when it
-- ends early). With `ms`, after ms milliseconds it returns M.TIMEDOUT;
-- in a cancelled task it raises the ECANCELED error.
function M.await(start, ms)
  local task = tasks[co_running()]
  if task then return await_in_task(task, start, ms) end
  M.must_wait()
  local result, timer
  local withdraw = start(function(...)
    if result == nil then result = pack(...) end
  end)
  if result == nil and ms then
    timer = loop.start_timer(ms, function()
      if result == nil then
        result = pack(TIMEDOUT)
        if type(withdraw) == "function" then withdraw() end
      end
    end)
  end
  -- an error from the loop (a callback's, an interrupt) ends the wait:
  -- withdraw it first, so that nothing is delivered to it later
  local ok, alive = true, true
  while result == nil and ok and alive do
    ok, alive = pcall(loop.run_once)
  end
  if timer and not timer:is_closed() then timer:close() end
  if result == nil and type(withdraw) == "function" then withdraw() end
  if not ok then error(alive, 0) end
  if result == nil then
    check.raise("brood: this wait can never finish: nothing referenced " ..
                "keeps the loop alive")
  end
  return unpack(result, 1, result.n)
end

--- await(), joining `list` (an array of callbacks, each called at most
-- once by its owner) until called, and leaving it when the wait ends
-- otherwise (timeout, cancel).
function M.await_listed(list, ms)
  return M.await(function(done)
    list[#list + 1] = done
    return function()
      for i = #list, 1, -1 do
        if list[i] == done then table.remove(list, i) end
      end
    end
  end, ms)
end

--- task:wait(ms?) -> the task function's results, or raises its error;
-- nil, err, "ETIMEDOUT" when ms run out first (the task runs on).
function Task:wait(ms)
  if ms ~= nil then check.ms("wait", 1, ms) end
  M.must_wait()
  if tasks[co_running()] == self then
    check.raise("brood: a task cannot wait for itself")
  end
  self._unhandled = nil
  if not self.done then
    local r = M.await_listed(self._waiters, ms)
    if r == TIMEDOUT then
      return Error.fail(M.timeout_error("task:wait", ms))
    end
  end
  if self._error ~= nil then error(self._error, 0) end
  return unpack(self._results, 1, self._results.n)
end

--- task:cancel(): the task's current (or next) wait raises a brood.Error
-- with code "ECANCELED"; its <close> variables close as that unwinds.
-- Nothing happens to a task that has finished. Returns the task.
function Task:cancel()
  if self.done then return self end
  local interrupt = self._interrupt
  if interrupt then
    interrupt(CANCELLED)
  else
    self._cancel = true
  end
  return self
end
check.methods(Task, "task", {"wait", "cancel"})

--- Wait ms milliseconds (a waiting operation).
function M.sleep(ms)
  check.ms("sleep", 1, ms)
  M.must_wait()
  M.await(function(done)
    local t = loop.start_timer(ms, done)
    return function() if not t:is_closed() then t:close() end end
  end)
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

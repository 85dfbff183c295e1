--- Composing work (DESIGN §10): brood.all, brood.race, brood.map.
-- Each function runs as a task of its own; the first error cancels the
-- others (task:cancel()), and the call returns only once every task it
-- started has ended, so that their <close> children are gone by then.
-- @module brood.compose
local core = require "brood.core"
local loop = require "brood.loop"
local tasks = require "brood.tasks"
local check = require "brood.check"
local progress = require "brood.progress"

local M = {}

local format, pack, unpack = string.format, table.pack, table.unpack

local function functions(fname, fns)
  if type(fns) ~= "table" then
    check.fail(fname, 1, format("table of functions expected, got %s",
      fns == nil and "no value" or type(fns)))
  end
  for i = 1, #fns do
    if type(fns[i]) ~= "function" then
      check.fail(fname, 1, format("fns[%d] must be a function, got %s", i,
                                  type(fns[i])))
    end
  end
  return #fns
end

-- Run `count` jobs as tasks, at most `limit` at once; job i is fn(i).
-- `on_result(i, r)` gets each one's packed results and returns true to
-- stop (then the rest are cancelled). Returns the first error raised
-- (other than a cancellation we caused), or nil. A waiting operation.
local function run_all(count, limit, fn, on_result, on_progress)
  local started, finished, running = 0, 0, {}
  local failure, stopping = nil, false
  local wake  -- the waiter's done, once it waits
  local function stop_others()
    if stopping then return end
    stopping = true
    for _, t in pairs(running) do t:cancel() end
  end
  local launch
  local function ended(i, ok, r)
    running[i] = nil
    finished = finished + 1
    if on_progress then on_progress(finished) end
    if not ok then
      if failure == nil and not stopping then
        failure = r
      end
      stop_others()
    elseif not stopping and on_result(i, r) then
      stop_others()
    end
    if not stopping then launch() end
    if next(running) == nil and (stopping or finished == count) and wake then
      wake()
    end
  end
  function launch()
    while not stopping and started < count and
          started - finished < limit do
      started = started + 1
      local i = started
      local t = tasks.go(function()
        local r = pack(xpcall(fn, loop.traceback, i))
        ended(i, r[1], r[1] and pack(unpack(r, 2, r.n)) or r[2])
      end)
      if not t.done then running[i] = t end
    end
  end
  local ok, err = pcall(tasks.await, function(done)
    launch()
    if next(running) == nil and (stopping or finished == count) then
      return done()
    end
    wake = done
    return stop_others  -- the caller was cancelled: so are its tasks
  end)
  if not ok then error(err, 0) end
  return failure
end

--- brood.all(fns): run each function as a task; an array of their first
-- results. The first error cancels the others and is raised.
function M.all(fns)
  local n = functions("all", fns)
  tasks.must_wait()
  local results = {}
  local failure = run_all(n, math.huge, function(i) return fns[i]() end,
    function(i, r) results[i] = r[1] end)
  if failure ~= nil then error(failure, 0) end
  return results
end

--- brood.race(fns): the results of the first to finish (or its error,
-- raised); the rest are cancelled.
function M.race(fns)
  local n = functions("race", fns)
  if n == 0 then check.fail("race", 1, "at least one function expected") end
  tasks.must_wait()
  local first
  local failure = run_all(n, math.huge, function(i) return fns[i]() end,
    function(_, r) first = r; return true end)
  if first == nil and failure ~= nil then error(failure, 0) end
  return unpack(first, 1, first.n)
end

local MAP_OPTIONS = {concurrency = "number", progress = "boolean"}

--- brood.map(items, fn, opts?): fn(item, i) as tasks, at most
-- opts.concurrency at once (default: the CPU count); the results in
-- input order. The first error cancels the rest and is raised.
function M.map(items, fn, opts)
  if type(items) ~= "table" then
    check.fail("map", 1, format("table expected, got %s",
      items == nil and "no value" or type(items)))
  end
  check.func("map", 2, fn)
  opts = check.options("map", 3, opts, MAP_OPTIONS)
  local limit = opts.concurrency
  if limit == nil then
    limit = math.max(1, core.cpu_count())
  elseif math.type(limit) ~= "integer" and
         (limit ~= limit or limit ~= math.floor(limit)) or limit < 1 then
    check.fail("map", 3, format("option 'concurrency' must be a whole " ..
                                "number >= 1, got %s", tostring(limit)))
  end
  tasks.must_wait()
  local n = #items
  local results = {}
  local line = opts.progress and n > 0 and progress.new(n) or nil
  local ok, failure = pcall(run_all, n, limit,
    function(i) return fn(items[i], i) end,
    function(i, r) results[i] = r[1] end,
    line and function(done) line:update(done) end)
  if line then line:finish() end
  if not ok then error(failure, 0) end
  if failure ~= nil then error(failure, 0) end
  return results
end

return M

--- The process pool (DESIGN §7): brood.pool(module_path, opts) starts
-- workers (brood.fork of a script that calls brood.worker) on demand and
-- feeds them tasks over their IPC channels.
--
-- Built on brood's public API only: fork, the child's send / "message" /
-- "close" / kill / ref / unref / disconnect, set_timeout, hrtime; plus
-- brood.check for argument checks and the loop's await / defer.
--
-- The wire format (docs/wire-format.md, "The pool"): the pool sends
-- `[id, task]`; the worker answers `[0]` once it is ready, then
-- `[id, true, result]` or `[id, false, {message =, traceback =}]` per task.
--
-- The hot path allocates no closure and no table per task of a map: a map
-- reserves a block of ids and sits in the queue as one cursor; a task in
-- flight is two entries of two tables keyed by its id (its owner, its
-- worker); the message sent is one table reused for every send.
-- @module brood.pool
local brood = require "brood"
local core = require "brood.core"
local check = require "brood.check"
local progress = require "brood.progress"
local Error = require "brood.error"
local stdio_channel = require "brood.stdio_channel"
local channel = require "brood.channel"

local M = {}

local tasks, loop = require "brood.tasks", require "brood.loop"
local await, must_wait, can_wait = tasks.await, tasks.must_wait,
                                   tasks.can_wait
local defer = loop.defer

local type, math_type, pcall, hrtime = type, math.type, pcall, brood.hrtime
local format = string.format

-- A worker that dies before it says it is ready is a start failure; after
-- this many in a row the pool stops starting workers and fails what is
-- queued (no crash loop). A later submit tries again.
M.MAX_START_FAILURES = 3
-- A worker asked to stop (recycled, or at close) that has not exited
-- after this many ms is killed.
M.STOP_GRACE = 5000
-- A worker whose channel closed under it (it is exiting, or it broke the
-- wire format) is killed if it has not exited after this many ms.
M.DISCONNECT_GRACE = 1000

local OPTIONS = {
  size = "number", min_size = "number", concurrency = "number",
  max_queue = "number", task_timeout = "number",
  max_tasks_per_worker = "number", retries = "number",
  env = "table", cwd = "string", exec_path = "string", exec_argv = "table",
  kill_signal = "signal", stdio = "string|table",
  launcher = "table|function", remote_command = "table",
}
local MAP_OPTIONS = {progress = "boolean"}
local EVENTS = {worker = true, exit = true, error = true}

local Pool = {__name = "brood.Pool"}
Pool.__index = Pool
M.Pool = Pool

-- ----- argument checks --------------------------------------------------

local function bad(fname, n, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), level + 1)
end

-- check.options, raised at `level` above the caller (not inside brood).
local function options(fname, n, opts, spec, level)
  local ok, r = pcall(check.options, fname, n, opts, spec)
  if not ok then error((tostring(r):gsub("^[^\n]-:%d+: ", "")), level + 1) end
  return r
end

-- A whole number >= lo (math.huge allowed when `huge`); nil stays nil.
local function whole(fname, n, opts, name, lo, huge, level)
  local v = opts[name]
  if v == nil then return nil end
  if huge and v == math.huge then return v end
  if v ~= v or v < lo or v == math.huge or v % 1 ~= 0 then
    bad(fname, n, format("option '%s' must be a whole number >= %d, got %s",
                         name, lo, tostring(v)), level + 1)
  end
  return math.tointeger(v)
end

-- Values the codec can never carry: raise at once (a caller mistake).
local UNSENDABLE = {["function"] = true, thread = true, userdata = true}

local function check_task(fname, what, task, level)
  local t = type(task)
  if UNSENDABLE[t] then
    bad(fname, 1, format("%s cannot be sent to a worker (a %s)", what, t),
        level + 1)
  end
end

-- ----- events (worker, exit, error) ------------------------------------------

local function listen(self, fname, event, fn, once)
  if getmetatable(self) ~= Pool then
    error(format("use pool:%s(), not pool.%s()", fname, fname), 3)
  end
  if type(event) ~= "string" then
    bad(fname, 1, "string expected, got " .. type(event), 3)
  end
  if not EVENTS[event] then
    bad(fname, 1, check.unknown("event", event, EVENTS), 3)
  end
  if type(fn) ~= "function" then
    bad(fname, 2, "function expected, got " .. type(fn), 3)
  end
  local list = self._events[event]
  list[#list + 1] = {fn = fn, once = once}
  return self
end

--- Call fn on every `event`: "worker"(pid), "exit"(pid, code, signal),
-- "error"(err).
function Pool:on(event, fn)
  local r = listen(self, "on", event, fn, false)
  return r  -- not a tail call: errors name the caller's line
end
--- Call fn on the next `event` only.
function Pool:once(event, fn)
  local r = listen(self, "once", event, fn, true)
  return r
end

--- Remove fn from `event` (every listener of it when fn is nil).
function Pool:off(event, fn)
  local list = self._events[event]
  if list == nil then return self end
  for i = #list, 1, -1 do
    if fn == nil or list[i].fn == fn then
      list[i].removed = true
      table.remove(list, i)
    end
  end
  return self
end

function Pool:listener_count(event)
  local list = self._events[event]
  return list and #list or 0
end

-- Events are emitted from deferred work, never inside the call that
-- caused them (submit, map...). An "error" nobody listens to is dropped:
-- the tasks it concerns fail anyway.
local function emit(pool, event, ...)
  local list = pool._events[event]
  if #list == 0 then return end
  local snapshot = table.move(list, 1, #list, 1, {})
  for i = 1, #snapshot do
    local l = snapshot[i]
    if not l.removed then
      if l.once then pool:off(event, l.fn) end
      l.fn(...)
    end
  end
end

local function emit_later(pool, event, ...)
  defer(emit, pool, event, ...)  -- listeners added meanwhile hear it too
end

-- ----- the queue ----------------------------------------------------------
-- A ring of entries, head `_qh` to tail `_qt`: a single task's record
-- {id, task, cb}, a map's cursor (the batch: {tasks, base, next, last}),
-- or a map task going round again {batch, index, id}. `_queued` counts
-- tasks, not entries.

local function push(pool, entry, n)
  local t = pool._qt + 1
  pool._qt = t
  pool._q[t] = entry
  pool._queued = pool._queued + n
end

local function push_front(pool, entry)
  local h = pool._qh - 1
  pool._qh = h
  pool._q[h] = entry
  pool._queued = pool._queued + 1
end

-- The next task: id, task, owner (a record or a batch); nil if none.
local function take(pool)
  local q, h = pool._q, pool._qh
  while h <= pool._qt do
    local e = q[h]
    if e.tasks then  -- a map's cursor
      local i = e.next
      e.next = i + 1
      if i >= e.last then
        q[h] = nil
        pool._qh = h + 1
      end
      pool._queued = pool._queued - 1
      return e.base + i, e.tasks[i], e
    end
    q[h] = nil
    h = h + 1
    pool._qh = h
    if not e.cancelled then
      pool._queued = pool._queued - 1
      local b = e.batch
      if b then return e.id, b.tasks[e.index], b end
      e.sent = true
      return e.id, e.task, e
    end
  end
  pool._qh, pool._qt = 1, 0
  return nil
end

-- ----- delivering results ------------------------------------------------

-- One task of a map is over: its result or its error.
local function batch_done(b, index, err, value)
  if err ~= nil then
    if b.err == nil or index < b.err.index then
      err.index = index
      b.err = err
    end
  else
    b.results[index] = value
  end
  local finished = b.finished + 1
  b.finished = finished
  if b.progress then b.progress:update(finished) end
  if finished == b.last then
    if b.progress then b.progress:finish() end
    local done = b.done
    b.done = nil
    if done then done() end
  end
end

-- The task `id` of `owner` ended: err, or its value.
local function deliver(owner, id, err, value)
  if owner.tasks then
    return batch_done(owner, id - owner.base, err, value)
  end
  local cb = owner.cb
  if cb then
    owner.cb = nil
    cb(err, value)
  end
end

-- Fail a task later (from deferred work): for failures found inside the
-- call that submitted the task, whose callback must not run before it
-- returns.
local function fail_later(pool, owner, id, err)
  pool._failed = pool._failed + 1
  defer(deliver, owner, id, err)
end

local function task_error(wire, w)
  local message, traceback, value = "task failed in the worker", nil, nil
  if type(wire) == "table" then
    message = type(wire.message) == "string" and wire.message or message
    traceback = type(wire.traceback) == "string" and wire.traceback or nil
    value = wire.value
  elseif type(wire) == "string" then
    message = wire
  end
  return Error.new({message = message, code = "ERR_TASK_FAILED",
                    traceback = traceback, value = value, pid = w.pid})
end

-- ----- workers ----------------------------------------------------------

local out = {0, nil}  -- the one message table every send reuses

local function set_ref(w, on)
  if w.reffed ~= on then
    w.reffed = on
    if on then w.child:ref() else w.child:unref() end
  end
end

local arm_timer  -- below

-- Send task `id` to worker w. False if the task cannot be encoded (it
-- is failed, later). On the wire the task goes by its slot on w (a free
-- one of 1..concurrency): the bookkeeping is small arrays, no hash table
-- keyed by ever-growing ids.
local function dispatch(pool, w, id, task, owner)
  local nfree = w.nfree
  local slot = w.free[nfree]
  out[1], out[2] = slot, task
  local ok, e = pcall(w.send, w.child, out)
  out[2] = nil
  if not ok then
    fail_later(pool, owner, id, Error.new({
      message = "pool: cannot send the task to a worker: " ..
                (tostring(e):match("bad argument #%d+ to '[^']*' %((.*)%)$")
                 or tostring(e)),
      code = "EINVAL"}))
    return false
  end
  w.nfree = nfree - 1
  w.owner[slot] = owner
  w.tid[slot] = id
  local n = w.n + 1
  w.n = n
  w.sent = w.sent + 1
  pool._running = pool._running + 1
  if w.sent >= pool._max_tasks then w.open = false end
  if n == 1 and not w.reffed then set_ref(w, true) end
  local timeout = pool._timeout
  if timeout then  -- a starting worker's tasks start again at ready
    local at = hrtime() / 1e6 + timeout
    w.deadline[slot] = at
    if pool._timer == nil then arm_timer(pool, at) end
  end
  return true
end

local start_worker, retire, check_closed, kill_later

-- The worker to take the next task: an idle one, else a new one (below
-- `size`), else (pipelining) the least loaded with room; nil if none.
local function pick(pool)
  local idle = pool._idle
  for i = #idle, 1, -1 do
    local w = idle[i]
    idle[i] = nil
    if w.idle then
      w.idle = false
      return w
    end
  end
  if pool._state == "destroyed" then return nil end
  while pool._live < pool._size - pool._ndown and not pool._broken do
    local w = start_worker(pool)
    if w then return w end
  end
  local c = pool._concurrency
  if c > 1 then
    local best
    for _, w in ipairs(pool._workers) do
      if w.open and w.n < c and (best == nil or w.n < best.n) then best = w end
    end
    return best
  end
  return nil
end

-- Hand queued tasks to workers while there are both.
local function pump(pool)
  while pool._queued > 0 do
    local w = pick(pool)
    if w == nil then return end
    local id, task, owner = take(pool)
    if id == nil then return end
    dispatch(pool, w, id, task, owner)
    if w.open and w.n == 0 then  -- the task could not be sent
      w.idle = true
      pool._idle[#pool._idle + 1] = w
    end
  end
end

-- Worker w has nothing in flight.
local function became_idle(pool, w)
  if w.open then
    if not w.idle then
      w.idle = true
      pool._idle[#pool._idle + 1] = w
    end
    if pool._state == "closing" then check_closed(pool) end
  elseif not w.retiring and w.state == "live" then
    retire(pool, w)  -- max_tasks_per_worker reached
  end
  if not w.retiring or pool._state ~= "closing" then set_ref(w, false) end
end

-- Worker w said it is ready: the task_timeout of the tasks sent to it
-- while it started counts again from now (its start-up is not theirs;
-- a start slower than task_timeout still fails them).
local function ready(pool, w)
  w.ready = true
  pool._start_failures = 0
  pool._broken = false
  if w.slot then pool._slot_failures[w.slot] = 0 end
  local timeout = pool._timeout
  if timeout then
    local at = hrtime() / 1e6 + timeout
    local owners, deadlines = w.owner, w.deadline
    for slot = 1, pool._concurrency do
      if owners[slot] ~= nil then deadlines[slot] = at end
    end
    if pool._timer == nil then arm_timer(pool, at) end
  end
end

-- A message from worker w.
local function on_message(pool, w, msg)
  if type(msg) ~= "table" then return end
  local slot = msg[1]
  local owners = w.owner
  local owner = owners[slot]
  if owner == nil then  -- [0]: ready; else a task that timed out
    if slot == 0 and not w.ready then ready(pool, w) end
    return
  end
  owners[slot] = nil
  local id = w.tid[slot]
  local nfree = w.nfree + 1
  w.nfree = nfree
  w.free[nfree] = slot
  if not w.ready then ready(pool, w) end
  w.n = w.n - 1
  pool._running = pool._running - 1
  -- keep this worker busy first: a callback below may submit more
  if pool._queued > 0 and w.open then
    local nid, task, o = take(pool)
    if nid then dispatch(pool, w, nid, task, o) end
  end
  if w.n == 0 then became_idle(pool, w) end
  if msg[2] == true then
    pool._completed = pool._completed + 1
    return deliver(owner, id, nil, msg[3])
  end
  pool._failed = pool._failed + 1
  return deliver(owner, id, task_error(msg[3], w))
end

-- Take the tasks in flight on worker w off it: {id, owner} pairs in
-- the order they were submitted.
local function take_inflight(pool, w)
  local list = {}
  for slot = 1, pool._concurrency do
    local owner = w.owner[slot]
    if owner ~= nil then
      list[#list + 1] = {w.tid[slot], owner}
      w.owner[slot], w.deadline[slot] = nil, nil
      w.nfree = w.nfree + 1
      w.free[w.nfree] = slot
    end
  end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  pool._running = pool._running - #list
  w.n = w.n - #list
  return list
end

-- Put task `id` of `owner` back at the front of the queue.
local function requeue(pool, id, owner)
  if owner.tasks then
    push_front(pool, {batch = owner, index = id - owner.base, id = id})
  else
    owner.sent = false
    push_front(pool, owner)
  end
end

-- What a launcher (ssh, srun) wrote to its stderr last, as ": text" for
-- an error message ("" when nothing, or no launcher): "Permission denied
-- (publickey)" must reach the user.
local function launcher_said(w)
  local tail = w.stderr_tail
  if tail == nil then return "" end
  tail = tail:gsub("%s+$", ""):gsub("^%s+", "")
  local broke = w.child.channel_error  -- e.g. a login script's output
  if broke then
    tail = tail .. (tail ~= "" and "; " or "") .. broke.message
  end
  if tail == "" then return "" end
  return " (launcher '" .. w.launcher_name .. "'): " .. tail
end

local function died_error(pool, w, code, signal)
  local how = signal and ("was killed by " .. tostring(signal))
              or ("exited with code " .. tostring(code))
  return Error.new({
    message = format("pool: the worker (pid %d) running the task %s%s",
                     w.pid, how, launcher_said(w)),
    code = "ERR_WORKER_DIED", exit_code = code, signal = signal,
    pid = w.pid})
end

-- Fail every queued task with err (the pool gave up starting workers,
-- or was destroyed).
local function fail_queue(pool, err_for)
  while true do
    local id, _, owner = take(pool)
    if id == nil then break end
    fail_later(pool, owner, id, err_for())
  end
end

local function give_up(pool, err)
  pool._broken = true
  local msg = err.message .. format(" (%d times in a row: the pool stops " ..
    "starting workers until the next task is submitted)",
    M.MAX_START_FAILURES)
  fail_queue(pool, function()
    return Error.new({message = msg, code = "ERR_WORKER_DIED",
                      exit_code = err.exit_code, signal = err.signal})
  end)
end

local function start_failed(pool, err, slot)
  emit_later(pool, "error", err)
  if slot == nil then
    pool._start_failures = pool._start_failures + 1
    if pool._start_failures >= M.MAX_START_FAILURES then give_up(pool, err) end
    return
  end
  -- A launcher pool counts per slot: one host that cannot be reached
  -- must not stop the others. Its slot is given up after
  -- MAX_START_FAILURES in a row; the pool gives up when every slot has.
  local n = (pool._slot_failures[slot] or 0) + 1
  pool._slot_failures[slot] = n
  if n >= M.MAX_START_FAILURES and not pool._down[slot] then
    pool._down[slot] = true
    pool._ndown = pool._ndown + 1
    if pool._ndown >= pool._size then give_up(pool, err) end
  end
end

-- Every slot may be tried again (a submit after the pool gave up).
local function reset_failures(pool)
  pool._broken = false
  pool._start_failures = 0
  pool._slot_failures, pool._down, pool._ndown = {}, {}, 0
end

-- Worker w has exited and its channel is closed.
local function on_close(pool, w, code, signal)
  w.state = "dead"
  w.open, w.idle = false, false
  if w.grace then w.grace:stop() end
  local list = pool._workers
  for i = #list, 1, -1 do
    if list[i] == w then table.remove(list, i) break end
  end
  if not w.retiring then pool._live = pool._live - 1 end
  local ids = take_inflight(pool, w)
  if w.destroyed then
    -- destroy() failed its tasks already
  elseif not w.ready and not w.timed_out and not w.retiring then
    -- it never said it was ready: its tasks never ran
    for i = #ids, 1, -1 do requeue(pool, ids[i][1], ids[i][2]) end
    local how = signal and ("was killed by " .. tostring(signal))
                or ("exited with code " .. tostring(code))
    start_failed(pool, Error.new({
      message = format("pool: worker '%s' (pid %d) %s before it called " ..
                       "brood.worker%s", pool._module, w.pid, how,
                       launcher_said(w)),
      code = "ERR_WORKER_START", exit_code = code, signal = signal,
      pid = w.pid}), w.slot)
  else
    if not w.planned or #ids > 0 then pool._restarts = pool._restarts + 1 end
    for _, pair in ipairs(ids) do
      local id, owner = pair[1], pair[2]
      local tries = pool._tries[id] or 0
      if tries < pool._retries then
        pool._tries[id] = tries + 1
        requeue(pool, id, owner)
      else
        pool._tries[id] = nil
        pool._failed = pool._failed + 1
        deliver(owner, id, died_error(pool, w, code, signal))
      end
    end
  end
  emit(pool, "exit", w.pid, code, signal)
  if pool._state == "open" or pool._state == "closing" then
    pump(pool)
    if pool._state == "open" and not pool._broken then
      while pool._live < math.min(pool._min_size,
                                  pool._size - pool._ndown) and
            not pool._broken do
        if start_worker(pool, true) == nil and pool._broken then break end
      end
    end
  end
  check_closed(pool)
end

-- Kill worker w if it has not exited after ms.
function kill_later(w, ms)
  if w.grace then w.grace:stop() end
  w.grace = brood.set_timeout(ms, function()
    w.grace = nil
    if w.state ~= "dead" then w.child:kill("SIGKILL") end
  end)
  w.grace:unref()
end

-- Ask worker w to stop once its tasks are done: its channel is closed,
-- so the worker's loop ends; killed if it lingers.
function retire(pool, w)
  w.retiring, w.planned = true, true
  w.open, w.idle = false, false
  pool._live = pool._live - 1
  if w.child.connected then w.child:disconnect() end
  kill_later(w, M.STOP_GRACE)
end

-- ----- remote workers (launcher) -------------------------------------------
-- A worker behind a launcher (ssh, srun) is the launcher's process, its
-- channel a brood.stdio_channel over the launcher's stdout and stdin; the
-- launcher's stderr is copied to ours, its tail kept for error messages.
-- Workers occupy slots 1..size: the launcher function gets the slot, so a
-- replacement runs where the worker it replaces ran.

-- How much of a launcher's stderr is kept for error messages.
local STDERR_TAIL = 1024

local function free_slot(pool)
  local used = {}
  for _, w in ipairs(pool._workers) do
    if w.slot and not w.retiring then used[w.slot] = true end
  end
  for i = 1, pool._size do
    if not used[i] and not pool._down[i] then return i end
  end
  return nil
end

local function launcher_error(slot, msg)
  return Error.new({message = format("pool: launcher for worker %d: %s",
                                     slot, msg), code = "EINVAL"})
end

-- Start the launcher for `slot`: child, its name | nil, err.
local function launch(pool, slot)
  local prefix = pool._launcher
  if type(prefix) == "function" then
    local ok, r = pcall(prefix, slot)
    if not ok then return nil, launcher_error(slot, tostring(r)) end
    prefix = r
  end
  if type(prefix) ~= "table" then
    return nil, launcher_error(slot, "the launcher function returned a " ..
                               type(prefix) .. ", not an array")
  end
  local argv = {}
  for i = 1, #prefix do
    if type(prefix[i]) ~= "string" then
      return nil, launcher_error(slot, format("launcher[%d] is a %s, not a " ..
                                              "string", i, type(prefix[i])))
    end
    argv[i] = prefix[i]
  end
  local name = #argv > 0 and table.concat(argv, " ") or nil
  for _, v in ipairs(pool._remote_command) do argv[#argv + 1] = v end
  name = name or argv[1]
  local o = pool._fork_opts
  local child, err = brood.spawn(argv[1], table.move(argv, 2, #argv, 1, {}),
    {stdio = {"pipe", "pipe", "pipe"}, env = o.env, extend_env = o.extend_env,
     cwd = o.cwd, kill_signal = o.kill_signal})
  if not child then return nil, err end
  stdio_channel.attach(child, pool._max_message)
  return child, name
end

function start_worker(pool, idle)
  local child, err, slot, name
  if pool._launcher then
    slot = free_slot(pool)
    if slot == nil then return nil end  -- pick() checks there is one
    child, name = launch(pool, slot)
    err = name
  else
    child, err = brood.fork(pool._module, {}, pool._fork_opts)
  end
  if not child then
    start_failed(pool, err, slot)
    return nil
  end
  local w = {child = child, pid = child.pid, send = child.send, n = 0,
             slot = slot,
             sent = 0, ready = false, state = "live", open = true,
             idle = false, reffed = true,
             -- per slot: the task's owner, its id, its deadline
             owner = {}, tid = {}, deadline = {},
             free = {}, nfree = pool._concurrency}  -- the free slots
  for i = 1, pool._concurrency do w.free[i] = pool._concurrency + 1 - i end
  if slot then
    w.launcher_name, w.stderr_tail = name, ""
    child.stderr:on("data", function(chunk)
      io.stderr:write(chunk)
      local tail = w.stderr_tail .. chunk
      if #tail > STDERR_TAIL then tail = tail:sub(-STDERR_TAIL) end
      w.stderr_tail = tail
    end)
  end
  child:on("message", function(msg) on_message(pool, w, msg) end)
  child:on("error", function(e) w.error = e end)
  child:on("disconnect", function()
    -- a channel that closed under a live worker (it is exiting, or sent
    -- a bad frame): it cannot be reached; if it lingers, end it, so that
    -- its tasks fail or retry
    if not w.retiring and w.state == "live" then
      w.open, w.idle = false, false
      kill_later(w, M.DISCONNECT_GRACE)
    end
  end)
  child:on("close", function(code, signal) on_close(pool, w, code, signal) end)
  pool._workers[#pool._workers + 1] = w
  pool._live = pool._live + 1
  emit_later(pool, "worker", w.pid)
  set_ref(w, false)
  if idle then
    w.idle = true
    pool._idle[#pool._idle + 1] = w
  end
  return w
end

-- ----- task_timeout ----------------------------------------------------------
-- One timer for the pool, set for the earliest deadline of a task in
-- flight; unreferenced (busy workers keep the loop alive).

local function on_timer(pool)
  pool._timer = nil
  if pool._state == "destroyed" then return end
  local now = hrtime() / 1e6
  local late, next_at = {}, nil
  for _, w in ipairs(pool._workers) do
    for slot = 1, pool._concurrency do
      local at = w.owner[slot] ~= nil and w.deadline[slot]
      if at and at <= now then late[#late + 1] = {w.tid[slot], w, slot}
      elseif at and (next_at == nil or at < next_at) then next_at = at end
    end
  end
  table.sort(late, function(a, b) return a[1] < b[1] end)
  for _, t in ipairs(late) do
    local id, w, slot = t[1], t[2], t[3]
    local owner = w.owner[slot]
    w.owner[slot], w.deadline[slot] = nil, nil
    w.nfree = w.nfree + 1
    w.free[w.nfree] = slot
    pool._running = pool._running - 1
    w.n = w.n - 1
    if w.state == "live" and not w.timed_out then
      w.timed_out = true
      w.open, w.idle = false, false
      if not w.retiring then
        w.retiring = true  -- out of `size`: its replacement may start
        pool._live = pool._live - 1
      end
      w.child:kill("SIGKILL")
    end
    pool._failed = pool._failed + 1
    deliver(owner, id, Error.new({
      message = format("pool: the task timed out after %s ms (its worker, " ..
                       "pid %d, was killed)", tostring(pool._timeout), w.pid),
      code = "ETIMEDOUT", timed_out = true, pid = w.pid}))
  end
  if next_at then arm_timer(pool, next_at) end
  pump(pool)
end

function arm_timer(pool, at)
  local ms = math.max(0, math.ceil(at - hrtime() / 1e6))
  pool._timer = brood.set_timeout(ms, on_timer, pool)
  pool._timer:unref()
end

-- ----- closing ----------------------------------------------------------

function check_closed(pool)
  if pool._state ~= "closing" then return end
  if pool._queued > 0 or pool._running > 0 then return end
  for _, w in ipairs(pool._workers) do
    if not w.retiring then retire(pool, w) end
    set_ref(w, true)  -- close() waits for the exits
  end
  if #pool._workers == 0 then
    pool._state = "closed"
    local waiters = pool._close_waiters
    pool._close_waiters = {}
    for _, done in ipairs(waiters) do done(true) end
  end
end

local function closed_error()
  return Error.new({message = "pool: the pool is closed",
                    code = "ERR_POOL_CLOSED"})
end

local function queue_full_error(pool)
  return Error.new({
    message = format("pool: the queue is full (max_queue = %s)",
                     tostring(pool._max_queue)),
    code = "ERR_POOL_QUEUE_FULL"})
end

-- Could a task be handed to a worker right now?
local function has_room(pool)
  if pool._queued > 0 or pool._state == "destroyed" then return false end
  for _, w in ipairs(pool._idle) do if w.idle then return true end end
  if pool._live < pool._size - pool._ndown and not pool._broken then
    return true
  end
  if pool._concurrency > 1 then
    for _, w in ipairs(pool._workers) do
      if w.open and w.n < pool._concurrency then return true end
    end
  end
  return false
end

-- nil if a task may be submitted now, else the error that refuses it.
local function refusal(pool)
  if pool._state ~= "open" then return closed_error() end
  if pool._queued >= pool._max_queue and not has_room(pool) then
    return queue_full_error(pool)
  end
  return nil
end

local function new_id(pool, n)
  local base = pool._next_id
  pool._next_id = base + n
  return base + 1
end

local function enqueue(pool, rec)
  if pool._broken then reset_failures(pool) end
  rec.id = new_id(pool, 1)
  push(pool, rec, 1)
  pump(pool)
end

-- ----- the public methods ---------------------------------------------------

local function self_check(self, method)
  if getmetatable(self) ~= Pool then
    error(format("use pool:%s(), not pool.%s()", method, method), 3)
  end
end

--- pool:submit(task, cb): run task on a worker; cb(err, result) later.
-- Returns true, or false when the task was refused (closed pool, full
-- queue: cb gets the error on the next turn).
function Pool:submit(task, cb)
  self_check(self, "submit")
  check_task("submit", "the task", task, 2)
  if type(cb) ~= "function" then
    bad("submit", 2, "function expected, got " ..
        (cb == nil and "no value" or type(cb)), 2)
  end
  local err = refusal(self)
  if err then
    defer(cb, err)
    return false
  end
  enqueue(self, {task = task, cb = cb})
  return true
end

--- pool:run(task) (waiting) -> result | nil, err, code
function Pool:run(task)
  self_check(self, "run")
  check_task("run", "the task", task, 2)
  must_wait(1)
  local err = refusal(self)
  if err then return nil, err, err.code end
  local rec = {task = task}
  local r = table.pack(pcall(await, function(done)
    rec.cb = function(e, value)
      if e ~= nil then return done(nil, e, e.code) end
      return done(value)
    end
    enqueue(self, rec)
  end))
  if not r[1] then
    -- the waiting task was cancelled: a queued task is dropped, one in
    -- flight runs on but nobody gets its result
    rec.cb = nil
    if rec.id and not rec.sent and not rec.cancelled and
       self._state ~= "destroyed" then
      rec.cancelled = true
      self._queued = self._queued - 1
    end
    error(r[2], 0)
  end
  return table.unpack(r, 2, r.n)
end

--- pool:map(tasks, opts?) (waiting) -> the results in input order, or
-- nil, err, code for the first task (by position) that failed, with
-- err.index. Every task runs to completion either way.
function Pool:map(tasks, opts)
  self_check(self, "map")
  if type(tasks) ~= "table" then
    bad("map", 1, "table expected, got " ..
        (tasks == nil and "no value" or type(tasks)), 2)
  end
  opts = options("map", 2, opts, MAP_OPTIONS, 2)
  local n = tasks.n
  if math_type(n) ~= "integer" or n < 0 then n = #tasks end
  for i = 1, n do check_task("map", format("tasks[%d]", i), tasks[i], 2) end
  must_wait(1)
  local err = self._state ~= "open" and closed_error() or nil
  if err then return nil, err, err.code end
  if n == 0 then return {} end
  if self._broken then reset_failures(self) end
  local b = {tasks = tasks, next = 1, last = n, finished = 0, results = {}}
  b.base = new_id(self, n) - 1
  if opts.progress then b.progress = progress.new(n) end
  local r = table.pack(pcall(await, function(done)
    b.done = done
    push(self, b, n)
    pump(self)
  end))
  if not r[1] then
    -- cancelled: the tasks not yet started are dropped
    b.done = nil
    if b.next <= b.last then
      self._queued = self._queued - (b.last - b.next + 1)
      b.last = b.next - 1
    end
    if b.progress then b.progress:finish() end
    error(r[2], 0)
  end
  if b.err then return nil, b.err, b.err.code end
  return b.results
end

--- pool:close() (waiting): no new tasks; finish the queued ones, then
-- stop the workers. Returns true.
function Pool:close()
  self_check(self, "close")
  must_wait(1)
  if self._state == "destroyed" or self._state == "closed" then return true end
  self._state = "closing"
  return await(function(done)
    self._close_waiters[#self._close_waiters + 1] = done
    check_closed(self)
  end)
end

--- pool:destroy(): kill the workers and fail what is pending with
-- ECANCELED (later); finished results stay delivered.
function Pool:destroy()
  self_check(self, "destroy")
  if self._state == "destroyed" then return end
  self._state = "destroyed"
  local function cancelled()
    return Error.new({message = "pool: destroyed before the task finished",
                      code = "ECANCELED"})
  end
  -- in flight first, then queued (ids ascending within each)
  local inflight = {}
  for _, w in ipairs(self._workers) do
    local list = take_inflight(self, w)
    table.move(list, 1, #list, #inflight + 1, inflight)
  end
  table.sort(inflight, function(a, b) return a[1] < b[1] end)
  for _, pair in ipairs(inflight) do
    fail_later(self, pair[2], pair[1], cancelled())
  end
  fail_queue(self, cancelled)
  if self._timer then self._timer:stop() self._timer = nil end
  for _, w in ipairs(self._workers) do
    w.destroyed = true
    w.open, w.idle, w.n = false, false, 0
    if not w.retiring then
      w.retiring = true
      self._live = self._live - 1
    end
    w.child:kill("SIGKILL")
  end
  self._idle = {}
  local waiters = self._close_waiters
  self._close_waiters = {}
  for _, done in ipairs(waiters) do defer(done, true) end
end

--- pool:stats() -> {size, idle, busy, queued, running, completed, failed,
-- restarts}
function Pool:stats()
  self_check(self, "stats")
  local idle, busy = 0, 0
  for _, w in ipairs(self._workers) do
    if not w.retiring then
      if w.n > 0 then busy = busy + 1 else idle = idle + 1 end
    end
  end
  return {size = self._live, idle = idle, busy = busy, queued = self._queued,
          running = self._running, completed = self._completed,
          failed = self._failed, restarts = self._restarts}
end

--- The workers' pids (live ones, in start order).
function Pool:pids()
  self_check(self, "pids")
  local pids = {}
  for _, w in ipairs(self._workers) do
    if not w.retiring then pids[#pids + 1] = w.pid end
  end
  return pids
end

-- `local pool <close> = brood.pool(...)`: close (finish the queued work)
-- when the scope ends normally and waiting is possible; destroy when an
-- error unwinds it or waiting is not possible.
Pool.__close = function(self, err)
  if self._state == "destroyed" or self._state == "closed" then return end
  if err == nil and can_wait() then self:close() else self:destroy() end
end

-- ----- brood.pool -----------------------------------------------------------

-- opts[name] must be an array of strings (its elements copied).
local function strings(name, t, level)
  for k, v in pairs(t) do
    if math_type(k) ~= "integer" or k < 1 or k > #t then
      bad("pool", 2, format("option '%s' must be an array of strings", name),
          level + 1)
    end
    if type(v) ~= "string" or v:find("\0", 1, true) then
      bad("pool", 2, format("option '%s': element %d must be a string " ..
                            "without NUL bytes, got %s", name, k,
                            type(v) == "string" and "NUL" or type(v)),
          level + 1)
    end
  end
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- brood.pool(module_path, opts?) -> pool | nil, err, code
-- The pool's numbers, checked: size, min_size, concurrency, max_queue,
-- max_tasks, retries, timeout.
local function numbers(opts)
  local n = {}
  n.size = whole("pool", 2, opts, "size", 1, false, 3) or
           math.max(1, core.cpu_count())
  n.min_size = whole("pool", 2, opts, "min_size", 0, false, 3) or 0
  if n.min_size > n.size then
    bad("pool", 2, format("option 'min_size' (%d) must not be more than " ..
                          "'size' (%d)", n.min_size, n.size), 3)
  end
  n.concurrency = whole("pool", 2, opts, "concurrency", 1, false, 3) or 1
  n.max_queue = whole("pool", 2, opts, "max_queue", 0, true, 3) or math.huge
  n.max_tasks = whole("pool", 2, opts, "max_tasks_per_worker", 1, true, 3) or
                math.huge
  n.retries = whole("pool", 2, opts, "retries", 0, false, 3) or 0
  local timeout = opts.task_timeout
  if timeout ~= nil and (timeout ~= timeout or timeout < 0 or
                         timeout == math.huge) then
    bad("pool", 2, format("option 'task_timeout' must be a number of ms >= " ..
                          "0, got %s", tostring(timeout)), 3)
  end
  if timeout ~= 0 then n.timeout = timeout end
  return n
end

-- launcher and remote_command, checked: the launcher (or nil) and the
-- command it runs.
local function remote(module_path, opts)
  local launcher = opts.launcher
  if launcher == nil then
    if opts.remote_command ~= nil then
      bad("pool", 2, "option 'remote_command' needs 'launcher'", 3)
    end
    return nil, nil
  end
  for _, name in ipairs({"stdio", "exec_path", "exec_argv"}) do
    if opts[name] ~= nil then
      bad("pool", 2, format("option '%s' does not go with 'launcher' " ..
                            "(the launcher's stdio is the channel; use " ..
                            "'remote_command')", name), 3)
    end
  end
  if type(launcher) == "table" then strings("launcher", launcher, 3) end
  local command = opts.remote_command or
                  {"brood", "--channel=stdio", module_path}
  strings("remote_command", command, 3)
  if #command == 0 then
    bad("pool", 2, "option 'remote_command' must not be empty", 3)
  end
  return launcher, command
end

-- A local worker script that is not there: the ENOENT error, else nil.
local function missing_script(module_path, opts)
  if opts.exec_path ~= nil or opts.launcher ~= nil then return nil end
  local path = module_path
  if opts.cwd and opts.cwd ~= "" and path:sub(1, 1) ~= "/" then
    path = opts.cwd .. "/" .. path
  end
  if exists(path) then return nil end
  return Error.new({
    message = format("pool '%s': ENOENT: no such file or directory",
                     module_path),
    code = "ENOENT", errno = 2, path = path})
end

function M.pool(module_path, opts)
  if type(module_path) ~= "string" then
    bad("pool", 1, "module_path must be a string, got " ..
        (module_path == nil and "no value" or type(module_path)), 2)
  end
  if module_path:find("\0", 1, true) then
    bad("pool", 1, "module_path must not contain NUL bytes", 2)
  end
  opts = options("pool", 2, opts, OPTIONS, 2)
  local n = numbers(opts)
  local launcher, remote_command = remote(module_path, opts)
  local missing = missing_script(module_path, opts)
  if missing then return Error.fail(missing) end
  -- Workers spin as any brood loop does: the loop spins only while a
  -- CPU is free for the peer, so idle workers do not slow the parent.
  local env = nil
  if opts.env ~= nil then
    env = {}
    for k, v in pairs(opts.env) do env[k] = v end
  end
  local pool = setmetatable({
    _module = module_path,
    _fork_opts = {env = env, cwd = opts.cwd, exec_path = opts.exec_path,
                  exec_argv = opts.exec_argv, kill_signal = opts.kill_signal,
                  stdio = opts.stdio},
    _size = n.size, _min_size = n.min_size, _concurrency = n.concurrency,
    _max_queue = n.max_queue, _max_tasks = n.max_tasks, _retries = n.retries,
    _timeout = n.timeout,
    _state = "open",
    _q = {}, _qh = 1, _qt = 0, _queued = 0,
    _tries = {},
    _next_id = 0, _running = 0,
    _workers = {}, _idle = {}, _live = 0,
    _completed = 0, _failed = 0, _restarts = 0,
    _start_failures = 0, _broken = false,
    _slot_failures = {}, _down = {}, _ndown = 0,
    _launcher = launcher, _remote_command = remote_command,
    _max_message = channel.DEFAULT_MAX_MESSAGE_SIZE,
    _close_waiters = {},
    _events = {worker = {}, exit = {}, error = {}},
  }, Pool)
  for _ = 1, n.min_size do
    if start_worker(pool, true) == nil and pool._broken then break end
  end
  return pool
end

return M

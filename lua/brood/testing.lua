--- A fake spawner for users' specs (DESIGN §11): scripted programs
-- instead of real ones, recorded calls, and a virtual clock.
--
-- The fake takes the place of `brood.process.spawn_child`, the one seam
-- every asynchronous launch goes through (spawn, exec, exec_file, fork),
-- of `brood.sync._run`, which runs each sync call's child to completion,
-- and of exec's supervisor clocks. Its children are real brood.Child
-- objects over fake stream handles, so events, streams, wait and kill
-- behave as they do for a real child; only the process is scripted.
-- @module brood.testing
local core = require "brood.core"
local loop = require "brood.loop"
local check = require "brood.check"
local Error = require "brood.error"
local process = require "brood.process"
local stream = require "brood.stream"
local exec = require "brood.exec"
local sync = require "brood.sync"

local M = {}

local defer = loop.defer
local active  -- the fake in place, if any

-- ----- the virtual clock -----------------------------------------------

local Clock = {}
Clock.__index = Clock

local function new_clock()
  return setmetatable({now = 0, timers = {}, seq = 0}, Clock)
end

-- A one-shot timer at now + ms, with the core timer's is_closed/close.
function Clock:timer(ms, fn)
  self.seq = self.seq + 1
  local t = {due = self.now + math.max(ms or 0, 0), seq = self.seq, fn = fn,
             closed = false}
  function t.is_closed() return t.closed end
  function t.close() t.closed = true end
  self.timers[#self.timers + 1] = t
  return t
end

-- The earliest live timer due by `limit` (nil: any), in setting order
-- among equals.
function Clock:next_due(limit)
  local best
  for i = #self.timers, 1, -1 do
    local t = self.timers[i]
    if t.closed then
      table.remove(self.timers, i)
    elseif (limit == nil or t.due <= limit) and
           (best == nil or t.due < best.due or
            (t.due == best.due and t.seq < best.seq)) then
      best = t
    end
  end
  return best
end

function Clock:advance_to(target)
  while true do
    local t = self:next_due(target)
    if t == nil then break end
    t.closed = true
    if t.due > self.now then self.now = t.due end
    t.fn()
  end
  if target > self.now then self.now = target end
end

-- ----- fake stream handles ---------------------------------------------
-- What brood.stream asks of a core pipe handle, in memory. Readable: the
-- scripted output, then EOF. Writable: what the script wrote (the
-- child's stdin) is kept in `written`.

local Handle = {}
Handle.__index = Handle

local function new_handle()
  return setmetatable({chunks = {}, eof = false, closed = false,
                       written = {}}, Handle)
end

function Handle:_flush()
  local cb = self.on_read
  while cb and not self.closed and self.on_read == cb do
    local chunk = table.remove(self.chunks, 1)
    if chunk ~= nil then
      cb(chunk)
    elseif self.eof and not self.eof_sent then
      self.eof_sent = true
      self.on_read = nil
      cb(nil)
    else
      break
    end
  end
end

function Handle:push(chunk)
  if chunk ~= "" then self.chunks[#self.chunks + 1] = chunk end
  self:_flush()
end

function Handle:finish()
  self.eof = true
  self:_flush()
end

function Handle:read_start(cb)
  self.on_read = cb
  defer(function() self:_flush() end)
  return true
end
function Handle:read_stop() self.on_read = nil return true end
function Handle:write(data, cb)
  self.written[#self.written + 1] = data
  if cb then defer(cb, nil) end
  return true
end
function Handle:write_queue_size() return 0 end
function Handle:shutdown(cb)
  self.shut = true
  if cb then defer(cb, nil) end
  return true
end
function Handle:close(cb)
  self.closed = true
  if cb then defer(cb) end
end
function Handle:is_closed() return self.closed end
function Handle:fileno() return nil, "EBADF" end
function Handle:ref() end
function Handle:unref() end

-- ----- fake processes --------------------------------------------------

-- The fake's stand-in for core's process handle: kill ends the script.
local Proc = {}
Proc.__index = Proc

function Proc:kill(num)
  if self.exited then return nil, "no such process", "ESRCH" end
  -- it dies soon, as a real one would: never inside the kill call
  if num ~= 0 and not self.dying then
    self.dying = true
    defer(self.die, num)
  end
  return true
end
Proc.kill_tree = Proc.kill
function Proc:ref() end
function Proc:unref() end

local function signum(fname, sig)
  if sig == nil then return nil end
  return check.signal(fname, 1, sig)
end

local function matches(rule, file, args)
  if type(rule.program) == "function" then
    if not rule.program(file, args) then return false end
  elseif not file:find("^" .. rule.program .. "$") then
    return false
  end
  if rule.args == nil then return true end
  if #rule.args ~= #args then return false end
  for i = 1, #args do
    if rule.args[i] ~= args[i] then return false end
  end
  return true
end

local function enoent(file, args)
  return Error.fail(Error.new({
    message = ("spawn '%s': no such file or directory (ENOENT)"):format(file),
    code = "ENOENT", errno = -2, syscall = "spawn " .. file, path = file,
    spawnargs = table.move(args, 1, #args, 1, {}),
  }))
end

local Fake = {}
Fake.__index = Fake

-- Keep the real loop turning while a scripted child waits on the virtual
-- clock, and jump the clock to the next due event when the loop gets
-- there: a waiting script sees its children finish (or time out) in no
-- real time.
function Fake:_schedule()
  local want = self.live > 0 and self.clock:next_due() ~= nil and
               not self.restored
  if want and not self.pump then
    local t = core.timer_new(loop.default)
    self.pump = t
    t:start(0, 0, function()
      -- after the work queued already (a task resumed, output delivered)
      defer(function()
        t:close()
        self.pump = nil
        local due = self.clock:next_due()
        if due and not self.restored then self.clock:advance_to(due.due) end
        self:_schedule()
      end)
    end)
  elseif not want and self.pump then
    self.pump:close()
    self.pump = nil
  end
end

--- Script a program: `program` a Lua pattern matched against the whole
-- file name (for exec, the whole command line) or a function(file, args)
-- -> true; `args` the exact argument list or nil for any; `script`
-- {stdout, stderr, code, signal, delay}. Later rules win.
function Fake:on(program, args, script)
  if type(program) ~= "string" and type(program) ~= "function" then
    check.fail("on", 1, "string or function expected, got " .. type(program))
  end
  if args ~= nil and type(args) ~= "table" then
    check.fail("on", 2, "table expected, got " .. type(args))
  end
  script = script or {}
  check.options("on", 3, script, {stdout = "string", stderr = "string",
    code = "integer", signal = "signal", delay = "number"})
  table.insert(self.rules, 1, {program = program, args = args,
                               script = script})
  return self
end

--- Move the virtual clock by ms, firing what falls due in order.
function Fake:advance(ms)
  check.count("advance", 1, ms, "ms")
  self.clock:advance_to(self.clock.now + ms)
  self:_schedule()
  return self.clock.now
end

--- The virtual clock's time in ms since fake().
function Fake:now() return self.clock.now end

--- Put the real spawner back. Scripted children still alive are
-- killed (SIGKILL) so nothing waits for them forever.
function Fake:restore()
  if self.restored then return end
  for proc in pairs(self.procs) do
    if not proc.exited then proc.die(9) end
  end
  self.restored = true
  self:_schedule()
  process.spawn_child = self.saved.spawn_child
  exec.new_supervisor = self.saved.new_supervisor
  sync._run = self.saved.sync_run
  if active == self then active = nil end
end

-- One scripted child: a real Child over fake handles.
function Fake:_spawn(fname, n, file, args, opts, before_launch)
  local spec, policy = process.prepare(fname, file, args, opts, n, true)
  if before_launch then
    local ok, err, code = before_launch(spec, policy)
    if not ok then return nil, err, code end
  end
  local call = {file = file, args = table.move(args, 1, #args, 1, {}),
                opts = opts}
  self.calls[#self.calls + 1] = call
  local rule
  for _, r in ipairs(self.rules) do
    if matches(r, file, args) then rule = r break end
  end
  if rule == nil then return enoent(file, args) end
  local script = rule.script
  self.next_pid = self.next_pid + 1
  local child = setmetatable({
    killed = false, connected = false, stdio = {},
    _open_streams = 0, _close_waiters = {}, _handed_in = {},
  }, process.Child)
  local proc = setmetatable({}, Proc)
  local started = self.clock.now
  self.procs[proc] = true
  self.live = self.live + 1
  child.spawnfile, child.spawnargs = policy.spawnfile, policy.spawnargs
  child._kill_signal, child._kill_grace = policy.kill_signal, policy.kill_grace
  child._proc, child.pid = proc, self.next_pid
  call.pid, call.child = child.pid, child
  -- the streams: fds 0-2 that are pipes; stderr into stdout when merged
  local handles = {}
  for i, e in ipairs(policy.stdio) do
    if e == "pipe" or e == "duplex" then
      local h = new_handle()
      handles[i] = h
      child:_add_stream(i, stream.new(h, i ~= 1 or e == "duplex",
                                      i == 1 or e == "duplex"))
    end
  end
  child.stdin, child.stdout, child.stderr =
    child.stdio[1] or nil, child.stdio[2] or nil, child.stdio[3] or nil
  local out = handles[2]
  local err_h = policy.stdio[3] == process.SAME_AS_STDOUT and out or
                handles[3]
  call.stdin = function()
    return handles[1] and table.concat(handles[1].written) or ""
  end
  local exit_timer, timeout_timer, output_sent
  local function output()
    if output_sent then return end
    output_sent = true
    if out and script.stdout then out:push(script.stdout) end
    if err_h and script.stderr then err_h:push(script.stderr) end
  end
  function proc.die(num)
    if proc.exited then return end
    proc.exited = true
    output()
    self.live = self.live - 1
    if exit_timer then exit_timer.close() end
    if timeout_timer then timeout_timer.close() end
    for _, h in pairs(handles) do h:finish() end
    local code = num == nil and (script.code or 0) or nil
    child:_on_exit(code, num, 0, 0, 0, self.clock.now - started)
    self:_schedule()
  end
  -- output at once (the next turn of the loop), the exit after delay
  defer(output)
  local sig = signum("on", script.signal)
  exit_timer = self.clock:timer(script.delay or 0, function()
    exit_timer = nil
    proc.die(sig)
  end)
  if policy.timeout and policy.timeout > 0 then
    timeout_timer = self.clock:timer(policy.timeout, function()
      timeout_timer = nil
      if child:_kill_tree(child._kill_signal) then child.timed_out = true end
    end)
  end
  defer(function() child:emit("spawn") end)
  self:_schedule()
  return child
end

-- exec's clocks (timeout, idle_timeout, force_kill_after) run on the
-- virtual clock while the fake is in place.
function Fake:_supervisor(...)
  local sup = self.saved.new_supervisor(...)
  local clock = self.clock
  function sup.start_timer(s, name, ms, fn)
    s.timers[name] = clock:timer(ms, function()
      s.timers[name] = nil
      fn()
    end)
    self:_schedule()
  end
  return sup
end

-- The first rule matching file/args, or nil.
function Fake:_rule(file, args)
  for _, r in ipairs(self.rules) do
    if matches(r, file, args) then return r end
  end
end

-- One sync call's child (spawn_sync, exec_sync, exec_file_sync), run to
-- completion at once: the options are checked as for a real run, the
-- output goes through exec's supervisor (so max_buffer cuts and kills as
-- real), and the clock moves to the exit, or to the timeout or
-- idle_timeout if that comes first. Returns the run record as sync's own
-- run does, or nil, err, code.
function Fake:_run_sync(fname, n, file, args, opts, shell)
  local exec_opts, spawn_opts = exec.split_options(fname, n, opts,
    fname == "spawn_sync" and exec.SPAWN_SYNC_OPTIONS or nil)
  if shell and not spawn_opts.shell then spawn_opts.shell = true end
  local _, policy = process.prepare(fname, file, args, spawn_opts, n)
  local call = {file = file, args = table.move(args, 1, #args, 1, {}),
                opts = opts}
  function call.stdin() return exec_opts.input or "" end
  self.calls[#self.calls + 1] = call
  local rule = self:_rule(file, args)
  if rule == nil then return enoent(file, args) end
  local script = rule.script
  self.next_pid = self.next_pid + 1
  call.pid = self.next_pid
  -- A clock of its own from now on: no callback of the script runs
  -- while a sync call waits, so timers of async fakes that fall due
  -- meanwhile fire only after it returns, as on a real loop.
  local clock, started = new_clock(), self.clock.now
  clock.now = started
  local exited, exit_timer = false, nil
  local sup
  local function die(num)
    if exited then return end
    exited = true
    if exit_timer then exit_timer.close() end
    local status = process.exit_status(num == nil and (script.code or 0)
                                       or nil, num, 0, 0, 0,
                                       clock.now - started)
    local rec = sup.rec
    rec.code, rec.signal = status.code, status.signal
    rec.rusage, rec.duration = status.rusage, status.duration
    sup:on_exit(false)
    sup:stop_timers()
  end
  -- a kill (timeout, idle_timeout, max_buffer) ends it at once
  sup = self.saved.new_supervisor(exec_opts, nil, function(sig)
    if exited then return false end  -- as core's kill once it has exited
    if sig == 0 then return true end  -- a probe: it is alive
    clock:timer(0, function() die(sig) end)
    return true
  end, function() end)
  function sup.start_timer(s, name, ms, fn)
    s.timers[name] = clock:timer(ms, function()
      s.timers[name] = nil
      fn()
    end)
  end
  sup.rec.pid = call.pid
  local out = sup:collector("stdout")
  local err_out = exec_opts.merge_stderr and out or sup:collector("stderr")
  local sig = signum("on", script.signal)
  exit_timer = clock:timer(script.delay or 0, function()
    exit_timer = nil
    die(sig)
  end)
  sup:start()
  if script.stdout and script.stdout ~= "" then out(script.stdout) end
  if script.stderr and script.stderr ~= "" then err_out(script.stderr) end
  while not exited do
    local t = clock:next_due()
    if t == nil then break end
    clock:advance_to(t.due)
  end
  sup:stop_timers()
  self.clock.now = clock.now
  self:_schedule()
  sup.rec.stdout = sup:output("stdout")
  sup.rec.stderr = sup:output("stderr")
  return sup.rec
end

--- Replace the spawner until fake:restore(). Returns the fake.
function M.fake()
  if active then
    check.raise("brood.testing.fake: a fake is in place already " ..
                "(call restore first)")
  end
  local fake = setmetatable({
    calls = {}, rules = {}, clock = new_clock(), procs = {}, live = 0,
    next_pid = 900000,
    saved = {spawn_child = process.spawn_child,
             new_supervisor = exec.new_supervisor, sync_run = sync._run},
  }, Fake)
  process.spawn_child = function(...) return fake:_spawn(...) end
  exec.new_supervisor = function(...) return fake:_supervisor(...) end
  sync._run = function(...) return fake:_run_sync(...) end
  active = fake
  return fake
end

check.methods(Fake, "fake", {"on", "advance", "now", "restore"})

return M

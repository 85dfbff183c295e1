--- exec and exec_file: run a command, buffer its output (DESIGN §5).
-- Built on brood.spawn; all the policy (max_buffer, timeouts, kill
-- escalation, the error's shape) lives here and is shared with brood.sync.
-- @module brood.exec
local core = require "brood.core"
local loop = require "brood.loop"
local tasks = require "brood.tasks"
local process = require "brood.process"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}

local concat = table.concat
local defer, await = loop.defer, tasks.await
local default_loop = loop.default

M.DEFAULT_MAX_BUFFER = 1024 * 1024
M.MAXBUFFER = "ERR_CHILD_PROCESS_STDIO_MAXBUFFER"
-- After a child we killed has exited, how long its pipes may stay open
-- (held by a grandchild that escaped the tree kill) before we stop reading:
-- one rule for spawn's timeout, exec and the sync variants.
M.DRAIN_AFTER_KILL_MS = process.DRAIN_AFTER_KILL_MS

local EXEC_ONLY = {
  max_buffer = "number", input = "string", force_kill_after = "number",
  idle_timeout = "number", merge_stderr = "boolean", check = "boolean",
}
M.EXEC_ONLY = EXEC_ONLY

local EXEC_OPTIONS = {}
for k, v in pairs(process.SPAWN_OPTIONS) do EXEC_OPTIONS[k] = v end
for k, v in pairs(EXEC_ONLY) do EXEC_OPTIONS[k] = v end
M.EXEC_OPTIONS = EXEC_OPTIONS

-- spawn_sync reports every outcome in its result: `check` means nothing
-- there.
local SPAWN_SYNC_OPTIONS = {}
for k, v in pairs(EXEC_OPTIONS) do SPAWN_SYNC_OPTIONS[k] = v end
SPAWN_SYNC_OPTIONS.check = nil
M.SPAWN_SYNC_OPTIONS = SPAWN_SYNC_OPTIONS

--- Check exec's own options; returns them normalised and a copy of opts
-- holding only spawn's options.
function M.split_options(fname, n, opts, spec)
  opts = check.options(fname, n, opts, spec or EXEC_OPTIONS)
  local exec_opts = {
    max_buffer = check.count(fname, n, opts.max_buffer, "max_buffer", true)
                 or M.DEFAULT_MAX_BUFFER,
    input = opts.input,
    timeout = check.count(fname, n, opts.timeout, "timeout"),
    force_kill_after = check.count(fname, n, opts.force_kill_after,
                                   "force_kill_after"),
    idle_timeout = check.count(fname, n, opts.idle_timeout, "idle_timeout"),
    merge_stderr = opts.merge_stderr == true,
    check = opts.check ~= false,
    kill_signal = process.kill_signal(fname, n, opts.kill_signal),
  }
  if exec_opts.timeout == 0 then exec_opts.timeout = nil end
  if exec_opts.idle_timeout == 0 then exec_opts.idle_timeout = nil end
  if exec_opts.merge_stderr and type(opts.stdio) == "table" then
    check.fail(fname, n, "merge_stderr cannot be combined with a stdio array")
  end
  if exec_opts.input ~= nil then
    -- Python's rule: input with a stdin we do not write is a mistake, not
    -- something to drop silently
    local stdin = opts.stdio
    if type(stdin) == "table" then stdin = stdin[1] end
    if stdin ~= nil and stdin ~= "pipe" and stdin ~= "duplex" then
      local got = type(stdin) == "string" and ('"' .. stdin .. '"') or
                  math.type(stdin) == "integer" and ("fd " .. stdin) or
                  type(stdin)
      check.fail(fname, n, ('option \'input\' needs stdio[1] to be "pipe", ' ..
                            'got %s'):format(got))
    end
  end
  local spawn_opts = {}
  for k, v in pairs(opts) do
    if EXEC_ONLY[k] == nil and k ~= "timeout" then spawn_opts[k] = v end
  end
  return exec_opts, spawn_opts
end

--- The error of a finished run (or nil for success). `r` holds code,
-- signal, killed, timed_out, idle, overflow ("stdout"/"stderr"), cmd,
-- stdout, stderr.
function M.result_error(r)
  if r.code == 0 and not r.overflow and not r.timed_out then return nil end
  -- check = false: the command ran, whatever its exit; only the failures
  -- of the run itself (timeout, too much output) are errors
  if r.check == false and not r.overflow and not r.timed_out then
    return nil
  end
  local e = {cmd = r.cmd, signal = r.signal, killed = r.killed or false,
             timed_out = r.timed_out ~= nil, stdout = r.stdout,
             stderr = r.stderr, pid = r.pid}
  if r.overflow then
    e.code = M.MAXBUFFER
    e.message = r.overflow .. " maxBuffer length exceeded"
  elseif r.timed_out then
    e.code = "ETIMEDOUT"
    e.idle = r.idle or nil
    e.message = ("Command timed out after %d ms%s: %s"):format(
      r.timed_out, r.idle and " without output" or "", r.cmd)
  else
    e.code = r.code  -- nil when a signal ended it, as in Node.js
    e.message = "Command failed: " .. r.cmd
    if r.stderr ~= nil and r.stderr ~= "" then
      e.message = e.message .. "\n" .. r.stderr
    end
  end
  return Error.new(e)
end

local function is_array(t)
  return t[1] ~= nil or next(t) == nil
end

-- (file, args?, opts?, cb?) with nil placeholders, as Node's execFile.
local function exec_file_args(a, b, c)
  local vals, pos = {a, b, c}, 1
  local args, opts, cb
  if type(a) == "table" and is_array(a) then
    args, pos = a, 2
  elseif a == nil then
    pos = 2
  end
  if type(vals[pos]) == "table" then
    opts, pos = vals[pos], pos + 1
  elseif vals[pos] == nil and pos < 3 then
    pos = pos + 1
  end
  if type(vals[pos]) == "function" then
    cb, pos = vals[pos], pos + 1
  end
  for j = pos, 3 do
    if vals[j] ~= nil then
      check.fail("exec_file", j + 1, ("unexpected %s"):format(type(vals[j])))
    end
  end
  return args, opts, cb
end

-- ----- one run's policy: shared by exec and the sync variants ----------

--- The policy of one run: output collection up to max_buffer, timeout,
-- idle_timeout, kill escalation. `on_loop` is the core loop its timers
-- run on; `kill(sig)` signals the child's tree; `give_up()` stops
-- reading its pipes. The caller sets `exited` and reads `rec` (code, signal, killed,
-- timed_out, idle, overflow) at the end.
local Supervisor = {}
Supervisor.__index = Supervisor

function M.new_supervisor(exec_opts, on_loop, kill, give_up)
  return setmetatable({exec_opts = exec_opts, loop = on_loop, kill = kill,
                       give_up = give_up,
                       exited = false, timers = {}, parts = {}, rec = {}},
                      Supervisor)
end

--- The child has exited; its pipes may still be open. If we killed it, a
-- grandchild that escaped the tree kill may hold them: read what comes
-- for a moment more, then give up.
function Supervisor:on_exit(pipes_open)
  self.exited = true
  if pipes_open and self.rec.killed then
    self:start_timer("drain", M.DRAIN_AFTER_KILL_MS, self.give_up)
  elseif pipes_open and self.late then
    -- exited in time, but its pipes outlive the deadline: read what is
    -- in them; held open longer, by a grandchild, it is a timeout
    self:start_timer("drain", M.DRAIN_AFTER_KILL_MS, function()
      self.rec.timed_out = self.late
      self.give_up()
    end)
  end
end

function Supervisor:start_timer(name, ms, fn)
  local t = core.timer_new(self.loop)
  t:unref()  -- the child and its pipes keep the loop alive, not these
  t:start(ms, 0, function()
    t:close()
    self.timers[name] = nil
    fn()
  end)
  self.timers[name] = t
end

function Supervisor:stop_timers()
  for name, t in pairs(self.timers) do
    if not t:is_closed() then t:close() end
    self.timers[name] = nil
  end
end

--- kill_signal to the tree; SIGKILL force_kill_after ms later.
function Supervisor:terminate()
  if self.exited then
    -- Only a grandchild holds the pipes now (it left the tree when its
    -- parent died): stop waiting for it.
    self.give_up()
    return
  end
  if self.kill(self.exec_opts.kill_signal) then self.rec.killed = true end
  local after = self.exec_opts.force_kill_after
  if after and not self.timers.force then
    self:start_timer("force", after, function() self.kill(9) end)
  end
end

function Supervisor:arm_idle()
  local ms = self.exec_opts.idle_timeout
  if not ms then return end
  local t = self.timers.idle
  if t then t:close() end
  self:start_timer("idle", ms, function()
    self.rec.timed_out, self.rec.idle = ms, true
    self:terminate()
  end)
end

--- Start the clocks: timeout and idle_timeout.
function Supervisor:start()
  local ms = self.exec_opts.timeout
  if ms then
    self:start_timer("timeout", ms, function()
      if not self.exited and self.kill(0) == false then
        -- It has exited, and the loop, busy past the deadline, has not
        -- seen it yet: as in Node.js, not a timeout (on_exit decides
        -- about pipes that stay open).
        self.late = ms
        return
      end
      self.rec.timed_out = ms
      self:terminate()
    end)
  end
  self:arm_idle()
end

--- A data handler collecting stream `name` up to max_buffer: past it the
-- output is cut to exactly max_buffer bytes and the child is terminated.
function Supervisor:collector(name)
  local parts, size, max = {}, 0, self.exec_opts.max_buffer
  self.parts[name] = parts
  return function(chunk)
    self:arm_idle()
    if self.rec.overflow then return end  -- past the limit: discard
    if size + #chunk > max then
      local room = max - size
      if room > 0 then parts[#parts + 1] = chunk:sub(1, room) end
      size = max
      self.rec.overflow = name
      self:terminate()
      return
    end
    size = size + #chunk
    parts[#parts + 1] = chunk
  end
end

--- What stream `name` collected (nil if it was not collected).
function Supervisor:output(name)
  local parts = self.parts[name]
  return parts and concat(parts) or nil
end

-- ----- exec on the default loop -------------------------------------------

-- Launch for exec/exec_file, then collect. `n` is the options' position.
local function launch(fname, n, file, args, exec_opts, spawn_opts, cmd, cb)
  -- before anything starts
  if cb == nil then tasks.must_wait() end
  -- Without input and without a callback nobody can ever write to the
  -- child's stdin: give it EOF at once rather than a pipe left open.
  local stdin = (exec_opts.input == nil and cb == nil) and "ignore" or "pipe"
  if exec_opts.merge_stderr then
    -- one pipe for both: the child writes fds 1 and 2 into it, in order
    spawn_opts.stdio = {stdin, "pipe", process.SAME_AS_STDOUT}
  elseif spawn_opts.stdio == nil then
    spawn_opts.stdio = {stdin, "pipe", "pipe"}
  end
  local child, err, code = process.spawn_child(fname, n, file, args,
                                               spawn_opts)
  if not child then return M._launch_failed(err, code, cmd, cb) end
  return M._collect(child, exec_opts, cmd, cb)
end

function M._launch_failed(err, code, cmd, cb)
  err.cmd = cmd
  err.stdout, err.stderr = "", ""
  if cb then defer(cb, err, "", "") end
  return nil, err, code
end

-- The outcome of a finished exec run: the result table, or nil and the
-- error (a failed command, a timeout, too much output).
local function outcome(supervisor, child, cmd)
  local r = supervisor.rec
  r.cmd, r.pid = cmd, child.pid
  r.stdout = supervisor:output("stdout") or ""
  r.stderr = supervisor:output("stderr") or ""
  r.code, r.signal, r.killed = child.exit_code, child.signal_code, child.killed
  r.check = supervisor.exec_opts.check
  local e = M.result_error(r)
  if e then return nil, e end
  return {stdout = r.stdout, stderr = r.stderr, code = r.code,
          signal = r.signal, cmd = cmd, pid = r.pid,
          duration = child.duration, rusage = child.rusage}
end

-- Collect the child's output under exec's policy until it has exited
-- and its output streams have closed; then cb(err, stdout, stderr), or
-- (no cb) return the result | nil, err, code.
function M._collect(child, exec_opts, cmd, cb)
  local pending, exited, finished = 0, false, false  -- streams not closed
  local waiters, streams = {}, {}
  local result, failure
  local supervisor = M.new_supervisor(exec_opts, default_loop, function(sig)
    return child:kill(sig, {tree = true})
  end, function()
    for _, s in ipairs(streams) do
      if not s.closed then s:destroy() end
    end
  end)
  local function finish()
    if finished or not exited or pending > 0 then return end
    finished = true
    supervisor:stop_timers()
    result, failure = outcome(supervisor, child, cmd)
    if cb then
      cb(failure, supervisor.rec.stdout, supervisor.rec.stderr, result)
    end
    for i = 1, #waiters do waiters[i]() end
  end
  for _, name in ipairs({"stdout", "stderr"}) do
    local s = child[name]
    if s then
      pending = pending + 1
      streams[#streams + 1] = s
      s:on("data", supervisor:collector(name))
      s:_when_closed(function() pending = pending - 1; finish() end)
    end
  end
  child:on("exit", function()
    exited = true
    supervisor:on_exit(pending > 0)
    finish()
  end)
  supervisor:start()
  if exec_opts.input ~= nil and child.stdin then
    child.stdin:on("error", function() end)  -- EPIPE: it did not read it
    child.stdin:close(exec_opts.input)
  end
  if cb then return child end
  await(function(done)
    waiters[#waiters + 1] = done
    -- the waiting task was cancelled: nobody wants the output any more
    return function() supervisor:terminate() end
  end)
  if failure then return Error.fail(failure) end
  return result
end

--- brood.exec(command, opts?, cb?): the command runs through /bin/sh -c
-- (or opts.shell). With cb: cb(err, stdout, stderr), returns the child.
-- Without: result table | nil, err, code (a waiting operation).
function M.exec(command, opts, cb)
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  command = check.cstring("exec", 1, command, "command")
  check.func("exec", 3, cb, true)
  local exec_opts, spawn_opts = M.split_options("exec", 2, opts)
  if spawn_opts.shell == nil or spawn_opts.shell == false then
    spawn_opts.shell = true
  end
  return launch("exec", 2, command, {}, exec_opts, spawn_opts, command, cb)
end

--- brood.exec_file(file, args?, opts?, cb?): no shell. Same results as
-- exec.
function M.exec_file(file, a, b, c)
  local args, opts, cb = exec_file_args(a, b, c)
  file = check.cstring("exec_file", 1, file, "file")
  local argv = process.split_args("exec_file", args or {}, nil)
  local exec_opts, spawn_opts = M.split_options("exec_file", 3, opts)
  local cmd = process.command_line(file, argv)
  return launch("exec_file", 3, file, argv, exec_opts, spawn_opts, cmd, cb)
end


return M

--- exec and exec_file: run a command, buffer its output (DESIGN §5).
-- Built on brood.spawn; all the policy (max_buffer, timeouts, kill
-- escalation, the error's shape) lives here and is shared with brood.sync.
-- @module brood.exec
local core = require "brood.core"
local loop = require "brood.loop"
local process = require "brood.process"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}

local concat = table.concat
local defer, await = loop.defer, loop.await
local core_loop = loop.core_loop

M.DEFAULT_MAX_BUFFER = 1024 * 1024
M.MAXBUFFER = "ERR_CHILD_PROCESS_STDIO_MAXBUFFER"
-- After a child we killed has exited, how long its pipes may stay open
-- (held by a grandchild that escaped the tree kill) before we stop reading:
-- one rule for spawn's timeout, exec and the sync variants.
M.DRAIN_AFTER_KILL_MS = process.DRAIN_AFTER_KILL_MS

local EXEC_ONLY = {
  max_buffer = "number", input = "string", force_kill_after = "number",
  idle_timeout = "number", merge_stderr = "boolean",
}
M.EXEC_ONLY = EXEC_ONLY

local EXEC_OPTIONS = {}
for k, v in pairs(process.SPAWN_OPTIONS) do EXEC_OPTIONS[k] = v end
for k, v in pairs(EXEC_ONLY) do EXEC_OPTIONS[k] = v end
M.EXEC_OPTIONS = EXEC_OPTIONS

--- Check exec's own options; returns them normalised and a copy of opts
-- holding only spawn's options.
function M.split_options(fname, n, opts, spec)
  opts = check.options(fname, n, opts, spec or EXEC_OPTIONS)
  local own = {
    max_buffer = check.count(fname, n, opts.max_buffer, "max_buffer", true)
                 or M.DEFAULT_MAX_BUFFER,
    input = opts.input,
    timeout = check.count(fname, n, opts.timeout, "timeout"),
    force_kill_after = check.count(fname, n, opts.force_kill_after,
                                   "force_kill_after"),
    idle_timeout = check.count(fname, n, opts.idle_timeout, "idle_timeout"),
    merge_stderr = opts.merge_stderr == true,
    kill_signal = process.kill_signal(fname, n, opts.kill_signal),
  }
  if own.timeout == 0 then own.timeout = nil end
  if own.idle_timeout == 0 then own.idle_timeout = nil end
  if own.merge_stderr and type(opts.stdio) == "table" then
    check.fail(fname, n, "merge_stderr cannot be combined with a stdio array", 2)
  end
  if own.input ~= nil then
    -- Python's rule: input with a stdin we do not write is a mistake, not
    -- something to drop silently
    local stdin = opts.stdio
    if type(stdin) == "table" then stdin = stdin[1] end
    if stdin ~= nil and stdin ~= "pipe" and stdin ~= "duplex" then
      local got = type(stdin) == "string" and ('"' .. stdin .. '"') or
                  math.type(stdin) == "integer" and ("fd " .. stdin) or
                  type(stdin)
      check.fail(fname, n, ('option \'input\' needs stdio[1] to be "pipe", ' ..
                            'got %s'):format(got), 2)
    end
  end
  local spawn_opts = {}
  for k, v in pairs(opts) do
    if EXEC_ONLY[k] == nil and k ~= "timeout" then spawn_opts[k] = v end
  end
  return own, spawn_opts
end

--- The error of a finished run (or nil for success). `r` holds code,
-- signal, killed, timed_out, idle, overflow ("stdout"/"stderr"), cmd,
-- stdout, stderr.
function M.result_error(r)
  if r.code == 0 and not r.overflow and not r.timed_out then return nil end
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
      check.fail("exec_file", j + 1, ("unexpected %s"):format(type(vals[j])), 3)
    end
  end
  return args, opts, cb
end

-- ----- one run's policy: shared by exec and the sync variants ----------

--- The policy of one run: output collection up to max_buffer, timeout,
-- idle_timeout, kill escalation. `lp` is the core loop its timers run on;
-- `kill(sig)` signals the child's tree; `give_up()` stops reading its
-- pipes. The caller sets `exited` and reads `rec` (code, signal, killed,
-- timed_out, idle, overflow) at the end.
local Run = {}
Run.__index = Run

function M.new_run(own, lp, kill, give_up)
  return setmetatable({own = own, lp = lp, kill = kill, give_up = give_up,
                       exited = false, timers = {}, parts = {}, rec = {}},
                      Run)
end

--- The child has exited; its pipes may still be open. If we killed it, a
-- grandchild that escaped the tree kill may hold them: read what comes
-- for a moment more, then give up.
function Run:on_exit(pipes_open)
  self.exited = true
  if pipes_open and self.rec.killed then
    self:start_timer("drain", M.DRAIN_AFTER_KILL_MS, self.give_up)
  end
end

function Run:start_timer(name, ms, fn)
  local t = core.timer_new(self.lp)
  t:unref()  -- the child and its pipes keep the loop alive, not these
  t:start(ms, 0, function()
    t:close()
    self.timers[name] = nil
    fn()
  end)
  self.timers[name] = t
end

function Run:stop_timers()
  for name, t in pairs(self.timers) do
    if not t:is_closed() then t:close() end
    self.timers[name] = nil
  end
end

--- kill_signal to the tree; SIGKILL force_kill_after ms later.
function Run:terminate()
  if self.exited then
    -- Only a grandchild holds the pipes now (it left the tree when its
    -- parent died): stop waiting for it.
    self.give_up()
    return
  end
  if self.kill(self.own.kill_signal) then self.rec.killed = true end
  local after = self.own.force_kill_after
  if after and not self.timers.force then
    self:start_timer("force", after, function() self.kill(9) end)
  end
end

function Run:arm_idle()
  local ms = self.own.idle_timeout
  if not ms then return end
  local t = self.timers.idle
  if t then t:close() end
  self:start_timer("idle", ms, function()
    self.rec.timed_out, self.rec.idle = ms, true
    self:terminate()
  end)
end

--- Start the clocks: timeout and idle_timeout.
function Run:start()
  local ms = self.own.timeout
  if ms then
    self:start_timer("timeout", ms, function()
      self.rec.timed_out = ms
      self:terminate()
    end)
  end
  self:arm_idle()
end

--- A data handler collecting stream `name` up to max_buffer: past it the
-- output is cut to exactly max_buffer bytes and the child is terminated.
function Run:collector(name)
  local parts, size, max = {}, 0, self.own.max_buffer
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
function Run:output(name)
  local parts = self.parts[name]
  return parts and concat(parts) or nil
end

-- ----- exec on the default loop -------------------------------------------

-- Launch for exec/exec_file, then collect. `n` is the options' position.
local function run(fname, n, file, args, own, spawn_opts, cmd, cb)
  -- Before anything starts. Level 3: must_wait's caller is this run,
  -- reached by a tail call from exec/exec_file inside check.entry's pcall
  -- (run, pcall, the entry): the error names the user's line.
  if cb == nil then loop.must_wait(3) end
  -- Without input and without a callback nobody can ever write to the
  -- child's stdin: give it EOF at once rather than a pipe left open.
  local stdin = (own.input == nil and cb == nil) and "ignore" or "pipe"
  if own.merge_stderr then
    -- one pipe for both: the child writes fds 1 and 2 into it, in order
    spawn_opts.stdio = {stdin, "pipe", process.SAME_AS_STDOUT}
  elseif spawn_opts.stdio == nil then
    spawn_opts.stdio = {stdin, "pipe", "pipe"}
  end
  local child, err, code = process.spawn_child(fname, n, file, args,
                                               spawn_opts)
  if not child then return M._launch_failed(err, code, cmd, cb) end
  return M._collect(child, own, cmd, cb)
end

function M._launch_failed(err, code, cmd, cb)
  err.cmd = cmd
  err.stdout, err.stderr = "", ""
  if cb then defer(cb, err, "", "") end
  return nil, err, code
end

function M._collect(child, own, cmd, cb)
  local pending = 0      -- streams not yet closed
  local finished = false
  local waiters, streams = {}, {}
  local result
  local run_ = M.new_run(own, core_loop, function(sig)
    return child:kill(sig, {tree = true})
  end, function()
    for _, s in ipairs(streams) do
      if not s.closed then s:destroy() end
    end
  end)

  local function finish()
    if finished or not child._exited or pending > 0 then return end
    finished = true
    run_:stop_timers()
    local r = run_.rec
    r.cmd, r.pid = cmd, child.pid
    r.stdout, r.stderr = run_:output("stdout") or "", run_:output("stderr") or ""
    r.code, r.signal, r.killed = child.exit_code, child.signal_code, child.killed
    local e = M.result_error(r)
    if not e then
      result = {stdout = r.stdout, stderr = r.stderr, code = 0, cmd = cmd,
                pid = r.pid, duration = child.duration, rusage = child.rusage}
    end
    if cb then cb(e, r.stdout, r.stderr) end
    for i = 1, #waiters do waiters[i](e) end
  end

  local function watch(s, name)
    if not s then return end
    pending = pending + 1
    streams[#streams + 1] = s
    s:on("data", run_:collector(name))
    s:_when_closed(function()
      pending = pending - 1
      finish()
    end)
  end

  watch(child.stdout, "stdout")
  watch(child.stderr, "stderr")

  child:on("exit", function()
    run_:on_exit(pending > 0)
    finish()
  end)
  run_:start()

  local stdin = child.stdin
  if own.input ~= nil and stdin then
    stdin:on("error", function() end)  -- EPIPE: the child did not read it
    stdin:close(own.input)
  end

  if cb then return child end
  local e = await(function(done) waiters[#waiters + 1] = done end)
  if e then return Error.fail(e) end
  return result
end

--- brood.exec(command, opts?, cb?): the command runs through /bin/sh -c
-- (or opts.shell). With cb: cb(err, stdout, stderr), returns the child.
-- Without: result table | nil, err, code (a waiting operation).
local function exec(command, opts, cb)
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  command = check.cstring("exec", 1, command, "command")
  if cb ~= nil and type(cb) ~= "function" then
    check.fail("exec", 3, ("function expected, got %s"):format(type(cb)))
  end
  local own, spawn_opts = M.split_options("exec", 2, opts)
  if spawn_opts.shell == nil or spawn_opts.shell == false then
    spawn_opts.shell = true
  end
  return run("exec", 2, command, {}, own, spawn_opts, command, cb)
end

--- brood.exec_file(file, args?, opts?, cb?): no shell. Same results as
-- exec.
local function exec_file(file, a, b, c)
  local args, opts, cb = exec_file_args(a, b, c)
  file = check.cstring("exec_file", 1, file, "file")
  local argv = process.split_args("exec_file", args or {}, nil)
  local own, spawn_opts = M.split_options("exec_file", 3, opts)
  local cmd = #argv > 0 and (file .. " " .. concat(argv, " ")) or file
  return run("exec_file", 3, file, argv, own, spawn_opts, cmd, cb)
end

M.exec = check.entry(exec)
M.exec_file = check.entry(exec_file)

return M

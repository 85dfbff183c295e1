--- exec and exec_file: run a command, buffer its output (DESIGN §5).
-- Built on brood.spawn; all the policy (max_buffer, timeouts, kill
-- escalation, the error's shape) lives here and is shared with brood.sync.
-- @module brood.exec
local core = require "brood.core"
local loop = require "brood.loop"
local process = require "brood.process"
local stream = require "brood.stream"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}

local concat = table.concat
local defer, await = loop.defer, loop.await
local core_loop = loop.core_loop

M.DEFAULT_MAX_BUFFER = 1024 * 1024
M.MAXBUFFER = "ERR_CHILD_PROCESS_STDIO_MAXBUFFER"
-- After a child we killed has exited, how long its pipes may stay open
-- (held by a grandchild that escaped the tree kill) before we stop reading.
M.DRAIN_AFTER_KILL_MS = 100

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
    kill_signal = loop.signum(fname, n, opts.kill_signal or "SIGTERM"),
  }
  if own.timeout == 0 then own.timeout = nil end
  if own.idle_timeout == 0 then own.idle_timeout = nil end
  if own.merge_stderr and type(opts.stdio) == "table" then
    check.fail(fname, n, "merge_stderr cannot be combined with a stdio array", 2)
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

-- Run a spawned command to completion, collecting its output.
local function run(fname, file, args, own, spawn_opts, cmd, cb)
  -- Without input and without a callback nobody can ever write to the
  -- child's stdin: give it EOF at once rather than a pipe left open.
  local stdin = (own.input == nil and cb == nil) and "ignore" or "pipe"
  if own.merge_stderr then
    -- one pipe for both: the child writes fds 1 and 2 into it, in order
    local r, w, code = core.pipe()
    if not r then
      local err = Error.from_core(fname, w, code, {cmd = cmd})
      if cb then defer(cb, err, "", "") end
      return Error.fail(err)
    end
    spawn_opts.stdio = {stdin, w, w}
    local child, err, code2 = process.spawn(file, args, spawn_opts)
    core.close_fd(w)
    if not child then
      core.close_fd(r)
      err.cmd = cmd
      if cb then defer(cb, err, "", "") end
      return nil, err, code2
    end
    return M._collect(fname, child, own, cmd, cb, r)
  end
  if spawn_opts.stdio == nil then spawn_opts.stdio = {stdin, "pipe", "pipe"} end
  local child, err, code = process.spawn(file, args, spawn_opts)
  if not child then
    err.cmd = cmd
    err.stdout, err.stderr = "", ""
    if cb then defer(cb, err, "", "") end
    return nil, err, code
  end
  return M._collect(fname, child, own, cmd, cb)
end

function M._collect(fname, child, own, cmd, cb, merged_fd)
  local max = own.max_buffer
  local r = {cmd = cmd, pid = child.pid}
  local out, err_parts = {}, {}
  local sizes = {stdout = 0, stderr = 0}
  local pending = 0      -- streams not yet at EOF
  local finished = false
  local timers = {}
  local waiters = {}
  local streams = {}

  local function stop_timers()
    for k, t in pairs(timers) do
      if not t:is_closed() then t:close() end
      timers[k] = nil
    end
  end

  local function finish()
    if finished or not child._exited or pending > 0 then return end
    finished = true
    stop_timers()
    r.stdout, r.stderr = concat(out), concat(err_parts)
    r.code = child.exit_code
    r.signal = child.signal_code
    r.killed = child.killed
    r.duration, r.rusage = child.duration, child.rusage
    local e = M.result_error(r)
    if cb then
      cb(e, r.stdout, r.stderr)
    end
    for i = 1, #waiters do waiters[i](e) end
  end

  local function start_timer(name, ms, fn)
    local t = core.timer_new(core_loop)
    t:unref()
    t:start(ms, 0, function()
      t:close()
      timers[name] = nil
      fn()
    end)
    timers[name] = t
  end

  local function terminate()
    if child._exited then return end
    child:kill(own.kill_signal, {tree = true})
    if own.force_kill_after and not timers.force then
      start_timer("force", own.force_kill_after, function()
        child:kill("SIGKILL", {tree = true})
      end)
    end
  end

  local function arm_idle()
    if own.idle_timeout then
      if timers.idle then timers.idle:close() timers.idle = nil end
      start_timer("idle", own.idle_timeout, function()
        r.timed_out, r.idle = own.idle_timeout, true
        terminate()
      end)
    end
  end

  local function collector(parts, name)
    return function(chunk)
      arm_idle()
      if r.overflow then return end  -- past the limit: discard
      local size = sizes[name]
      if size + #chunk > max then
        local room = max - size
        if room > 0 then parts[#parts + 1] = chunk:sub(1, room) end
        sizes[name] = max
        r.overflow = name
        terminate()
        return
      end
      sizes[name] = size + #chunk
      parts[#parts + 1] = chunk
    end
  end

  local function watch(s, parts, name)
    if not s then return end
    pending = pending + 1
    streams[#streams + 1] = s
    s:on("data", collector(parts, name))
    s:_when_closed(function()
      pending = pending - 1
      finish()
    end)
  end

  if merged_fd then
    local h = assert(core.pipe_open(core_loop, merged_fd))
    watch(stream.new(h, true, false), out, "stdout")
  else
    watch(child.stdout, out, "stdout")
    watch(child.stderr, err_parts, "stderr")
  end

  child:on("exit", function()
    if child.killed and pending > 0 then
      -- A grandchild may hold our pipes open: take what is there, then go.
      start_timer("drain", M.DRAIN_AFTER_KILL_MS, function()
        for _, s in ipairs(streams) do
          if not s.closed then s:destroy() end
        end
      end)
    end
    finish()
  end)

  if own.timeout then
    start_timer("timeout", own.timeout, function()
      r.timed_out = own.timeout
      terminate()
    end)
  end
  arm_idle()

  local stdin = child.stdin
  if own.input ~= nil and stdin then
    stdin:on("error", function() end)  -- EPIPE: the child did not read it
    stdin:close(own.input)
  end

  if cb then return child end
  local e = await(function(done) waiters[#waiters + 1] = done end)
  if e then return Error.fail(e) end
  return {stdout = r.stdout, stderr = r.stderr, code = 0, cmd = cmd,
          pid = r.pid, duration = r.duration, rusage = r.rusage}
end

--- brood.exec(command, opts?, cb?): the command runs through /bin/sh -c
-- (or opts.shell). With cb: cb(err, stdout, stderr), returns the child.
-- Without: result table | nil, err, code (a waiting operation).
function M.exec(command, opts, cb)
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  command = check.cstring("exec", 1, command, "command")
  if cb ~= nil and type(cb) ~= "function" then
    check.fail("exec", 3, ("function expected, got %s"):format(type(cb)))
  end
  local own, spawn_opts = M.split_options("exec", 2, opts)
  if spawn_opts.shell == nil or spawn_opts.shell == false then
    spawn_opts.shell = true
  end
  return run("exec", command, {}, own, spawn_opts, command, cb)
end

--- brood.exec_file(file, args?, opts?, cb?): no shell. Same results as
-- exec.
function M.exec_file(file, a, b, c)
  local args, opts, cb = exec_file_args(a, b, c)
  file = check.cstring("exec_file", 1, file, "file")
  local argv = process.split_args("exec_file", args or {}, nil)
  local own, spawn_opts = M.split_options("exec_file", 3, opts)
  local cmd = #argv > 0 and (file .. " " .. concat(argv, " ")) or file
  return run("exec_file", file, argv, own, spawn_opts, cmd, cb)
end

M._exec_file_args = exec_file_args

return M

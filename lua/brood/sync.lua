--- spawn_sync, exec_sync, exec_file_sync (DESIGN §5).
-- Each call runs its child on a private loop of its own: while it waits no
-- timer, signal handler or other callback of the script runs, and it works
-- the same inside callbacks, tasks and at the top level. The policy (limits,
-- timeouts, errors) is exec's.
-- @module brood.sync
local core = require "brood.core"
local process = require "brood.process"
local exec = require "brood.exec"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}
local concat = table.concat

-- Signal the child's whole tree (as child:kill(sig, {tree = true})).
local function kill_tree(proc, pid, leads_group, num)
  if leads_group then return proc:kill_group(num) end
  local pids = core.descendants(pid)
  local ok = proc:kill(num)
  for _, p in ipairs(pids) do core.kill(p, num) end
  return ok
end

-- Run file/args to completion on a private loop. Returns the run record
-- (as exec.result_error reads it) or nil, err, code for a launch failure.
local function run(fname, n, file, args, opts, shell)
  local own, spawn_opts = exec.split_options(fname, n, opts)
  if shell and not spawn_opts.shell then spawn_opts.shell = true end
  if own.merge_stderr then
    -- stderr shares stdout's pipe (collected as stdout)
    spawn_opts.stdio = {"pipe", "pipe", process.SAME_AS_STDOUT}
  end
  -- every argument is checked before the loop or any pipe exists
  local spec, policy = process.prepare(fname, file, args, spawn_opts, n)
  local lp = core.loop_new()
  local leads_group = spec.detached or spec.group
  local proc, pid
  local pending = 0  -- pipes not yet at EOF
  local handles = {}
  local run_ = exec.new_run(own, lp, function(sig)
    return kill_tree(proc, pid, leads_group, sig)
  end, function()
    for _, h in ipairs(handles) do
      if not h:is_closed() then h:close() end
    end
    pending = 0
  end)
  local rec = run_.rec

  local parent
  proc, pid, parent = process.launch(lp, spec, policy,
    function(code, signum, maxrss_kb, utime, stime, duration)
      rec.code = code
      rec.signal = signum and (core.signame(signum) or signum) or nil
      rec.rusage = {maxrss_kb = maxrss_kb, utime = utime, stime = stime}
      rec.duration = duration
      run_:on_exit(pending > 0)
      if pending == 0 then run_:stop_timers() end
    end)
  if not proc then
    lp:close()
    return nil, pid, parent  -- nil, err, code
  end
  rec.pid = pid

  local function collect(h, name)
    local on_data = run_:collector(name)
    pending = pending + 1
    handles[#handles + 1] = h
    h:read_start(function(chunk)
      if chunk ~= nil then return on_data(chunk) end
      h:close()
      pending = pending - 1
      if pending <= 0 and run_.exited then run_:stop_timers() end
    end)
  end

  for i, p in pairs(parent) do
    if p then
      local h = assert(core.pipe_open(lp, p.fd))
      if p.readable then
        collect(h, i == 2 and "stdout" or i == 3 and "stderr" or ("fd" .. i))
      elseif own.input ~= nil and i == 1 then
        h:write(own.input, function() end)  -- EPIPE: the child did not read
        h:shutdown(function() h:close() end)
      else
        h:close()  -- EOF at once: nobody else can write to it
      end
    end
  end
  run_:start()

  local _, err = lp:run("default")
  run_:stop_timers()
  lp:close()
  if err ~= nil then error(err, 0) end
  rec.stdout, rec.stderr = run_:output("stdout"), run_:output("stderr")
  return rec
end

--- brood.spawn_sync(file, args?, opts?) -> {pid, stdout, stderr, status,
-- signal, error, duration, rusage}. It does not raise for operational
-- failures: they are in `error` (ENOENT, ETIMEDOUT, max_buffer).
local function spawn_sync(file, args, opts)
  local a, o = process.split_args("spawn_sync", args, opts)
  local rec, err = run("spawn_sync", 3, file, a, o, false)
  if not rec then
    return {pid = 0, status = nil, signal = nil, error = err}
  end
  local e
  if rec.overflow or rec.timed_out then
    rec.cmd = #a > 0 and (file .. " " .. concat(a, " ")) or file
    e = exec.result_error(rec)
  end
  return {pid = rec.pid, stdout = rec.stdout, stderr = rec.stderr,
          status = rec.code, signal = rec.signal, error = e,
          duration = rec.duration, rusage = rec.rusage}
end

local function finish(rec, err, code, cmd)
  if not rec then
    err.cmd = cmd
    return nil, err, code
  end
  rec.cmd = cmd
  rec.stdout, rec.stderr = rec.stdout or "", rec.stderr or ""
  local e = exec.result_error(rec)
  if e then return Error.fail(e) end
  return rec.stdout
end

--- brood.exec_sync(command, opts?) -> stdout | nil, err, code
local function exec_sync(command, opts)
  command = check.cstring("exec_sync", 1, command, "command")
  local rec, err, code = run("exec_sync", 2, command, {}, opts, true)
  return finish(rec, err, code, command)
end

--- brood.exec_file_sync(file, args?, opts?) -> stdout | nil, err, code
local function exec_file_sync(file, args, opts)
  local a, o = process.split_args("exec_file_sync", args, opts)
  file = check.cstring("exec_file_sync", 1, file, "file")
  local rec, err, code = run("exec_file_sync", 3, file, a, o, false)
  local cmd = #a > 0 and (file .. " " .. concat(a, " ")) or file
  return finish(rec, err, code, cmd)
end

M.spawn_sync = check.entry(spawn_sync)
M.exec_sync = check.entry(exec_sync)
M.exec_file_sync = check.entry(exec_file_sync)

return M

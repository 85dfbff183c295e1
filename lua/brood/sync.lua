--- spawn_sync, exec_sync, exec_file_sync (DESIGN §5).
-- Each call runs its child on a private loop of its own: while it waits no
-- timer, signal handler or other callback of the script runs, and it works
-- the same inside callbacks, tasks and at the top level. The policy (limits,
-- timeouts, errors) is exec's; the launch, the pipes, the tree kill and
-- the exit status are brood.process's.
-- @module brood.sync
local core = require "brood.core"
local process = require "brood.process"
local exec = require "brood.exec"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}

-- Read every readable pipe under the supervisor's limits; write `input`
-- to stdin (then EOF) and give every other writable pipe EOF at once.
-- Returns the handles read and the count of pipes not yet at EOF (a
-- function: it changes as they end).
local function plumb(supervisor, handles, parent, input, at_eof)
  local reading, open = {}, 0
  for i, h in pairs(handles) do
    if parent[i].readable then
      local name = i == 2 and "stdout" or i == 3 and "stderr" or ("fd" .. i)
      local on_data = supervisor:collector(name)
      open = open + 1
      reading[#reading + 1] = h
      h:read_start(function(chunk)
        if chunk ~= nil then return on_data(chunk) end
        h:close()
        open = open - 1
        at_eof(open)
      end)
    elseif input ~= nil and i == 1 then
      h:write(input, function() end)  -- EPIPE: the child did not read it
      h:shutdown(function() h:close() end)
    else
      h:close()  -- EOF at once: nobody else can write to it
    end
  end
  return reading, function() return open end
end

-- Run file/args to completion on a private loop. Returns the run record
-- (as exec.result_error reads it) or nil, err, code for a launch failure.
-- Every sync call runs its child through M._run, the seam brood.testing
-- replaces with its scripted programs.
function M._run(fname, n, file, args, opts, shell)
  local exec_opts, spawn_opts = exec.split_options(fname, n, opts,
    fname == "spawn_sync" and exec.SPAWN_SYNC_OPTIONS or nil)
  if shell and not spawn_opts.shell then spawn_opts.shell = true end
  if exec_opts.merge_stderr then
    -- stderr shares stdout's pipe (collected as stdout)
    spawn_opts.stdio = {"pipe", "pipe", process.SAME_AS_STDOUT}
  end
  -- every argument is checked before the loop or any pipe exists
  local spec, policy = process.prepare(fname, file, args, spawn_opts, n)
  local private_loop = core.loop_new()
  local proc, pid, parent, reading, open_pipes
  local supervisor = exec.new_supervisor(exec_opts, private_loop,
    function(sig)
      return proc:kill_tree(sig)
    end,
    function()
      for _, h in ipairs(reading) do
        if not h:is_closed() then h:close() end
      end
      open_pipes = function() return 0 end
    end)
  local rec = supervisor.rec
  proc, pid, parent = process.launch(private_loop, spec, policy,
    function(...)
      local status = process.exit_status(...)
      rec.code, rec.signal = status.code, status.signal
      rec.rusage, rec.duration = status.rusage, status.duration
      supervisor:on_exit(open_pipes() > 0)
      if open_pipes() == 0 then supervisor:stop_timers() end
    end)
  if not proc then
    private_loop:close()
    return nil, pid, parent  -- nil, err, code
  end
  rec.pid = pid
  local handles = assert(process.open_ends(private_loop, parent,
    #policy.stdio, policy.max_message_size, ("%s '%s'"):format(fname, file)))
  reading, open_pipes = plumb(supervisor, handles, parent, exec_opts.input,
    function(open)
      if open <= 0 and supervisor.exited then supervisor:stop_timers() end
    end)
  supervisor:start()
  local _, err = private_loop:run("default")
  supervisor:stop_timers()
  private_loop:close()
  if err ~= nil then error(err, 0) end
  rec.stdout = supervisor:output("stdout")
  rec.stderr = supervisor:output("stderr")
  return rec
end

--- brood.spawn_sync(file, args?, opts?) -> {pid, stdout, stderr, status,
-- signal, error, duration, rusage}. It does not raise for operational
-- failures: they are in `error` (ENOENT, ETIMEDOUT, max_buffer).
function M.spawn_sync(file, args, opts)
  local argv, options = process.split_args("spawn_sync", args, opts)
  local rec, err = M._run("spawn_sync", 3, file, argv, options, false)
  if not rec then
    return {pid = 0, status = nil, signal = nil, error = err}
  end
  local e
  if rec.overflow or rec.timed_out then
    rec.cmd = process.command_line(file, argv)
    e = exec.result_error(rec)
  end
  return {pid = rec.pid, stdout = rec.stdout, stderr = rec.stderr,
          status = rec.code, signal = rec.signal, error = e,
          duration = rec.duration, rusage = rec.rusage}
end

-- opts.check, once run() has checked opts
local function opts_check(opts)
  return not (type(opts) == "table" and opts.check == false)
end

-- exec_sync's and exec_file_sync's results from the run record.
local function finish(rec, err, code, cmd, checked)
  if not rec then
    err.cmd = cmd
    return nil, err, code
  end
  rec.cmd = cmd
  rec.stdout, rec.stderr = rec.stdout or "", rec.stderr or ""
  rec.check = checked
  local e = exec.result_error(rec)
  if e then return Error.fail(e) end
  if checked == false then
    -- the whole outcome, as exec returns it
    return {stdout = rec.stdout, stderr = rec.stderr, code = rec.code,
            signal = rec.signal, cmd = cmd, pid = rec.pid,
            duration = rec.duration, rusage = rec.rusage}
  end
  return rec.stdout
end

--- brood.exec_sync(command, opts?) -> stdout | nil, err, code
function M.exec_sync(command, opts)
  command = check.cstring("exec_sync", 1, command, "command")
  local rec, err, code = M._run("exec_sync", 2, command, {}, opts, true)
  return finish(rec, err, code, command, opts_check(opts))
end

--- brood.exec_file_sync(file, args?, opts?) -> stdout | nil, err, code
function M.exec_file_sync(file, args, opts)
  local argv, options = process.split_args("exec_file_sync", args, opts)
  file = check.cstring("exec_file_sync", 1, file, "file")
  local rec, err, code = M._run("exec_file_sync", 3, file, argv, options,
                                false)
  return finish(rec, err, code, process.command_line(file, argv),
                opts_check(options))
end

return M

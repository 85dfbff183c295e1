--- brood.pipeline (DESIGN §10): stages wired with real pipes, each
-- stage's stdout straight into the next one's stdin. The parent reads
-- only the last stdout and every stage's stderr, under exec's policy
-- (max_buffer, timeout, kill escalation: brood.exec's supervisor), and
-- the result is exec's shape plus `codes`, with pipefail semantics.
-- @module brood.pipeline
local core = require "brood.core"
local loop = require "brood.loop"
local tasks = require "brood.tasks"
local process = require "brood.process"
local exec = require "brood.exec"
local shell = require "brood.shell"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}

local format, concat, unpack = string.format, table.concat, table.unpack

-- exec's options but those that name one child's plumbing
local OPTIONS = {}
for k, v in pairs(exec.EXEC_OPTIONS) do OPTIONS[k] = v end
OPTIONS.stdio, OPTIONS.merge_stderr, OPTIONS.argv0 = nil, nil, nil

-- Each stage: {file, args, shell?, cmd}; a caller mistake raises here,
-- before anything starts.
local function check_stages(stages)
  if type(stages) ~= "table" then
    check.fail("pipeline", 1, format("table of stages expected, got %s",
      stages == nil and "no value" or type(stages)))
  end
  if #stages == 0 then
    check.fail("pipeline", 1, "at least one stage expected")
  end
  local out = {}
  for k = 1, #stages do
    local st = stages[k]
    local what = format("stages[%d]", k)
    if type(st) == "string" then
      check.cstring("pipeline", 1, st, what)
      out[k] = {file = st, args = {}, shell = true, cmd = st}
    elseif type(st) == "table" then
      if #st == 0 then
        check.fail("pipeline", 1, what .. " must not be empty")
      end
      local argv = {}
      for j = 1, #st do
        argv[j] = check.cstring("pipeline", 1, st[j],
                                format("%s[%d]", what, j))
      end
      out[k] = {file = argv[1], args = {unpack(argv, 2)},
                cmd = shell.shell_join(argv)}
    else
      check.fail("pipeline", 1, format("%s must be a string or an argv " ..
                                       "table, got %s", what, type(st)))
    end
  end
  return out
end

-- Failed to start stage k: the stages already running are killed and
-- reaped before the error returns.
local function abandon(children, sig)
  for _, c in ipairs(children) do c:kill(sig, {tree = true}) end
  for _, c in ipairs(children) do
    for _, s in pairs(c.stdio) do
      if not s.closed then s:destroy() end
    end
  end
  for _, c in ipairs(children) do c:wait() end
end

-- spawn's options for stage `st` (shell strings run through the shell).
local function stage_options(st, spawn_opts, stdio)
  local o = {}
  for key, v in pairs(spawn_opts) do o[key] = v end
  if st.shell then
    if not o.shell then o.shell = true end
  else
    o.shell = nil
  end
  o.stdio = stdio
  return o
end

-- Start every stage; the parent keeps no end of the pipes between them,
-- so a stage that exits early gives the one before it EPIPE. Returns the
-- children, or nil, err, code (the stages started are killed and reaped).
local function start_stages(list, exec_opts, spawn_opts, cmd)
  local n, children, prev_r = #list, {}, nil
  for k = 1, n do
    local r, w, code
    if k < n then
      r, w, code = core.pipe()
      if not r then
        if prev_r then core.close_fd(prev_r) end
        abandon(children, exec_opts.kill_signal)
        local err = Error.from_core("pipeline: pipe", w, code,
                                    {syscall = "pipe"})
        return exec._launch_failed(err, code, cmd)
      end
    end
    local stdin = prev_r or (exec_opts.input ~= nil and "pipe" or "ignore")
    local o = stage_options(list[k], spawn_opts, {stdin, w or "pipe", "pipe"})
    local child, err, code2 = process.spawn_child("pipeline", 2, list[k].file,
                                                  list[k].args, o)
    if prev_r then core.close_fd(prev_r) end
    if w then core.close_fd(w) end
    prev_r = r
    if not child then
      if r then core.close_fd(r) end
      abandon(children, exec_opts.kill_signal)
      return exec._launch_failed(err, code2, cmd)
    end
    children[k] = child
  end
  return children
end

-- Collect under one policy (a timeout or too much output ends them all)
-- and wait for every stage and stream; returns the supervisor.
local function supervise(children, exec_opts)
  local n = #children
  local streams, pending, exits = {}, 0, 0
  local finished, wake = false, nil
  local supervisor = exec.new_supervisor(exec_opts, loop.default,
    function(sig)
      local any = false
      for _, c in ipairs(children) do
        if c:kill(sig, {tree = true}) then any = true end
      end
      return any
    end,
    function()
      for _, s in ipairs(streams) do
        if not s.closed then s:destroy() end
      end
    end)
  local function finish()
    if finished or exits < n or pending > 0 then return end
    finished = true
    supervisor:stop_timers()
    if wake then wake() end
  end
  local function collect(s, name)
    pending = pending + 1
    streams[#streams + 1] = s
    s:on("data", supervisor:collector(name))
    s:_when_closed(function() pending = pending - 1; finish() end)
  end
  for k, c in ipairs(children) do
    if k == n then collect(c.stdout, "stdout") end
    collect(c.stderr, "stderr" .. k)
    c:on("exit", function()
      exits = exits + 1
      if exits == n then supervisor:on_exit(pending > 0) end
      finish()
    end)
  end
  supervisor:start()
  if exec_opts.input ~= nil then
    local stdin = children[1].stdin
    stdin:on("error", function() end)  -- EPIPE: it did not read it
    stdin:close(exec_opts.input)
  end
  if not finished then
    tasks.await(function(done)
      wake = done
      if finished then return done() end
      -- the waiting task was cancelled: every stage goes
      return function() supervisor:terminate() end
    end)
  end
  return supervisor
end

--- brood.pipeline(stages, opts?) (waiting) -> result | nil, err, code.
function M.pipeline(stages, opts)
  local list = check_stages(stages)
  local exec_opts, spawn_opts = exec.split_options("pipeline", 2, opts,
                                                   OPTIONS)
  tasks.must_wait()
  local n = #list
  local cmds, shells = {}, {}
  for k = 1, n do
    cmds[k] = list[k].cmd
    shells[k] = list[k].shell or false
  end
  local cmd = concat(cmds, " | ")
  local children, err, code = start_stages(list, exec_opts, spawn_opts, cmd)
  if not children then return nil, err, code end
  local supervisor = supervise(children, exec_opts)
  return M._outcome(supervisor, children, cmd, n, shells)
end

-- The result of a finished pipeline, or nil, err, code.
local SHELL_SIGPIPE = 128 + core.signum("SIGPIPE")

function M._outcome(supervisor, children, cmd, n, shells)
  local r = supervisor.rec
  local codes, signals, stderrs, pids = {}, {}, {}, {}
  local fail_code, fail_signal = 0, nil
  local duration = 0
  for k, c in ipairs(children) do
    codes[k], signals[k], pids[k] = c.exit_code, c.signal_code, c.pid
    stderrs[k] = supervisor:output("stderr" .. k) or ""
    if (c.duration or 0) > duration then duration = c.duration end
    -- pipefail: the last stage that failed decides. An earlier stage
    -- killed by SIGPIPE only stopped because a later one stopped
    -- reading: that is how `yes | head -1` ends, not a failure. A shell
    -- stage reports its command's death as 128 + the signal.
    local sigpipe = k < n and (c.signal_code == "SIGPIPE" or
                               (shells[k] and c.exit_code == SHELL_SIGPIPE))
    if (c.exit_code ~= 0 or c.signal_code) and not sigpipe then
      fail_code, fail_signal = c.exit_code, c.signal_code
    end
  end
  r.cmd, r.pid = cmd, children[n].pid
  r.stdout = supervisor:output("stdout") or ""
  r.stderr = concat(stderrs)
  r.code, r.signal = fail_code, fail_signal
  r.check = supervisor.exec_opts.check
  for _, c in ipairs(children) do
    if c.killed then r.killed = true end
  end
  local e = exec.result_error(r)
  if e then
    e.codes, e.signals, e.stderrs, e.pids = codes, signals, stderrs, pids
    return Error.fail(e)
  end
  return {stdout = r.stdout, stderr = r.stderr, stderrs = stderrs,
          code = fail_code, signal = fail_signal, codes = codes,
          signals = signals, cmd = cmd, pids = pids, pid = r.pid,
          duration = duration}
end

return M

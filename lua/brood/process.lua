--- spawn and the child object (DESIGN §4): option policy, stdio plumbing,
-- events, kill, wait, cleanup. The launch itself is brood.core.spawn.
-- @module brood.process
local core = require "brood.core"
local loop = require "brood.loop"
local tasks = require "brood.tasks"
local emitter = require "brood.emitter"
local stream = require "brood.stream"
local Error = require "brood.error"
local check = require "brood.check"
local channel = require "brood.channel"

local M = {}

local default_loop = loop.default
local defer, await, must_wait = loop.defer, tasks.await, tasks.must_wait
local concat = table.concat

local Child = emitter.extend({__name = "brood.Child"},
  {"spawn", "exit", "close", "error", "message", "disconnect", "drain"})
Child.__index = Child
M.Child = Child

--- Options spawn takes (exec, sync and fork add theirs to a copy).
M.SPAWN_OPTIONS = {
  cwd = "string", env = "table", extend_env = "table", argv0 = "string",
  stdio = "string|table", detached = "boolean", group = "boolean",
  uid = "integer", gid = "integer", shell = "boolean|string",
  timeout = "number", kill_signal = "signal", cleanup = "boolean",
  kill_grace = "number", max_message_size = "number",
}

-- After a child we killed (a timeout) has exited, how long its pipes may
-- stay open, held by a descendant that escaped the tree kill, before we
-- stop reading them: the wait then ends with the child, as exec's does.
M.DRAIN_AFTER_KILL_MS = 100

-- Internal stdio entry (exec's merge_stderr): this fd shares the child's
-- end of the stdout pipe, so the order of both is exact.
M.SAME_AS_STDOUT = setmetatable({}, {__name = "brood.SAME_AS_STDOUT"})

local DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

-- ----- argument normalisation ---------------------------------------------

--- spawn's (file, args?, opts?) shapes: args may be skipped.
function M.split_args(fname, args, opts, opts_pos)
  if opts == nil and type(args) == "table" and args[1] == nil and
     next(args) ~= nil then
    return {}, args, 2  -- (file, opts): the options are argument #2
  end
  if args ~= nil and type(args) ~= "table" then
    check.fail(fname, 2, ("args table expected, got %s"):format(type(args)))
  end
  local out = {}
  for i, a in ipairs(args or {}) do
    out[i] = check.cstring(fname, 2, a, ("args[%d]"):format(i))
  end
  if args ~= nil then
    for k in pairs(args) do
      if math.type(k) ~= "integer" or k < 1 or k > #out then
        check.fail(fname, 2, "args must be an array of strings")
      end
    end
  end
  return out, opts, opts_pos
end

local function env_value(fname, n, name, v)
  if type(name) ~= "string" or name == "" or name:find("[=%z]") then
    check.fail(fname, n, ("invalid environment variable name '%s'")
                         :format(tostring(name)))
  end
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then
    check.fail(fname, n, ("environment variable '%s' must be a string, " ..
                          "got %s"):format(name, type(v)))
  end
  if v:find("\0", 1, true) then
    check.fail(fname, n, ("environment variable '%s' must not contain NUL " ..
                          "bytes"):format(name))
  end
  return v
end

--- The child's environment as "K=V" strings (nil: inherit unchanged) and
-- its PATH (for the program lookup).
function M.build_env(fname, n, opts, extra)
  local env, extend = opts.env, opts.extend_env
  if env == nil and extend == nil and extra == nil then
    return nil, os.getenv("PATH") or DEFAULT_PATH
  end
  local map = {}
  for k, v in pairs(env or core.environ()) do
    map[k] = env_value(fname, n, k, v)
  end
  for k, v in pairs(extend or {}) do
    if v == false then map[k] = nil  -- extend_env = {VAR = false} unsets
    else map[k] = env_value(fname, n, k, v) end
  end
  for k, v in pairs(extra or {}) do map[k] = v end
  local list = {}
  for k, v in pairs(map) do list[#list + 1] = k .. "=" .. v end
  table.sort(list)
  return list, map.PATH or DEFAULT_PATH
end

local STDIO_WORDS = {pipe = true, inherit = true, ignore = true,
                     duplex = true, ipc = true}

-- One stdio entry is valid (a caller mistake raises here, before any
-- pipe exists).
local function check_entry(fname, n, i, e, allow_ipc)
  if type(e) == "string" then
    if not STDIO_WORDS[e] then
      check.fail(fname, n, ('stdio[%d]: invalid entry "%s"'):format(i, e))
    end
    if e == "ipc" and not allow_ipc then
      check.fail(fname, n, ("stdio[%d]: 'ipc' needs a loop: use brood.spawn"
                            .. " or brood.fork"):format(i))
    end
  elseif math.type(e) == "integer" then
    if e < 0 then
      check.fail(fname, n, ("stdio[%d]: invalid fd %d"):format(i, e))
    end
  elseif stream.is_stream(e) then
    if e:fileno() == nil then
      check.fail(fname, n, ("stdio[%d]: the stream is closed"):format(i))
    end
  elseif io.type(e) ~= "file" and e ~= M.SAME_AS_STDOUT then
    check.fail(fname, n, ("stdio[%d]: invalid entry %s"):format(i, type(e)))
  end
end

-- The stdio entries as a dense array of at least three, each checked.
local function stdio_entries(fname, n, stdio, allow_ipc)
  if stdio == nil then stdio = "pipe" end
  if type(stdio) == "string" then
    if stdio ~= "pipe" and stdio ~= "inherit" and stdio ~= "ignore" then
      check.fail(fname, n, ("option 'stdio' must be \"pipe\", \"inherit\", " ..
                            "\"ignore\" or an array, got \"%s\""):format(stdio))
    end
    return {stdio, stdio, stdio}
  end
  local max = 3
  for k in pairs(stdio) do
    if math.type(k) ~= "integer" or k < 1 then
      check.fail(fname, n, "option 'stdio' must be an array")
    end
    if k > max then max = k end
  end
  local out = {}
  for i = 1, max do
    local e = stdio[i]
    if e == nil then e = i <= 3 and "pipe" or "ignore" end
    check_entry(fname, n, i, e, allow_ipc)
    out[i] = e
  end
  return out
end

-- Turn checked stdio entries into child fds and parent streams. Returns
-- the fd list for core.spawn, the fds to close in the parent after the
-- spawn, and per entry the parent's end (or false); or nil, msg, code
-- when the OS refuses a pipe (nothing is left open then).
local function plumb(entries)
  local fds, child_ends, parent = {}, {}, {}
  local function undo()
    for _, fd in ipairs(child_ends) do core.close_fd(fd) end
    for _, p in pairs(parent) do if p then core.close_fd(p.fd) end end
  end
  for i, e in ipairs(entries) do
    local fd_index = i - 1
    parent[i] = false
    if e == "pipe" then
      local r, w, code = core.pipe()
      if not r then undo() return nil, w, code end
      if fd_index == 0 then
        fds[i], parent[i] = r, {fd = w, readable = false, writable = true}
        child_ends[#child_ends + 1] = r
      else
        fds[i], parent[i] = w, {fd = r, readable = true, writable = false}
        child_ends[#child_ends + 1] = w
      end
    elseif e == "duplex" then
      local a, b, code = core.socketpair()
      if not a then undo() return nil, b, code end
      fds[i], parent[i] = b, {fd = a, readable = true, writable = true}
      child_ends[#child_ends + 1] = b
    elseif e == "ipc" then
      local mine, theirs, code = core.socketpair(channel.SOCKET_BUFFER)
      if not mine then undo() return nil, theirs, code end
      fds[i], parent[i] = theirs, {fd = mine, ipc = true}
      child_ends[#child_ends + 1] = theirs
    elseif e == "inherit" then
      fds[i] = fd_index
    elseif e == "ignore" then
      fds[i] = -1
    elseif e == M.SAME_AS_STDOUT then
      fds[i] = fds[2]
    elseif math.type(e) == "integer" then
      fds[i] = e
    elseif io.type(e) == "file" then
      fds[i] = core.file_fd(e)
    else
      fds[i] = e:fileno()  -- a brood stream
    end
  end
  return fds, child_ends, parent
end

-- ----- spawn ----------------------------------------------------------------

local function spawn_error(file, args, cwd, msg, code, step, errnum)
  -- err.spawnargs holds the arguments without the program, as Node's
  -- does (child.spawnargs keeps the whole argv)
  local fields = {syscall = "spawn " .. file, path = file,
                  spawnargs = table.move(args, 2, #args, 1, {}),
                  errno = errnum}
  local context = ("spawn '%s'"):format(file)
  if step == "chdir" then
    context = ("spawn '%s': cwd '%s'"):format(file, cwd)
    fields.path = cwd
  elseif step ~= "exec" and step ~= nil then
    context = ("spawn '%s': %s"):format(file, step)
  end
  return Error.from_core(context, msg, code, fields)
end

-- The index of the one "ipc" entry, or nil; two raise.
local function find_ipc(fname, n, entries)
  local at
  for i, e in ipairs(entries) do
    if e == "ipc" then
      if at then check.fail(fname, n, "stdio may hold one 'ipc' only") end
      at = i
    end
  end
  return at
end

--- The command line of file and args as exec's errors and the shell
-- show it: "file arg1 arg2".
function M.command_line(file, args)
  if #args == 0 then return file end
  return file .. " " .. concat(args, " ")
end

-- The program to start and its argv (through the shell when opts.shell),
-- and spawnargs: the argv before argv0 replaces argv[1].
local function program(fname, n, file, args, opts)
  file = check.cstring(fname, 1, file, "file")
  if file == "" then check.fail(fname, 1, "file must not be empty") end
  local spawnfile, argv = file, {file}
  if opts.shell then
    local shell = opts.shell == true and "/bin/sh" or
                  check.cstring(fname, n, opts.shell, "option 'shell'")
    spawnfile, argv = shell, {shell, "-c", M.command_line(file, args)}
  else
    for i = 1, #args do argv[i + 1] = args[i] end
  end
  local spawnargs = table.move(argv, 1, #argv, 1, {})
  if opts.argv0 ~= nil then
    argv[1] = check.cstring(fname, n, opts.argv0, "option 'argv0'")
  end
  return spawnfile, argv, spawnargs
end

--- Normalise and check spawn's options; shared with exec, sync and fork.
-- Returns the table for core.spawn plus the policy fields. Raises for
-- every caller mistake; creates nothing (no fd, no handle).
function M.prepare(fname, file, args, opts, n, allow_ipc)
  local spawnfile, argv, spawnargs = program(fname, n, file, args, opts)
  local cwd = opts.cwd
  if cwd ~= nil then
    cwd = check.cstring(fname, n, cwd, "option 'cwd'")
    if cwd == "" then cwd = nil end
  end
  local stdio = stdio_entries(fname, n, opts.stdio, allow_ipc)
  -- "ipc": the child finds its channel through these (as Node's
  -- NODE_CHANNEL_FD); both sides enforce the size limit
  local ipc_at, extra_env = find_ipc(fname, n, stdio), nil
  local max = check.count(fname, n, opts.max_message_size, "max_message_size")
              or channel.DEFAULT_MAX_MESSAGE_SIZE
  if max < 1 or max > 0xFFFFFFFF then
    check.fail(fname, n, "option 'max_message_size' out of range")
  end
  if ipc_at then
    extra_env = {BROOD_CHANNEL_FD = tostring(ipc_at - 1),
                 BROOD_MAX_MESSAGE_SIZE = tostring(max)}
  end
  local env, path = M.build_env(fname, n, opts, extra_env)
  local timeout = check.count(fname, n, opts.timeout, "timeout")
  local kill_grace = check.count(fname, n, opts.kill_grace, "kill_grace")
  local kill_signal = M.kill_signal(fname, n, opts.kill_signal)
  local detached = opts.detached == true
  local cleanup = opts.cleanup
  if cleanup == nil then cleanup = not detached end
  for _, k in ipairs({"uid", "gid"}) do
    local v = opts[k]
    if v ~= nil and (v < 0 or v > 0xFFFFFFFE) then
      check.fail(fname, n, ("option '%s' out of range"):format(k))
    end
  end
  return {
    file = spawnfile, argv = argv, env = env, path = path, cwd = cwd,
    detached = detached, group = opts.group == true,
    uid = opts.uid and math.tointeger(opts.uid),
    gid = opts.gid and math.tointeger(opts.gid),
    death_signal = cleanup and kill_signal or nil,
    cleanup_signal = cleanup and kill_signal or nil,
  }, {
    spawnfile = spawnfile, spawnargs = spawnargs, timeout = timeout,
    kill_signal = kill_signal, kill_grace = kill_grace or 2000,
    stdio = stdio, ipc_at = ipc_at, max_message_size = max,
  }
end

--- opts.kill_signal as a number (default SIGTERM). 0 raises: a timeout
-- that "kills" with signal 0 would leave the child running.
function M.kill_signal(fname, n, sig)
  local num = check.signal(fname, n, sig or "SIGTERM")
  if num == 0 then
    check.fail(fname, n, "option 'kill_signal' must not be 0 (it would " ..
                         "not stop the child)")
  end
  return num
end

--- Launch on `on_loop` (a core loop) with the prepared options; on_exit
-- gets core's exit arguments. Returns proc, pid, parent stream specs |
-- nil, err, code.
function M.launch(on_loop, spec, policy, on_exit)
  local fds, child_ends, parent = plumb(policy.stdio)
  if not fds then
    return Error.fail(Error.from_core("spawn '" .. spec.file .. "'",
                                      child_ends, parent))
  end
  spec.stdio = fds
  local proc, pid, code, step, errnum = core.spawn(on_loop, spec, on_exit)
  for _, fd in ipairs(child_ends) do core.close_fd(fd) end
  if not proc then
    for _, p in pairs(parent) do if p then core.close_fd(p.fd) end end
    return Error.fail(spawn_error(policy.spawnfile, policy.spawnargs,
                                  spec.cwd, pid, code, step, errnum))
  end
  return proc, pid, parent
end

--- How a process ended, from core's exit arguments: {code, signal
-- (a name where known), rusage, duration}.
function M.exit_status(code, signum, maxrss_kb, utime, stime, duration)
  return {
    code = code,
    signal = signum and (core.signame(signum) or signum) or nil,
    rusage = {maxrss_kb = maxrss_kb, utime = utime, stime = stime},
    duration = duration,
  }
end

-- brood.net handles over a child's channel. brood.net loads on the
-- first handle received: a script that never passes one does not pay
-- for it.
M.IPC_HANDLES = {
  server_handle = function(v)
    local net = package.loaded["brood.net"]
    return net and net.server_handle(v)
  end,
  adopt = function(h, is_server)
    return require("brood.net").adopt(h, is_server)
  end,
}

-- Handover bookkeeping (DESIGN §4; stream.lua has the mechanism). A
-- readable stream of ours given to another child stops counting for our
-- "close" (the parent no longer reads it, so its EOF may never come) and
-- counts again when the script reclaims it. When every child it went to
-- has exited and the script did not reclaim it, the parent reads it
-- again; once we have exited too, it reads it to EOF (drain), so the fd
-- closes as soon as no process of ours can write to it.
local function on_handover(s)
  s._owner:_uncount(s, true)
end

local function on_reclaim(s)
  local owner = s._owner
  if not owner._closed then owner:_count(s) end
  if owner._exited then s:_drain() end
end

--- Open the parent's ends of the pipes that launch made (`parent`, one
-- entry per stdio index up to `count`) on the core loop `on_loop`: the
-- core pipe handles, and for "ipc" the core channel. When one cannot be
-- opened, every fd and handle is closed and nil, err, code returned
-- (`context` names the call: "spawn 'ls'").
function M.open_ends(on_loop, parent, count, max_message_size, context)
  local handles, failed = {}, nil
  for i = 1, count do
    local p, h, msg, code = parent[i], nil, nil, nil
    if p and not failed and p.ipc then
      h, msg, code = core.channel_open(on_loop, p.fd, max_message_size,
                                       channel.HIGH_WATER_MARK)
    elseif p and not failed then
      h, msg, code = core.pipe_open(on_loop, p.fd)
    end
    if h then
      handles[i] = h
    elseif p then
      core.close_fd(p.fd)
      if not failed then
        local what = p.ipc and "cannot open the IPC channel" or
                     ("cannot watch stdio[%d]"):format(i)
        failed = Error.from_core(context .. ": " .. what, msg, code)
      end
    end
  end
  if not failed then return handles end
  for _, h in pairs(handles) do h:close() end
  return Error.fail(failed)
end

-- ----- admission control (DESIGN §10) -----------------------------------

-- Our children on the default loop: `live` have not exited yet (what
-- brood.max_children bounds); `held` have not closed yet (exited ones may
-- still hold pipe fds, which an EMFILE retry waits for).
M.live, M.held = 0, 0
-- Spawns (inside tasks) waiting for a child of ours to exit or close.
local slot_waiters = {}

-- Wake the longest waiter, later (not inside the exit callback). One
-- event frees room for about one spawn: waking them all would only have
-- the rest fail again.
local function wake_one()
  local done = table.remove(slot_waiters, 1)
  if done then defer(done) end
end

local function max_children(fname)
  local b = package.loaded["brood"]
  local max = type(b) == "table" and rawget(b, "max_children") or nil
  if max ~= nil and (math.type(max) ~= "integer" or max < 1) then
    check.raise(("%s: brood.max_children must be nil or an integer >= 1"):
                format(fname))
  end
  return max
end

local function full_error(fname, file, max)
  return Error.fail(Error.new({
    message = ("%s '%s': brood.max_children (%d) children are alive"):
              format(fname, file, max),
    code = "EAGAIN", syscall = "spawn " .. file, path = file}))
end

-- Wait (in a task) until a child of ours exits or closes, or the
-- deadline (hrtime ns, or nil) passes; false when it passed.
local function wait_for_slot(deadline)
  local ms
  if deadline then
    ms = (deadline - core.hrtime()) // 1000000
    if ms <= 0 then return false end
  end
  local r = tasks.await_listed(slot_waiters, ms)
  return r ~= tasks.TIMEDOUT
end

-- Launch, under brood.max_children and, inside a task, retrying EAGAIN
-- and EMFILE while another child of ours may free what is missing.
local function admit_and_launch(fname, spec, policy, on_exit)
  local in_task = tasks.current() ~= nil
  local deadline = policy.timeout and policy.timeout > 0 and
                   core.hrtime() + policy.timeout * 1000000 or nil
  local woken = false
  while true do
    local max = max_children(fname)
    local proc, pid, parent
    if max and M.live >= max then
      proc, pid, parent = full_error(fname, policy.spawnfile, max)
    else
      proc, pid, parent = M.launch(default_loop, spec, policy, on_exit)
    end
    local transient = not proc and (parent == "EAGAIN" or parent == "EMFILE")
    if not (transient and in_task and M.held > 0) then
      -- this attempt used no room it was woken for: pass the turn on
      if woken and (proc or not transient) then wake_one() end
      return proc, pid, parent
    end
    if not wait_for_slot(deadline) then return proc, pid, parent end
    woken = true
  end
end

--- Spawn on the default loop: the body of brood.spawn, and of exec and
-- fork under their own names. `args` and `opts` are checked and split
-- already. `before_launch(spec, policy)` may refuse with nil, err, code
-- once every argument is known to be valid.
function M.spawn_child(fname, n, file, args, opts, before_launch)
  local spec, policy = M.prepare(fname, file, args, opts, n, true)
  if before_launch then
    local ok, err, code = before_launch(spec, policy)
    if not ok then return nil, err, code end
  end
  local child = setmetatable({
    killed = false, connected = false, stdio = {},
    _open_streams = 0, _close_waiters = {}, _handed_in = {},
  }, Child)
  local proc, pid, parent = admit_and_launch(fname, spec, policy,
    function(...) child:_on_exit(...) end)
  if not proc then return nil, pid, parent end
  M.live, M.held, child._admitted = M.live + 1, M.held + 1, true
  child.spawnfile, child.spawnargs = policy.spawnfile, policy.spawnargs
  child._kill_signal, child._kill_grace = policy.kill_signal, policy.kill_grace
  child._proc, child.pid = proc, pid
  child:_take_streams(policy.stdio)
  local handles, err, code = M.open_ends(default_loop, parent,
    #policy.stdio, policy.max_message_size, ("%s '%s'"):format(fname, file))
  if not handles then
    -- It started, but we cannot talk to it: it must not run unwatched.
    child:_kill_tree(9)
    return nil, err, code
  end
  child:_open_stdio(handles, parent)
  if policy.timeout and policy.timeout > 0 then
    child:_start_timeout(policy.timeout)
  end
  defer(function() child:emit("spawn") end)
  return child
end

--- brood.spawn(file, args?, opts?) -> child | nil, err, code
function M.spawn(file, args, opts)
  local argv, options, opts_at = M.split_args("spawn", args, opts)
  opts_at = opts_at or 3
  options = check.options("spawn", opts_at, options, M.SPAWN_OPTIONS)
  return M.spawn_child("spawn", opts_at, file, argv, options)
end

-- ----- the child ----------------------------------------------------------

channel.extend(Child)

-- Our streams in its stdio are its now: stop reading them at once.
function Child:_take_streams(entries)
  for _, e in ipairs(entries) do
    if stream.is_stream(e) and e.readable then
      self._handed_in[#self._handed_in + 1] = e
      e:_hand_over(self)
    end
  end
end

-- The parent's ends become the child's streams and Channel.
function Child:_open_stdio(handles, parent)
  local ch
  for i, h in pairs(handles) do
    local p = parent[i]
    if p.ipc then
      ch = h
    else
      self:_add_stream(i, stream.new(h, p.readable, p.writable))
    end
  end
  self.stdin, self.stdout, self.stderr =
    self.stdio[1] or nil, self.stdio[2] or nil, self.stdio[3] or nil
  if ch then self:_open_channel(ch) end
end

-- The child's "close" waits for its channel as for its output.
function Child:_open_channel(h)
  self._open_streams = self._open_streams + 1
  self._channel = channel.new(self, h, M.IPC_HANDLES, function()
    self._open_streams = self._open_streams - 1
    self:_maybe_close()
  end)
end

-- spawn's timeout: kill the tree, as exec does (a grandchild must not
-- outlive the timeout).
function Child:_start_timeout(ms)
  local t = core.timer_new(default_loop)
  t:unref()
  t:start(ms, 0, function()
    t:close()
    self._timer = nil
    if self:_kill_tree(self._kill_signal) then self.timed_out = true end
  end)
  self._timer = t
end

function Child:_add_stream(i, s)
  self.stdio[i] = s
  if not s.readable then return end
  s._owner, s._on_handover, s._on_reclaim = self, on_handover, on_reclaim
  self:_count(s)
  s:_when_closed(function() self:_uncount(s) end)
end

-- The child's "close" waits for every readable stream it counts.
function Child:_count(s)
  if s._counted or s.closed then return end
  s._counted = true
  self._open_streams = self._open_streams + 1
end

function Child:_uncount(s, later)
  if not s._counted then return end
  s._counted = false
  self._open_streams = self._open_streams - 1
  -- "close" is never emitted from inside a brood call (spawn)
  if later then defer(self._maybe_close, self) else self:_maybe_close() end
end

-- A one-shot timer of the child's, unref'd (the child keeps the loop).
local function child_timer(ms, fn)
  local t = core.timer_new(default_loop)
  t:unref()
  t:start(ms, 0, function() t:close() fn() end)
  return t
end

function Child:_on_exit(...)
  local status = M.exit_status(...)
  self.exit_code, self.signal_code = status.code, status.signal
  self.rusage, self.duration = status.rusage, status.duration
  self._exited = true
  if self._admitted then M.live = M.live - 1 wake_one() end
  if self._timer then self._timer:close() self._timer = nil end
  if self._grace_timer then self._grace_timer:close() self._grace_timer = nil end
  -- It reads no more what we handed to it.
  for _, s in ipairs(self._handed_in) do s:_receiver_gone(self) end
  if self.timed_out and self._open_streams > 0 then
    -- A descendant that escaped the tree kill may hold our pipes for as
    -- long as it likes: give it a moment, then stop reading (what it
    -- held is closed on our side), so wait() ends with the child.
    self._drain_timer = child_timer(M.DRAIN_AFTER_KILL_MS, function()
      self._drain_timer = nil
      for _, s in pairs(self.stdio) do
        if s._counted and not s.closed then s:_give_up() end
      end
    end)
  end
  self:emit("exit", self.exit_code, self.signal_code)
  self:_maybe_close()
end

function Child:_maybe_close()
  if not self._exited or self._open_streams > 0 or self._closed then return end
  self._closed = true
  if self._admitted then M.held = M.held - 1 wake_one() end
  if self._drain_timer then
    self._drain_timer:close()
    self._drain_timer = nil
  end
  -- Nobody writes to a child that is gone: free its stdin (and any other
  -- writable-only pipe) now rather than leak the fd. A later write says
  -- EPIPE, as the open fd would have.
  for _, s in pairs(self.stdio) do
    if not s.readable and not s.closed then s:_peer_gone() end
  end
  self:emit("close", self.exit_code, self.signal_code)
  local waiters = self._close_waiters
  self._close_waiters = {}
  for i = 1, #waiters do waiters[i]() end
end

-- Signal the child's whole process tree. True if the child was
-- signalled; false, and core's message and code, if not.
function Child:_kill_tree(num)
  if self._exited or self._proc == nil then return false end
  local ok, msg, code = self._proc:kill_tree(num)
  if ok then self.killed = true end
  return ok and true or false, msg, code
end

--- Send a signal (default "SIGTERM"); with {tree = true} to the child's
-- whole process tree. False (and nothing sent) once the child has exited.
function Child:kill(sig, opts)
  local num = check.signal("kill", 1, sig or "SIGTERM")
  if opts ~= nil then check.options("kill", 2, opts, {tree = "boolean"}) end
  if self._exited or self._proc == nil then return false end
  local ok, msg, code
  if opts and opts.tree then
    ok, msg, code = self:_kill_tree(num)
  else
    ok, msg, code = self._proc:kill(num)
    if ok then self.killed = true end
  end
  if ok then return true end
  if msg ~= nil then
    return false, Error.from_core("kill", msg, code, {syscall = "kill"}), code
  end
  return false
end

--- Wait for "close": returns exit_code, signal_code. Output nobody reads
-- is kept in the streams' buffers meanwhile, so the child cannot block;
-- a stream handed to another child is left to that child. With `ms`:
-- nil, err, "ETIMEDOUT" if it has not closed by then (it runs on).
function Child:wait(ms)
  if ms ~= nil then check.ms("wait", 1, ms) end
  must_wait()
  if not self._closed then
    for _, s in pairs(self.stdio) do
      if s.readable then s:_drain() end
    end
    local r = tasks.await_listed(self._close_waiters, ms)
    if r == tasks.TIMEDOUT then
      return Error.fail(tasks.timeout_error("child:wait", ms))
    end
  end
  return self.exit_code, self.signal_code
end

--- Let the loop end while the child runs (and back). The channel, if
-- any, follows: kept alive (or not) whatever listens.
function Child:unref()
  if self._proc then self._proc:unref() end
  for _, s in pairs(self.stdio) do s:unref() end
  if self._channel then self._channel:keep_alive(false) end
  return self
end

function Child:ref()
  if self._proc then self._proc:ref() end
  for _, s in pairs(self.stdio) do s:ref() end
  if self._channel then self._channel:keep_alive(true) end
  return self
end

-- A public method called with a dot (child.wait()) raises at the
-- caller's line.
check.methods(Child, "child", {"kill", "wait", "unref", "ref", "on", "once",
                               "off"})

-- Inside a plain callback: no waiting; SIGKILL later if still alive.
function Child:_kill_later()
  if self._exited or self._grace_timer then return end
  local t = core.timer_new(default_loop)
  t:start(self._kill_grace, 0, function()
    t:close()
    self._grace_timer = nil
    self:_kill_tree(9)
  end)
  self._grace_timer = t
end

--- `local child <close> = brood.spawn(...)`: kill the tree with
-- kill_signal, wait kill_grace ms, SIGKILL what is left, and reap.
function Child:__close()
  if self._closed or self._proc == nil then return end
  if not self._exited then self:_kill_tree(self._kill_signal) end
  if not tasks.can_wait() then return self:_kill_later() end
  if not self._exited then
    local exited = await(function(done)
      local t = core.timer_new(default_loop)
      t:start(self._kill_grace, 0, function() t:close() done(false) end)
      self:once("exit", function()
        if not t:is_closed() then t:close() end
        done(true)
      end)
    end)
    if not exited then self:_kill_tree(9) end
  end
  for _, s in pairs(self.stdio) do
    if not s.closed then s:destroy() end
  end
  self:wait()
end

function Child:__tostring()
  return ("brood.Child (pid %s)"):format(tostring(self.pid))
end

return M

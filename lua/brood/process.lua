--- spawn and the child object (DESIGN §4): option policy, stdio plumbing,
-- events, kill, wait, cleanup. The launch itself is brood.core.spawn.
-- @module brood.process
local core = require "brood.core"
local loop = require "brood.loop"
local emitter = require "brood.emitter"
local stream = require "brood.stream"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}

local core_loop = loop.core_loop
local defer, await = loop.defer, loop.await
local concat = table.concat

local Child = emitter.extend({__name = "brood.Child"})
Child.__index = Child
M.Child = Child

--- Options spawn takes (exec, sync and fork add theirs to a copy).
M.SPAWN_OPTIONS = {
  cwd = "string", env = "table", extend_env = "table", argv0 = "string",
  stdio = "string|table", detached = "boolean", group = "boolean",
  uid = "integer", gid = "integer", shell = "boolean|string",
  timeout = "number", kill_signal = "signal", cleanup = "boolean",
  kill_grace = "number",
}

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
                         :format(tostring(name)), 3)
  end
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then
    check.fail(fname, n, ("environment variable '%s' must be a string, " ..
                          "got %s"):format(name, type(v)), 3)
  end
  if v:find("\0", 1, true) then
    check.fail(fname, n, ("environment variable '%s' must not contain NUL " ..
                          "bytes"):format(name), 3)
  end
  return v
end

--- The child's environment as "K=V" strings (nil: inherit unchanged) and
-- its PATH (for the program lookup).
function M.build_env(fname, n, opts)
  local env, extend = opts.env, opts.extend_env
  if env == nil and extend == nil then
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
  local list = {}
  for k, v in pairs(map) do list[#list + 1] = k .. "=" .. v end
  table.sort(list)
  return list, map.PATH or DEFAULT_PATH
end

local STDIO_WORDS = {pipe = true, inherit = true, ignore = true,
                     duplex = true, ipc = true}

-- The stdio entries as a dense array of at least three.
local function stdio_entries(fname, n, stdio)
  if stdio == nil then stdio = "pipe" end
  if type(stdio) == "string" then
    if stdio ~= "pipe" and stdio ~= "inherit" and stdio ~= "ignore" then
      check.fail(fname, n, ("option 'stdio' must be \"pipe\", \"inherit\", " ..
                            "\"ignore\" or an array, got \"%s\""):format(stdio), 3)
    end
    return {stdio, stdio, stdio}
  end
  local max = 3
  for k in pairs(stdio) do
    if math.type(k) ~= "integer" or k < 1 then
      check.fail(fname, n, "option 'stdio' must be an array", 3)
    end
    if k > max then max = k end
  end
  local out = {}
  for i = 1, max do
    local e = stdio[i]
    if e == nil then e = i <= 3 and "pipe" or "ignore" end
    out[i] = e
  end
  return out
end

-- Turn stdio entries into child fds and parent streams. Returns the fd
-- list for core.spawn, the fds to close in the parent after the spawn, and
-- per entry a maker of the parent's stream (or false).
local function plumb(fname, n, entries)
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
    elseif e == "inherit" then
      fds[i] = fd_index
    elseif e == "ignore" then
      fds[i] = -1
    elseif e == "ipc" then
      undo()
      check.fail(fname, n, "stdio 'ipc' needs brood.fork", 3)
    elseif math.type(e) == "integer" then
      if e < 0 then
        undo()
        check.fail(fname, n, ("stdio[%d]: invalid fd %d"):format(i, e), 3)
      end
      fds[i] = e
    elseif io.type(e) == "file" then
      fds[i] = core.file_fd(e)
    elseif getmetatable(e) == stream.Stream then
      local fd = e:fileno()
      if fd == nil then
        undo()
        check.fail(fname, n, ("stdio[%d]: the stream is closed"):format(i), 3)
      end
      fds[i] = fd
    else
      undo()
      local what = type(e) == "string" and ('"' .. e .. '"') or type(e)
      check.fail(fname, n, ("stdio[%d]: invalid entry %s"):format(i, what), 3)
    end
  end
  return fds, child_ends, parent
end

-- ----- spawn ----------------------------------------------------------------

local function spawn_error(file, args, cwd, msg, code, step, errnum)
  local fields = {syscall = "spawn " .. file, path = file,
                  spawnargs = args, errno = errnum}
  local context = ("spawn '%s'"):format(file)
  if step == "chdir" then
    context = ("spawn '%s': cwd '%s'"):format(file, cwd)
    fields.path = cwd
  elseif step ~= "exec" and step ~= nil then
    context = ("spawn '%s': %s"):format(file, step)
  end
  return Error.from_core(context, msg, code, fields)
end

--- Normalise and check spawn's options; shared with exec, sync and fork.
-- Returns the table for core.spawn plus the policy fields.
function M.prepare(fname, file, args, opts, n)
  file = check.cstring(fname, 1, file, "file")
  if file == "" then check.fail(fname, 1, "file must not be empty", 2) end
  local spawnfile, argv = file, {file}
  if opts.shell then
    local shell = opts.shell == true and "/bin/sh" or
                  check.cstring(fname, n, opts.shell, "option 'shell'")
    local command = #args > 0 and (file .. " " .. concat(args, " ")) or file
    spawnfile, argv = shell, {shell, "-c", command}
  else
    for i = 1, #args do argv[i + 1] = args[i] end
  end
  local spawnargs = table.move(argv, 1, #argv, 1, {})
  if opts.argv0 ~= nil then
    argv[1] = check.cstring(fname, n, opts.argv0, "option 'argv0'")
  end
  local cwd = opts.cwd
  if cwd ~= nil then
    cwd = check.cstring(fname, n, cwd, "option 'cwd'")
    if cwd == "" then cwd = nil end
  end
  local env, path = M.build_env(fname, n, opts)
  local timeout = check.count(fname, n, opts.timeout, "timeout")
  local kill_grace = check.count(fname, n, opts.kill_grace, "kill_grace")
  local kill_signal = loop.signum(fname, n, opts.kill_signal or "SIGTERM")
  local detached = opts.detached == true
  local cleanup = opts.cleanup
  if cleanup == nil then cleanup = not detached end
  for _, k in ipairs({"uid", "gid"}) do
    local v = opts[k]
    if v ~= nil and (v < 0 or v > 0xFFFFFFFE) then
      check.fail(fname, n, ("option '%s' out of range"):format(k), 2)
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
    stdio = stdio_entries(fname, n, opts.stdio),
  }
end

--- Launch on `core_loop_` with the prepared options; on_exit gets core's
-- exit arguments. Returns proc, pid, parent stream specs | nil, err, code.
function M.launch(fname, n, lp, spec, policy, on_exit)
  local fds, child_ends, parent = plumb(fname, n, policy.stdio)
  if not fds then
    return Error.fail(Error.from_core("spawn '" .. spec.file .. "'",
                                      child_ends, parent))
  end
  spec.stdio = fds
  local proc, pid, code, step, errnum = core.spawn(lp, spec, on_exit)
  for _, fd in ipairs(child_ends) do core.close_fd(fd) end
  if not proc then
    for _, p in pairs(parent) do if p then core.close_fd(p.fd) end end
    return Error.fail(spawn_error(policy.spawnfile, policy.spawnargs,
                                  spec.cwd, pid, code, step, errnum))
  end
  return proc, pid, parent
end

local function start(file, args, opts, on_exit)
  local a, o, n = M.split_args("spawn", args, opts)
  n = n or 3
  o = check.options("spawn", n, o, M.SPAWN_OPTIONS)
  local spec, policy = M.prepare("spawn", file, a, o, n)
  return spec, policy, M.launch("spawn", n, core_loop, spec, policy, on_exit)
end

--- brood.spawn(file, args?, opts?) -> child | nil, err, code
local function spawn(file, args, opts)
  local child = setmetatable({
    killed = false, connected = false, stdio = {},
    _open_streams = 0, _close_waiters = {},
  }, Child)
  local spec, policy, proc, pid, parent = start(file, args, opts,
    function(...) child:_on_exit(...) end)
  if not proc then return nil, pid, parent end
  child.spawnfile, child.spawnargs = policy.spawnfile, policy.spawnargs
  child._kill_signal, child._kill_grace = policy.kill_signal, policy.kill_grace
  child._leads_group = spec.detached or spec.group
  child._proc, child.pid = proc, pid
  for i, p in pairs(parent) do
    if p then
      local h, msg, code = core.pipe_open(core_loop, p.fd)
      if not h then
        core.close_fd(p.fd)
        error("brood: cannot watch a stdio pipe: " .. tostring(msg), 2)
      end
      local s = stream.new(h, p.readable, p.writable)
      child.stdio[i] = s
      if p.readable then
        child._open_streams = child._open_streams + 1
        s:_when_closed(function()
          child._open_streams = child._open_streams - 1
          child:_maybe_close()
        end)
      end
    end
  end
  child.stdin, child.stdout, child.stderr =
    child.stdio[1] or nil, child.stdio[2] or nil, child.stdio[3] or nil
  if policy.timeout and policy.timeout > 0 then
    local t = core.timer_new(core_loop)
    t:unref()
    t:start(policy.timeout, 0, function()
      t:close()
      child._timer = nil
      if child:kill(child._kill_signal) then child.timed_out = true end
    end)
    child._timer = t
  end
  defer(function() child:emit("spawn") end)
  return child
end
M.spawn = check.entry(spawn)

-- ----- the child ----------------------------------------------------------

function Child:_on_exit(code, signum, maxrss_kb, utime, stime, duration)
  self.exit_code = code
  self.signal_code = signum and (core.signame(signum) or signum) or nil
  self.rusage = {maxrss_kb = maxrss_kb, utime = utime, stime = stime}
  self.duration = duration
  self._exited = true
  if self._timer then self._timer:close() self._timer = nil end
  if self._grace_timer then self._grace_timer:close() self._grace_timer = nil end
  self:emit("exit", self.exit_code, self.signal_code)
  self:_maybe_close()
end

function Child:_maybe_close()
  if not self._exited or self._open_streams > 0 or self._closed then return end
  self._closed = true
  -- Nobody writes to a child that is gone: free its stdin (and any other
  -- writable-only pipe) now rather than leak the fd.
  for _, s in pairs(self.stdio) do
    if s and not s.readable and not s.closed then s:destroy() end
  end
  self:emit("close", self.exit_code, self.signal_code)
  local waiters = self._close_waiters
  self._close_waiters = {}
  for i = 1, #waiters do waiters[i]() end
end

--- Send a signal (default "SIGTERM"); with {tree = true} to the child's
-- whole process tree. False (and nothing sent) once the child has exited.
local function kill(self, sig, opts)
  local num = loop.signum("kill", 1, sig or "SIGTERM")
  if opts ~= nil then check.options("kill", 2, opts, {tree = "boolean"}) end
  if self._exited or self._proc == nil then return false end
  local ok, msg, code
  if opts and opts.tree then
    if self._leads_group then
      ok, msg, code = self._proc:kill_group(num)
    else
      -- collect the tree first: once the child dies its children move
      local pids = core.descendants(self.pid)
      ok, msg, code = self._proc:kill(num)
      for _, pid in ipairs(pids) do core.kill(pid, num) end
    end
  else
    ok, msg, code = self._proc:kill(num)
  end
  if ok then
    self.killed = true
    return true
  end
  if ok == nil then
    return false, Error.from_core("kill", msg, code, {syscall = "kill"}), code
  end
  return false
end
Child.kill = check.entry(kill)

--- Wait for "close": returns exit_code, signal_code. Output nobody reads
-- is kept in the streams' buffers meanwhile, so the child cannot block.
function Child:wait()
  if not self._closed then
    for _, s in pairs(self.stdio) do
      if s and s.readable then s:_drain() end
    end
    await(function(done)
      self._close_waiters[#self._close_waiters + 1] = done
    end)
  end
  return self.exit_code, self.signal_code
end

--- Let the loop end while the child runs (and back).
function Child:unref()
  if self._proc then self._proc:unref() end
  for _, s in pairs(self.stdio) do if s then s:unref() end end
  return self
end

function Child:ref()
  if self._proc then self._proc:ref() end
  for _, s in pairs(self.stdio) do if s then s:ref() end end
  return self
end

--- `local child <close> = brood.spawn(...)`: kill the tree with
-- kill_signal, wait kill_grace ms, SIGKILL what is left, and reap.
function Child:__close()
  if self._closed or self._proc == nil then return end
  if not self._exited then self:kill(self._kill_signal, {tree = true}) end
  if not loop.can_wait() then
    -- inside a plain callback: no waiting; SIGKILL later if still alive
    if not self._exited and not self._grace_timer then
      local t = core.timer_new(core_loop)
      t:start(self._kill_grace, 0, function()
        t:close()
        self._grace_timer = nil
        self:kill("SIGKILL", {tree = true})
      end)
      self._grace_timer = t
    end
    return
  end
  if not self._exited then
    local exited = await(function(done)
      local t = core.timer_new(core_loop)
      t:start(self._kill_grace, 0, function() t:close() done(false) end)
      self:once("exit", function()
        if not t:is_closed() then t:close() end
        done(true)
      end)
    end)
    if not exited then self:kill("SIGKILL", {tree = true}) end
  end
  for _, s in pairs(self.stdio) do
    if s and not s.closed then s:destroy() end
  end
  self:wait()
end

function Child:__tostring()
  return ("brood.Child (pid %s)"):format(tostring(self.pid))
end

return M

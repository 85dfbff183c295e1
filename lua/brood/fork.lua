--- fork: start the brood host on a Lua script with an IPC channel on an
-- extra fd (DESIGN §6), and `brood.parent`, the channel's other end in the
-- forked script.
--
-- The channel is a socketpair: the child's end is passed as one of its
-- stdio fds and named by BROOD_CHANNEL_FD (as Node's NODE_CHANNEL_FD);
-- BROOD_MAX_MESSAGE_SIZE carries the size limit, so both sides enforce it.
-- @module brood.fork
local core = require "brood.core"
local loop = require "brood.loop"
local process = require "brood.process"
local channel = require "brood.channel"
local emitter = require "brood.emitter"
local check = require "brood.check"

local M = {}

local FORK_OPTIONS = {exec_path = "string", exec_argv = "table",
                      silent = "boolean", max_message_size = "number"}
for k, v in pairs(process.SPAWN_OPTIONS) do FORK_OPTIONS[k] = v end
M.FORK_OPTIONS = FORK_OPTIONS

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The host to fork: the running `brood`, or under plain lua5.4 the host
-- installed beside brood.core (a LuaRocks tree's bin/, or this build).
function M.host_path()
  if core.host then return assert(core.exepath()) end
  local so = package.searchpath("brood.core", package.cpath)
  if so then
    -- <tree>/lib/lua/5.4/brood/core.so -> <tree>/bin/brood (LuaRocks);
    -- <build>/lib/brood/core.so -> <build>/brood (this project's build)
    local tree = so:match("^(.*)/lib/lua/5%.4/brood/[^/]*$")
    local build = so:match("^(.*)/lib/brood/[^/]*$")
    if tree and exists(tree .. "/bin/brood") then return tree .. "/bin/brood" end
    if build and exists(build .. "/brood") then return build .. "/brood" end
  end
  return "brood"  -- PATH
end

--- brood.fork(module_path, args?, opts?) -> child | nil, err, code
local function fork(module_path, args, opts)
  module_path = check.cstring("fork", 1, module_path, "module_path")
  local a, o, n = process.split_args("fork", args, opts)
  n = n or 3
  o = check.options("fork", n, o, FORK_OPTIONS)
  local max = check.count("fork", n, o.max_message_size, "max_message_size")
                or channel.DEFAULT_MAX_MESSAGE_SIZE
  if max < 1 or max > 0xFFFFFFFF then
    check.fail("fork", n, "option 'max_message_size' out of range")
  end
  local argv = {}
  for i, v in ipairs(o.exec_argv or {}) do
    argv[i] = check.cstring("fork", n, v, ("exec_argv[%d]"):format(i))
  end
  argv[#argv + 1] = module_path
  for _, v in ipairs(a) do argv[#argv + 1] = v end

  -- stdio: inherit (or pipes when silent) plus the channel
  local stdio = o.stdio
  if stdio == nil or type(stdio) == "string" then
    local base = stdio or (o.silent and "pipe" or "inherit")
    stdio = {base, base, base, "ipc"}
  else
    stdio = table.move(stdio, 1, #stdio, 1, {})
  end
  local ipc_at
  for i, e in ipairs(stdio) do
    if e == "ipc" then
      if ipc_at then check.fail("fork", n, "stdio may hold one 'ipc' only") end
      ipc_at = i
    end
  end
  if not ipc_at then
    ipc_at = #stdio + 1
    stdio[ipc_at] = "ipc"
  end
  local mine, theirs, code = core.socketpair(channel.SOCKET_BUFFER)
  if not mine then
    return nil, require("brood.error").from_core("fork", theirs, code), code
  end
  stdio[ipc_at] = theirs

  local spawn_opts = {}
  for k, v in pairs(o) do
    if process.SPAWN_OPTIONS[k] then spawn_opts[k] = v end
  end
  spawn_opts.stdio = stdio
  local extend = {}
  for k, v in pairs(o.extend_env or {}) do extend[k] = v end
  extend.BROOD_CHANNEL_FD = tostring(ipc_at - 1)
  extend.BROOD_MAX_MESSAGE_SIZE = tostring(max)
  spawn_opts.extend_env = extend

  local ok, child, err, code2 = pcall(process.spawn,
                                      o.exec_path or M.host_path(), argv,
                                      spawn_opts)
  core.close_fd(theirs)
  if not ok then
    core.close_fd(mine)
    error(child, 2)
  end
  if not child then
    core.close_fd(mine)
    return nil, err, code2
  end
  local ch, msg, code3 = core.channel_open(loop.core_loop, mine, max,
                                           channel.HIGH_WATER_MARK)
  if not ch then
    core.close_fd(mine)
    child:kill("SIGKILL")
    error("brood: fork: cannot open the IPC channel: " .. tostring(msg) ..
          " (" .. tostring(code3) .. ")", 2)
  end
  -- The child's "close" waits for its channel as for its output streams.
  child._open_streams = child._open_streams + 1
  channel.attach(child, ch, function()
    child._open_streams = child._open_streams - 1
    child:_maybe_close()
  end)
  return child
end

M.fork = check.entry(fork)

-- ----- brood.parent ---------------------------------------------------------

local Parent = emitter.extend({__name = "brood.Parent"})
Parent.__index = Parent

--- The forked script's end of the channel, or nil when this process was
-- not started by brood.fork. Made once; the variables are cleared so that
-- this script's own children do not take them for theirs.
function M.parent()
  if M._parent ~= nil then return M._parent or nil end
  local fd = tonumber(os.getenv("BROOD_CHANNEL_FD") or "")
  if not fd then
    M._parent = false
    return nil
  end
  local max = tonumber(os.getenv("BROOD_MAX_MESSAGE_SIZE") or "") or
              channel.DEFAULT_MAX_MESSAGE_SIZE
  core.unsetenv("BROOD_CHANNEL_FD")
  core.unsetenv("BROOD_MAX_MESSAGE_SIZE")
  local ch = core.channel_open(loop.core_loop, fd, max, channel.HIGH_WATER_MARK)
  if not ch then
    M._parent = false
    return nil
  end
  local parent = setmetatable({}, Parent)
  channel.attach(parent, ch)
  M._parent = parent
  return parent
end

return M

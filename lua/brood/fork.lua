--- fork: start the brood host on a Lua script with an IPC channel on an
-- extra fd (DESIGN §6), and `brood.parent`, the channel's other end in the
-- forked script.
--
-- fork is spawn of the host with an "ipc" stdio entry: brood.process
-- makes the channel (a socketpair; the child's end is named by
-- BROOD_CHANNEL_FD, the size limit by BROOD_MAX_MESSAGE_SIZE).
-- @module brood.fork
local core = require "brood.core"
local loop = require "brood.loop"
local process = require "brood.process"
local channel = require "brood.channel"
local emitter = require "brood.emitter"
local check = require "brood.check"
local Error = require "brood.error"

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
    local host = tree and exists(tree .. "/bin/brood") and tree .. "/bin/brood"
                 or build and exists(build .. "/brood") and build .. "/brood"
    if host then
      -- absolute, so that the child's cwd option cannot break it
      if host:sub(1, 1) ~= "/" then
        host = assert(core.cwd()) .. "/" .. host:gsub("^%./", "")
      end
      return host
    end
  end
  return "brood"  -- PATH
end

-- The script must exist: else the host would start only to exit 1.
-- Resolved against opts.cwd, as the host will resolve it.
local function script_missing(module_path, cwd, argv)
  local path = module_path
  if cwd ~= nil and cwd ~= "" and module_path:sub(1, 1) ~= "/" then
    path = cwd .. "/" .. module_path
  end
  local f = io.open(path, "rb")
  if f then
    f:close()
    return nil
  end
  local context = ("fork '%s'"):format(module_path)
  if path ~= module_path then
    context = ("fork '%s' (in cwd '%s')"):format(module_path, cwd)
  end
  return Error.new({message = context .. ": ENOENT: no such file or directory",
                    code = "ENOENT", errno = 2, syscall = "fork", path = path,
                    spawnargs = argv})
end

-- The stdio of a fork: inherit (or pipes when silent) plus the channel.
local function fork_stdio(opts)
  local stdio = opts.stdio
  if stdio == nil or type(stdio) == "string" then
    local base = stdio or (opts.silent and "pipe" or "inherit")
    return {base, base, base, "ipc"}
  end
  local has_ipc = false
  stdio = table.move(stdio, 1, #stdio, 1, {})
  for _, e in ipairs(stdio) do has_ipc = has_ipc or e == "ipc" end
  if not has_ipc then stdio[#stdio + 1] = "ipc" end
  return stdio
end

--- brood.fork(module_path, args?, opts?) -> child | nil, err, code
-- spawn of the host with an "ipc" entry (DESIGN §6).
function M.fork(module_path, args, opts)
  module_path = check.cstring("fork", 1, module_path, "module_path")
  local script_args, options, opts_at = process.split_args("fork", args, opts)
  opts_at = opts_at or 3
  options = check.options("fork", opts_at, options, FORK_OPTIONS)
  local argv = {}
  for i, v in ipairs(options.exec_argv or {}) do
    argv[i] = check.cstring("fork", opts_at, v, ("exec_argv[%d]"):format(i))
  end
  argv[#argv + 1] = module_path
  for _, v in ipairs(script_args) do argv[#argv + 1] = v end
  -- spawn's options, but never a shell (as Node: the host is no command)
  local spawn_opts = {}
  for k, v in pairs(options) do
    if process.SPAWN_OPTIONS[k] and k ~= "shell" then spawn_opts[k] = v end
  end
  spawn_opts.stdio = fork_stdio(options)
  return process.spawn_child("fork", opts_at,
                             options.exec_path or M.host_path(), argv,
                             spawn_opts, function()
    -- another exec_path (python3, node...) may take a module name
    if options.exec_path ~= nil then return true end
    local err = script_missing(module_path, options.cwd, argv)
    if err then return Error.fail(err) end
    return true
  end)
end

-- ----- brood.parent ---------------------------------------------------------

-- The forked script's end: its Channel's methods and events.
local Parent = channel.extend(emitter.extend({__name = "brood.Parent"},
  {"message", "disconnect", "error", "drain"}))
Parent.__index = Parent

--- Let the script end while the channel is open (and back).
function Parent:unref()
  self._channel:keep_alive(false)
  return self
end

function Parent:ref()
  self._channel:keep_alive(true)
  return self
end

check.methods(Parent, "parent", {"unref", "ref", "on", "once", "off"})

--- The forked script's end of the channel, or nil when this process was
-- not started by brood.fork. Made once; the variables are cleared so that
-- this script's own children do not take them for theirs.
function M.parent()
  if M._parent ~= nil then return M._parent or nil end
  local value = os.getenv("BROOD_CHANNEL_FD") or ""
  -- `brood --channel=stdio` sets "stdio:IN:OUT": its stdin and stdout,
  -- moved to these fds (brood.stdio_channel)
  local fd_in, fd_out = value:match("^stdio:(%d+):(%d+)$")
  local fd = tonumber(value)
  if not fd and not fd_in then
    M._parent = false
    return nil
  end
  local max = tonumber(os.getenv("BROOD_MAX_MESSAGE_SIZE") or "") or
              channel.DEFAULT_MAX_MESSAGE_SIZE
  core.unsetenv("BROOD_CHANNEL_FD")
  core.unsetenv("BROOD_MAX_MESSAGE_SIZE")
  local ch
  if fd_in then
    ch = require("brood.stdio_channel").open_fds(tonumber(fd_in),
      tonumber(fd_out), max, channel.HIGH_WATER_MARK)
  else
    ch = core.channel_open(loop.default, fd, max, channel.HIGH_WATER_MARK)
  end
  if not ch then
    M._parent = false
    return nil
  end
  local parent = setmetatable({}, Parent)
  parent._channel = channel.new(parent, ch, process.IPC_HANDLES)
  M._parent = parent
  return parent
end

return M

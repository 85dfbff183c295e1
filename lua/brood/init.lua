--- brood: Node.js-style child processes for Lua 5.4.
-- The public API (DESIGN.md); each piece lives in its own module.
-- @module brood
local core = require "brood.core"
-- Process-wide settings, once, before the default loop exists (the core
-- changes none by being loaded): SIGPIPE ignored, SIGCHLD not ignored,
-- fds 0-2 open. Options from the environment, read here, not in C.
core.setup_process()
do
  local spin = os.getenv("BROOD_SPIN_US")
  local no_pidfd = os.getenv("BROOD_NO_PIDFD")
  core.configure{
    -- as strtol read it: leading digits, anything else is 0 (no spinning)
    spin_us = spin and (tonumber(spin:match("^%s*([-+]?%d+)")) or 0),
    pidfd = no_pidfd == nil or no_pidfd == "" or no_pidfd == "0",
  }
end
local loop = require "brood.loop"
local tasks = require "brood.tasks"
local Error = require "brood.error"
local process = require "brood.process"

local brood = {
  _VERSION = "brood 0.1.0",
  Error = Error.Error,

  run = tasks.run,
  stop = loop.stop,
  go = tasks.go,
  sleep = tasks.sleep,
  set_timeout = loop.set_timeout,
  set_interval = loop.set_interval,
  now = loop.now,
  hrtime = loop.hrtime,
  on_signal = loop.on_signal,
  kill = loop.kill,
  current_task = tasks.current,

  spawn = process.spawn,
}

-- The rest loads on first use: a script that only spawns pays for no
-- more. Each entry: the module, and the field of it (none: the module).
local lazy = {
  exec = {"brood.exec", "exec"}, exec_file = {"brood.exec", "exec_file"},
  spawn_sync = {"brood.sync", "spawn_sync"},
  exec_sync = {"brood.sync", "exec_sync"},
  exec_file_sync = {"brood.sync", "exec_file_sync"},
  fork = {"brood.fork", "fork"},
  msgpack = {"brood.msgpack"},
  array = {"brood.msgpack", "array"},
  net = {"brood.net"},
  pool = {"brood.pool", "pool"},
  worker = {"brood.worker", "worker"},
}

setmetatable(brood, {
  __index = function(t, k)
    local entry = lazy[k]
    if entry == nil then return nil end
    local m = require(entry[1])
    local v = entry[2] and m[entry[2]] or m
    rawset(t, k, v)
    return v
  end,
})

-- In a script started by brood.fork: the channel to the parent.
if os.getenv("BROOD_CHANNEL_FD") then
  brood.parent = require("brood.fork").parent()
end

--- Facts for diagnostics and tests.
brood.core_info = {
  uv_version = core.uv_version,
  exit_watch = core.exit_watch,
}

return brood

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
-- Everything loads on first use: `require "brood"` reads no other Lua
-- file, so a script that runs often (a hook, a cron job) pays only for
-- what it touches. Each entry: the module, and the field of it (none: the
-- module itself).
local lazy = {
  Error = {"brood.error", "Error"},
  go = {"brood.tasks", "go"},
  sleep = {"brood.tasks", "sleep"}, current_task = {"brood.tasks", "current"},
  stop = {"brood.loop", "stop"},
  set_timeout = {"brood.loop", "set_timeout"},
  set_interval = {"brood.loop", "set_interval"},
  now = {"brood.loop", "now"},
  on_signal = {"brood.loop", "on_signal"}, kill = {"brood.loop", "kill"},
  spawn = {"brood.process", "spawn"},
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
  testing = {"brood.testing"},
  all = {"brood.compose", "all"}, race = {"brood.compose", "race"},
  map = {"brood.compose", "map"},
  pipeline = {"brood.pipeline", "pipeline"},
  shell_quote = {"brood.shell", "shell_quote"},
  shell_join = {"brood.shell", "shell_join"},
  pid = {"brood.host", "pid"},
}

local brood = {
  _VERSION = "brood 0.1.0",
  hrtime = core.hrtime,
}

--- brood.run([fn]): with nothing ever started (the loop module not even
-- loaded: the host calls this after every script), there is nothing to
-- run, and nothing is loaded for it.
function brood.run(fn)
  if fn == nil and package.loaded["brood.loop"] == nil then return end
  local run = require("brood.tasks").run
  brood.run = run
  return run(fn)
end

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

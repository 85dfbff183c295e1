--- brood: Node.js-style child processes for Lua 5.4.
-- The public API (DESIGN.md); each piece lives in its own module.
-- @module brood
local core = require "brood.core"
local loop = require "brood.loop"
local Error = require "brood.error"
local process = require "brood.process"

local brood = {
  _VERSION = "brood 0.1.0",
  Error = Error.Error,

  run = loop.run,
  stop = loop.stop,
  go = loop.go,
  sleep = loop.sleep,
  set_timeout = loop.set_timeout,
  set_interval = loop.set_interval,
  now = loop.now,
  hrtime = loop.hrtime,
  on_signal = loop.on_signal,
  kill = loop.kill,
  current_task = loop.current,

  spawn = process.spawn,
}

-- exec and the sync variants load on first use (most scripts need one).
local lazy = {
  exec = "brood.exec", exec_file = "brood.exec",
  spawn_sync = "brood.sync", exec_sync = "brood.sync",
  exec_file_sync = "brood.sync",
}

setmetatable(brood, {
  __index = function(t, k)
    local mod = lazy[k]
    if mod == nil then return nil end
    local ok, m = pcall(require, mod)
    if not ok then return nil end
    local v = m[k]
    rawset(t, k, v)
    return v
  end,
})

--- Facts for diagnostics and tests.
brood.core_info = {
  uv_version = core.uv_version,
  exit_watch = core.exit_watch,
}

return brood

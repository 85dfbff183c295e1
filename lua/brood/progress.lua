--- The one-line progress display of pool:map and brood.map: drawn on
-- stderr only when stderr is a terminal (done/total, rate, ETA), redrawn
-- at most every EVERY ms, erased at the end.
-- @module brood.progress
local core = require "brood.core"

local M = {}

--- The line is redrawn at most this often (ms).
M.EVERY = 100

local format, hrtime = string.format, core.hrtime

local Progress = {__name = "brood.Progress"}
Progress.__index = Progress

--- A progress line for `total` items, or nil when stderr is not a
-- terminal (then there is nothing to draw, and callers skip it).
function M.new(total)
  if not os.execute("test -t 2") then return nil end
  return setmetatable({t0 = hrtime(), last = 0, total = total}, Progress)
end

--- `done` of the total are finished: redraw, unless it was drawn lately.
function Progress:update(done)
  local now = hrtime()
  if now - self.last < M.EVERY * 1e6 then return end
  self.last = now
  local total = self.total
  local secs = (now - self.t0) / 1e9
  local rate = secs > 0 and done / secs or 0
  local eta = "?"
  if rate > 0 then
    local left = math.floor((total - done) / rate + 0.5)
    eta = left >= 60 and format("%dm%02ds", left // 60, left % 60)
          or format("%ds", left)
  end
  io.stderr:write(format("\r%d/%d tasks (%d%%)  %.0f/s  ETA %s\27[K", done,
                         total, done * 100 // total, rate, eta))
  io.stderr:flush()
end

--- Erase the line.
function Progress:finish()
  io.stderr:write("\r\27[K")
  io.stderr:flush()
end

return M

-- Follow a log with `tail -F`, keep the lines that match a pattern, and
-- give up when no matching line comes within a time limit. To run by
-- itself, it writes the log too: a timer appends a line every 50 ms to a
-- temp file (an ERROR every third line, twelve lines in all).
--
--   brood examples/log_follower.lua [count] [wait_ms]
--
-- It stops after `count` ERROR lines (default 3) or when `wait_ms`
-- (default 2000) pass without one, then kills tail.
local brood = require "brood"

local want = tonumber(arg and arg[1]) or 3
local wait_ms = tonumber(arg and arg[2]) or 2000

-- the application whose log we follow
local log = os.tmpname()
local written = 0
local writer
writer = brood.set_interval(50, function()
  written = written + 1
  local f = assert(io.open(log, "a"))
  f:write(written % 3 == 0 and ("ERROR disk %d full\n"):format(written)
          or ("INFO request %d ok\n"):format(written))
  f:close()
  if written == 12 then writer:stop() end
end)

-- -n +1: from the first line; -F: keep following if it is rotated
local tail <close> = assert(brood.spawn("tail", {"-n", "+1", "-F", log}))
local next_line = tail.stdout:lines()

-- The next matching line, or nil at EOF. Each step of lines() is a
-- waiting read, so this runs as a task that the script waits on with a
-- limit: the task keeps reading if the wait runs out.
local function next_error()
  for line in next_line do
    if line:find("^ERROR ") then return line end
  end
  return nil
end

local seen, pending = 0, nil
while seen < want do
  pending = pending or brood.go(next_error)
  local line, err, code = pending:wait(wait_ms)
  if code == "ETIMEDOUT" then
    print(("no ERROR line within %d ms: stopping"):format(wait_ms))
    break
  end
  pending = nil
  if line == nil then print("tail ended") break end
  seen = seen + 1
  print(("match %d: %s"):format(seen, line))
end

-- Stop the reader (it is waiting on tail's stdout), then tail itself.
if pending then
  pending:cancel()
  pcall(pending.wait, pending)  -- it ends with ECANCELED
end
writer:stop()
tail:kill()
tail:wait()
os.remove(log)
print(("%d matching line(s)"):format(seen))

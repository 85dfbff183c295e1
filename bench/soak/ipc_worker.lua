-- soak ipc worker: count and check the parent's stream {seq, pad}, reply
-- with the count every PROGRESS messages and when the parent's {op="end"}
-- comes; meanwhile stream COUNT messages of our own to the parent, pausing
-- on backpressure until "drain", then {op="done"}. Ends when the parent
-- disconnects.
local brood = require "brood"
local parent = assert(brood.parent, "run me with brood.fork")

local FIRST = math.tointeger(tonumber(arg[1])) -- our first seq, and the parent's
local COUNT = math.tointeger(tonumber(arg[2])) -- messages each way
local PROGRESS = 100000

-- Must match ipc.lua: 0-255 bytes, derived from seq.
local function pad(seq) return string.char(97 + seq % 26):rep(seq % 256) end

local function rss_kb()
  collectgarbage("collect")
  collectgarbage("collect")
  local f = assert(io.open("/proc/self/status"))
  local kb = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
  f:close()
  return kb
end

-- The RSS baseline after ~2% of the stream, as for the parent.
local WARM = math.max(1, COUNT // 50)
local expected, received, bad, rss_start = FIRST, 0, 0, nil

parent:on("message", function(msg)
  if msg.op == "end" then
    parent:send({op = "count", received = received, bad = bad, final = true,
                 rss_start = rss_start, rss_end = rss_kb()})
    return
  end
  received = received + 1
  if msg.seq ~= expected or msg.pad ~= pad(expected) then bad = bad + 1 end
  expected = expected + 1
  if received == WARM then rss_start = rss_kb() end
  if received % PROGRESS == 0 then
    parent:send({op = "count", received = received, bad = bad})
  end
end)

local seq, last, drains = FIRST, FIRST + COUNT - 1, 0
local function pump()
  while seq <= last do
    local s = seq
    seq = s + 1
    if not parent:send({seq = s, pad = pad(s)}) then
      drains = drains + 1
      parent:once("drain", pump)
      return
    end
  end
  parent:send({op = "done", sent = COUNT, drains = drains})
end
pump()

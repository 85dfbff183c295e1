-- soak fork_kill worker: stream {seq, payload, got, bad} to the parent
-- (pausing on backpressure until "drain"), until the parent kills us.
-- Payload sizes cycle through 10-199 bytes, 5000 bytes, 200 KiB (the
-- large-string path) and runs of three 1 MiB frames (more than the socket
-- takes at once, so several writes each), so kills land inside frames of
-- every size.
--
-- Out of band, on stderr (a pipe the parent reads), "w <seq>" is written
-- from each send callback that reports success, i.e. once that message
-- has been written to the channel: those are the messages the parent must
-- receive even though we are killed. The write is synchronous and shorter
-- than PIPE_BUF, so a kill never leaves half a line.
--
-- We also check the messages the parent sends us (sequence and payload),
-- and report the counts in `got` and `bad` of each message we send.
local brood = require "brood"
local parent = assert(brood.parent, "run me with brood.fork")

local CAP = 1000000 -- stop streaming here if nobody kills us (never expected)

-- The payload of message seq (bench/soak/payload.lua, shared with the parent).
local payload = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/payload.lua")

local got, bad, expected = 0, 0, 1
parent:on("message", function(msg)
  got = got + 1
  if msg.seq ~= expected or msg.payload ~= ("p%d"):format(expected) then
    bad = bad + 1
  end
  expected = (tonumber(msg.seq) or expected) + 1
end)

local function written(seq)
  return function(err)
    if err == nil then io.stderr:write("w ", seq, "\n") end
  end
end

-- Send in bursts of BURST, then let the loop turn: the send callbacks (and
-- so the acks) run from the loop, and a channel whose peer keeps up never
-- says "full", so one unbroken loop would ack nothing before the kill.
-- The pause is 1 ms, not 0: a set_timeout(0) chain starves the loop's I/O
-- (it re-runs in the same timer pass), so no callback would ever run.
local BURST = 2
local seq = 0
local function pump()
  for _ = 1, BURST do
    if seq >= CAP then return end
    seq = seq + 1
    local ok = parent:send({seq = seq, payload = payload(seq), got = got, bad = bad},
                           written(seq))
    if not ok then
      parent:once("drain", pump)
      return
    end
  end
  brood.set_timeout(1, pump)
end
pump()

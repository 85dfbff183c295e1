-- W6: 200 messages of 1 MiB ({seq=i, payload=<1 MiB string>}) parent ->
-- child, then an {op="end"} message; the child replies with the total
-- payload bytes it received. Rate = MiB/s, timed from the first send to
-- the reply.
-- The sender respects backpressure as in W5: when send returns false it
-- stops and goes on from the channel's "drain" event.
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 200
local WARMUP = 10 -- untimed batch: the first messages pay for start-up
local MIB = 1 << 20
local PAYLOAD = string.rep("0123456789abcdef", MIB // 16)
local DIR = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."

local child = assert(brood.fork(DIR .. "/w6_worker.lua"))

-- Send n payloads, then the end marker, pausing on backpressure.
local function send_all(n)
  local i = 0
  local function pump()
    while i < n do
      i = i + 1
      if not child:send({seq = i, payload = PAYLOAD}) then
        child:once("drain", pump)
        return
      end
    end
    child:send({op = "end"})
  end
  pump()
end

local function batch(n)
  send_all(n)
  local reply = assert(child:recv())
  assert(reply.bytes == n * MIB, "the child got " .. tostring(reply.bytes) .. " bytes")
end

batch(WARMUP)
local t0 = brood.hrtime()
batch(N)
local ns = brood.hrtime() - t0
child:disconnect()
local code, signal = child:wait()
assert(code == 0, "worker exited with " .. tostring(code or signal))
print(string.format("RATE %.1f", N / (ns / 1e9)))

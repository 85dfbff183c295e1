-- W5: 200000 small messages ({seq=i}) parent -> child, then an {op="end"}
-- message; the child replies with the count it received. Rate = messages/s,
-- timed from the first send to the count reply.
-- The sender respects backpressure: when send returns false it stops and
-- goes on from the channel's "drain" event. child:recv() at the top level
-- drives the loop (sending, draining) until the count is back.
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 200000
local WARMUP = 2000 -- untimed batch: the first messages pay for start-up
local DIR = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."

local child = assert(brood.fork(DIR .. "/w5_worker.lua"))

-- Send {seq=1..n}, then the end marker, pausing on backpressure.
local function send_all(n)
  local i = 0
  local function pump()
    while i < n do
      i = i + 1
      if not child:send({seq = i}) then
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
  assert(reply.count == n, "the child counted " .. tostring(reply.count))
end

batch(WARMUP)
local t0 = brood.hrtime()
batch(N)
local ns = brood.hrtime() - t0
child:disconnect()
local code, signal = child:wait()
assert(code == 0, "worker exited with " .. tostring(code or signal))
print(string.format("RATE %.1f", N / (ns / 1e9)))

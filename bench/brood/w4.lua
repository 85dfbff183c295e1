-- W4: IPC ping-pong over fork's channel, 20000 round trips. The parent
-- sends {id=i, op="ping", payload="x"}, the child replies {id=i, op="pong"},
-- and the parent waits for the reply before sending the next.
-- child:recv() at the top level drives the loop until the reply is in.
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 20000
local WARMUP = 200 -- untimed: the first round trips pay for start-up
local DIR = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."

local child = assert(brood.fork(DIR .. "/w4_worker.lua"))

local function round_trip(i)
  child:send({id = i, op = "ping", payload = "x"})
  local reply = assert(child:recv())
  assert(reply.id == i and reply.op == "pong", "unexpected reply")
end

for i = 1, WARMUP do round_trip(i) end
local t0 = brood.hrtime()
for i = 1, N do round_trip(i) end
local ns = brood.hrtime() - t0
child:disconnect()
local code, signal = child:wait()
assert(code == 0, "worker exited with " .. tostring(code or signal))
print(string.format("RATE %.1f", N / (ns / 1e9)))

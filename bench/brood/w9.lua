-- W9: fork -> first message back -> exit, 200 times in sequence. The child
-- sends one message as it starts, then disconnects and exits; the parent
-- receives the message, then waits for the child to exit. Rate = forks/s.
-- Unlike X1, the host's start-up is part of what is timed here.
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 200
local WARMUP = 5 -- untimed: the first forks pay for page faults and caches
local DIR = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local WORKER = DIR .. "/w9_worker.lua"

local function once()
  local child = assert(brood.fork(WORKER))
  local msg = assert(child:recv())
  assert(msg.op == "ready", "unexpected first message")
  local code, signal = child:wait()
  assert(code == 0, "worker exited with " .. tostring(code or signal))
end

for _ = 1, WARMUP do once() end
local t0 = brood.hrtime()
for _ = 1, N do once() end
local ns = brood.hrtime() - t0
print(string.format("RATE %.1f", N / (ns / 1e9)))

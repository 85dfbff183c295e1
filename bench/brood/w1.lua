-- W1: spawn /bin/true and wait for it, 2000 times in sequence.
-- Default stdio (three pipes), as Node's default, so both pay for pipes.
-- child:wait() at the top level drives the loop until "close".
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 2000
local WARMUP = 20 -- untimed: the first spawns pay for page faults and caches

local function once()
  local child = assert(brood.spawn("/bin/true"))
  local code, signal = child:wait()
  assert(code == 0, "/bin/true exited with " .. tostring(code or signal))
end

for _ = 1, WARMUP do once() end
local t0 = brood.hrtime()
for _ = 1, N do once() end
local ns = brood.hrtime() - t0
print(string.format("RATE %.1f", N / (ns / 1e9)))

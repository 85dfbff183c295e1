-- W2: run `/bin/echo hello` capturing stdout, 2000 times in sequence.
-- exec_file without a callback waits and returns {stdout=, stderr=, ...}.
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 2000
local WARMUP = 20 -- untimed: the first runs pay for page faults and caches

local function once()
  local r = assert(brood.exec_file("/bin/echo", {"hello"}))
  assert(r.stdout == "hello\n", "unexpected stdout " .. string.format("%q", r.stdout))
end

for _ = 1, WARMUP do once() end
local t0 = brood.hrtime()
for _ = 1, N do once() end
local ns = brood.hrtime() - t0
print(string.format("RATE %.1f", N / (ns / 1e9)))

-- W3: 200 concurrent spawns of /bin/true, 10 rounds: start 200, wait for
-- all 200, repeat. Rate counts spawns, not rounds.
-- All 200 are spawned before the first wait, so they run concurrently; each
-- top-level wait drives the loop, which reaps the others meanwhile.
local brood = require "brood"

local ROUNDS = tonumber(arg and arg[1]) or 10
local BATCH = 200

local function round()
  local children = {}
  for i = 1, BATCH do children[i] = assert(brood.spawn("/bin/true")) end
  for i = 1, BATCH do
    local code, signal = children[i]:wait()
    assert(code == 0, "/bin/true exited with " .. tostring(code or signal))
  end
end

round() -- untimed warm-up round
local t0 = brood.hrtime()
for _ = 1, ROUNDS do round() end
local ns = brood.hrtime() - t0
print(string.format("RATE %.1f", ROUNDS * BATCH / (ns / 1e9)))

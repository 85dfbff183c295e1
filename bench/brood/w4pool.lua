-- W4X4: pool-shaped IPC ping-pong. The parent forks 4 workers
-- (w4_worker.lua) and ping-pongs with each at once, one message in
-- flight per worker, 5000 round trips each: 5 processes share the
-- machine's CPUs (bench/run pins them to two), so a loop that spins
-- takes the CPU a worker needs. Rate = round trips/s, all workers summed.
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 20000 -- round trips in all
local K = 4
local WARMUP = 200 -- untimed, per worker
local DIR = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."

local children = {}
for k = 1, K do children[k] = assert(brood.fork(DIR .. "/w4_worker.lua")) end

-- n round trips with every worker at once, each driven by its own task.
local function round(n)
  local tasks = {}
  for k = 1, K do
    local child = children[k]
    tasks[k] = brood.go(function()
      for i = 1, n do
        child:send({id = i, op = "ping", payload = "x"})
        local reply = assert(child:recv())
        assert(reply.id == i and reply.op == "pong", "unexpected reply")
      end
    end)
  end
  for k = 1, K do tasks[k]:wait() end
end

round(WARMUP)
local per = N // K
local t0 = brood.hrtime()
round(per)
local ns = brood.hrtime() - t0
for k = 1, K do
  children[k]:disconnect()
  local code, signal = children[k]:wait()
  assert(code == 0, "worker exited with " .. tostring(code or signal))
end
print(string.format("RATE %.1f", per * K / (ns / 1e9)))

-- W7: a process pool, 20000 trivial tasks (function(x) return x end) on
-- 2 workers. Prints the unwindowed rate (map of all tasks at once, one
-- task in flight per worker) as RATE, the pipelined rate (concurrency =
-- 64) as RATE_PIPELINED, and the parent's peak RSS (VmHWM) in KiB as
-- PEAK_RSS_KB, read at the end.
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 20000
local WARMUP = 500 -- untimed: the workers start and warm up
local DIR = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."

local tasks = {}
for i = 1, N do tasks[i] = i end

local function rate(concurrency)
  local pool <close> = assert(brood.pool(DIR .. "/w7_worker.lua",
    {size = 2, min_size = 2, concurrency = concurrency}))
  assert(pool:map(table.move(tasks, 1, WARMUP, 1, {})))
  local t0 = brood.hrtime()
  local results = assert(pool:map(tasks))
  local ns = brood.hrtime() - t0
  for i = 1, N, 997 do assert(results[i] == i, "wrong result") end
  assert(#results == N, "missing results")
  return N / (ns / 1e9)
end

local unwindowed = rate(1)
local pipelined = rate(64)
local status = io.open("/proc/self/status"):read("a")
print(string.format("RATE %.1f", unwindowed))
print(string.format("RATE_PIPELINED %.1f", pipelined))
print("PEAK_RSS_KB " .. (status:match("VmHWM:%s*(%d+)") or "?"))

-- W6N: W6 without waiting for "drain": 200 messages of 1 MiB
-- ({seq=i, payload=<the same 1 MiB string>}) sent in one go, as Node's own
-- benchmark and many users do, then {op="end"}; the child (w6_worker.lua)
-- replies with the total payload bytes it received. Rate = MiB/s, timed
-- from the first send to the reply. Prints the parent's peak RSS too
-- (VmHWM): the whole backlog is queued at once.
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 200
local WARMUP = 10 -- untimed batch: the first messages pay for start-up
local MIB = 1 << 20
local PAYLOAD = string.rep("0123456789abcdef", MIB // 16)
local DIR = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."

local child = assert(brood.fork(DIR .. "/w6_worker.lua"))

local function batch(n)
  for i = 1, n do child:send({seq = i, payload = PAYLOAD}) end
  child:send({op = "end"})
  local reply = assert(child:recv())
  assert(reply.bytes == n * MIB,
         "the child got " .. tostring(reply.bytes) .. " bytes")
end

local function peak_rss_kb()
  local f = io.open("/proc/self/status")
  if not f then return "n/a" end
  local kb = f:read("a"):match("VmHWM:%s*(%d+)")
  f:close()
  return kb or "n/a"
end

batch(WARMUP)
local t0 = brood.hrtime()
batch(N)
local ns = brood.hrtime() - t0
child:disconnect()
local code, signal = child:wait()
assert(code == 0, "worker exited with " .. tostring(code or signal))
print(string.format("RATE %.1f", N / (ns / 1e9)))
print("PEAK_RSS_KB " .. peak_rss_kb())

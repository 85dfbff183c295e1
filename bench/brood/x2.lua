-- X2: W1 (spawn /bin/true + wait) 100 times from a parent that holds 1 GiB.
-- A fork()-based spawn copies page tables, so its cost grows with the
-- parent's size; vfork/posix_spawn does not. This shows which one we pay.
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 100
local WARMUP = 5
local MIB = 1 << 20

-- 1024 distinct 1 MiB strings: Lua does not intern long strings, and
-- string.rep writes every byte, so the memory is resident, not reserved.
local hold = {}
for i = 1, 1024 do hold[i] = string.rep(string.char(65 + i % 26), MIB) end

local f = assert(io.open("/proc/self/status"))
local rss_kb = tonumber(f:read("a"):match("VmRSS:%s*(%d+) kB"))
f:close()
io.stderr:write(string.format("brood parent VmRSS %d MiB\n", rss_kb // 1024))

local function once()
  local child = assert(brood.spawn("/bin/true"))
  local code, signal = child:wait()
  assert(code == 0, "/bin/true exited with " .. tostring(code or signal))
end

for _ = 1, WARMUP do once() end
local t0 = brood.hrtime()
for _ = 1, N do once() end
local ns = brood.hrtime() - t0
assert(#hold == 1024, "lost the 1 GiB") -- keep it alive until measured
print(string.format("RATE %.1f", N / (ns / 1e9)))

-- Spinning before the poll (src/loop.c): a loop holding an IPC channel
-- spins only when the peer can run meanwhile. Each test runs a ping-pong
-- script under the brood host (pinned with taskset where it says) and
-- reads the loop's spin counters (loop:spin_stats()), never a timing.

local H = require "spec.helper"
local brood, core = H.brood, H.core

-- N round trips with spec/fixtures/ipc_echo.lua, then the counters of the
-- timed part, one per line: "spins 0", "won 0", ...
local SCRIPT = [[
local brood = require "brood"
local core = require "brood.core"
local N = tonumber(arg[1])
local child = assert(brood.fork("spec/fixtures/ipc_echo.lua"))
assert(child:recv() == "ready")
local function round_trip(i)
  child:send({i = i})
  local reply = assert(child:recv())
  assert(reply.echo.i == i, "unexpected reply")
end
for i = 1, 50 do round_trip(i) end  -- the budget settles
local before = core.default_loop:spin_stats()
for i = 1, N do round_trip(i) end
local after = core.default_loop:spin_stats()
child:send({op = "exit"})
assert(child:wait() == 0)
for _, k in ipairs({"spins", "won", "contended", "skipped", "blocks"}) do
  print(k .. " " .. (after[k] - before[k]))
end
]]

--- Run SCRIPT with n round trips as `prefix... host script n`, with env
-- added; returns the counters.
local function ping_pong(n, prefix, env)
  local script = H.tmpfile(SCRIPT)
  local argv = {}
  for _, a in ipairs(prefix or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = H.host
  argv[#argv + 1] = script
  argv[#argv + 1] = tostring(n)
  local file = table.remove(argv, 1)
  local r, err = brood.exec_file(file, argv, {extend_env = env})
  os.remove(script)
  assert(r, err)
  local stats = {}
  for k, v in r.stdout:gmatch("(%a+) (%d+)") do stats[k] = tonumber(v) end
  assert(stats.spins, "no counters in: " .. r.stdout .. r.stderr)
  return stats
end

--- Start a busy loop pinned to cpu; returns its child.
local function hog(cpu)
  return assert(brood.spawn("taskset",
    {"-c", tostring(cpu), "sh", "-c", "while :; do :; done"},
    {stdio = "ignore"}))
end

describe("spinning before the poll", function()
  H.guard()

  it("never spins in a process allowed on one CPU only (taskset -c 0)",
     function()
    local s = ping_pong(300, {"taskset", "-c", "0"})
    assert.equal(0, s.spins)
    -- held (the channel is open), but every wait blocked at once
    assert.is_true(s.skipped > 0 and s.skipped <= s.blocks)
  end)

  it("never spins with BROOD_SPIN_US=0", function()
    local s = ping_pong(300, nil, {BROOD_SPIN_US = "0"})
    assert.equal(0, s.spins)
    assert.equal(0, s.won)
  end)

  it("hardly spins while every CPU it may use is busy", function()
    -- one busy loop on each of the two CPUs the script may use: a spin
    -- would take the CPU from the peer; the loop sees no idle CPU (or a
    -- yield that let another task run) and blocks instead
    local hogs = {hog(0), hog(1)}
    local ok, s = pcall(ping_pong, 400, {"taskset", "-c", "0,1"})
    for _, h in ipairs(hogs) do
      h:kill("SIGKILL")
      h:wait()
    end
    assert(ok, s)
    assert.is_true(s.spins <= 400 / 8,
                   ("%d spins in 400 round trips"):format(s.spins))
    assert.is_true(s.skipped + s.blocks >= 400 * 3 / 4)
  end)

  it("counts from zero on a new loop", function()
    local loop = core.loop_new()
    local s = loop:spin_stats()
    loop:close()
    assert.same({spins = 0, won = 0, contended = 0, skipped = 0, blocks = 0},
                s)
  end)
end)

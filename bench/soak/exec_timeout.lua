-- soak exec_timeout: 10 000 exec / exec_file runs of `sleep 5` whose
-- 20 ms timeout fires, 8 at once.
--
-- Odd iterations use brood.exec("sleep 5") (a shell, so the timeout has a
-- tree to kill), even ones brood.exec_file("sleep", {"5"}). Each must come
-- back as docs/api.md says a timeout does: nil, err with code
-- "ETIMEDOUT", timed_out = true, killed = true, signal = "SIGTERM" (the
-- default kill_signal); anything else is a failure.
-- The sleep is really `sleep 5.<our pid>` (still about 5 s), a marker: at
-- the end, any such sleep still alive escaped the timeout's tree kill (with
-- exec, sleep is the shell's child) and counts as a failure.
local brood = require "brood"
local soak = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/common.lua")

local N = soak.count(10000)
local WIDTH = 8
local TIMEOUT = 20 -- ms
local DURATION = "5." .. brood.pid

local failures, first_failure = 0, nil
local not_timed_out = 0 -- failures where the run came back without a timeout

local function fail(i, what)
  failures = failures + 1
  if not first_failure then first_failure = ("#%d: %s"):format(i, what) end
end

local function one(i)
  local r, err, code
  if i % 2 == 1 then
    r, err, code = brood.exec("sleep " .. DURATION, {timeout = TIMEOUT})
  else
    r, err, code = brood.exec_file("sleep", {DURATION}, {timeout = TIMEOUT})
  end
  if r ~= nil or err == nil then
    not_timed_out = not_timed_out + 1
    return fail(i, "no error: the command did not time out")
  end
  if code ~= "ETIMEDOUT" or err.code ~= "ETIMEDOUT" then
    not_timed_out = not_timed_out + 1
    return fail(i, ("code %s: %s"):format(tostring(code), tostring(err)))
  end
  if err.timed_out ~= true or err.killed ~= true or err.signal ~= "SIGTERM" then
    return fail(i, ("timed_out %s killed %s signal %s"):format(
      tostring(err.timed_out), tostring(err.killed), tostring(err.signal)))
  end
end

local function batch(first, last)
  local f0, n0 = failures, not_timed_out
  soak.parallel(first, last, WIDTH, one)
  local notes = {}
  if failures > f0 then
    notes[1] = ("%d did not time out; first failure %s"):format(
      not_timed_out - n0, first_failure)
  end
  return {failures = failures - f0, notes = notes}
end

-- Sleeps of ours that outlived their run (escaped the tree kill).
local function strays()
  local pids = soak.live_matching("5[.]" .. brood.pid)
  local notes = {("stray sleeps alive at the end: %d"):format(#pids)}
  if #pids > 0 then notes[2] = "  pids " .. table.concat(pids, " ") end
  return {failures = #pids, notes = notes}
end

local pass = soak.run("exec_timeout", N, batch, {
  after = strays,
  unit = "execs",
  detail = ("sleep %s with timeout = %d ms, exec and exec_file alternately, %d at once")
    :format(DURATION, TIMEOUT, WIDTH),
})
os.exit(pass and 0 or 1, true) -- close the state: its cleanup runs, and leak tools see a clean exit

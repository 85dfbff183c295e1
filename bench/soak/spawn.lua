-- soak spawn: 10 000 spawns with all three stdio entries piped, 8 at once.
--
-- Each child is `cat - <missing file>`: it copies a line written to its
-- stdin to stdout, complains about the missing file on stderr and exits 1,
-- so one exec exercises every pipe with data in both directions and a
-- non-zero exit. Every output and status is checked.
local brood = require "brood"
local soak = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/common.lua")

local N = soak.count(10000)
local WIDTH = 8
local MISSING = "/nonexistent/brood-soak"
local CAT = "/bin/cat"

local failures, first_failure = 0, nil

local function fail(i, what)
  failures = failures + 1
  if not first_failure then first_failure = ("#%d: %s"):format(i, what) end
end

local function one(i)
  local child, err = brood.spawn(CAT, {"-", MISSING})
  if not child then return fail(i, "spawn: " .. tostring(err)) end
  local line = ("line %d of the spawn soak\n"):format(i)
  child.stdin:close(line)
  local out = child.stdout:read_all()
  local errout = child.stderr:read_all()
  local code, signal = child:wait()
  if out ~= line then
    fail(i, ("stdout %q"):format(tostring(out)))
  elseif not (errout and errout:find(MISSING, 1, true)) then
    fail(i, ("stderr %q"):format(tostring(errout)))
  elseif code ~= 1 or signal ~= nil then
    fail(i, ("exit %s %s"):format(tostring(code), tostring(signal)))
  end
end

local function batch(first, last)
  local f0 = failures
  soak.parallel(first, last, WIDTH, one)
  local notes = {}
  if failures > f0 and first_failure then
    notes[1] = "first failure " .. first_failure
  end
  return {failures = failures - f0, notes = notes}
end

local pass = soak.run("spawn", N, batch, {
  unit = "spawns",
  detail = ("%s - %s, stdin/stdout/stderr piped, %d at once"):format(CAT, MISSING, WIDTH),
})
os.exit(pass and 0 or 1, true) -- close the state: its cleanup runs, and leak tools see a clean exit

-- Admission control (issue 14 item 4, DESIGN §10): brood.max_children,
-- and spawns inside tasks that wait out EAGAIN / EMFILE while other
-- children of ours are alive. Whole scripts, run under the host and under
-- plain lua5.4 with this checkout on the paths, with small ulimits.
local H = require "spec.helper"
local brood = H.brood

local LUA = "lua5.4"
local CWD = assert(H.core.cwd())
local env = {
  LUA_PATH = CWD .. "/lua/?.lua;" .. CWD .. "/lua/?/init.lua;;",
  LUA_CPATH = H.build_abs .. "/lib/?.so;;",
}
local HOST = H.host:sub(1, 1) == "/" and H.host or (CWD .. "/" .. H.host)

-- A script file in /tmp, readable by everyone (nobody runs some).
local function script(body)
  return H.tmpfile(body, "644")
end

-- Run `sh -c cmd` in a process group of its own; returns the exec result
-- once it has exited, after proving that nothing of its group is left.
local function run(argv)
  local r = assert(brood.exec_file(argv[1], {table.unpack(argv, 2)},
    {check = false, timeout = 60000, detached = true, extend_env = env,
     max_buffer = 16 * 1024 * 1024}))
  local left = brood.exec_sync("kill -0 -- -" .. r.pid .. " 2>/dev/null",
                               {check = false})
  assert.are_not.equal(0, left.code, "processes left in the group of " ..
                       table.concat(argv, " "))
  return r
end

-- The script under both runners, each behind `prefix` (ulimits).
local function both(path, prefix, check_result, wrap)
  for _, runner in ipairs({HOST, LUA}) do
    local cmd = ("%s exec %s %s"):format(prefix,
      runner == LUA and H.lua54_sh() or runner, path)  -- (ASan: preload)
    local argv = wrap and wrap(cmd) or {"/bin/bash", "-c", cmd}
    check_result(run(argv), runner)
  end
end

-- 500 concurrent execs, every one as its own task, all checked; and at
-- the end our fds back to where they were and no child left.
local MANY_EXECS = [[
local brood = require "brood"
local core = require "brood.core"
local fds0
brood.run(function()
  assert(brood.exec("true"))  -- the loop's own fds exist from here on
  fds0 = core.fd_count()
  local tasks, out, errs = {}, {}, {}
  for i = 1, 500 do
    tasks[i] = brood.go(function()
      local r, err = brood.exec("echo x" .. i)
      if r then out[i] = r.stdout else errs[#errs + 1] = tostring(err) end
    end)
  end
  for i = 1, 500 do tasks[i]:wait() end
  brood.sleep(100)  -- the last handles' close callbacks
  fds0 = core.fd_count() - fds0
  local bad = 0
  for i = 1, 500 do if out[i] ~= "x" .. i .. "\n" then bad = bad + 1 end end
  print("bad " .. bad)
  if errs[1] then print("first error " .. errs[1]) end
end)
-- (a loop fd made during the first exec may be gone by now: not more)
print("fds " .. (fds0 <= 0 and "ok" or fds0) .. " zombies " .. #core.zombies())
]]

describe("admission control", function()
  H.guard()

  it("500 concurrent execs in tasks all complete under ulimit -n 64",
     function()
    local path = script(MANY_EXECS)
    both(path, "ulimit -n 64;", function(r, who)
      assert.are.equal("", r.stderr, who)
      assert.are.equal("bad 0\nfds ok zombies 0\n", r.stdout, who)
      assert.are.equal(0, r.code, who)
    end)
    os.remove(path)
  end)

  it("500 concurrent execs complete as nobody under a small ulimit -u",
     function()
    local path = script(MANY_EXECS)
    -- the limit counts every process of the user: only ours run as nobody
    local probe = brood.exec_sync(
      "setpriv --reuid=nobody --regid=nogroup --clear-groups " ..
      "bash -c 'ulimit -u 40 && test -r " .. path .. " && test -x " ..
      HOST .. " && echo ok'", {check = false})
    assert(probe.stdout == "ok\n", "cannot run a script as nobody with " ..
           "ulimit -u (setpriv needs root; the checkout and " .. path ..
           " must be readable by nobody): " .. probe.stderr)
    both(path, "ulimit -u 40;", function(r, who)
      assert.are.equal("", r.stderr, who)
      assert.are.equal("bad 0\nfds ok zombies 0\n", r.stdout, who)
      assert.are.equal(0, r.code, who)
    end, function(cmd)
      return {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup",
              "--clear-groups", "/bin/bash", "-c", cmd}
    end)
    os.remove(path)
  end)

  it("max_children = 4 never has more than 4 alive; outside a task EAGAIN",
     function()
    local path = script([[
local brood = require "brood"
brood.max_children = 4
local alive, most, started = 0, 0, 0
local function count(child)
  alive, started = alive + 1, started + 1
  if alive > most then most = alive end
  child:on("exit", function() alive = alive - 1 end)
  return child
end
-- outside a task: four start, the fifth is refused at once
local first = {}
for i = 1, 4 do
  first[i] = count(assert(brood.spawn("sleep", {"0.2"})))
end
local c, err, code = brood.spawn("sleep", {"0.2"})
print("outside", c, code, err and err.code)
brood.run(function()
  local out = brood.map({}, function() end)
  local tasks = {}
  for i = 1, 20 do
    tasks[i] = brood.go(function()
      local child = count(assert(brood.spawn("sh", {"-c", "sleep 0.02"})))
      child:wait()
    end)
  end
  local results = brood.map({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, function(i)
    return assert(brood.exec("echo " .. i)).stdout
  end, {concurrency = 10})
  for _, t in ipairs(tasks) do t:wait() end
  for _, f in ipairs(first) do f:wait() end
  print("map " .. table.concat(results):gsub("\n", " "))
  -- a spawn with a timeout gives up waiting for a slot
  local holders = {}
  for i = 1, 4 do holders[i] = assert(brood.spawn("sleep", {"2"})) end
  local t0 = brood.hrtime()
  local c2, err2, code2 = brood.spawn("true", {}, {timeout = 100})
  print("timed", c2, code2, err2 and err2.code,
        (brood.hrtime() - t0) / 1e6 < 1500)
  for _, h in ipairs(holders) do h:kill() h:wait() end
  print("most " .. most .. " started " .. started .. " alive " .. alive)
end)
]])
    both(path, "", function(r, who)
      assert.are.equal("", r.stderr, who)
      assert.are.equal("outside\tnil\tEAGAIN\tEAGAIN\n" ..
        "map 1 2 3 4 5 6 7 8 9 10 \n" ..
        "timed\tnil\tEAGAIN\tEAGAIN\ttrue\n" ..
        "most 4 started 24 alive 0\n", r.stdout, who)
      assert.are.equal(0, r.code, who)
    end)
    os.remove(path)
  end)

  it("a bad brood.max_children raises at spawn", function()
    brood.max_children = 0
    local ok, err = pcall(brood.spawn, "true")
    brood.max_children = nil
    assert.is_false(ok)
    assert.truthy(tostring(err):find("max_children", 1, true))
  end)
end)

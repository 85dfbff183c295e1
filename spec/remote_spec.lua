-- Remote workers (DESIGN §7, §8 --channel=stdio; issue 12): brood.pool's
-- `launcher` and `remote_command`, tried against the real launchers on
-- this machine only: an sshd on 127.0.0.1 (scripts/test-sshd) and a
-- single-node Slurm cluster (scripts/test-slurm), each started by this
-- file for the run and stopped after it. When a service cannot start,
-- its specs fail with the reason: they are never skipped.
local H = require "spec.helper"
local brood = H.brood

local CWD = assert(H.core.cwd())
local function abs(p) return p:sub(1, 1) == "/" and p or CWD .. "/" .. p end
local HOST = abs(H.host)
local WORKER = CWD .. "/spec/fixtures/remote_worker.lua"
local REMOTE = {HOST, "--channel=stdio", WORKER}

-- A pool destroyed when the test ends, whatever happens.
local pools
local function pool(opts)
  opts.remote_command = opts.remote_command or REMOTE
  local p = assert(brood.pool(WORKER, opts))
  pools[#pools + 1] = p
  return p
end

local function destroy_pools()
  for _, p in ipairs(pools) do p:destroy() end
  pools = {}
  -- the launchers are killed: let them be reaped
  H.run_until(function() return #H.core.zombies() == 0 end, 3000)
end

-- Run a shell command; its stdout and whether it succeeded.
local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1"))
  local out = f:read("a")
  local ok = f:close()
  return out, ok
end

-- "K=V" lines into a table.
local function assignments(text)
  local t = {}
  for k, v in text:gmatch("(%u[%u_]*)=([^\n]*)") do t[k] = v end
  return t
end

-- Pids of the remote workers running on this machine (the specs' own
-- launchers all end up here): processes of `brood --channel=stdio` on
-- our fixture.
local function remote_workers()
  local pids = {}
  local p = io.popen("ls /proc")
  for name in p:lines() do
    if name:match("^%d+$") then
      local f = io.open("/proc/" .. name .. "/cmdline", "rb")
      local cmd = f and f:read("a") or ""
      if f then f:close() end
      local argv = {}
      for a in cmd:gmatch("[^%z]+") do argv[#argv + 1] = a end
      if argv[1] == HOST and argv[2] == "--channel=stdio" and
         argv[3] == WORKER and H.alive(name) then
        pids[#pids + 1] = tonumber(name)
      end
    end
  end
  p:close()
  return pids
end

local function no_remote_workers_left(ms)
  return H.run_until(function() return #remote_workers() == 0 end, ms or 5000)
end

local function run(fn)
  local done, err = false, nil
  brood.go(function()
    local ok, e = xpcall(fn, debug.traceback)
    done, err = true, not ok and e or nil
  end)
  H.run_until(function() return done end, 60000)
  if err then error(err, 0) end
  assert(done, "the test did not finish in 60 s")
end

describe("brood --channel=stdio (issue 12)", function()
  H.guard()
  before_each(function() pools = {} end)
  after_each(destroy_pools)

  -- the launcher is empty: the worker runs here, the channel is its
  -- stdin/stdout all the same
  it("carries the pool's frames over stdin/stdout; print, io.write and " ..
     "children's stdout go to stderr", function()
    local p = pool({size = 2, launcher = {}})
    run(function()
      local tasks = {}
      for i = 1, 200 do tasks[i] = i end
      local r = assert(p:map(tasks))
      for i = 1, 200 do assert.are.equal(2 * i, r[i]) end
      assert.are.equal("hi", p:run({op = "print", value = "hi"}))
      local c = assert(p:run({op = "child_echo", value = "c1"}))
      assert.are.equal("c1", c.value)
      assert.are.equal(7, p:run({op = "chatter", n = 7}))
      assert.are.equal(11, p:run(5.5))
      assert.are.same({1, "two", {three = 3}},
                      p:run({1, "two", {three = 3}}))
      assert.are.equal(205, p:stats().completed)
      p:close()
    end)
    assert.is_true(no_remote_workers_left())
  end)

  it("refuses to send a handle over it, saying why", function()
    local p = pool({size = 1, launcher = {}})
    run(function()
      local r = assert(p:run({op = "send_handle"}))
      assert.is_false(r.ok)
      assert.matches("a handle cannot be sent over a stdio channel", r.err,
                     1, true)
      p:close()
    end)
  end)

  it("is a script's own stdout otherwise: a whole script under the host",
     function()
    local script = H.tmpfile([[
      local brood = require "brood"
      brood.parent:on("message", function(m)
        print("stdout of the script")
        brood.parent:send({m[1] + 1})
        brood.parent:disconnect()
      end)
    ]])
    local frame = string.pack(">I4B", 2, 0) .. "\x91\x29"  -- [41]
    local out, ok = sh(("printf '%s' | %s --channel=stdio %s 2>/dev/null " ..
                        "| od -An -tx1"):format(
      frame:gsub(".", function(c) return ("\\%03o"):format(c:byte()) end),
      HOST, script))
    os.remove(script)
    assert.is_true(ok)
    -- exactly one frame: [42]
    assert.are.equal("00 00 00 02 00 91 2a", out:gsub("%s+", " ")
                                                  :gsub("^ ", ""):gsub(" $", ""))
  end)

  it("needs a script file", function()
    local out, ok = sh(HOST .. " --channel=stdio -e 'print(1)'")
    assert.is_falsy(ok)
    assert.matches("--channel=stdio needs a script file", out, 1, true)
  end)
end)

describe("brood.pool: a launcher that writes to stdout (issue 12)",
         function()
  H.guard()
  before_each(function() pools = {} end)
  after_each(destroy_pools)

  it("is a start failure that says so (a login script's banner)",
     function()
    local p = pool({size = 1, launcher = {"sh", "-c",
      'echo "welcome to the cluster"; exec "$0" "$@"'}})
    run(function()
      local v, err = p:run(1)
      assert.is_nil(v)
      assert.matches("something else writing to the worker's stdout",
                     err.message, 1, true)
      p:close()
    end)
  end)
end)

describe("brood.pool: launcher and remote_command checks (issue 12)",
         function()
  it("raise for what cannot work", function()
    local function raises(pat, opts)
      local ok, err = pcall(brood.pool, WORKER, opts)
      assert.is_false(ok)
      assert.matches(pat, err, 1, true)
    end
    raises("option 'launcher'", {launcher = "ssh"})
    raises("option 'launcher': element 2 must be a string",
           {launcher = {"ssh", 3}})
    raises("option 'remote_command' needs 'launcher'",
           {remote_command = {"brood"}})
    raises("option 'stdio' does not go with 'launcher'",
           {launcher = {}, stdio = "pipe"})
    raises("option 'remote_command' must not be empty",
           {launcher = {"ssh", "h"}, remote_command = {}})
  end)
end)

-- ----- ssh ------------------------------------------------------------------

local sshd  -- SSHD_DIR, SSHD_PORT, SSHD_KEY, SSHD_USER
local SSH_OPTS = {"-T", "-o", "StrictHostKeyChecking=no",
                  "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                  "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"}

local function ssh(opts)
  opts = opts or {}
  local argv = {"ssh"}
  for _, v in ipairs(SSH_OPTS) do argv[#argv + 1] = v end
  for _, v in ipairs({"-i", opts.key or sshd.SSHD_KEY,
                      "-p", tostring(opts.port or sshd.SSHD_PORT),
                      sshd.SSHD_USER .. "@127.0.0.1"}) do
    argv[#argv + 1] = v
  end
  return argv
end

local function closed_port()
  local out = sh([[python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])']])
  return assert(tonumber(out:match("%d+")))
end

describe("brood.pool over ssh to 127.0.0.1 (issue 12)", function()
  setup(function()
    local out, ok = sh("scripts/test-sshd start")
    if not ok then
      error("cannot start sshd for these specs (scripts/test-sshd): " .. out,
            0)
    end
    sshd = assignments(out)
    assert(sshd.SSHD_DIR and sshd.SSHD_PORT and sshd.SSHD_KEY,
           "scripts/test-sshd said: " .. out)
  end)
  teardown(function()
    if sshd and sshd.SSHD_DIR then sh("scripts/test-sshd stop " ..
                                      sshd.SSHD_DIR) end
  end)
  H.guard()
  before_each(function() pools = {} end)
  after_each(destroy_pools)

  it("a pool of 4 workers maps 1000 tasks", function()
    local p = pool({size = 4, concurrency = 8, launcher = ssh()})
    local started = 0
    p:on("worker", function() started = started + 1 end)
    run(function()
      local tasks = {}
      for i = 1, 1000 do tasks[i] = i end
      local r = assert(p:map(tasks))
      assert.are.equal(1000, #r)
      for i = 1, 1000 do assert.are.equal(2 * i, r[i]) end
      -- four remote workers, each its own process on the far side
      assert.are.equal(4, #p:pids())
      assert.are.equal(4, #remote_workers())
      local s = p:stats()
      assert.are.equal(1000, s.completed)
      assert.are.equal(0, s.failed)
      assert.are.equal(0, s.restarts)
      assert.is_true(p:close())
    end)
    assert.are.equal(4, started)
    assert.is_true(no_remote_workers_left())
  end)

  it("a launcher function spreads workers by index; an unreachable " ..
     "host's slot is given up, the others serve everything", function()
    local bad_port = closed_port()
    local asked, errors = {}, {}
    local p = pool({size = 3, launcher = function(i)
      asked[#asked + 1] = i
      return ssh({port = i == 2 and bad_port or nil})
    end})
    p:on("error", function(e) errors[#errors + 1] = e end)
    run(function()
      local tasks = {}
      for i = 1, 60 do tasks[i] = i end
      local r = assert(p:map(tasks))
      for i = 1, 60 do assert.are.equal(2 * i, r[i]) end
      brood.sleep(50)  -- the "error" events come from deferred work
      -- slot 2 was tried MAX_START_FAILURES times, then given up
      local twos = 0
      for _, i in ipairs(asked) do if i == 2 then twos = twos + 1 end end
      assert.are.equal(require("brood.pool").MAX_START_FAILURES, twos)
      assert.is_true(#errors >= 1)
      assert.matches("Connection refused", errors[1].message, 1, true)
      assert.are.equal(2, p:stats().size)
      p:close()
    end)
  end)

  it("a launcher pointed at a closed port fails the task with ssh's " ..
     "message, and never hangs", function()
    local p = pool({size = 1, launcher = ssh({port = closed_port()})})
    run(function()
      local t0 = brood.hrtime()
      local v, err, code = p:run(1)
      assert.is_nil(v)
      assert.are.equal("ERR_WORKER_DIED", code)
      assert.matches("Connection refused", err.message, 1, true)
      assert.matches("exited with code 255", err.message, 1, true)
      assert.is_true((brood.hrtime() - t0) / 1e9 < 20)
      assert.are.equal(1, p:stats().failed)
      -- a later task tries again (and fails again the same way)
      local _, err2 = p:run(2)
      assert.matches("Connection refused", err2.message, 1, true)
      p:close()
    end)
  end)

  it("a key the server refuses: \"Permission denied (publickey)\" " ..
     "reaches the task's error", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute(("mkdir -p %s && ssh-keygen -q -t ed25519 -N '' " ..
                       "-f %s/other"):format(dir, dir)))
    local p = pool({size = 1, launcher = ssh({key = dir .. "/other"})})
    run(function()
      local v, err = p:run(1)
      assert.is_nil(v)
      assert.matches("Permission denied (publickey", err.message, 1, true)
      p:close()
    end)
    os.execute("rm -rf " .. dir)
  end)

  it("an ssh client killed mid-task: the task is retried on a " ..
     "replacement, the remote worker goes too", function()
    local p = pool({size = 1, retries = 1, launcher = ssh()})
    run(function()
      local remote1 = assert(p:run({op = "pid"}))  -- it is serving
      local launcher1 = p:pids()[1]
      local result, err, done
      p:submit({op = "sleep", ms = 1500, value = "slept"}, function(e, v)
        result, err, done = v, e, true
      end)
      brood.sleep(200)
      assert.are.equal(1, p:stats().running)
      assert(brood.kill(launcher1, "SIGKILL"))
      while not done do brood.sleep(20) end
      assert.is_nil(err)
      assert.are.equal("slept", result)
      local remote2 = assert(p:run({op = "pid"}))
      assert.are_not.equal(remote1, remote2)
      assert.are_not.equal(launcher1, p:pids()[1])
      local s = p:stats()
      assert.are.equal(1, s.restarts)
      assert.are.equal(0, s.failed)
      -- the far side saw its connection go: its worker ended
      assert.is_true(H.gone(remote1, 5000))
      p:close()
    end)
    assert.is_true(no_remote_workers_left())
  end)

  it("an ssh client killed mid-task without retries fails the task " ..
     "(ERR_WORKER_DIED); the pool goes on", function()
    local p = pool({size = 2, launcher = ssh()})
    run(function()
      assert(p:run({op = "pid"}))  -- it is serving
      local err, done
      p:submit({op = "sleep", ms = 1500, value = "slept"}, function(e)
        err, done = e, true
      end)
      brood.sleep(200)
      assert.are.equal(1, p:stats().running)
      assert(brood.kill(p:pids()[1], "SIGKILL"))
      while not done do brood.sleep(20) end
      assert(err, "the task must fail")
      assert.are.equal("ERR_WORKER_DIED", err.code)
      assert.matches("killed by SIGKILL", err.message, 1, true)
      assert.are.equal(10, p:run(5))
      local s = p:stats()
      assert.are.equal(1, s.failed)
      assert.are.equal(1, s.restarts)
      p:close()
    end)
    assert.is_true(no_remote_workers_left())
  end)

  it("a remote worker that dies mid-task fails its task and is replaced",
     function()
    local p = pool({size = 2, launcher = ssh()})
    run(function()
      local v, err, code = p:run({op = "exit", code = 7})
      assert.is_nil(v)
      assert.are.equal("ERR_WORKER_DIED", code)
      assert.matches("exited with code 7", err.message, 1, true)
      local tasks = {}
      for i = 1, 20 do tasks[i] = i end
      assert.are.equal(40, assert(p:map(tasks))[20])
      assert.are.equal(1, p:stats().restarts)
      p:close()
    end)
  end)

  it("remote print goes to the launcher's stderr, not into the channel",
     function()
    local p = pool({size = 1, launcher = ssh()})
    run(function()
      for i = 1, 20 do
        assert.are.equal("v" .. i, p:run({op = "print", value = "v" .. i}))
      end
      p:close()
    end)
  end)
end)

-- ----- Slurm ----------------------------------------------------------------

local slurm  -- SLURM_DIR, SLURM_CONF

-- srun with the cluster's config; -u: srun passes the bytes on at once
-- (without it, output not ending in a newline is held back: frames stall)
local function srun()
  return {"env", "SLURM_CONF=" .. slurm.SLURM_CONF,
          "srun", "-N1", "-n1", "--quiet", "-u"}
end

describe("brood.pool through srun on a single-node Slurm (issue 12)",
         function()
  setup(function()
    local out, ok = sh("scripts/test-slurm start")
    if not ok then
      error("cannot start Slurm for these specs (scripts/test-slurm): " ..
            out, 0)
    end
    slurm = assignments(out)
    assert(slurm.SLURM_DIR and slurm.SLURM_CONF,
           "scripts/test-slurm said: " .. out)
  end)
  teardown(function()
    if slurm and slurm.SLURM_DIR then
      sh("scripts/test-slurm stop " .. slurm.SLURM_DIR)
    end
  end)
  H.guard()
  before_each(function() pools = {} end)
  after_each(destroy_pools)

  it("a pool of 4 workers maps 1000 tasks, each worker a job of its own",
     function()
    local p = pool({size = 4, concurrency = 8, launcher = srun()})
    run(function()
      local tasks = {}
      for i = 1, 1000 do tasks[i] = i end
      local r = assert(p:map(tasks))
      for i = 1, 1000 do assert.are.equal(2 * i, r[i]) end
      local jobs = {}
      for _ = 1, 40 do
        local id = assert(p:run({op = "env", name = "SLURM_JOB_ID"}))
        jobs[id] = true
      end
      local n = 0
      for _ in pairs(jobs) do n = n + 1 end
      assert.is_true(n >= 1 and n <= 4)
      assert.are.equal(4, #remote_workers())
      local s = p:stats()
      assert.are.equal(1040, s.completed)
      assert.are.equal(0, s.restarts)
      assert.are.equal("x", p:run({op = "print", value = "x"}))
      assert.is_true(p:close())
    end)
    assert.is_true(no_remote_workers_left())
  end)

  it("scancel of a worker's job mid-task fails the task (or retries it), " ..
     "the worker is replaced, the pool goes on", function()
    local p = pool({size = 1, launcher = srun()})
    local p2 = pool({size = 1, retries = 1, launcher = srun()})
    run(function()
      for _, case in ipairs({{p, false}, {p2, true}}) do
        local q, retried = case[1], case[2]
        local job = assert(q:run({op = "env", name = "SLURM_JOB_ID"}))
        local result, err, done
        q:submit({op = "sleep", ms = 2000, value = "slept"}, function(e, v)
          result, err, done = v, e, true
        end)
        brood.sleep(200)
        assert.are.equal(1, q:stats().running)
        local out, ok = sh("SLURM_CONF=" .. slurm.SLURM_CONF ..
                           " scancel " .. job)
        assert(ok, out)
        while not done do brood.sleep(20) end
        if retried then
          assert.is_nil(err)
          assert.are.equal("slept", result)
        else
          assert(err, "the task must fail")
          assert.are.equal("ERR_WORKER_DIED", err.code)
        end
        assert.are.equal(10, q:run(5))
        local job2 = assert(q:run({op = "env", name = "SLURM_JOB_ID"}))
        assert.are_not.equal(job, job2)
        assert.are.equal(1, q:stats().restarts)
        q:close()
      end
    end)
    assert.is_true(no_remote_workers_left())
  end)

  it("destroy() ends the remote workers too", function()
    local p = pool({size = 2, launcher = srun()})
    run(function()
      -- a task far longer than the wait below: only destroy() ends it
      p:submit({op = "sleep", ms = 60000}, function() end)
      assert.are.equal(10, p:run(5))
      brood.sleep(100)
      p:destroy()
    end)
    assert.is_true(no_remote_workers_left(8000))
  end)
end)

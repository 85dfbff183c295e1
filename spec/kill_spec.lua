-- Signalling children (DESIGN §4, §9): kill, tree kill, <close>, cleanup
-- when the host dies.

local H = require "spec.helper"
local brood, core = H.brood, H.core

--- Wait until pid has n descendants; returns them.
local function descendants(pid, n)
  local list
  assert.is_true(H.run_until(function()
    list = core.descendants(pid)
    return #list >= n
  end), "the child's own children did not start")
  return list
end

--- Start `brood -e code` (the host under test); returns the host child.
local function host(code, opts)
  return assert(brood.spawn(H.host, {"-e", code}, opts))
end

--- Wait, without running the loop, until pid is a zombie (it exited and
-- brood has not reaped it yet); returns its state letter.
local function zombie(pid)
  local deadline = core.hrtime() + 5e9
  local state
  repeat
    local f = io.open("/proc/" .. pid .. "/stat")
    state = f and f:read("a"):match("%) (%a)")
    if f then f:close() end
  until state == "Z" or core.hrtime() > deadline
  return state
end

describe("child:kill", function()
  H.guard()

  it("sends SIGTERM by default, returns true and sets killed at once",
     function()
    local c = assert(brood.spawn("sleep", {"100"}))
    assert.is_false(c.killed)
    assert.is_true(c:kill())
    assert.is_true(c.killed)
    assert.same({nil, "SIGTERM"}, {c:wait()})
    assert.is_nil(c.exit_code)
    assert.equal("SIGTERM", c.signal_code)
  end)

  it("takes signal names and numbers", function()
    local a = assert(brood.spawn("sleep", {"100"}))
    local b = assert(brood.spawn("sleep", {"100"}))
    assert.is_true(a:kill("SIGKILL"))
    assert.is_true(b:kill(2))
    assert.same({nil, "SIGKILL"}, {a:wait()})
    assert.same({nil, "SIGINT"}, {b:wait()})
  end)

  it("a signal the child handles is not a kill", function()
    local c = assert(brood.spawn("sh", {"-c",
      "trap 'echo got-usr1; exit 5' USR1; echo ready; while :; do sleep 0.01; done"}))
    assert.equal("ready\n", c.stdout:read())
    assert.is_true(c:kill("SIGUSR1"))
    assert.equal("got-usr1\n", c.stdout:read())
    assert.same({5, nil}, {c:wait()})
  end)

  it("after exit returns false and sends nothing", function()
    local c = assert(brood.spawn("true"))
    c:wait()
    assert.is_false(c:kill())
    assert.is_false(c:kill("SIGKILL", {tree = true}))
    assert.is_false(c.killed)
    assert.same({0, nil}, {c.exit_code, c.signal_code})
  end)

  it("takes signal names in any case, with or without SIG", function()
    local a = assert(brood.spawn("sleep", {"100"}))
    local b = assert(brood.spawn("sleep", {"100"}))
    local c = assert(brood.spawn("sleep", {"100"}))
    assert.is_true(a:kill("sigkill"))
    assert.is_true(brood.kill(b.pid, "sigterm"))
    assert.is_true(c:kill("Int"))
    assert.same({nil, "SIGKILL"}, {a:wait()})
    assert.same({nil, "SIGTERM"}, {b:wait()})
    assert.same({nil, "SIGINT"}, {c:wait()})
  end)

  it("takes kill_signal in any case", function()
    local c = assert(brood.spawn("sleep", {"100"},
                                 {timeout = 10, kill_signal = "sigint"}))
    assert.same({nil, "SIGINT"}, {c:wait()})
    assert.is_true(c.killed)
    local ref
    do
      local d <close> = assert(brood.spawn("sleep", {"100"},
                                           {kill_signal = "Sighup"}))
      ref = d
    end
    assert.equal("SIGHUP", ref.signal_code)
    local r, err, code = brood.exec("sleep 100",
                                    {timeout = 10, kill_signal = "hup"})
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", code)
    assert.equal("SIGHUP", err.signal)
  end)

  it("on an exited child not yet reaped returns false and sends nothing",
     function()
    local c = assert(brood.spawn("true", {}, {stdio = "ignore"}))
    assert.equal("Z", zombie(c.pid))
    assert.is_false(c:kill())
    assert.is_false(c:kill("SIGKILL", {tree = true}))
    assert.is_false(c.killed)
    assert.same({0, nil}, {c:wait()})
    assert.is_false(c.killed)
  end)

  it("on an exited group leader not yet reaped returns false", function()
    local c = assert(brood.spawn("true", {}, {stdio = "ignore", group = true}))
    assert.equal("Z", zombie(c.pid))
    assert.is_false(c:kill("SIGTERM", {tree = true}))
    assert.is_false(c.killed)
    assert.same({0, nil}, {c:wait()})
  end)

  it("raises for an unknown signal or option", function()
    local c = assert(brood.spawn("sleep", {"100"}))
    local ok, err = pcall(c.kill, c, "SIGFOO")
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'kill' (unknown signal 'SIGFOO')", err)
    ok, err = pcall(c.kill, c, "SIGTERM", {tre = true})
    assert.is_false(ok)
    assert.equal("bad argument #2 to 'kill' (unknown option 'tre' (did you mean 'tree'?))", err)
    ok, err = pcall(c.kill, c, 65)
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'kill' (unknown signal '65')", err)
    assert.is_false(c.killed)
    c:kill("SIGKILL")
    c:wait()
  end)

  it("brood.kill(pid, sig) signals any pid; ESRCH for none", function()
    local c = assert(brood.spawn("sleep", {"100"}))
    assert.is_true(brood.kill(c.pid, 0))
    assert.is_true(brood.kill(c.pid, "SIGKILL"))
    assert.same({nil, "SIGKILL"}, {c:wait()})
    local ok, err, code = brood.kill(c.pid, 0)
    assert.is_nil(ok)
    assert.equal("ESRCH", code)
    assert.equal("ESRCH", err.code)
    local ok2, err2 = pcall(brood.kill, "1")
    assert.is_false(ok2)
    assert.equal("bad argument #1 to 'kill' (integer pid expected, got string)",
                 err2)
  end)

  describe("{tree = true}", function()
    it("kills the child's descendants too", function()
      local c = assert(brood.spawn("sh", {"-c", "sleep 100 & sleep 100; :"}))
      local kids = descendants(c.pid, 2)
      assert.equal(2, #kids)
      assert.is_true(c:kill("SIGTERM", {tree = true}))
      assert.same({nil, "SIGTERM"}, {c:wait()})
      for _, pid in ipairs(kids) do
        assert.is_true(H.gone(pid, 3000), "descendant " .. pid .. " lives")
      end
    end)

    it("kills grandchildren several levels down", function()
      local c = assert(brood.spawn("sh", {"-c",
        "sh -c 'sh -c \"sleep 100; :\"; :' & sleep 100; :"}))
      local kids = descendants(c.pid, 4)
      c:kill("SIGKILL", {tree = true})
      c:wait()
      for _, pid in ipairs(kids) do
        assert.is_true(H.gone(pid, 3000), "descendant " .. pid .. " lives")
      end
    end)

    it("kills the process group of a group = true child", function()
      local c = assert(brood.spawn("sh", {"-c", "sleep 100 & sleep 100; :"},
                                   {group = true}))
      local kids = descendants(c.pid, 2)
      assert.is_true(c:kill("SIGTERM", {tree = true}))
      assert.same({nil, "SIGTERM"}, {c:wait()})
      for _, pid in ipairs(kids) do
        assert.is_true(H.gone(pid, 3000), "descendant " .. pid .. " lives")
      end
    end)

    it("reaches group members whose parent already died", function()
      -- the middle shell exits at once: its sleep is re-parented away
      local c = assert(brood.spawn("sh", {"-c",
        "sh -c 'sleep 100 & echo $!' ; sleep 100; :"}, {group = true}))
      local orphan = tonumber(c.stdout:read())
      assert.is_true(H.alive(orphan))
      c:kill("SIGKILL", {tree = true})
      c:wait()
      assert.is_true(H.gone(orphan, 3000))
    end)

    -- state letter of pid from /proc (T: stopped), nil once gone
    local function state(pid)
      local f = io.open("/proc/" .. pid .. "/stat")
      if not f then return nil end
      local st = (f:read("a") or ""):match("%) (%a)")
      f:close()
      return st
    end

    it("SIGSTOP stops the tree and SIGCONT continues it (no freezing)",
       function()
      local c = assert(brood.spawn("sh", {"-c", "sleep 100 & sleep 100; :"},
                                   {stdio = "ignore"}))
      local kids = descendants(c.pid, 2)
      local all = {c.pid, kids[1], kids[2]}
      assert.is_true(c:kill("SIGSTOP", {tree = true}))
      assert.is_true(H.run_until(function()
        for _, p in ipairs(all) do if state(p) ~= "T" then return false end end
        return true
      end, 3000))
      brood.sleep(50)  -- and they stay stopped
      for _, p in ipairs(all) do assert.equal("T", state(p)) end
      assert.is_true(c:kill("SIGCONT", {tree = true}))
      assert.is_true(H.run_until(function()
        for _, p in ipairs(all) do if state(p) == "T" then return false end end
        return true
      end, 3000))
      c:kill("SIGKILL", {tree = true})
      c:wait()
      for _, p in ipairs(kids) do assert.is_true(H.gone(p, 3000)) end
    end)

    it("SIGTERM ends a tree that was stopped (it is continued)", function()
      local c = assert(brood.spawn("sh", {"-c", "sleep 100 & sleep 100; :"},
                                   {stdio = "ignore"}))
      local kids = descendants(c.pid, 2)
      assert.is_true(c:kill("SIGSTOP", {tree = true}))
      assert.is_true(H.run_until(function() return state(c.pid) == "T" end))
      assert.is_true(c:kill("SIGTERM", {tree = true}))
      assert.same({nil, "SIGTERM"}, {c:wait(5000)})
      for _, p in ipairs(kids) do assert.is_true(H.gone(p, 3000)) end
    end)

    it("without tree only the child dies", function()
      -- (stdio ignored: the sleeps would hold the pipes, and wait() with them)
      local c = assert(brood.spawn("sh", {"-c", "sleep 100 & sleep 100; :"},
                                   {stdio = "ignore"}))
      local kids = descendants(c.pid, 2)
      c:kill("SIGKILL")
      c:wait()
      for _, pid in ipairs(kids) do
        assert.is_true(H.alive(pid))
        brood.kill(pid, "SIGKILL")
        assert.is_true(H.gone(pid))
      end
    end)
  end)

  describe("<close>", function()
    it("kills and reaps the child when the scope ends", function()
      local ref
      do
        local c <close> = assert(brood.spawn("sleep", {"100"}))
        ref = c
      end
      assert.is_true(ref.killed)
      assert.equal("SIGTERM", ref.signal_code)
      assert.is_false(H.alive(ref.pid))
      assert.is_true(ref.stdout.closed)
      assert.is_true(ref.stdin.closed)
    end)

    it("kills the whole tree", function()
      local ref, kids
      do
        local c <close> = assert(brood.spawn("sh", {"-c",
          "sleep 100 & sleep 100; :"}))
        ref = c
        kids = descendants(c.pid, 2)
      end
      assert.equal("SIGTERM", ref.signal_code)
      for _, pid in ipairs(kids) do
        assert.is_true(H.gone(pid, 3000), "descendant " .. pid .. " lives")
      end
    end)

    it("uses SIGKILL after kill_grace for a child that ignores SIGTERM",
       function()
      local ref, kids
      do
        local c <close> = assert(brood.spawn("sh", {"-c",
          'trap "" TERM; echo ready; sleep 100; :'}, {kill_grace = 200}))
        ref = c
        assert.equal("ready\n", c.stdout:read())
        kids = descendants(c.pid, 1)
      end
      assert.is_true(ref.killed)
      assert.equal("SIGKILL", ref.signal_code)
      assert.is_true(H.gone(kids[1], 3000))
    end)

    it("uses kill_signal first", function()
      local ref
      do
        local c <close> = assert(brood.spawn("sleep", {"100"},
                                             {kill_signal = "SIGINT"}))
        ref = c
      end
      assert.equal("SIGINT", ref.signal_code)
    end)

    it("works inside a task", function()
      local t = brood.go(function()
        local c <close> = assert(brood.spawn("sleep", {"100"}))
        brood.sleep(10)
        return c
      end)
      local c = t:wait()
      assert.equal("SIGTERM", c.signal_code)
      assert.is_false(H.alive(c.pid))
    end)

    it("on an error leaving the scope", function()
      local ref
      local ok, err = pcall(function()
        local c <close> = assert(brood.spawn("sleep", {"100"}))
        ref = c
        error("scope failed", 0)
      end)
      assert.is_false(ok)
      assert.equal("scope failed", err)
      assert.equal("SIGTERM", ref.signal_code)
    end)

    it("leaves a child that exited but is not reaped yet as it was",
       function()
      local ref
      do
        local c <close> = assert(brood.spawn("true", {}, {stdio = "ignore"}))
        ref = c
        assert.equal("Z", zombie(c.pid))
      end
      assert.is_false(ref.killed)
      assert.same({0, nil}, {ref.exit_code, ref.signal_code})
    end)

    it("leaves a child that already exited as it was", function()
      local ref
      do
        local c <close> = assert(brood.spawn("sh", {"-c", "exit 9"}))
        c:wait()
        ref = c
      end
      assert.is_false(ref.killed)
      assert.equal(9, ref.exit_code)
    end)
  end)
end)

describe("cleanup", function()
  H.guard()

  local SPAWN_SLEEP = [[
    local brood = require "brood"
    local c = assert(brood.spawn("sleep", {"100"}, %s))
    io.stdout:write(c.pid, "\n")
    io.stdout:flush()
  ]]

  it("a host killed with SIGKILL takes its children along", function()
    local h = host(SPAWN_SLEEP:format("{stdio = 'ignore'}") ..
                   "brood.sleep(100000)")
    local pid = tonumber(h.stdout:read())
    assert.is_true(H.alive(pid))
    assert.is_true(brood.kill(h.pid, "SIGKILL"))
    assert.same({nil, "SIGKILL"}, {h:wait()})
    assert.is_true(H.gone(pid, 1000))
  end)

  -- A host spawning a cleanup sleep, then failing with `message` by `code`.
  local function fails_leaving_no_child(code, message)
    local h = host(SPAWN_SLEEP:format("{stdio = 'ignore'}") .. code)
    local pid = tonumber(h.stdout:read())
    assert.same({1, nil}, {h:wait()})
    assert.matches(message, h.stderr:read_all())
    assert.is_true(H.gone(pid, 1000))
  end

  it("a host whose script fails leaves no child", function()
    fails_leaving_no_child("error('script failed')", "script failed")
  end)

  it("a host whose loop callback fails leaves no child", function()
    fails_leaving_no_child(
      "brood.set_timeout(10, function() error('callback failed') end)",
      "callback failed")
  end)

  it("a host whose script fails kills its cleanup children's trees",
     function()
    local h = host([[
      local brood = require "brood"
      local c = assert(brood.spawn("sh", {"-c", "sleep 100 & echo $!; wait"},
                                   {stdio = {"ignore", "pipe", "ignore"}}))
      io.stdout:write(c.stdout:read())
      io.stdout:flush()
      error("script failed")
    ]])
    local pid = tonumber(h.stdout:read())
    assert.same({1, nil}, {h:wait()})
    assert.matches("script failed", h.stderr:read_all())
    local gone = H.gone(pid, 3000)
    if not gone then brood.kill(pid, "SIGKILL") end
    assert.is_true(gone, "the grandchild survived")
  end)

  it("a host stopped by SIGTERM signals its children first", function()
    local h = host(SPAWN_SLEEP:format("{stdio = 'ignore'}") ..
                   "brood.sleep(100000)")
    local pid = tonumber(h.stdout:read())
    h:kill("SIGTERM")
    h:wait()
    assert.is_true(H.gone(pid, 1000))
  end)

  it("uses the child's kill_signal", function()
    -- the child reports which signal ended it through a file
    local path = H.tmpfile("")
    local h = host(([[
      local brood = require "brood"
      local c = assert(brood.spawn("sh", {"-c",
        "trap 'echo INT > %s; exit 0' INT; echo ready; " ..
        "while :; do sleep 0.01; done"}, {kill_signal = "SIGINT"}))
      c.stdout:read()
      io.stdout:write(c.pid, "\n")
      io.stdout:flush()
      brood.sleep(100000)
    ]]):format(path))
    local pid = tonumber(h.stdout:read())
    brood.kill(h.pid, "SIGKILL")
    h:wait()
    assert.is_true(H.gone(pid, 1000))
    local f = assert(io.open(path))
    local got = f:read("a")
    f:close()
    os.remove(path)
    assert.equal("INT\n", got)
  end)

  it("does not touch detached children", function()
    local h = host(SPAWN_SLEEP:format("{stdio = 'ignore', detached = true}") ..
                   "error('script failed')")
    local pid = tonumber(h.stdout:read())
    assert.same({1, nil}, {h:wait()})
    -- given time to die, it does not
    assert.is_false(H.run_until(function() return not H.alive(pid) end, 300))
    assert.is_true(brood.kill(pid, "SIGKILL"))
    assert.is_true(H.gone(pid))
  end)

  -- A host spawning `sleep` with opts is SIGKILLed: the sleep survives it.
  local function survives_host_kill(opts)
    local h = host(SPAWN_SLEEP:format(opts) .. "brood.sleep(100000)")
    local pid = tonumber(h.stdout:read())
    brood.kill(h.pid, "SIGKILL")
    h:wait()
    assert.is_false(H.run_until(function() return not H.alive(pid) end, 300))
    assert.is_true(brood.kill(pid, "SIGKILL"))
    assert.is_true(H.gone(pid))
  end

  it("does not touch detached children of a SIGKILLed host", function()
    survives_host_kill("{stdio = 'ignore', detached = true}")
  end)

  it("cleanup = false leaves the child running", function()
    survives_host_kill("{stdio = 'ignore', cleanup = false}")
  end)

  it("a host that ends normally waits for its children", function()
    local h = host([[
      local brood = require "brood"
      local c = assert(brood.spawn("sh", {"-c", "sleep 0.05; echo child-done"},
                                   {stdio = {"ignore", "inherit", "inherit"}}))
      c:on("exit", function(code) print("exit", code) end)
    ]])
    assert.equal("child-done\nexit\t0\n", h.stdout:read_all())
    assert.same({0, nil}, {h:wait()})
  end)
end)

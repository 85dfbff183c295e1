-- brood.testing (issue 13 item 5, DESIGN §11): a user's busted spec tests
-- the logic of an orchestration script with scripted programs, and no
-- real process runs.
local H = require "spec.helper"
local brood = H.brood

-- The user's code under test: a deploy step, as a script would have it.
-- It pulls, then builds; a failing build is returned, not raised.
local function deploy(dir)
  local r, err = brood.exec_file("git", {"-C", dir, "pull", "--ff-only"})
  if not r then return nil, "pull failed: " .. tostring(err) end
  r, err = brood.exec("make -j4 all", {cwd = dir, timeout = 60000})
  if not r then
    return nil, ("build failed (%s): %s"):format(tostring(err.code),
                                                 err.stderr)
  end
  return r.stdout
end

local no_real_children = H.no_real_children

describe("brood.testing", function()
  H.guard()
  local fake
  before_each(function() fake = brood.testing.fake() end)
  after_each(function() fake:restore() end)

  it("tests a deploy script's logic without running a process", function()
    fake:on("git", {"-C", "/srv/app", "pull", "--ff-only"},
            {stdout = "Already up to date.\n"})
    fake:on("make %-j4 all", nil, {stdout = "built\n", delay = 5000})
    assert.are.equal("built\n", deploy("/srv/app"))
    assert.are.equal(2, #fake.calls)
    assert.are.equal("git", fake.calls[1].file)
    assert.are.same({"-C", "/srv/app", "pull", "--ff-only"},
                    fake.calls[1].args)
    assert.are.equal("make -j4 all", fake.calls[2].file)
    assert.are.equal("/srv/app", fake.calls[2].opts.cwd)
    assert.is_true(fake:now() >= 5000)  -- virtual time, not real
    assert.is_true(no_real_children())
  end)

  it("returns the build's failure with its stderr and exit code", function()
    fake:on("git", nil, {})
    fake:on("make.*", nil, {stderr = "cc: error\n", code = 2})
    local ok, why = deploy("/srv/app")
    assert.is_nil(ok)
    assert.are.equal("build failed (2): cc: error\n", why)
  end)

  it("runs a program that does not exist on this machine", function()
    fake:on("no%-such%-program%-xyz", {"--flag"}, {stdout = "yes\n"})
    local r = assert(brood.exec_file("no-such-program-xyz", {"--flag"}))
    assert.are.equal("yes\n", r.stdout)
    assert.are.equal(0, r.code)
  end)

  it("an unscripted program is a missing program: ENOENT", function()
    local child, err, code = brood.spawn("ls", {"-l"})
    assert.is_nil(child)
    assert.are.equal("ENOENT", code)
    assert.are.equal("ENOENT", err.code)
    local r, e2 = brood.exec("echo hi")
    assert.is_nil(r)
    assert.are.equal("ENOENT", e2.code)
    assert.are.equal(2, #fake.calls)  -- recorded all the same
    -- the args filter is exact
    fake:on("ls", {"-a"}, {})
    assert.is_nil((brood.spawn("ls", {"-l"})))
    assert(brood.spawn("ls", {"-a"})):wait()
  end)

  it("matches a program by a function of file and args", function()
    fake:on(function(file, args) return file:match("^/opt/") and
                                        #args == 1 end,
            nil, {stdout = "fn\n"})
    assert.are.equal("fn\n", assert(brood.exec_file("/opt/x", {"a"})).stdout)
    assert.is_nil((brood.exec_file("/opt/x", {"a", "b"})))
  end)

  it("gives spawned children events, streams and exit codes", function()
    fake:on("gen", nil, {stdout = "a\nb\nc\n", stderr = "warn\n", code = 3})
    local child = assert(brood.spawn("gen"))
    local events = {}
    child:on("spawn", function() events[#events + 1] = "spawn" end)
    child:on("exit", function(c, s)
      events[#events + 1] = ("exit %s %s"):format(c, s)
    end)
    child:on("close", function(c)
      events[#events + 1] = "close " .. c
    end)
    local lines = {}
    for line in child.stdout:lines() do lines[#lines + 1] = line end
    assert.are.same({"a", "b", "c"}, lines)
    assert.are.equal("warn\n", child.stderr:read_all())
    assert.are.same({3, nil}, {child:wait()})
    assert.are.same({"spawn", "exit 3 nil", "close 3"}, events)
    assert.are.equal(3, child.exit_code)
    assert.are.equal(900001, child.pid)
  end)

  it("delivers data events and keeps what was written to stdin", function()
    fake:on("cat", nil, {stdout = "out"})
    local child = assert(brood.spawn("cat"))
    local got = {}
    child.stdout:on("data", function(d) got[#got + 1] = d end)
    child.stdin:write("hello ")
    child.stdin:close("world")
    child:wait()
    assert.are.same({"out"}, got)
    assert.are.equal("hello world", fake.calls[1].stdin())
    -- exec's input reaches it too
    assert(brood.exec("cat", {input = "fed"}))
    assert.are.equal("fed", fake.calls[2].stdin())
  end)

  it("a kill before the delay ends makes it exit by that signal", function()
    fake:on("sleep", nil, {delay = 60000})
    local child = assert(brood.spawn("sleep", {"60"}))
    fake:advance(1000)
    assert.is_nil(child.exit_code)
    assert.is_true(child:kill("SIGINT"))
    assert.are.same({nil, "SIGINT"}, {child:wait()})
    assert.is_true(child.killed)
    assert.is_false(child:kill())  -- gone: nothing sent
    assert.is_true(fake:now() < 60000)
  end)

  it("scripts a death by signal", function()
    fake:on("crash", nil, {signal = "SIGSEGV"})
    local r, err = brood.exec_file("crash")
    assert.is_nil(r)
    assert.are.equal("SIGSEGV", err.signal)
  end)

  it("fires spawn's timeout on the virtual clock", function()
    fake:on("hang", nil, {delay = 3600000})
    local t0 = brood.hrtime()
    local child = assert(brood.spawn("hang", {}, {timeout = 600000,
                                                  kill_signal = "SIGKILL"}))
    assert.are.same({nil, "SIGKILL"}, {child:wait()})
    assert.is_true(child.timed_out)
    assert.are.equal(600000, fake:now())
    assert.is_true((brood.hrtime() - t0) / 1e6 < 5000)
  end)

  it("fires exec's timeout on the virtual clock, moved by advance",
     function()
    fake:on("slow", nil, {stdout = "partial", delay = 90000})
    local task = brood.go(function()
      return brood.exec_file("slow", {}, {timeout = 30000})
    end)
    fake:advance(29999)
    local r, err = task:wait()
    assert.is_nil(r)
    assert.are.equal("ETIMEDOUT", err.code)
    assert.is_true(err.killed)
    assert.are.equal("SIGTERM", err.signal)
    assert.are.equal("partial", err.stdout)
    assert.are.equal(30000, fake:now())
  end)

  it("restore puts the real spawner back", function()
    fake:restore()
    local r = assert(brood.exec_file("sh", {"-c", "echo real"}))
    assert.are.equal("real\n", r.stdout)
    assert.are.equal("real\n", brood.exec_sync("echo real"))
    fake = brood.testing.fake()
    assert.is_nil((brood.exec_file("sh", {"-c", "echo real"})))
    assert.is_nil((brood.exec_sync("echo real")))
  end)
end)

describe("brood.testing with the sync variants", function()
  H.guard()
  local fake
  before_each(function() fake = brood.testing.fake() end)
  after_each(function() fake:restore() end)

  it("runs exec_sync's command as a scripted program", function()
    fake:on("make %-j4 all", nil, {stdout = "built\n", delay = 5000})
    local t0 = brood.hrtime()
    assert.are.equal("built\n", brood.exec_sync("make -j4 all",
                                                {cwd = "/srv/app"}))
    assert.are.equal(1, #fake.calls)
    assert.are.equal("make -j4 all", fake.calls[1].file)
    assert.are.equal("/srv/app", fake.calls[1].opts.cwd)
    assert.are.equal(5000, fake:now())  -- the delay moved the clock
    assert.is_true((brood.hrtime() - t0) / 1e6 < 2000)
    assert.is_true(no_real_children())
  end)

  it("gives exec_file_sync a failure with its code and output", function()
    fake:on("git", {"push"}, {stdout = "o\n", stderr = "rejected\n",
                              code = 1})
    local r, err, code = brood.exec_file_sync("git", {"push"})
    assert.is_nil(r)
    assert.are.equal(1, code)
    assert.are.equal(1, err.code)
    assert.are.equal("rejected\n", err.stderr)
    assert.are.equal("o\n", err.stdout)
    assert.are.equal("git push", err.cmd)
    r = assert(brood.exec_file_sync("git", {"push"}, {check = false}))
    assert.are.equal(1, r.code)
    assert.are.equal("rejected\n", r.stderr)
    assert.are.equal(fake.calls[2].pid, r.pid)
  end)

  it("gives spawn_sync the status, signal and output", function()
    fake:on("crash", nil, {stdout = "x", signal = "SIGSEGV", delay = 10})
    fake:on("ok", nil, {stderr = "warn\n", code = 3})
    local r = brood.spawn_sync("crash", {"--now"})
    assert.are.same({nil, "SIGSEGV", "x", nil},
                    {r.status, r.signal, r.stdout, r.error})
    assert.are.same({"--now"}, fake.calls[1].args)
    r = brood.spawn_sync("ok")
    assert.are.same({3, nil, "", "warn\n"},
                    {r.status, r.signal, r.stdout, r.stderr})
    assert.are.equal(fake.calls[2].pid, r.pid)
    assert.are.equal(10, fake:now())
  end)

  it("merges stderr into stdout when asked", function()
    fake:on("both", nil, {stdout = "out\n", stderr = "err\n"})
    local r = assert(brood.exec_file_sync("both", {},
                                          {merge_stderr = true,
                                           check = false}))
    assert.are.equal("out\nerr\n", r.stdout)
    assert.are.equal("", r.stderr)
  end)

  it("keeps what was given as input", function()
    fake:on("cat", nil, {stdout = "abc"})
    assert.are.equal("abc", brood.exec_file_sync("cat", {},
                                                 {input = "abc"}))
    assert.are.equal("abc", fake.calls[1].stdin())
  end)

  it("fires a sync timeout shorter than the delay: ETIMEDOUT", function()
    fake:on("hang", nil, {stdout = "partial", delay = 3600000})
    local t0 = brood.hrtime()
    local r, err, code = brood.exec_sync("hang", {timeout = 600000})
    assert.is_nil(r)
    assert.are.equal("ETIMEDOUT", code)
    assert.is_true(err.killed)
    assert.are.equal("SIGTERM", err.signal)
    assert.are.equal("partial", err.stdout)
    assert.are.equal(600000, fake:now())
    local s = brood.spawn_sync("hang", {}, {timeout = 1000,
                                            kill_signal = "SIGKILL"})
    assert.are.equal("ETIMEDOUT", s.error.code)
    assert.are.equal("SIGKILL", s.signal)
    assert.are.equal(601000, fake:now())
    -- a timeout longer than the delay does not fire
    fake:on("quick", nil, {stdout = "done", delay = 50})
    assert.are.equal("done", brood.exec_sync("quick", {timeout = 60}))
    assert.is_true((brood.hrtime() - t0) / 1e6 < 2000)
  end)

  it("cuts output at max_buffer and kills, as real", function()
    fake:on("chatty", nil, {stdout = ("y\n"):rep(100), delay = 1000})
    local r, err = brood.exec_sync("chatty", {max_buffer = 10})
    assert.is_nil(r)
    assert.are.equal("ERR_CHILD_PROCESS_STDIO_MAXBUFFER", err.code)
    assert.are.equal(("y\n"):rep(5), err.stdout)
    assert.are.equal("SIGTERM", err.signal)
  end)

  it("runs no callback of the script while a sync call waits", function()
    fake:on("bg", nil, {delay = 100})
    fake:on("fg", nil, {stdout = "fg\n", delay = 500})
    local child = assert(brood.spawn("bg"))
    local exited = false
    child:on("exit", function() exited = true end)
    assert.are.equal("fg\n", brood.exec_sync("fg"))
    assert.is_false(exited)  -- bg's exit was due at 100, the loop was held
    assert.are.same({0, nil}, {child:wait()})
    assert.is_true(exited)
    assert.are.equal(500, fake:now())
  end)

  it("an unscripted program is missing: ENOENT, and still checks options",
     function()
    local r, err, code = brood.exec_sync("frobnicate --all")
    assert.is_nil(r)
    assert.are.equal("ENOENT", code)
    assert.are.equal("ENOENT", err.code)
    assert.are.equal("ENOENT", brood.spawn_sync("nope").error.code)
    assert.are.equal(2, #fake.calls)
    assert.has_error(function()
      brood.exec_sync("x", {timeout = -1})
    end)
    assert.is_true(no_real_children())
  end)
end)

-- Waits with a timeout and cancellable tasks (DESIGN §3, issue 13 item 1).
local H = require "spec.helper"
local brood = H.brood

local raises = H.raises

local function ms_since(t0) return (brood.hrtime() - t0) / 1e6 end

local function timed_out(r, err, code)
  assert.is_nil(r)
  assert.are.equal("ETIMEDOUT", code)
  assert.are.equal(brood.Error, getmetatable(err))
  assert.are.equal("ETIMEDOUT", err.code)
end

describe("waits with a timeout (issue 13)", function()
  H.guard()

  it("child:wait(ms) times out, the child runs on, a later wait works",
     function()
    -- the child waits for a line from us: it cannot end before we say
    local child = assert(brood.spawn("sh", {"-c", "read _; echo done"}))
    local t0 = brood.hrtime()
    timed_out(child:wait(50))
    assert.is_true(ms_since(t0) < 3000)
    assert.is_true(H.alive(child.pid))
    assert.is_nil(child.exit_code)
    child.stdin:write("\n")
    assert.are.equal(0, child:wait(5000))
    assert.are.equal("done\n", child.stdout:read_all())
  end)

  it("child:wait(ms) returns at once when the child has closed", function()
    local child = assert(brood.spawn("true"))
    assert.are.equal(0, child:wait())
    assert.are.equal(0, child:wait(0))
  end)

  it("stream:read(ms) times out; the data that comes later stays unread",
     function()
    local child = assert(brood.spawn("sh", {"-c", "sleep 0.2; echo late"}))
    timed_out(child.stdout:read(30))
    timed_out(child.stdout:read(0))
    assert.are.equal("late\n", child.stdout:read(5000))
    assert.is_nil(child.stdout:read(5000))
    child:wait()
  end)

  it("stream:read(ms) inside a task: timeout, then the next chunk",
     function()
    local child = assert(brood.spawn("sh", {"-c", "sleep 0.2; echo late"}))
    local got = brood.go(function()
      local r, _, code = child.stdout:read(20)
      return r, code, child.stdout:read(5000)
    end)
    local r, code, chunk = got:wait()
    assert.is_nil(r)
    assert.are.equal("ETIMEDOUT", code)
    assert.are.equal("late\n", chunk)
    child:wait()
  end)

  it("lines() after a read(ms) timeout loses nothing", function()
    local child = assert(brood.spawn("sh", {"-c",
      "sleep 0.1; printf 'a\\nb\\n'; sleep 0.1; printf 'c\\n'"}))
    timed_out(child.stdout:read(10))
    local got = {}
    for line in child.stdout:lines() do got[#got + 1] = line end
    assert.are.same({"a", "b", "c"}, got)
    child:wait()
  end)

  it("child:recv(ms) and brood.parent:recv(ms) time out, then deliver",
     function()
    local child = assert(brood.fork(H.fixtures .. "/k_recv_timeout.lua"))
    -- the child waits 50 ms for nothing: it says so, and we have waited
    -- for it meanwhile with a timeout of our own
    timed_out(child:recv(0))
    local m = assert(child:recv(5000))
    assert.are.same({first = "ETIMEDOUT", is_error = true}, m)
    child:send("hello")
    assert.are.same({second = "hello"}, child:recv(5000))
    assert.are.same({0, nil}, {child:wait(5000)})
  end)

  it("a message arriving after recv(ms) timed out goes to the next recv",
     function()
    local child = assert(brood.fork(H.fixtures .. "/k_recv_timeout.lua"))
    local t = brood.go(function() return child:recv(1) end)
    local r, _, code = t:wait()
    assert.is_nil(r)
    assert.are.equal("ETIMEDOUT", code)
    assert.are.same({first = "ETIMEDOUT", is_error = true},
                    child:recv(5000))
    child:send("x")
    assert.are.same({second = "x"}, child:recv(5000))
    child:wait()
  end)

  it("task:wait(ms) times out, the task runs on, a later wait works",
     function()
    local t = brood.go(function() brood.sleep(150) return "a", "b" end)
    timed_out(t:wait(20))
    assert.is_false(t.done)
    assert.are.same({"a", "b"}, {t:wait(5000)})
  end)

  it("bad ms raise at the caller", function()
    local child = assert(brood.spawn("true"))
    raises("bad argument #1 to 'wait' (milliseconds >= 0 expected, got -1)",
           child.wait, child, -1)
    local ok, err = pcall(child.wait, child, "10")
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'wait' %(number expected, got string%)",
                   err)
    ok, err = pcall(child.stdout.read, child.stdout, -5)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'read' %(milliseconds >= 0 expected, " ..
                   "got %-5%)", err)
    ok, err = pcall(child.recv, child, 1)
    assert.is_false(ok)
    assert.matches("no IPC channel", err)
    local t = brood.go(function() end)
    ok, err = pcall(t.wait, t, 0 / 0)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'wait' %(milliseconds >= 0 expected",
                   err)
    ok, err = pcall(t.cancel)
    assert.is_false(ok)
    assert.matches("use task:cancel%(%), not task.cancel%(%)", err)
    child:wait()
  end)

  it("a timeout counts from the wait, however long the script ran before",
     function()
    local child = assert(brood.spawn("sleep", {"5"}))
    local t0 = os.clock()
    while os.clock() - t0 < 0.15 do end  -- busy: the loop's clock is stale
    local w0 = brood.hrtime()
    timed_out(child:wait(100))
    assert.is_true(ms_since(w0) >= 90, "timed out too early")
    child:kill("SIGKILL")
    child:wait()
  end)
end)

describe("task:cancel() (issue 13)", function()
  H.guard()

  it("the current wait raises ECANCELED; <close> children are killed",
     function()
    local pid
    local t = brood.go(function()
      local c <close> = assert(brood.spawn("sleep", {"30"}))
      pid = c.pid
      c:wait()
    end)
    brood.sleep(20)
    assert.is_true(H.alive(pid))
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.are.equal(brood.Error, getmetatable(err))
    assert.are.equal("ECANCELED", err.code)
    assert.is_true(t.done)
    assert.is_false(H.alive(pid))
  end)

  it("a task cancelled before it waits raises at its next wait", function()
    local steps = {}
    local t
    t = brood.go(function()
      brood.sleep(1)
      steps[#steps + 1] = "running"
      t:cancel()  -- itself: not waiting now
      steps[#steps + 1] = "still running"
      brood.sleep(1)
      steps[#steps + 1] = "never"
    end)
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.are.equal("ECANCELED", err.code)
    assert.are.same({"running", "still running"}, steps)
  end)

  it("cancel during stream:read and recv leaves the data for others",
     function()
    local child = assert(brood.spawn("sh", {"-c", "read _; echo x"}))
    local t = brood.go(function() return child.stdout:read() end)
    brood.sleep(10)
    t:cancel()
    assert.is_false(pcall(t.wait, t))
    child.stdin:write("\n")  -- only now is there something to read
    assert.are.equal("x\n", child.stdout:read(5000))
    child:wait()
  end)

  it("cancel during exec kills the command", function()
    local path = os.tmpname()
    local t = brood.go(function()
      return brood.exec("echo $$ > " .. path .. "; exec sleep 30")
    end)
    assert.is_true(H.run_until(function()
      local f = io.open(path)
      local s = f and f:read("a")
      if f then f:close() end
      return s ~= nil and s:match("%d+\n") ~= nil
    end))
    local f = io.open(path); local pid = tonumber(f:read("a")); f:close()
    os.remove(path)
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.are.equal("ECANCELED", err.code)
    assert.is_true(H.gone(pid))
  end)

  it("cancel on a finished task does nothing", function()
    local t = brood.go(function() return 1 end)
    assert.are.equal(t, t:cancel())
    assert.are.equal(1, t:wait())
  end)

  it("a cancelled sleep leaves no timer behind", function()
    local t = brood.go(function() brood.sleep(60000) end)
    t:cancel()
    assert.is_false(pcall(t.wait, t))
    assert.are.equal(0, H.core.default_loop:handle_count())
  end)

  it("a cancelled task:wait(ms) on another task leaves that task alone",
     function()
    -- inner ends when the child echoes, after our line
    local gate = assert(brood.spawn("sh", {"-c", "read _; echo inner"}))
    local inner = brood.go(function() return gate.stdout:read() end)
    local outer = brood.go(function() return inner:wait(10000) end)
    brood.sleep(5)
    outer:cancel()
    assert.is_false(pcall(outer.wait, outer))
    gate.stdin:write("\n")
    assert.are.equal("inner\n", inner:wait())
    assert.are.equal(0, gate:wait())
  end)

  it("a lines() step cancelled mid-line loses and repeats nothing",
     function()
    local c = assert(brood.spawn("sh", {"-c",
      "printf ab; read _; printf 'cd\\nef\\n'"}))
    local next_line = c.stdout:lines()
    local t = brood.go(function() return next_line() end)
    brood.sleep(150)  -- "ab" has arrived; the step waits for the rest
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.are.equal("ECANCELED", err.code)
    c.stdin:write("\n")  -- the rest comes only now
    assert.are.equal("abcd", next_line())
    assert.are.equal("ef", next_line())
    assert.is_nil(next_line())
    c:wait()
  end)
end)

-- Timers count from the moment they are set (DESIGN §3): the loop's clock
-- is refreshed first, however long the script ran synchronously before.
local H = require "spec.helper"
local brood, core = H.brood, H.core

local MS = 1e6  -- hrtime is in ns

-- 250 ms of plain Lua work, during which no loop runs.
local function busy()
  local t = core.hrtime()
  while core.hrtime() - t < 250 * MS do end
end

-- 250 ms spent in a *_sync call (a private loop: the default loop's clock
-- does not move).
local function busy_sync()
  local r = brood.spawn_sync("sleep", {"0.25"})
  assert.equal(0, r.status)
end

-- Milliseconds since `start` (an hrtime).
local function since(start)
  return (core.hrtime() - start) / MS
end

describe("the loop's clock", function()
  H.guard()

  -- Each case: after 250 ms of synchronous work, a 300 ms timer of some
  -- kind must take about 300 ms from the moment it is set (it used to
  -- fire after ~50 ms, counting from the stale loop time).
  local function at_least_300(work, f)
    work()
    local start = core.hrtime()
    f()
    local took = since(start)
    assert.is_true(took >= 290, ("took only %.0f ms"):format(took))
  end

  it("set_timeout counts from when it is set", function()
    at_least_300(busy, function()
      local fired = false
      brood.set_timeout(300, function() fired = true end)
      brood.run()
      assert.is_true(fired)
    end)
  end)

  it("set_interval's first tick counts from when it is set", function()
    at_least_300(busy, function()
      local t
      t = brood.set_interval(300, function() t:stop() end)
      brood.run()
    end)
  end)

  it("sleep counts from when it is called", function()
    at_least_300(busy, function() brood.sleep(300) end)
  end)

  it("sleep counts from when it is called, after a spawn_sync", function()
    at_least_300(busy_sync, function() brood.sleep(300) end)
  end)

  it("exec's timeout counts from the exec", function()
    at_least_300(busy, function()
      local r, err, code = brood.exec("sleep 5", {timeout = 300})
      assert.is_nil(r)
      assert.equal("ETIMEDOUT", code)
      assert.is_true(err.killed)
    end)
  end)

  it("exec's timeout counts from the exec, after a spawn_sync", function()
    at_least_300(busy_sync, function()
      local _, _, code = brood.exec("sleep 5", {timeout = 300})
      assert.equal("ETIMEDOUT", code)
    end)
  end)

  it("spawn's timeout counts from the spawn", function()
    at_least_300(busy, function()
      local c = assert(brood.spawn("sleep", {"5"}, {timeout = 300}))
      assert.same({nil, "SIGTERM"}, {c:wait()})
      assert.is_true(c.killed)
    end)
  end)

  it("exec's idle_timeout counts from the exec", function()
    at_least_300(busy, function()
      local _, err, code = brood.exec("sleep 5", {idle_timeout = 300})
      assert.equal("ETIMEDOUT", code)
      assert.is_true(err.idle)
    end)
  end)

  it("brood.now() includes time spent outside the loop", function()
    local a = brood.now()
    busy()
    local b = brood.now()
    assert.is_true(b - a >= 250, ("now() moved only %d ms"):format(b - a))
  end)

  it("timers of a task started after synchronous work count from then",
     function()
    at_least_300(busy, function()
      local t = brood.go(function() brood.sleep(300) return "slept" end)
      assert.equal("slept", t:wait())
    end)
  end)
end)

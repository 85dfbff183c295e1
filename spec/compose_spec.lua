-- brood.all, brood.race, brood.map (DESIGN §10, issue 13 item 2).
local H = require "spec.helper"
local brood = H.brood

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error: " .. pattern)
  assert.matches(pattern, err)
end

-- A function that starts a <close> child (pid into `pids`) and waits.
local function sleeper(pids, secs)
  return function()
    local c <close> = assert(brood.spawn("sleep", {tostring(secs)}))
    pids[#pids + 1] = c.pid
    c:wait()
    return "slept"
  end
end

describe("brood.all (issue 13)", function()
  H.guard()

  it("returns the first result of each, in order", function()
    local r = brood.all({
      function() brood.sleep(30) return "a", "ignored" end,
      function() return "b" end,
      function() return assert(brood.exec("echo c")).stdout end,
    })
    assert.are.same({"a", "b", "c\n"}, r)
    assert.are.same({}, brood.all({}))
  end)

  it("the first error cancels the others (their <close> children die) " ..
     "and is raised", function()
    local pids = {}
    local ok, err = pcall(brood.all, {
      sleeper(pids, 30), sleeper(pids, 30),
      function() brood.sleep(30) error("boom", 0) end,
    })
    assert.is_false(ok)
    assert.matches("^boom\nstack traceback:", err)
    assert.are.equal(2, #pids)
    for _, pid in ipairs(pids) do assert.is_false(H.alive(pid)) end
  end)

  it("runs inside a task, and a cancelled caller cancels its tasks",
     function()
    local pids = {}
    local t = brood.go(function()
      return brood.all({sleeper(pids, 30), sleeper(pids, 30)})
    end)
    brood.sleep(30)
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.are.equal("ECANCELED", err.code)
    for _, pid in ipairs(pids) do assert.is_true(H.gone(pid)) end
  end)

  it("bad input raises", function()
    raises("bad argument #1 to 'all' %(table of functions expected, got no value%)",
           brood.all)
    raises("bad argument #1 to 'all' %(fns%[2%] must be a function, got " ..
           "string%)", brood.all, {function() end, "x"})
  end)
end)

describe("brood.race (issue 13)", function()
  H.guard()

  it("the first to finish wins; the rest are cancelled", function()
    local pids = {}
    local a, b = brood.race({
      sleeper(pids, 30),
      function() brood.sleep(20) return "fast", 2 end,
    })
    assert.are.same({"fast", 2}, {a, b})
    assert.are.equal(1, #pids)
    assert.is_false(H.alive(pids[1]))
  end)

  it("the first to finish with an error raises it", function()
    local pids = {}
    local ok, err = pcall(brood.race, {
      sleeper(pids, 30),
      function() brood.sleep(10) error({code = "mine"}) end,
    })
    assert.is_false(ok)
    assert.are.same({code = "mine"}, err)
    assert.is_false(H.alive(pids[1]))
  end)

  it("bad input raises", function()
    raises("bad argument #1 to 'race' %(at least one function expected%)",
           brood.race, {})
    raises("bad argument #1 to 'race' %(table of functions expected, got " ..
           "number%)", brood.race, 1)
  end)
end)

describe("brood.map (issue 13)", function()
  H.guard()

  it("results in input order, at most `concurrency` at once", function()
    local running, most = 0, 0
    local items = {}
    for i = 1, 12 do items[i] = i end
    local r = brood.map(items, function(x, i)
      assert.are.equal(x, i)
      running = running + 1
      most = math.max(most, running)
      brood.sleep((13 - x) * 2)
      running = running - 1
      return x * x
    end, {concurrency = 3})
    for i = 1, 12 do assert.are.equal(i * i, r[i]) end
    assert.are.equal(3, most)
    assert.are.same({}, brood.map({}, function() end))
  end)

  it("defaults to the CPU count", function()
    local running, most = 0, 0
    local items = {}
    for i = 1, 64 do items[i] = i end
    brood.map(items, function()
      running = running + 1
      most = math.max(most, running)
      brood.sleep(5)
      running = running - 1
    end)
    assert.are.equal(math.min(64, H.core.cpu_count()), most)
  end)

  it("runs real commands; the first error cancels the rest and is raised",
     function()
    local started = 0
    local items = {"true", "exit 7", "sleep 30", "sleep 30", "sleep 30"}
    local ok, err = pcall(brood.map, items, function(cmd)
      started = started + 1
      local r, e = brood.exec(cmd)
      if not r then error(e, 0) end  -- busted's assert would wrap it
      return r
    end, {concurrency = 3})
    assert.is_false(ok)
    assert.are.equal(7, err.code)
    -- the items after the failure never started
    assert.is_true(started <= 4)
  end)

  it("progress: nothing on stderr when it is not a terminal", function()
    local path = H.tmpfile([[
      local brood = require "brood"
      local r = brood.map({1, 2, 3}, function(x) brood.sleep(5) return x end,
                          {progress = true})
      io.write(#r, "\n")
    ]])
    local r = assert(brood.exec_file(H.host, {path}))
    os.remove(path)
    assert.are.equal("3\n", r.stdout)
    assert.are.equal("", r.stderr)
  end)

  it("progress: one line on a terminal, erased at the end", function()
    local path = H.tmpfile([[
      local brood = require "brood"
      local items = {}
      for i = 1, 20 do items[i] = i end
      local r = brood.map(items, function(x) brood.sleep(30) return x end,
                          {progress = true, concurrency = 2})
      io.write("done ", #r, "\n")
    ]])
    local r = assert(brood.exec_file("script", {"-qefc",
      H.host .. " " .. path, "/dev/null"}))
    os.remove(path)
    assert.matches("\r%d+/20 tasks %(%d+%%%)  %d+/s  ETA %d+s\27%[K",
                   r.stdout)
    assert.matches("\r\27%[Kdone 20\r?\n$", r.stdout)
  end)

  it("bad input raises", function()
    raises("bad argument #1 to 'map' %(table expected, got no value%)", brood.map)
    raises("bad argument #2 to 'map' %(function expected, got nil%)",
           brood.map, {})
    raises("bad argument #3 to 'map' %(unknown option 'concurency' %(did " ..
           "you mean 'concurrency'%?%)%)", brood.map, {}, print,
           {concurency = 2})
    raises("bad argument #3 to 'map' %(option 'concurrency' must be a whole " ..
           "number >= 1, got 0%)", brood.map, {}, print, {concurrency = 0})
    raises("bad argument #3 to 'map' %(option 'concurrency' must be a whole " ..
           "number >= 1, got 1.5%)", brood.map, {}, print, {concurrency = 1.5})
    raises("bad argument #3 to 'map' %(option 'progress' must be boolean",
           brood.map, {}, print, {progress = 1})
  end)
end)

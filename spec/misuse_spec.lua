-- Mistakes users make, and the errors that tell them what to write
-- instead: waiting where nothing can wait, a dot for a colon, a misspelt
-- option or event name.
local H = require "spec.helper"
local brood = H.brood

local CANNOT_WAIT = "brood: cannot wait outside a task (use brood.go)"

-- Run fn inside a plain callback (a timer's) and return what it raised.
local function in_callback(fn)
  local ok, err
  brood.set_timeout(0, function() ok, err = pcall(fn) end)
  brood.run()
  assert.is_false(ok, "expected an error")
  return err
end

local THIS_FILE = "misuse_spec%.lua:%d+: "

describe("waiting in a plain callback", function()
  H.guard()

  it("task:wait() raises even when the task is already done", function()
    local t = brood.go(function() return 1 end)
    assert.is_true(t.done)
    local err = in_callback(function()
      local r = t:wait()  -- not a tail call: the error names this line
      return r
    end)
    assert.matches("^[^:]*" .. THIS_FILE .. CANNOT_WAIT:gsub("%p", "%%%0") ..
                   "$", err)
  end)

  it("sleep(0) raises at the caller's line", function()
    local err = in_callback(function()
      brood.sleep(0)
    end)
    assert.matches(THIS_FILE .. "brood: cannot wait", err)
    local _, count = err:gsub("brood:", "")
    assert.equal(1, count)
  end)
end)

describe("a method called with a dot", function()
  H.guard()

  it("task.wait() says to use a colon", function()
    local t = brood.go(function() end)
    local ok, err = pcall(function() return t.wait() end)
    assert.is_false(ok)
    assert.matches("use task:wait%(%), not task%.wait%(%)$", err)
  end)

  it("timer.stop() says to use a colon", function()
    local timer = brood.set_timeout(10, function() end)
    local ok, err = pcall(function() timer.stop() end)
    assert.is_false(ok)
    assert.matches("use timer:stop%(%), not timer%.stop%(%)$", err)
    timer:stop()
  end)
end)

describe("unknown option names", function()
  H.guard()

  it("suggest the name meant, in snake_case or with a typo", function()
    local ok, err = pcall(brood.spawn, "true", {}, {killSignal = "SIGINT"})
    assert.is_false(ok)
    assert.matches("unknown option 'killSignal' %(did you mean " ..
                   "'kill_signal'%?%)", err)
    ok, err = pcall(brood.spawn, "true", {}, {timout = 5})
    assert.is_false(ok)
    assert.matches("unknown option 'timout' %(did you mean 'timeout'%?%)",
                   err)
    ok, err = pcall(brood.spawn, "true", {}, {xyzzy = 5})
    assert.is_false(ok)
    assert.matches("unknown option 'xyzzy'%)$", err)
  end)
end)

describe("unknown event names", function()
  H.guard()

  it("raise on a server, suggesting the event meant", function()
    local server = brood.net.create_server()
    local ok, err = pcall(server.on, server, "conection", function() end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'on' %(unknown event 'conection' " ..
                   "%(did you mean 'connection'%?%)%)", err)
    server:on("connection", function() end)
    server:close()
  end)

  it("raise on a child and on its streams", function()
    local child = assert(brood.spawn("true"))
    local ok, err = pcall(child.on, child, "exitt", function() end)
    assert.is_false(ok)
    assert.matches("unknown event 'exitt' %(did you mean 'exit'%?%)", err)
    ok, err = pcall(child.once, child, "closed", function() end)
    assert.is_false(ok)
    assert.matches("unknown event 'closed' %(did you mean 'close'%?%)", err)
    ok, err = pcall(child.stdout.on, child.stdout, "Data", function() end)
    assert.is_false(ok)
    assert.matches("unknown event 'Data' %(did you mean 'data'%?%)", err)
    -- the events they do emit are taken
    local got = {}
    child:on("exit", function(code) got.exit = code end)
    child.stdout:on("end", function() got.stdout_end = true end)
    child:wait()
    assert.same({exit = 0, stdout_end = true}, got)
  end)
end)

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

describe("argument errors (issue 9: one checker)", function()
  H.guard()

  -- Each case calls a public function wrongly, not as a tail call (so the
  -- caller's line is on the stack), and gives the message it must raise.
  local function cases()
    local child = assert(brood.spawn("true", {}, {stdio = "ignore"}))
    local forked = H.fork_ready(H.fixtures .. "/ipc_echo.lua")
    local piped = assert(brood.spawn("true"))
    local srv = brood.net.create_server()
    local list = {
      {function() local r = forked:send(print) return r end,
       "bad argument #1 to 'send' (cannot encode a function)"},
      {function() local r = forked:send({f = print}, function() end)
                  return r end,
       "bad argument #1 to 'send' (cannot encode a function)"},
      {function() local r = piped.stdout:pipe(piped.stdout) return r end,
       "bad argument #1 to 'pipe' (writable stream expected)"},
      {function() local r = brood.exec("ls", {env = {[1] = "x"}}) return r end,
       "bad argument #2 to 'exec' (invalid environment variable name '1')"},
      {function() local r = brood.exec_sync("ls", {env = {[1] = "x"}})
                  return r end,
       "bad argument #2 to 'exec_sync' (invalid environment variable name " ..
       "'1')"},
      {function() local r = brood.spawn_sync("ls", {}, {env = {A = {}}})
                  return r end,
       "bad argument #3 to 'spawn_sync' (environment variable 'A' must be " ..
       "a string, got table)"},
      {function() local r = brood.exec_file("ls", {}, {stdio = {"bad"}})
                  return r end,
       "bad argument #3 to 'exec_file' (stdio[1]: invalid entry \"bad\")"},
      {function() local r = brood.fork("x.lua", {}, {timeout = -1})
                  return r end,
       "bad argument #3 to 'fork' (option 'timeout' must be a whole number " ..
       ">= 0, got -1)"},
      {function() local r = child:kill("SIGNOPE") return r end,
       "bad argument #1 to 'kill' (unknown signal 'SIGNOPE')"},
      {function() local r = child:on("exit", 5) return r end,
       "bad argument #2 to 'on' (function expected, got number)"},
      {function() local r = brood.set_timeout(-1, print) return r end,
       "bad argument #1 to 'set_timeout' (milliseconds >= 0 expected, " ..
       "got -1)"},
      {function() local r = brood.go(5) return r end,
       "bad argument #1 to 'go' (function expected, got number)"},
      {function() local r = brood.msgpack.array(5) return r end,
       "bad argument #1 to 'array' (table expected, got number)"},
      {function() local r = brood.net.connect({}) return r end,
       "bad argument #1 to 'connect' (port number or socket path expected, " ..
       "got table)"},
      {function() local r = srv:listen(0, 5) return r end,
       "bad argument #2 to 'listen' (host must be a string, got number)"},
      {function() local r = srv:close(5) return r end,
       "bad argument #1 to 'close' (function expected, got number)"},
    }
    return list, function()
      child:wait()
      piped:wait()
      assert.are.equal(0, H.finish(forked))
    end
  end

  it("name the function called and the caller's line", function()
    local list, finish = cases()
    for i, case in ipairs(list) do
      local ok, err = pcall(case[1])
      assert.is_false(ok, "case " .. i)
      assert.equal("spec/misuse_spec.lua", err:match("^(.-):%d+: "),
                   "case " .. i .. ": " .. tostring(err))
      assert.equal(case[2], err:match("^.-:%d+: (.*)$"), "case " .. i)
    end
    finish()
  end)

  it("are raised where they are found: the traceback shows the path",
     function()
    -- no pcall in between that catches and raises again: the traceback
    -- runs from the check, through brood, to the call
    local tb
    xpcall(function()
      local r = brood.exec("ls", {env = {[1] = "x"}})
      return r
    end, function(e) tb = debug.traceback(e, 2) end)
    assert.matches("bad argument #2 to 'exec'", tb)
    assert.matches("process%.lua:%d+: in [^\n]*build_env", tb)
    assert.matches("exec%.lua:%d+: in ", tb)
  end)

  it("an error inside brood keeps its own traceback", function()
    -- an env table whose iteration fails: the error is not an argument
    -- error, and must reach the script with the stack where it happened
    local env = setmetatable({}, {__pairs = function()
      error("iteration failed")
    end})
    local tb
    xpcall(function()
      local r = brood.spawn("true", {}, {env = env})
      return r
    end, function(e) tb = debug.traceback(e, 2) end)
    assert.matches("^[^\n]*misuse_spec%.lua:%d+: iteration failed\n", tb)
    assert.matches("process%.lua:%d+: in [^\n]*build_env", tb)
    assert.not_matches("check%.lua", tb)
  end)
end)

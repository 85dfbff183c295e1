-- fork as spawn of the host with an "ipc" stdio entry (DESIGN §4, §6):
-- "ipc" on any fd of any program that speaks the wire format; fork's own
-- rules (no shell, a missing script is ENOENT, kill_signal).

local H = require "spec.helper"
local brood = H.brood

local ARGS = H.fixtures .. "/fork_args.lua"
local ECHO = H.fixtures .. "/ipc_echo.lua"

local raises = H.raises

describe("brood.fork and \"ipc\" in spawn (issue 8)", function()
  H.guard()

  it("fork ignores shell: the arguments arrive exactly", function()
    local c = assert(brood.fork(ARGS, {"$HOME", "two words"}, {shell = true}))
    assert.are.same({args = {"$HOME", "two words"}}, c:recv())
    assert.are.same({0, nil}, {c:wait()})
  end)

  it("a missing script is nil, err, \"ENOENT\" naming it", function()
    local c, err, code = brood.fork("nope.lua")
    assert.is_nil(c)
    assert.are.equal("ENOENT", code)
    assert.are.equal("ENOENT", err.code)
    assert.are.equal(brood.Error, getmetatable(err))
    assert.are.equal("fork 'nope.lua': ENOENT: no such file or directory",
                     err.message)
    assert.are.equal("nope.lua", err.path)
  end)

  it("the script is looked up relative to opts.cwd", function()
    local c, err, code = brood.fork(ARGS, {}, {cwd = "/"})
    assert.is_nil(c)
    assert.are.equal("ENOENT", code)
    assert.are.equal(("fork '%s' (in cwd '/'): ENOENT: no such file or " ..
                      "directory"):format(ARGS), err.message)
    assert.are.equal("//" .. ARGS, err.path)
    -- the host is found (by an absolute path) whatever the child's cwd
    c = assert(brood.fork("fork_args.lua", {"x"}, {cwd = H.fixtures}))
    assert.are.same({args = {"x"}}, c:recv())
    c:wait()
  end)

  it("kill_signal = 0 raises", function()
    raises("bad argument #3 to 'fork' (option 'kill_signal' must not be 0 " ..
           "(it would not stop the child))",
           brood.fork, ECHO, {}, {kill_signal = 0})
  end)

  local function talk(c)
    assert.are.equal("ready", c:recv())
    assert.is_true(c.connected)
    c:send("hi")
    assert.are.same({echo = "hi"}, c:recv())
    local got
    c:once("message", function(m) got = m end)
    c:send({op = "x"})
    assert.is_true(H.run_until(function() return got ~= nil end))
    assert.are.same({echo = {op = "x"}}, got)
    c:send({op = "exit"})  -- the child disconnects and ends
    assert.are.same({0, nil}, {c:wait()})
    assert.is_false(c.connected)
  end

  it("spawn of the host with \"ipc\" at fd 3", function()
    local c = assert(brood.spawn(H.host, {ECHO},
                                 {stdio = {"ignore", "pipe", "pipe", "ipc"}}))
    assert.is_nil(c.stdio[4])
    talk(c)
    assert.are.equal("", c.stderr:read_all())
  end)

  it("spawn of the host with \"ipc\" at fd 5", function()
    local c = assert(brood.spawn(H.host, {ECHO},
      {stdio = {"ignore", "pipe", "pipe", "ignore", "ignore", "ipc"}}))
    talk(c)
    assert.are.equal("", c.stderr:read_all())
  end)

  it("spawn of a Python worker with \"ipc\"", function()
    local c = assert(brood.spawn("/usr/bin/python3",
                                 {H.fixtures .. "/py_worker.py"},
                                 {stdio = {"ignore", "inherit", "inherit",
                                           "ipc"}}))
    local hello = c:recv()
    assert.are.equal("python", hello.lang)
    assert.are.equal(c.pid, hello.pid)
    c:send({n = 7})
    assert.are.same({n = 7}, c:recv().echo)
    c:send({op = "exit"})
    assert.are.same({0, nil}, {c:wait()})
  end)

  it("the child finds the channel and its limit in its environment",
     function()
    local c = assert(brood.spawn("sh", {"-c",
      "echo $BROOD_CHANNEL_FD $BROOD_MAX_MESSAGE_SIZE"},
      {stdio = {"ignore", "pipe", "pipe", "ignore", "ignore", "ipc"},
       max_message_size = 16, env = {PATH = os.getenv("PATH")}}))
    assert.are.equal("5 16\n", c.stdout:read_all())
    assert.are.same({0, nil}, {c:wait()})
    assert.is_false(c.connected)
  end)

  it("two \"ipc\" entries raise", function()
    raises("bad argument #3 to 'spawn' (stdio may hold one 'ipc' only)",
           brood.spawn, H.host, {ECHO},
           {stdio = {"pipe", "pipe", "pipe", "ipc", "ipc"}})
    raises("bad argument #3 to 'fork' (stdio may hold one 'ipc' only)",
           brood.fork, ECHO, {}, {stdio = {"pipe", "ipc", "pipe", "ipc"}})
  end)

  it("a launch failure with \"ipc\" leaks nothing", function()
    local c, _, code = brood.spawn("brood-nosuch-prog", {},
                                   {stdio = {"pipe", "pipe", "pipe", "ipc"}})
    assert.is_nil(c)
    assert.are.equal("ENOENT", code)
  end)
end)

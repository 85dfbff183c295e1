-- spawn_sync, exec_sync, exec_file_sync (DESIGN §5): private loop, limits,
-- timeouts, results and errors.
local H = require "spec.helper"
local brood = H.brood

describe("brood.spawn_sync", function()
  H.guard()

  it("returns pid, stdout, stderr, status and signal", function()
    local r = brood.spawn_sync("sh", {"-c", "echo o; echo e >&2; exit 4"})
    assert.is_true(r.pid > 0)
    assert.are.equal("o\n", r.stdout)
    assert.are.equal("e\n", r.stderr)
    assert.are.equal(4, r.status)
    assert.is_nil(r.signal)
    assert.is_nil(r.error)
    assert.is_number(r.duration)
    assert.is_number(r.rusage.maxrss_kb)
  end)

  it("feeds input and closes stdin", function()
    local r = brood.spawn_sync("cat", {}, {input = "abc"})
    assert.are.equal("abc", r.stdout)
    assert.are.equal(0, r.status)
  end)

  it("gives stdin EOF when there is no input", function()
    local r = brood.spawn_sync("cat")
    assert.are.equal("", r.stdout)
    assert.are.equal(0, r.status)
  end)

  it("honours cwd and env", function()
    local r = brood.spawn_sync("sh", {"-c", "pwd; echo $X"},
                               {cwd = "/", env = {X = "42", PATH = "/bin"}})
    assert.are.equal("/\n42\n", r.stdout)
  end)

  it("reports a launch failure in error, without raising", function()
    local r = brood.spawn_sync("no-such-program-xyz")
    assert.are.equal(0, r.pid)
    assert.is_nil(r.status)
    assert.are.equal("ENOENT", r.error.code)
    assert.matches("no%-such%-program%-xyz", r.error.message)
  end)

  it("times out with ETIMEDOUT and the signal's name", function()
    local r = brood.spawn_sync("sleep", {"10"}, {timeout = 50,
                                                 kill_signal = 9})
    assert.is_nil(r.status)
    assert.are.equal("SIGKILL", r.signal)
    assert.are.equal("ETIMEDOUT", r.error.code)
    assert.is_true(r.error.killed)
    assert.are.equal("Command timed out after 50 ms: sleep 10",
                     r.error.message)
  end)

  it("cuts output to exactly max_buffer bytes", function()
    local r = brood.spawn_sync("yes", {}, {max_buffer = 100})
    assert.are.equal(100, #r.stdout)
    assert.are.equal("ERR_CHILD_PROCESS_STDIO_MAXBUFFER", r.error.code)
    assert.are.equal("SIGTERM", r.signal)
  end)

  it("drains large output on both streams without deadlock", function()
    local r = brood.spawn_sync("sh", {"-c",
      "head -c 200000 /dev/zero & head -c 200000 /dev/zero >&2; wait"})
    assert.are.equal(200000, #r.stdout)
    assert.are.equal(200000, #r.stderr)
  end)

  it("leaves stdout nil when it is not piped", function()
    local r = brood.spawn_sync("true", {}, {stdio = "ignore"})
    assert.is_nil(r.stdout)
    assert.are.equal(0, r.status)
  end)

  it("runs no callback of the script while it waits", function()
    local fired = false
    local t = brood.set_timeout(0, function() fired = true end)
    local r = brood.spawn_sync("sleep", {"0.1"})
    assert.are.equal(0, r.status)
    assert.is_false(fired)
    t:stop()
  end)

  it("works inside a callback and inside a task", function()
    local from_callback, from_task
    brood.set_timeout(0, function()
      from_callback = brood.exec_sync("echo cb")
    end)
    local task = brood.go(function()
      from_task = brood.exec_sync("echo task")
      return true
    end)
    assert.is_true(task:wait())
    H.run_until(function() return from_callback ~= nil end)
    assert.are.equal("cb\n", from_callback)
    assert.are.equal("task\n", from_task)
  end)

  it("raises for bad arguments", function()
    assert.has_error(function() brood.spawn_sync(nil) end,
      "bad argument #1 to 'spawn_sync' (file must be a string, got nil)")
    assert.has_error(function() brood.spawn_sync("true", {}, {inputt = 1}) end,
      "bad argument #3 to 'spawn_sync' (unknown option 'inputt' (did you mean 'input'?))")
    assert.has_error(function() brood.spawn_sync("true", {}, {timeout = -5}) end)
    assert.has_error(function() brood.spawn_sync("true", {}, {input = 5}) end,
      "bad argument #3 to 'spawn_sync' (option 'input' must be string, got number)")
  end)
end)

describe("brood.exec_sync and brood.exec_file_sync", function()
  H.guard()

  it("return stdout", function()
    assert.are.equal("hi\n", brood.exec_sync("echo hi"))
    assert.are.equal("a b\n", brood.exec_file_sync("echo", {"a", "b"}))
  end)

  it("return nil, err, code on failure, like exec", function()
    local out, err, code = brood.exec_sync("echo x; echo bad >&2; exit 2")
    assert.is_nil(out)
    assert.are.equal(2, code)
    assert.are.equal("Command failed: echo x; echo bad >&2; exit 2\nbad\n",
                     err.message)
    assert.are.equal("x\n", err.stdout)
    local _, err2, code2 = brood.exec_file_sync("no-such-program-xyz")
    assert.are.equal("ENOENT", code2)
    assert.are.equal("no-such-program-xyz", err2.cmd)
  end)

  it("a missing shell is ENOENT naming it", function()
    local _, err, code = brood.exec_sync("true", {shell = "/no/sh"})
    assert.are.equal("ENOENT", code)
    assert.matches("/no/sh", err.message, 1, true)
  end)

  it("time out and truncate like exec", function()
    local _, err = brood.exec_sync("echo a; sleep 10", {timeout = 1000})
    assert.are.equal("ETIMEDOUT", err.code)
    assert.are.equal("a\n", err.stdout)
    local _, err2 = brood.exec_file_sync("yes", {}, {max_buffer = 7})
    assert.are.equal("y\ny\ny\ny", err2.stdout)
  end)

  it("do not wait for a grandchild that holds the pipe after a timeout",
     function()
    -- a sleep length of this run only (another run may be beside it)
    local arg = "31.0" .. H.core.getpid()
    local _, err = brood.exec_sync(("sleep %s & sleep %s; wait"):format(
      arg, arg), {timeout = 100})
    assert.are.equal("ETIMEDOUT", err.code)
    -- the tree was signalled; the sleeps may take a moment to die
    assert.is_true(H.run_until(function()
      return brood.exec_sync("pgrep -x -f 'sleep " .. arg .. "' || true") == ""
    end, 3000))
  end)

  it("raise for bad arguments", function()
    assert.has_error(function() brood.exec_sync(false) end,
      "bad argument #1 to 'exec_sync' (command must be a string, got boolean)")
    assert.has_error(function() brood.exec_file_sync("echo", "x") end,
      "bad argument #2 to 'exec_file_sync' (args table expected, got string)")
  end)
end)

describe("the sync variants under real use (issue 8)", function()
  H.guard()
  local core = H.core

  local raises = H.raises

  it("a bad argument with merge_stderr leaks no fd", function()
    for _ = 1, 3 do
      assert.has_error(function()
        brood.exec_sync("true", {merge_stderr = true, env = {A = "a\0b"}})
      end)
      assert.has_error(function()
        brood.spawn_sync("true", {}, {merge_stderr = true, uid = -1})
      end)
    end
    assert.are.equal("a\nb\n", brood.exec_sync("echo a; echo b >&2",
                                               {merge_stderr = true}))
  end)

  it("input with a stdin that is not a pipe raises, naming both", function()
    raises("bad argument #2 to 'exec_sync' (option 'input' needs stdio[1] " ..
           "to be \"pipe\", got \"inherit\")",
           brood.exec_sync, "cat", {input = "x",
                                    stdio = {"inherit", "pipe", "pipe"}})
    raises("bad argument #3 to 'spawn_sync' (option 'input' needs stdio[1] " ..
           "to be \"pipe\", got \"ignore\")",
           brood.spawn_sync, "cat", {}, {input = "x", stdio = "ignore"})
    raises("bad argument #3 to 'exec_file_sync' (option 'input' needs " ..
           "stdio[1] to be \"pipe\", got \"inherit\")",
           brood.exec_file_sync, "cat", {}, {input = "x", stdio = "inherit"})
  end)

  it("kill_signal = 0 raises", function()
    raises("bad argument #3 to 'spawn_sync' (option 'kill_signal' must not " ..
           "be 0 (it would not stop the child))",
           brood.spawn_sync, "sleep", {"1"}, {timeout = 10, kill_signal = 0})
    raises("bad argument #2 to 'exec_sync' (option 'kill_signal' must not " ..
           "be 0 (it would not stop the child))",
           brood.exec_sync, "sleep 1", {kill_signal = 0})
  end)

  it("\"ipc\" raises: a sync child has no loop to talk on", function()
    raises("bad argument #3 to 'spawn_sync' (stdio[4]: 'ipc' needs a loop: " ..
           "use brood.spawn or brood.fork)",
           brood.spawn_sync, "true", {}, {stdio = {"pipe", "pipe", "pipe",
                                                   "ipc"}})
  end)

  it("timeout bounds the call even when grandchildren hold the pipes",
     function()
    local t0 = core.hrtime()
    local r = brood.spawn_sync("sh", {"-c", "sleep 13 & sleep 14"},
                               {timeout = 300})
    assert.is_true((core.hrtime() - t0) / 1e6 < 5000)
    assert.are.equal("ETIMEDOUT", r.error.code)
    assert.are.equal("SIGTERM", r.signal)
    assert.is_nil(r.status)
  end)
end)

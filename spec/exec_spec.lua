-- exec and exec_file (DESIGN §5): call shapes, buffering, limits, timeouts,
-- the error's shape, and bad input.
local H = require "spec.helper"
local brood = H.brood

local MiB = 1024 * 1024

describe("brood.exec", function()
  H.guard()

  it("runs the command through /bin/sh and returns a result table", function()
    local r = assert(brood.exec("echo out; echo err >&2"))
    assert.are.equal("out\n", r.stdout)
    assert.are.equal("err\n", r.stderr)
    assert.are.equal(0, r.code)
    assert.are.equal("echo out; echo err >&2", r.cmd)
    assert.is_number(r.duration)
    assert.is_number(r.rusage.maxrss_kb)
    assert.is_true(r.pid > 0)
  end)

  it("fails with the exit code, the command and stderr", function()
    local r, err, code = brood.exec("echo partial; echo oops >&2; exit 3")
    assert.is_nil(r)
    assert.are.equal(3, code)
    assert.are.equal(3, err.code)
    assert.are.equal(getmetatable(err), brood.Error)
    assert.are.equal("Command failed: echo partial; echo oops >&2; exit 3\noops\n",
                     err.message)
    assert.are.equal("partial\n", err.stdout)
    assert.are.equal("oops\n", err.stderr)
    assert.is_false(err.killed)
    assert.is_nil(err.signal)
  end)

  it("a missing command in the shell is the shell's exit code 127", function()
    local _, err, code = brood.exec("no-such-command-anywhere-xyz")
    assert.are.equal(127, code)
    assert.matches("not found", err.stderr)
  end)

  it("honours opts.shell, and a missing shell is ENOENT naming it", function()
    local r = assert(brood.exec("echo $0", {shell = "/bin/bash"}))
    assert.are.equal("/bin/bash\n", r.stdout)
    local _, err, code = brood.exec("echo x", {shell = "/no/such/shell"})
    assert.are.equal("ENOENT", code)
    assert.matches("/no/such/shell", err.message, 1, true)
    assert.are.equal("echo x", err.cmd)
  end)

  it("calls cb(err, stdout, stderr) after returning the child", function()
    local calls, returned = {}, false
    local child = brood.exec("echo hi", function(err, out, errout)
      calls[#calls + 1] = {err, out, errout, returned}
    end)
    returned = true
    assert.is_table(child)
    assert.is_true(child.pid > 0)
    child:wait()
    H.run_until(function() return #calls == 1 end)
    assert.are.equal(1, #calls)
    assert.is_nil(calls[1][1])
    assert.are.equal("hi\n", calls[1][2])
    assert.are.equal("", calls[1][3])
    assert.is_true(calls[1][4])
  end)

  it("reports a launch failure to cb only after returning", function()
    local got, returned
    local r = brood.exec("true", {shell = "/no/such/shell"}, function(err)
      got = {err, returned}
    end)
    returned = true
    assert.is_nil(r)
    assert.is_nil(got)
    H.run_until(function() return got ~= nil end)
    assert.are.equal("ENOENT", got[1].code)
    assert.is_true(got[2])
  end)

  it("feeds input to stdin, then EOF", function()
    local r = assert(brood.exec("cat; echo done", {input = "fed\n"}))
    assert.are.equal("fed\ndone\n", r.stdout)
  end)

  it("gives EOF on stdin when there is no input and no callback", function()
    local r = assert(brood.exec("cat; echo after"))
    assert.are.equal("after\n", r.stdout)
  end)

  it("survives a child that does not read its input (EPIPE)", function()
    local r = assert(brood.exec("exit 0", {input = ("x"):rep(4 * MiB)}))
    assert.are.equal("", r.stdout)
  end)

  it("merges stderr into stdout in order with merge_stderr", function()
    local r = assert(brood.exec("echo 1; echo 2 >&2; echo 3; echo 4 >&2",
                                {merge_stderr = true}))
    assert.are.equal("1\n2\n3\n4\n", r.stdout)
    assert.are.equal("", r.stderr)
  end)

  describe("max_buffer", function()
    it("accepts exactly max_buffer bytes", function()
      local r = assert(brood.exec("printf 12345", {max_buffer = 5}))
      assert.are.equal("12345", r.stdout)
    end)

    it("cuts to exactly max_buffer bytes and kills the child", function()
      local _, err, code = brood.exec("yes", {max_buffer = 1000})
      assert.are.equal("ERR_CHILD_PROCESS_STDIO_MAXBUFFER", code)
      assert.are.equal("stdout maxBuffer length exceeded", err.message)
      assert.are.equal(1000, #err.stdout)
      assert.is_true(err.killed)
      assert.are.equal("SIGTERM", err.signal)
    end)

    it("counts stderr on its own and names it", function()
      local _, err = brood.exec("printf 'ok'; yes >&2", {max_buffer = 10})
      assert.are.equal("stderr maxBuffer length exceeded", err.message)
      assert.are.equal(10, #err.stderr)
      assert.are.equal("ok", err.stdout)
    end)

    it("cuts mid-UTF-8 character: bytes, not characters", function()
      -- "é" is two bytes; three of them cut at 5 leaves half a character
      local _, err = brood.exec("printf 'ééé'", {max_buffer = 5})
      assert.are.equal("ééé", err.stdout .. "\xA9")
      assert.are.equal(5, #err.stdout)
    end)

    it("defaults to 1 MiB", function()
      local r = assert(brood.exec("head -c 1048576 /dev/zero"))
      assert.are.equal(MiB, #r.stdout)
      local _, err = brood.exec("head -c 1048577 /dev/zero")
      assert.are.equal("ERR_CHILD_PROCESS_STDIO_MAXBUFFER", err.code)
      assert.are.equal(MiB, #err.stdout)
    end)

    it("math.huge means no limit", function()
      local r = assert(brood.exec("head -c 3000000 /dev/zero",
                                  {max_buffer = math.huge}))
      assert.are.equal(3000000, #r.stdout)
    end)
  end)

  it("drains large output on both streams at once without deadlock", function()
    local r = assert(brood.exec(
      "head -c 300000 /dev/zero & head -c 300000 /dev/zero >&2; wait"))
    assert.are.equal(300000, #r.stdout)
    assert.are.equal(300000, #r.stderr)
  end)

  describe("timeouts", function()
    it("kills after timeout with ETIMEDOUT, killed, signal name", function()
      local _, err, code = brood.exec("echo started; sleep 10",
                                      {timeout = 1000})
      assert.are.equal("ETIMEDOUT", code)
      assert.is_true(err.timed_out)
      assert.is_true(err.killed)
      assert.are.equal("SIGTERM", err.signal)
      assert.are.equal("started\n", err.stdout)
      assert.matches("timed out after 1000 ms", err.message)
    end)

    -- The loop is busy past the deadline while the child exits in time:
    -- its exit is seen only after the timer is due. As in Node.js, a
    -- child that exited by itself (code 0) is a success, not a timeout.
    it("a child that exited before a late timer is not timed out",
       function()
      local done, e, out
      brood.exec("echo cb", {timeout = 250}, function(err, stdout)
        done, e, out = true, err, stdout
      end)
      local t0 = brood.hrtime()
      while brood.hrtime() - t0 < 600e6 do end  -- 600 ms without the loop
      assert.is_true(H.run_until(function() return done end, 5000))
      assert.is_nil(e)
      assert.are.equal("cb\n", out)
      -- and a grandchild holding the pipes still times it out
      done = nil
      local arg = "33.0107" .. H.core.getpid()
      brood.exec("sleep " .. arg .. " & echo started", {timeout = 250},
                 function(err) done, e = true, err end)
      t0 = brood.hrtime()
      while brood.hrtime() - t0 < 600e6 do end
      assert.is_true(H.run_until(function() return done end, 5000))
      assert.are.equal("ETIMEDOUT", e.code)
      assert.are.equal("started\n", e.stdout)
      assert.is_false(e.killed)
      for _, pid in ipairs(H.core.descendants(1)) do
        local f = io.open("/proc/" .. pid .. "/cmdline")
        local c = f and f:read("a") or ""
        if f then f:close() end
        if c == "sleep\0" .. arg .. "\0" then brood.kill(pid, "SIGKILL") end
      end
    end)

    it("uses kill_signal, given as a name or a number", function()
      local _, err = brood.exec("sleep 10", {timeout = 50, kill_signal = 9})
      assert.are.equal("SIGKILL", err.signal)
      _, err = brood.exec("sleep 10", {timeout = 50, kill_signal = "SIGINT"})
      assert.are.equal("SIGINT", err.signal)
    end)

    it("timeout = 0 means none", function()
      local r = assert(brood.exec("sleep 0.05; echo ok", {timeout = 0}))
      assert.are.equal("ok\n", r.stdout)
    end)

    it("force_kill_after sends SIGKILL to a child ignoring SIGTERM", function()
      -- (the shell must have set its trap before the timeout)
      local _, err = brood.exec("trap '' TERM; sleep 10",
                                {timeout = 1000, force_kill_after = 100})
      assert.are.equal("ETIMEDOUT", err.code)
      assert.are.equal("SIGKILL", err.signal)
    end)

    -- Distinctive sleep lengths, of this run only (the valgrind run of
    -- this file may run beside it): 30.0101<pid>, ...
    local RUN = tostring(H.core.getpid())
    -- pids of our own sleeps, found by their distinctive argument
    local function sleepers(arg)
      local out = brood.exec_sync("pgrep -x -f 'sleep " .. arg .. "' || true")
      local pids = {}
      for pid in out:gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
      return pids
    end

    it("does not wait for a grandchild holding the pipes", function()
      local arg = "30.0101" .. RUN
      local _, err = brood.exec(("sleep %s & sleep %s; wait"):format(arg, arg),
                                {timeout = 100})
      assert.are.equal("ETIMEDOUT", err.code)
      -- the whole tree was signalled: no sleep is left behind (they may
      -- take a moment to die)
      assert.is_true(H.run_until(function()
        return #sleepers(arg) == 0
      end, 3000))
    end)

    it("stops waiting when only an orphaned grandchild holds the pipes",
       function()
      -- the shell exits at once; its background sleep keeps stdout open
      local arg = "32.0103" .. RUN
      local _, err = brood.exec("sleep " .. arg .. " & echo started",
                                {timeout = 1000})
      assert.are.equal("ETIMEDOUT", err.code)
      assert.is_false(err.killed)  -- nothing of ours was left to kill
      assert.are.equal("started\n", err.stdout)
      for _, pid in ipairs(sleepers(arg)) do brood.kill(pid, "SIGKILL") end
    end)

    it("idle_timeout kills a child that stops producing output", function()
      local _, err = brood.exec("echo a; sleep 0.02; echo b; sleep 10",
                                {idle_timeout = 300})
      assert.are.equal("ETIMEDOUT", err.code)
      assert.is_true(err.idle)
      assert.are.equal("a\nb\n", err.stdout)
    end)
  end)

  describe("bad input", function()
    it("raises for wrong types, naming the function and argument", function()
      assert.has_error(function() brood.exec({}) end,
        "bad argument #1 to 'exec' (command must be a string, got table)")
      assert.has_error(function() brood.exec("true", "x") end,
        "bad argument #2 to 'exec' (options table expected, got string)")
      assert.has_error(function() brood.exec("true", {}, 5) end,
        "bad argument #3 to 'exec' (function expected, got number)")
      assert.has_error(function() brood.exec("true", {max_bufer = 1}) end,
        "bad argument #2 to 'exec' (unknown option 'max_bufer' (did you mean 'max_buffer'?))")
      assert.has_error(function() brood.exec("a\0b") end,
        "bad argument #1 to 'exec' (command must not contain NUL bytes)")
    end)

    it("rejects negative, fractional and NaN limits", function()
      for _, opt in ipairs({"timeout", "max_buffer", "force_kill_after",
                            "idle_timeout"}) do
        for _, v in ipairs({-1, 1.5, 0 / 0}) do
          assert.has_error(function() brood.exec("true", {[opt] = v}) end)
        end
        assert.has_error(function() brood.exec("true", {[opt] = "1"}) end,
          ("bad argument #2 to 'exec' (option '%s' must be number, got string)")
          :format(opt))
      end
    end)

    it("raises inside a plain callback before starting anything", function()
      local before = #H.core.descendants(H.core.getpid())
      local ok, err
      brood.set_timeout(0, function()
        ok, err = pcall(brood.exec, "sleep 33")
      end)
      brood.run()
      assert.is_false(ok)
      assert.matches("cannot wait outside a task", err)
      assert.are.equal(before, #H.core.descendants(H.core.getpid()))
    end)

    it("blames a mistake on the caller's line, here", function()
      local _, err = pcall(function() brood.exec("true", {bogus = 1}) end)
      assert.matches("^[^\n]*exec_spec%.lua:%d+: bad argument #2 to 'exec'", err)
      _, err = pcall(function() brood.exec_sync("true", {bogus = 1}) end)
      assert.matches("^[^\n]*exec_spec%.lua:%d+: bad argument #2 to " ..
                     "'exec_sync'", err)
      _, err = pcall(function() brood.fork("x.lua", {}, {bogus = 1}) end)
      assert.matches("^[^\n]*exec_spec%.lua:%d+: bad argument #3 to 'fork'",
                     err)
    end)

    it("rejects an unknown kill_signal", function()
      assert.has_error(function()
        brood.exec("true", {kill_signal = "SIGNOPE"})
      end, "bad argument #2 to 'exec' (unknown signal 'SIGNOPE')")
    end)
  end)
end)

describe("brood.exec_file", function()
  H.guard()

  it("runs no shell and passes args as they are", function()
    local r = assert(brood.exec_file("/bin/echo", {"a b", "$HOME", "*"}))
    assert.are.equal("a b $HOME *\n", r.stdout)
    assert.are.equal("/bin/echo a b $HOME *", r.cmd)
  end)

  it("accepts every call shape Node accepts", function()
    local out = {}
    local function cb(_, stdout) out[#out + 1] = stdout end
    assert.are.equal("\n", assert(brood.exec_file("echo")).stdout)
    assert.are.equal("x\n", assert(brood.exec_file("echo", {"x"})).stdout)
    assert.are.equal("/\n", assert(brood.exec_file("pwd", {cwd = "/"})).stdout)
    assert.are.equal("x\n", assert(brood.exec_file("echo", {"x"},
                                                   {cwd = "/"})).stdout)
    assert.are.equal("/\n", assert(brood.exec_file("pwd", nil,
                                                   {cwd = "/"})).stdout)
    brood.exec_file("echo", cb):wait()
    brood.exec_file("echo", {"1"}, cb):wait()
    brood.exec_file("pwd", {cwd = "/"}, cb):wait()
    brood.exec_file("echo", {"2"}, {}, cb):wait()
    brood.exec_file("echo", nil, nil, cb):wait()
    brood.exec_file("echo", nil, cb):wait()
    H.run_until(function() return #out == 6 end)
    table.sort(out)
    assert.are.same({"\n", "\n", "\n", "/\n", "1\n", "2\n"}, out)
  end)

  it("raises for other shapes", function()
    assert.has_error(function() brood.exec_file("echo", "x") end,
      "bad argument #2 to 'exec_file' (unexpected string)")
    assert.has_error(function() brood.exec_file("echo", {"x"}, {}, {}) end,
      "bad argument #4 to 'exec_file' (unexpected table)")
    assert.has_error(function() brood.exec_file("echo", {1, {}}) end)
  end)

  it("gives ENOENT naming a missing program, with empty output", function()
    local r, err, code = brood.exec_file("no-such-program-xyz", {"a"})
    assert.is_nil(r)
    assert.are.equal("ENOENT", code)
    assert.matches("no%-such%-program%-xyz", err.message)
    assert.are.equal("no-such-program-xyz a", err.cmd)
    assert.are.equal("", err.stdout)
  end)

  it("joins args with spaces under shell = true, as Node does", function()
    local r = assert(brood.exec_file("echo", {"foo", "bar"}, {shell = true}))
    assert.are.equal("foo bar\n", r.stdout)
  end)

  it("fails with the exit code", function()
    local _, err, code = brood.exec_file("sh", {"-c", "exit 7"})
    assert.are.equal(7, code)
    assert.are.equal("Command failed: sh -c exit 7", err.message)
  end)
end)

describe("brood.exec under real use (issue 8)", function()
  H.guard()
  local core = H.core

  local raises = H.raises

  it("a bad argument with merge_stderr leaks no fd", function()
    -- H.guard counts the fds: the merged pipe must not exist yet
    for _ = 1, 3 do
      assert.has_error(function()
        brood.exec("true", {merge_stderr = true, env = {A = "a\0b"}})
      end)
      assert.has_error(function()
        brood.exec_file("true", {}, {merge_stderr = true, argv0 = "t\0"})
      end, "bad argument #3 to 'exec_file' (option 'argv0' must not " ..
           "contain NUL bytes)")
    end
    -- and merge_stderr still works
    local r = assert(brood.exec("echo a; echo b >&2; echo c",
                                {merge_stderr = true}))
    assert.are.equal("a\nb\nc\n", r.stdout)
  end)

  it("input with a stdin that is not a pipe raises, naming both", function()
    raises("bad argument #2 to 'exec' (option 'input' needs stdio[1] to be " ..
           "\"pipe\", got \"inherit\")",
           brood.exec, "cat", {input = "x", stdio = {"inherit", "pipe", "pipe"}})
    raises("bad argument #2 to 'exec' (option 'input' needs stdio[1] to be " ..
           "\"pipe\", got \"ignore\")",
           brood.exec, "cat", {input = "x", stdio = "ignore"})
    raises("bad argument #3 to 'exec_file' (option 'input' needs stdio[1] " ..
           "to be \"pipe\", got fd 0)",
           brood.exec_file, "cat", {}, {input = "x", stdio = {0}})
    local r = assert(brood.exec_file("cat", {}, {input = "x",
                                     stdio = {"pipe", "pipe", "pipe"}}))
    assert.are.equal("x", r.stdout)
  end)

  it("kill_signal = 0 raises", function()
    raises("bad argument #2 to 'exec' (option 'kill_signal' must not be 0 " ..
           "(it would not stop the child))",
           brood.exec, "sleep 1", {timeout = 10, kill_signal = 0})
    raises("bad argument #3 to 'exec_file' (option 'kill_signal' must not " ..
           "be 0 (it would not stop the child))",
           brood.exec_file, "sleep", {"1"}, {kill_signal = 0})
  end)

  it("without a callback, in a plain callback, raises at the caller's line",
     function()
    local errs = {}
    brood.set_timeout(0, function()
      local line = debug.getinfo(1, "l").currentline + 2
      local ok, e = pcall(function()
        local r = brood.exec("true")
        return r
      end)
      errs[1] = {ok, e, line}
      line = debug.getinfo(1, "l").currentline + 2
      ok, e = pcall(function()
        local r = brood.exec_file("true", {}, {})
        return r
      end)
      errs[2] = {ok, e, line}
    end)
    brood.run()
    for _, t in ipairs(errs) do
      assert.is_false(t[1])
      assert.are.equal(("spec/exec_spec.lua:%d: brood: cannot wait outside " ..
                        "a task (use brood.go)"):format(t[3]), t[2])
    end
    assert.are.equal(2, #errs)
    assert.are.equal(0, #core.descendants(core.getpid()))
  end)
end)

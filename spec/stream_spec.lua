-- Child stdio streams (DESIGN §4, §9): reading, events, pause/resume,
-- pipe, write backpressure, close/destroy, EPIPE, large outputs, duplex.

local H = require "spec.helper"
local brood, core = H.brood, H.core

local MiB = 1024 * 1024

local function sh(script, opts)
  return assert(brood.spawn("sh", {"-c", script}, opts))
end

describe("child streams", function()
  H.guard()

  describe("reading", function()
    it("read() returns chunks, then nil at EOF", function()
      local c = sh("printf abc")
      local parts = {}
      for chunk in function() return c.stdout:read() end do
        parts[#parts + 1] = chunk
      end
      assert.equal("abc", table.concat(parts))
      assert.is_nil(c.stdout:read())
      c:wait()
    end)

    it("read() keeps chunk boundaries of separate writes", function()
      local c = sh("printf one; read _; printf two")
      assert.equal("one", c.stdout:read())
      c.stdin:write("\n")  -- only now the second write
      assert.equal("two", c.stdout:read())
      assert.is_nil(c.stdout:read())
      c:wait()
    end)

    it("read_all() returns everything; then the empty string", function()
      local c = sh("seq 1 10000")
      local want = {}
      for i = 1, 10000 do want[i] = i .. "\n" end
      assert.equal(table.concat(want), c.stdout:read_all())
      assert.equal("", c.stdout:read_all())
      assert.equal("", c.stderr:read_all())
      c:wait()
    end)

    it("read_all() after a partial read() returns the rest", function()
      local c = sh("printf head; read _; printf tail")
      assert.equal("head", c.stdout:read())
      c.stdin:write("\n")
      assert.equal("tail", c.stdout:read_all())
      c:wait()
    end)

    it("lines() iterates lines without newlines; the last may lack one",
       function()
      local c = sh("printf 'a\\nbb\\n\\nccc'")
      local got = {}
      for l in c.stdout:lines() do got[#got + 1] = l end
      assert.same({"a", "bb", "", "ccc"}, got)
      c:wait()
    end)

    it("lines() joins lines split across chunks", function()
      local c = sh("printf 'ab'; sleep 0.05; printf 'c\\nd'; sleep 0.05; " ..
                   "printf 'e\\n'")
      local got = {}
      for l in c.stdout:lines() do got[#got + 1] = l end
      assert.same({"abc", "de"}, got)
      c:wait()
    end)

    it("read() on stdin raises", function()
      local c = assert(brood.spawn("cat"))
      local ok, err = pcall(c.stdin.read, c.stdin)
      assert.is_false(ok)
      assert.equal("brood.Stream: read() on a stream that is not readable", err)
      c.stdin:close()
      c:wait()
    end)

    it("write() on stdout raises", function()
      local c = assert(brood.spawn("true"))
      local ok, err = pcall(c.stdout.write, c.stdout, "x")
      assert.is_false(ok)
      assert.equal("brood.Stream: write() on a stream that is not writable", err)
      c:wait()
    end)

    it("read() waits inside tasks, concurrently on two streams", function()
      local c = sh("echo out; echo err >&2")
      local t1 = brood.go(function() return c.stdout:read() end)
      local t2 = brood.go(function() return c.stderr:read() end)
      assert.equal("err\n", t2:wait())
      assert.equal("out\n", t1:wait())
      c:wait()
    end)
  end)

  describe("events", function()
    it('"data" for each chunk, then "end", then "close"', function()
      local c = sh("printf x; read _; printf y")
      local log = {}
      c.stdout:on("data", function(d)
        log[#log + 1] = "data:" .. d
        if d == "x" then c.stdin:write("\n") end
      end)
      c.stdout:on("end", function() log[#log + 1] = "end" end)
      c.stdout:on("close", function() log[#log + 1] = "close" end)
      c:wait()
      assert.same({"data:x", "data:y", "end", "close"}, log)
      assert.is_true(c.stdout.closed)
    end)

    it('"data" delivers what arrived before the listener', function()
      local c = sh("printf early")
      -- let the output arrive and sit in the buffer
      assert.is_true(H.run_until(function() return c.exit_code ~= nil end))
      c:wait()
      assert.is_true(c.stdout.closed)  -- the fd is done with: EOF came
      local got, ended = {}, false
      c.stdout:on("data", function(d) got[#got + 1] = d end)
      c.stdout:on("end", function() ended = true end)
      assert.is_true(H.run_until(function() return ended end))
      assert.equal("early", table.concat(got))
    end)

    it('a "data" listener may raise: the error ends the wait', function()
      local c = sh("echo boom")
      c.stdout:on("data", function() error("listener failed") end)
      local ok, err = pcall(c.wait, c)
      assert.is_false(ok)
      assert.matches("listener failed", err)
      c:wait()
    end)
  end)

  describe("pause and resume", function()
    it("pause() holds the data back; resume() delivers all of it", function()
      local c = sh("seq 1 1000")
      local got = {}
      c.stdout:pause()
      assert.is_true(c.stdout:is_paused())
      c.stdout:on("data", function(d) got[#got + 1] = d end)
      local ended = false
      c.stdout:on("end", function() ended = true end)
      -- a paused stream with a "data" listener stays paused
      assert.is_true(H.run_until(function() return c.exit_code ~= nil end))
      assert.same({}, got)
      assert.is_false(ended)
      c.stdout:resume()
      assert.is_false(c.stdout:is_paused())
      c:wait()
      assert.is_true(ended)
      local want = {}
      for i = 1, 1000 do want[i] = i .. "\n" end
      assert.equal(table.concat(want), table.concat(got))
    end)

    it("a paused stream lets the writer block, then finish on resume", function()
      local c = sh("head -c 1048576 /dev/zero; echo done >&2")
      c.stdout:pause()
      local n = 0
      c.stdout:on("data", function(d) n = n + #d end)
      -- 1 MiB does not fit the pipe: paused, the child can never end
      local err = brood.go(function() return c.stderr:read_all() end)
      H.run_until(function() return err.done end, 300)
      assert.is_false(err.done)
      assert.is_nil(c.exit_code)
      assert.equal(0, n)
      c.stdout:resume()
      assert.equal("done\n", err:wait())
      c:wait()
      assert.equal(MiB, n)
    end)
  end)

  describe("pipe", function()
    it("sends one child's output into another's input", function()
      local a = sh("printf 'b\\na\\nc\\n'")
      local b = assert(brood.spawn("sort"))
      assert.equal(b.stdin, a.stdout:pipe(b.stdin))
      assert.equal("a\nb\nc\n", b.stdout:read_all())
      a:wait()
      b:wait()
    end)

    it("moves megabytes with backpressure and closes dest at the end",
       function()
      local a = assert(brood.spawn("head", {"-c", tostring(8 * MiB), "/dev/zero"}))
      local b = assert(brood.spawn("wc", {"-c"}))
      a.stdout:pipe(b.stdin)
      assert.equal(tostring(8 * MiB), b.stdout:read_all():match("%d+"))
      assert.same({0, nil}, {a:wait()})
      assert.same({0, nil}, {b:wait()})
    end)

    it("with {close = false} leaves dest open", function()
      local a = sh("printf first")
      local b = assert(brood.spawn("cat"))
      a.stdout:pipe(b.stdin, {close = false})
      a:wait()
      assert.is_false(b.stdin.closed)
      b.stdin:close(" second")
      assert.equal("first second", b.stdout:read_all())
      b:wait()
    end)

    it("raises for a dest that cannot be written", function()
      local a = assert(brood.spawn("true"))
      local ok, err = pcall(a.stdout.pipe, a.stdout, {})
      assert.is_false(ok)
      assert.equal("bad argument #1 to 'pipe' (writable stream expected)", err)
      a:wait()
    end)
  end)

  describe("writing", function()
    it("write() returns true under the high-water mark", function()
      local c = assert(brood.spawn("cat"))
      assert.is_true(c.stdin:write("small"))
      c.stdin:close()
      assert.equal("small", c.stdout:read_all())
      c:wait()
    end)

    it("write() returns false past the high-water mark, then \"drain\"",
       function()
      local c = assert(brood.spawn("sh", {"-c", "cat > /dev/null"}))
      local drained = 0
      c.stdin:on("drain", function() drained = drained + 1 end)
      assert.is_false(c.stdin:write(string.rep("x", 4 * MiB)))
      assert.is_true(c.stdin:pending_bytes() > 0)
      assert.is_true(H.run_until(function() return drained == 1 end))
      assert.equal(0, c.stdin:pending_bytes())
      assert.is_true(c.stdin:write("more"))
      c.stdin:close()
      assert.same({0, nil}, {c:wait()})
      assert.equal(1, drained)
    end)

    it("many small writes to a slow reader hit the mark, all arrive",
       function()
      local c = sh("sleep 0.1; wc -c")
      local chunk = string.rep("y", 4096)
      local n = 0
      repeat n = n + 1 until not c.stdin:write(chunk) or n > 10000
      assert.is_true(n < 10000)
      local drained = false
      c.stdin:once("drain", function() drained = true end)
      c.stdin:close()
      assert.equal(tostring(n * 4096), c.stdout:read_all():match("%d+"))
      assert.is_true(drained)
      c:wait()
    end)

    it("write callbacks run once each, in order, after write returns",
       function()
      local c = assert(brood.spawn("cat"))
      local log = {}
      c.stdin:write("a", function(err) log[#log + 1] = {"a", err} end)
      c.stdin:write("b", function(err) log[#log + 1] = {"b", err} end)
      assert.same({}, log)
      c.stdin:close()
      assert.equal("ab", c.stdout:read_all())
      c:wait()
      assert.same({{"a"}, {"b"}}, log)
    end)

    it("raises for a non-string or a bad callback", function()
      local c = assert(brood.spawn("cat"))
      local ok, err = pcall(c.stdin.write, c.stdin, 42)
      assert.equal("bad argument #1 to 'write' (string expected, got number)",
                   err)
      ok, err = pcall(c.stdin.write, c.stdin, "x", "cb")
      assert.is_false(ok)
      assert.equal("bad argument #2 to 'write' (function expected, got string)",
                   err)
      c.stdin:close()
      c:wait()
    end)

    it("close(data) writes, flushes, then sends EOF", function()
      local c = assert(brood.spawn("cat"))
      local finished = false
      c.stdin:on("finish", function() finished = true end)
      c.stdin:write("one ")
      c.stdin:close("two")
      assert.equal("one two", c.stdout:read_all())
      assert.same({0, nil}, {c:wait()})
      assert.is_true(finished)
      assert.is_true(c.stdin.closed)
    end)

    it("close() flushes megabytes before the EOF", function()
      local c = assert(brood.spawn("wc", {"-c"}))
      c.stdin:close(string.rep("z", 3 * MiB))
      assert.equal(tostring(3 * MiB), c.stdout:read_all():match("%d+"))
      c:wait()
    end)

    it("close(cb) calls cb once the stream is closed", function()
      local c = assert(brood.spawn("cat"))
      local called = 0
      c.stdin:close(function() called = called + 1 end)
      assert.equal(0, called)
      c:wait()
      assert.equal(1, called)
    end)

    it("write after close fails with ERR_STREAM_WRITE_AFTER_END", function()
      local c = assert(brood.spawn("cat"))
      c.stdin:close()
      local got
      local ok, err, code = c.stdin:write("late", function(e) got = e end)
      assert.is_nil(ok)
      assert.equal("ERR_STREAM_WRITE_AFTER_END", code)
      assert.equal("write after end", err.message)
      assert.is_nil(got)  -- never before write returns
      c:wait()
      assert.equal(err, got)
    end)

    it("destroy() closes stdin at once: the child sees EOF", function()
      local c = assert(brood.spawn("cat"))
      c.stdin:destroy()
      assert.is_true(c.stdin.closed)
      assert.is_nil(c.stdin:fileno())
      assert.equal("", c.stdout:read_all())
      assert.same({0, nil}, {c:wait()})
    end)

    it("destroy() on stdout: the writer gets SIGPIPE", function()
      local c = assert(brood.spawn("yes"))
      assert.is_string(c.stdout:read())
      c.stdout:destroy()
      assert.same({nil, "SIGPIPE"}, {c:wait()})
    end)

    it("destroy() is idempotent", function()
      local c = assert(brood.spawn("cat"))
      c.stdin:destroy()
      c.stdin:destroy()
      c.stdin:close()
      c:wait()
      assert.is_true(c.stdin.closed)
    end)
  end)

  describe("EPIPE", function()
    it("a write to a child that closed its stdin gives cb(err EPIPE)",
       function()
      local c = sh("exec 0<&-; echo closed; exec sleep 5")
      assert.equal("closed\n", c.stdout:read())
      local got
      assert.is_true(c.stdin:write("x", function(err) got = err end))
      assert.is_true(H.run_until(function() return got ~= nil end))
      assert.equal("EPIPE", got.code)
      assert.equal("write", got.syscall)
      assert.equal(got, c.stdin.error)
      c:kill()
      c:wait()
    end)

    it("a write from the exit handler gives EPIPE, not a dead host",
       function()
      local c = assert(brood.spawn("true"))
      local got
      c:on("exit", function()
        c.stdin:write("after exit", function(err) got = err end)
      end)
      c:wait()
      assert.is_true(H.run_until(function() return got ~= nil end))
      assert.equal("EPIPE", got.code)
    end)

    it("goes to an \"error\" listener without a callback", function()
      local c = sh("exec 0<&-; echo closed; exec sleep 5")
      c.stdout:read()
      local got
      c.stdin:on("error", function(err) got = err end)
      c.stdin:write("x")
      assert.is_true(H.run_until(function() return got ~= nil end))
      assert.equal("EPIPE", got.code)
      c:kill()
      c:wait()
    end)

    it("with no callback and no listener is kept and fails later writes",
       function()
      local c = sh("exec 0<&-; echo closed; exec sleep 5")
      c.stdout:read()
      c.stdin:write("x")
      assert.is_true(H.run_until(function() return c.stdin.error ~= nil end))
      assert.equal("EPIPE", c.stdin.error.code)
      local ok, err, code = c.stdin:write("y")
      assert.is_nil(ok)
      assert.equal("EPIPE", code)
      assert.equal(c.stdin.error, err)
      c:kill()
      c:wait()
    end)

    it("a child that dies mid-write: head -c 100 fed 10 MiB", function()
      local c = assert(brood.spawn("head", {"-c", "100"}))
      local got
      c.stdin:write(string.rep("w", 10 * MiB), function(err) got = err end)
      assert.equal(string.rep("w", 100), c.stdout:read_all())
      assert.same({0, nil}, {c:wait()})
      assert.is_true(H.run_until(function() return got ~= nil end))
      assert.equal("EPIPE", got.code)
      -- and we are alive to tell: the next spawn works
      assert.equal("alive\n", assert(brood.spawn("echo", {"alive"})).stdout:read_all())
    end)
  end)

  describe("large outputs", function()
    local script = "head -c 3000000 /dev/zero & head -c 3000000 /dev/zero >&2; wait"

    it("stdout and stderr at once: wait() first, then read", function()
      local c = sh(script)
      assert.same({0, nil}, {c:wait()})
      assert.equal(3000000, #c.stdout:read_all())
      assert.equal(3000000, #c.stderr:read_all())
    end)

    it("stdout and stderr at once: read_all() in two tasks", function()
      local c = sh(script)
      local t1 = brood.go(function() return c.stdout:read_all() end)
      local t2 = brood.go(function() return c.stderr:read_all() end)
      assert.equal(3000000, #t2:wait())
      assert.equal(3000000, #t1:wait())
      c:wait()
    end)

    it("stdout and stderr at once with \"data\" listeners", function()
      local c = sh(script)
      local n = {0, 0}
      c.stdout:on("data", function(d) n[1] = n[1] + #d end)
      c.stderr:on("data", function(d) n[2] = n[2] + #d end)
      c:wait()
      assert.same({3000000, 3000000}, n)
    end)

    it("big input and big output at once through cat", function()
      local c = assert(brood.spawn("cat"))
      local data = string.rep("0123456789abcdef", MiB // 4)  -- 4 MiB
      c.stdin:close(data)
      local out = c.stdout:read_all()
      assert.equal(#data, #out)
      assert.is_true(out == data)
      c:wait()
    end)
  end)

  describe('"duplex"', function()
    it("carries data both ways on one fd", function()
      local c = assert(brood.spawn("sh", {"-c",
        "while read l <&3; do echo \"re:$l\" >&3; done"},
        {stdio = {"ignore", "ignore", "ignore", "duplex"}}))
      local s = c.stdio[4]
      s:write("one\n")
      assert.equal("re:one\n", s:read())
      s:write("two\n")
      assert.equal("re:two\n", s:read())
      s:close()  -- EOF to the child, whose loop then ends
      assert.is_nil(s:read())
      assert.same({0, nil}, {c:wait()})
    end)

    it("on fd 0 works as stdin and stdout of the child", function()
      local c = assert(brood.spawn("sh", {"-c", "read l; echo \"got:$l\" >&0"},
                                   {stdio = {"duplex", "ignore", "ignore"}}))
      assert.is_true(c.stdin.readable)
      c.stdin:write("hi\n")
      assert.equal("got:hi\n", c.stdin:read())
      c:wait()
    end)

    it("ends our side when the child's side ends, so close comes", function()
      local c = assert(brood.spawn("sh", {"-c", "echo bye >&3"},
        {stdio = {"ignore", "ignore", "ignore", "duplex"}}))
      local s = c.stdio[4]
      local finished = false
      s:on("finish", function() finished = true end)
      assert.equal("bye\n", s:read_all())
      assert.same({0, nil}, {c:wait()})
      assert.is_true(finished)
      assert.is_true(s.closed)
    end)
  end)
end)

describe("child streams under real use (issue 8)", function()
  H.guard()

  describe("a write to a child that has gone is EPIPE, always", function()
    it("after wait(): to the callback and as the return", function()
      local c = assert(brood.spawn("true"))
      assert.same({0, nil}, {c:wait()})
      local got
      local ok, err, code = c.stdin:write("late", function(e) got = e end)
      assert.is_nil(ok)
      assert.equal("EPIPE", code)
      assert.equal("EPIPE", err.code)
      assert.equal("write", err.syscall)
      assert.is_nil(got)  -- never before write returns
      assert.is_true(H.run_until(function() return got ~= nil end))
      assert.equal("EPIPE", got.code)
      assert.equal("write", got.syscall)
    end)

    it("while it exits: the first write, from \"exit\" or \"close\"",
       function()
      for _, event in ipairs({"exit", "close", "exit", "close"}) do
        local c = assert(brood.spawn("true"))
        local ret, got
        c:on(event, function()
          ret = table.pack(c.stdin:write("x", function(e) got = e or "ok" end))
        end)
        c:wait()
        assert.is_true(H.run_until(function() return got ~= nil end))
        assert.equal("EPIPE", got.code, event)
        assert.equal("write", got.syscall)
        -- queued (true) or refused at once (nil, err, "EPIPE"): never
        -- ERR_STREAM_WRITE_AFTER_END
        assert.is_true(ret[1] == true or ret[3] == "EPIPE", event)
        local _, _, code = c.stdin:write("again")
        assert.equal("EPIPE", code)
      end
    end)

    it("a stream the script ended stays ERR_STREAM_WRITE_AFTER_END",
       function()
      local c = assert(brood.spawn("true"))
      c.stdin:close()
      c:wait()
      local _, _, code = c.stdin:write("x")
      assert.equal("ERR_STREAM_WRITE_AFTER_END", code)
    end)
  end)

  it("lines() is linear: a million short lines in one chunk", function()
    -- a stream whose buffer holds them all as one chunk, then EOF
    local stream = require "brood.stream"
    local r, w = assert(core.pipe())
    local s = stream.new(assert(core.pipe_open(core.default_loop, r)),
                         true, false)
    s:_push(("ab\n"):rep(1000000))
    core.close_fd(w)
    local t0 = core.hrtime()
    local n, bad = 0, 0
    for line in s:lines() do
      n = n + 1
      if line ~= "ab" then bad = bad + 1 end
    end
    assert.is_true((core.hrtime() - t0) / 1e9 < 20)  -- was hours
    assert.equal(1000000, n)
    assert.equal(0, bad)
    assert.is_true(H.run_until(function() return s.closed end))
  end)

  it("lines() is linear: a million short lines from a child", function()
    local c = sh("yes ab | head -n 1000000")
    local t0 = core.hrtime()
    local n, bad = 0, 0
    for line in c.stdout:lines() do
      n = n + 1
      if line ~= "ab" then bad = bad + 1 end
    end
    assert.is_true((core.hrtime() - t0) / 1e9 < 20)  -- was minutes
    assert.equal(1000000, n)
    assert.equal(0, bad)
    c:wait()
  end)

  it("lines() joins a line spread over many chunks", function()
    local c = sh("head -c 300000 /dev/zero | tr '\\0' x; echo; echo end")
    local got = {}
    for line in c.stdout:lines() do got[#got + 1] = line end
    assert.same({("x"):rep(300000), "end"}, got)
    c:wait()
  end)

  describe("waiting in a plain callback raises, every time", function()
    local MSG = "brood: cannot wait outside a task (use brood.go)"

    it("read_all() in an \"exit\" handler, output arrived or not", function()
      for _, script in ipairs({"echo out", "echo out; exec sleep 0.2"}) do
        local c = sh(script)
        local err, line
        c:on("exit", function()
          line = debug.getinfo(1, "l").currentline + 2
          local ok, e = pcall(function()
            local s = c.stdout:read_all()
            return s
          end)
          err = ok and "no error" or e
        end)
        H.run_until(function() return err ~= nil end)
        assert.equal(("spec/stream_spec.lua:%d: %s"):format(line, MSG), err)
        c:wait()
        assert.equal("out\n", c.stdout:read_all())
      end
    end)

    it("read() and lines() in a \"data\" handler", function()
      local c = sh("echo one; echo two")
      local errs = {}
      c.stderr:on("end", function()
        local ok, e = pcall(function() local s = c.stdout:read() return s end)
        errs[1] = ok and "no error" or e
        local iter = c.stdout:lines()
        ok, e = pcall(function() for _ in iter do end end)
        errs[2] = ok and "no error" or e
      end)
      c:wait()
      assert.equal(2, #errs)
      for _, e in ipairs(errs) do
        assert.matches("^spec/stream_spec%.lua:%d+: " .. MSG:gsub("%p", "%%%0")
                       .. "$", e)
      end
      assert.equal("one\ntwo\n", c.stdout:read_all())
    end)
  end)

  it("a method called with a dot raises, naming the colon form", function()
    local c = assert(brood.spawn("cat"))
    local s = c.stdin
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() s.write("x") end)
    assert.is_false(ok)
    assert.equal(("spec/stream_spec.lua:%d: use stream:write(), not " ..
                  "stream.write()"):format(line), err)
    for _, m in ipairs({"read", "read_all", "lines", "pipe", "resume",
                        "pause", "is_paused", "close", "destroy", "fileno",
                        "ref", "unref", "pending_bytes", "on", "once",
                        "off"}) do
      local ok2, err2 = pcall(s[m], "x")
      assert.is_false(ok2)
      assert.equal(("use stream:%s(), not stream.%s()"):format(m, m), err2)
    end
    s:close()
    c:wait()
  end)
end)

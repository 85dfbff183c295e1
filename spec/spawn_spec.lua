-- brood.spawn (DESIGN §4, §9): every option, the child's fields and
-- events, wait(), and bad input (exact messages, launch failures).

local H = require "spec.helper"
local brood, core = H.brood, H.core

--- Run file args opts to the end: stdout, stderr, exit code, signal.
local function run(file, args, opts)
  local c = assert(brood.spawn(file, args, opts))
  local code, sig = c:wait()
  local out = c.stdout and c.stdout:read_all()
  local err = c.stderr and c.stderr:read_all()
  return out, err, code, sig, c
end

--- fn(...) must raise exactly msg (no position: pcall is the caller).
local raises = H.raises

local function lines_of(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function stat_fields(s)
  -- /proc/<pid>/stat: pid (comm) state ppid pgrp session ...
  local pid, rest = s:match("^(%d+) %(.*%) (.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return {pid = tonumber(pid), ppid = tonumber(f[2]),
          pgrp = tonumber(f[3]), session = tonumber(f[4])}
end

local function my_stat()
  local f = assert(io.open("/proc/self/stat"))
  local s = f:read("a")
  f:close()
  return stat_fields(s)
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe("brood.spawn", function()
  H.guard()

  it("starts a program and gives its output, pid and exit code", function()
    local c = assert(brood.spawn("echo", {"hello", "world"}))
    assert.equal("integer", math.type(c.pid))
    assert.is_true(c.pid > 0)
    assert.equal("echo", c.spawnfile)
    assert.same({"echo", "hello", "world"}, c.spawnargs)
    assert.is_false(c.killed)
    assert.equal("hello world\n", c.stdout:read_all())
    assert.same({0, nil}, {c:wait()})
    assert.equal(0, c.exit_code)
    assert.is_nil(c.signal_code)
  end)

  it("accepts (file), (file, args) and (file, opts)", function()
    assert.equal("\n", (run("echo")))
    assert.equal("a\n", (run("echo", {"a"})))
    assert.equal("/\n", (run("pwd", {cwd = "/"})))
  end)

  it("does not change the caller's tables", function()
    local args = {"x"}
    local opts = {stdio = "pipe", env = {A = "1"}, extend_env = {B = "2"}}
    run("echo", args, opts)
    assert.same({"x"}, args)
    assert.same({stdio = "pipe", env = {A = "1"}, extend_env = {B = "2"}},
                opts)
  end)

  it("passes arguments verbatim, spaces and quotes included", function()
    local out = run("printf", {"%s|", "a b", "'q'", "\"d\"", "", "$HOME"})
    assert.equal("a b|'q'|\"d\"||$HOME|", out)
  end)

  describe("cwd", function()
    it("runs the child in cwd", function()
      assert.equal("/tmp\n", (run("pwd", {}, {cwd = "/tmp"})))
    end)

    it("treats an empty cwd as unset", function()
      local here = run("pwd")
      assert.equal(here, (run("pwd", {}, {cwd = ""})))
    end)

    it("resolves a relative program with a slash against cwd", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir))
      local f = assert(io.open(dir .. "/prog", "w"))
      f:write("#!/bin/sh\necho in-prog\n")
      f:close()
      os.execute("chmod 755 " .. dir .. "/prog")
      local out = run("./prog", {}, {cwd = dir})
      os.execute("rm -rf " .. dir)
      assert.equal("in-prog\n", out)
    end)
  end)

  describe("env", function()
    it("replaces the environment", function()
      assert.equal("FOO=bar\n", (run("/usr/bin/env", {}, {env = {FOO = "bar"}})))
    end)

    it("can be empty", function()
      assert.equal("", (run("/usr/bin/env", {}, {env = {}})))
    end)

    it("turns numbers into strings and keeps '=' in values", function()
      local out = run("/usr/bin/env", {}, {env = {N = 5, F = "a=b"}})
      local l = lines_of(out)
      table.sort(l)
      assert.same({"F=a=b", "N=5"}, l)
    end)

    it("is used for the PATH lookup of the program", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir))
      local f = assert(io.open(dir .. "/brood-probe-prog", "w"))
      f:write("#!/bin/sh\necho found \"$PATH\"\n")
      f:close()
      os.execute("chmod 755 " .. dir .. "/brood-probe-prog")
      local out = run("brood-probe-prog", {}, {env = {PATH = dir}})
      local c, err, code = brood.spawn("brood-probe-prog")
      os.execute("rm -rf " .. dir)
      assert.equal("found " .. dir .. "\n", out)
      assert.is_nil(c)
      assert.equal("ENOENT", code)
      assert.equal("ENOENT", err.code)
    end)

    it("without PATH still finds programs in the default path", function()
      assert.equal("ok\n", (run("echo", {"ok"}, {env = {}})))
    end)
  end)

  describe("extend_env", function()
    local name, value
    for k, v in pairs(core.environ()) do
      if k ~= "PATH" and v ~= "" and not k:find("[^%w_]") then
        name, value = k, v
        break
      end
    end

    it("merges into the inherited environment", function()
      assert.is_string(name, "the test needs one inherited variable")
      local out = run("/usr/bin/env", {}, {extend_env = {BROOD_X = "1"}})
      local l = lines_of(out)
      local set = {}
      for _, kv in ipairs(l) do set[kv] = true end
      assert.is_true(set["BROOD_X=1"])
      assert.is_true(set[name .. "=" .. value])
      assert.is_true(set["PATH=" .. os.getenv("PATH")])
    end)

    it("unsets a variable given as false", function()
      local out = run("/usr/bin/env", {}, {extend_env = {[name] = false}})
      assert.is_nil(out:find("\n" .. name .. "=", 1, true))
      assert.is_nil(out:find("^" .. name .. "="))
      assert.is_truthy(out:find("PATH=", 1, true))
    end)

    it("applies on top of env", function()
      local out = run("/usr/bin/env", {},
                      {env = {A = "1", B = "2"}, extend_env = {B = false, C = "3"}})
      local l = lines_of(out)
      table.sort(l)
      assert.same({"A=1", "C=3"}, l)
    end)
  end)

  it("argv0 sets the child's argv[0] and still runs file", function()
    local out, _, _, _, c = run("cat", {"/proc/self/cmdline"}, {argv0 = "fancy"})
    assert.equal("fancy\0/proc/self/cmdline\0", out)
    assert.same({"cat", "/proc/self/cmdline"}, c.spawnargs)
    assert.equal("cat", c.spawnfile)
  end)

  describe("stdio", function()
    it('"pipe" (the default) gives stdin, stdout and stderr streams', function()
      local c = assert(brood.spawn("sh", {"-c", "cat; echo err >&2"}))
      assert.is_true(c.stdin.writable)
      assert.is_false(c.stdin.readable)
      assert.is_true(c.stdout.readable)
      assert.is_false(c.stdout.writable)
      assert.equal(c.stdin, c.stdio[1])
      assert.equal(c.stdout, c.stdio[2])
      assert.equal(c.stderr, c.stdio[3])
      c.stdin:close("piped")
      assert.equal("piped", c.stdout:read_all())
      assert.equal("err\n", c.stderr:read_all())
      assert.equal(0, c:wait())
    end)

    it('"pipe" entries are real pipes (/dev/stdin works)', function()
      local c = assert(brood.spawn("sh", {"-c",
        "readlink /proc/self/fd/0 /proc/self/fd/1; cat /dev/stdin"}))
      c.stdin:close("through /dev/stdin")
      local out = c.stdout:read_all()
      c:wait()
      local l = lines_of(out)
      assert.matches("^pipe:", l[1])
      assert.matches("^pipe:", l[2])
      assert.equal("through /dev/stdin", l[3])
    end)

    it('"ignore" gives /dev/null and no streams', function()
      local path = H.tmpfile("")
      local f = assert(io.open(path, "w"))
      local c = assert(brood.spawn("readlink",
        {"/proc/self/fd/0", "/proc/self/fd/2"},
        {stdio = {"ignore", f, "ignore"}}))
      assert.is_nil(c.stdin)
      assert.is_nil(c.stderr)
      assert.equal(0, c:wait())
      f:close()
      local out = read_file(path)
      os.remove(path)
      assert.equal("/dev/null\n/dev/null\n", out)
    end)

    it('"ignore" as a string covers all three', function()
      local c = assert(brood.spawn("sh", {"-c", "head -c 1000000 /dev/zero"},
                                   {stdio = "ignore"}))
      assert.is_nil(c.stdin)
      assert.is_nil(c.stdout)
      assert.is_nil(c.stderr)
      assert.same({}, c.stdio)
      assert.equal(0, c:wait())
    end)

    it('"inherit" shares the parent\'s fd', function()
      -- the shell compares its fd 1 and 2 with ours
      local mine = {}
      for i = 1, 2 do
        local out = run("readlink", {"/proc/" .. core.getpid() .. "/fd/" .. i})
        mine[i] = out:gsub("\n$", "")
      end
      local c = assert(brood.spawn("sh", {"-c",
        '[ "$(readlink /proc/$$/fd/1)" = "$A" ] && ' ..
        '[ "$(readlink /proc/$$/fd/2)" = "$B" ]'},
        {stdio = "inherit", extend_env = {A = mine[1], B = mine[2]}}))
      assert.is_nil(c.stdin)
      assert.is_nil(c.stdout)
      assert.is_nil(c.stderr)
      assert.equal(0, c:wait())
    end)

    it('"inherit" in an array covers that fd only', function()
      local out = run("readlink", {"/proc/" .. core.getpid() .. "/fd/2"})
      local c = assert(brood.spawn("sh", {"-c",
        'echo out; [ "$(readlink /proc/$$/fd/2)" = "$B" ]'},
        {stdio = {"pipe", "pipe", "inherit"},
         extend_env = {B = (out:gsub("\n$", ""))}}))
      assert.is_nil(c.stderr)
      assert.equal("out\n", c.stdout:read_all())
      assert.equal(0, c:wait())
    end)

    it("pads a short array with pipes", function()
      local c = assert(brood.spawn("sh", {"-c", "echo o; echo e >&2"},
                                   {stdio = {"ignore"}}))
      assert.is_nil(c.stdin)
      assert.equal("o\n", c.stdout:read_all())
      assert.equal("e\n", c.stderr:read_all())
      c:wait()
    end)

    it("takes an fd integer", function()
      local path = H.tmpfile("")
      local f = assert(io.open(path, "w"))
      local fd = core.file_fd(f)
      assert.equal(0, (select(3, run("sh", {"-c", "echo to-fd; echo e >&2"},
                                     {stdio = {"ignore", fd, fd}}))))
      f:close()
      local out = read_file(path)
      os.remove(path)
      assert.equal("to-fd\ne\n", out)
    end)

    it("takes Lua file handles for input and output", function()
      local inpath = H.tmpfile("from a file\n")
      local outpath = H.tmpfile("")
      local fin = assert(io.open(inpath, "r"))
      local fout = assert(io.open(outpath, "w"))
      local c = assert(brood.spawn("tr", {"a-z", "A-Z"},
                                   {stdio = {fin, fout, "pipe"}}))
      assert.is_nil(c.stdin)
      assert.is_nil(c.stdout)
      assert.equal(0, c:wait())
      fin:close()
      fout:close()
      local out = read_file(outpath)
      os.remove(inpath)
      os.remove(outpath)
      assert.equal("FROM A FILE\n", out)
    end)

    it("the same fd can be both stdout and stderr", function()
      local path = H.tmpfile("")
      local f = assert(io.open(path, "w"))
      run("sh", {"-c", "echo 1; echo 2 >&2; echo 3"}, {stdio = {"ignore", f, f}})
      f:close()
      local out = read_file(path)
      os.remove(path)
      assert.equal("1\n2\n3\n", out)
    end)

    it("swaps stdout and stderr without clobbering", function()
      local c1 = assert(brood.spawn("cat"))
      local c2 = assert(brood.spawn("cat"))
      -- child's fd 1 -> c2's stdin, fd 2 -> c1's stdin
      local c = assert(brood.spawn("sh", {"-c", "echo one; echo two >&2"},
        {stdio = {"ignore", c2.stdin, c1.stdin}}))
      c:wait()
      c1.stdin:close()
      c2.stdin:close()
      assert.equal("two\n", c1.stdout:read_all())
      assert.equal("one\n", c2.stdout:read_all())
      c1:wait()
      c2:wait()
    end)

    it("takes a writable brood stream (another child's stdin)", function()
      local sink = assert(brood.spawn("cat"))
      local c = assert(brood.spawn("echo", {"hello"},
                                   {stdio = {"ignore", sink.stdin, "ignore"}}))
      assert.equal(0, c:wait())
      sink.stdin:close()
      assert.equal("hello\n", sink.stdout:read_all())
      assert.equal(0, sink:wait())
    end)

    it("a brood stream reaches the child as a blocking fd", function()
      -- our end is non-blocking (libuv); a child writing more than the
      -- pipe holds must block, not fail with EAGAIN
      local sink = assert(brood.spawn("wc", {"-c"}))
      local c = assert(brood.spawn("head", {"-c", "3000000", "/dev/zero"},
                                   {stdio = {"ignore", sink.stdin, "pipe"}}))
      assert.equal("", c.stderr:read_all())
      assert.same({0, nil}, {c:wait()})
      assert.is_false(sink.stdin.closed)  -- ours is untouched and usable
      sink.stdin:close("abc")
      assert.equal("3000003", sink.stdout:read_all():match("%d+"))
      sink:wait()
    end)

    it("takes a readable brood stream (another child's stdout)", function()
      local src = assert(brood.spawn("cat"))
      src.stdout:pause()
      local c = assert(brood.spawn("tr", {"a-z", "A-Z"},
                                   {stdio = {src.stdout, "pipe", "pipe"}}))
      src.stdin:close("shout")
      assert.equal("SHOUT", c.stdout:read_all())
      assert.equal(0, c:wait())
      assert.equal(0, src:wait())
    end)

    it("extra entries become fds 3 and up", function()
      local c = assert(brood.spawn("sh", {"-c", "echo fourth >&3; echo fifth >&4"},
                                   {stdio = {"ignore", "ignore", "ignore",
                                             "pipe", "pipe"}}))
      assert.is_nil(c.stdout)
      assert.equal("fourth\n", c.stdio[4]:read_all())
      assert.equal("fifth\n", c.stdio[5]:read_all())
      c:wait()
    end)

    it('"duplex" is a socketpair stream both ways', function()
      local c = assert(brood.spawn("sh", {"-c",
        "readlink /proc/self/fd/3 >&2; read l <&3; echo \"got $l\" >&3"},
        {stdio = {"ignore", "ignore", "pipe", "duplex"}}))
      local s = c.stdio[4]
      assert.is_true(s.readable)
      assert.is_true(s.writable)
      s:write("ping\n")
      assert.equal("got ping\n", s:read())
      assert.is_nil(s:read())
      c:wait()
      assert.matches("^socket:", c.stderr:read_all())
    end)
  end)

  describe("detached and group", function()
    it("detached starts a new session and process group", function()
      local out = run("cat", {"/proc/self/stat"}, {detached = true})
      local st = stat_fields(out)
      assert.equal(st.pid, st.session)
      assert.equal(st.pid, st.pgrp)
    end)

    it("group gives its own process group in the same session", function()
      local out = run("cat", {"/proc/self/stat"}, {group = true})
      local st, me = stat_fields(out), my_stat()
      assert.equal(st.pid, st.pgrp)
      assert.equal(me.session, st.session)
    end)

    it("by default the child shares our group and session", function()
      local out = run("cat", {"/proc/self/stat"})
      local st, me = stat_fields(out), my_stat()
      assert.equal(me.pgrp, st.pgrp)
      assert.equal(me.session, st.session)
      assert.equal(me.pid, st.ppid)
    end)
  end)

  describe("shell", function()
    it("true runs the command with /bin/sh -c, args joined by spaces", function()
      local out, _, code, _, c = run("echo $((1 + 2)) |", {"tr", "3", "x"},
                                     {shell = true})
      assert.equal("x\n", out)
      assert.equal(0, code)
      assert.equal("/bin/sh", c.spawnfile)
      assert.same({"/bin/sh", "-c", "echo $((1 + 2)) | tr 3 x"}, c.spawnargs)
    end)

    it("a path names the shell", function()
      local sh = H.tmpfile('#!/bin/sh\nprintf "%s|" "$0" "$@"\n', "755")
      local out, _, _, _, c = run("echo hi", {}, {shell = sh})
      os.remove(sh)
      assert.equal(sh .. "|-c|echo hi|", out)
      assert.equal(sh, c.spawnfile)
    end)

    it("a missing command exits 127 rather than failing the spawn", function()
      local _, err, code = run("brood-no-such-command-x", {}, {shell = true})
      assert.equal(127, code)
      assert.matches("brood%-no%-such%-command%-x", err)
    end)

    it("a missing shell is ENOENT naming the shell", function()
      local c, err, code = brood.spawn("echo hi", {}, {shell = "/nonexistent/sh"})
      assert.is_nil(c)
      assert.equal("ENOENT", code)
      assert.equal("spawn '/nonexistent/sh': ENOENT: no such file or directory",
                   err.message)
    end)
  end)

  describe("timeout", function()
    it("kills the child with SIGTERM", function()
      local c = assert(brood.spawn("sleep", {"10"}, {timeout = 30}))
      assert.same({nil, "SIGTERM"}, {c:wait()})
      assert.is_true(c.killed)
      assert.is_nil(c.exit_code)
      assert.equal("SIGTERM", c.signal_code)
    end)

    it("uses kill_signal and names it even when given as a number", function()
      local c = assert(brood.spawn("sleep", {"10"},
                                   {timeout = 30, kill_signal = 9}))
      c:wait()
      assert.is_true(c.killed)
      assert.is_nil(c.exit_code)
      assert.equal("SIGKILL", c.signal_code)
      c = assert(brood.spawn("sleep", {"10"}, {timeout = 30, kill_signal = 15}))
      assert.same({nil, "SIGTERM"}, {c:wait()})
      assert.is_true(c.killed)
    end)

    it("with a name as kill_signal", function()
      local c = assert(brood.spawn("sleep", {"10"},
                                   {timeout = 30, kill_signal = "SIGINT"}))
      assert.same({nil, "SIGINT"}, {c:wait()})
    end)

    it("0 means no timeout", function()
      local c = assert(brood.spawn("sh", {"-c", "sleep 0.05; exit 4"},
                                   {timeout = 0}))
      assert.same({4, nil}, {c:wait()})
      assert.is_false(c.killed)
    end)

    it("does not fire for a child that ends in time", function()
      local c = assert(brood.spawn("true", {}, {timeout = 60000}))
      assert.same({0, nil}, {c:wait()})
      assert.is_false(c.killed)
    end)
  end)

  it("kill_signal is the default for nothing else: kill() stays SIGTERM",
     function()
    local c = assert(brood.spawn("sleep", {"10"}, {kill_signal = "SIGKILL"}))
    assert.is_true(c:kill())
    assert.same({nil, "SIGTERM"}, {c:wait()})
  end)

  it("after exit: rusage and duration", function()
    local c = assert(brood.spawn("sh", {"-c", "exit 0"}))
    assert.is_nil(c.rusage)
    c:wait()
    assert.equal("integer", math.type(c.rusage.maxrss_kb))
    assert.is_true(c.rusage.maxrss_kb > 0)
    assert.is_number(c.rusage.utime)
    assert.is_number(c.rusage.stime)
    assert.is_true(c.rusage.utime >= 0 and c.rusage.stime >= 0)
    assert.is_number(c.duration)
    assert.is_true(c.duration >= 0)
  end)

  describe("events", function()
    it('"spawn" comes first, then output, "exit", "close" last', function()
      local log = {}
      local c = assert(brood.spawn("sh", {"-c", "echo out; echo err >&2"}))
      c:on("spawn", function() log[#log + 1] = "spawn" end)
      c.stdout:on("data", function() log[#log + 1] = "data" end)
      c.stderr:on("data", function() log[#log + 1] = "data" end)
      c.stdout:on("end", function() log[#log + 1] = "end" end)
      c.stderr:on("end", function() log[#log + 1] = "end" end)
      c.stdout:on("close", function() log[#log + 1] = "sclose" end)
      c.stderr:on("close", function() log[#log + 1] = "sclose" end)
      local exit_args, close_args
      c:on("exit", function(...)
        exit_args = {...}
        log[#log + 1] = "exit"
      end)
      c:on("close", function(...)
        close_args = {...}
        log[#log + 1] = "close"
      end)
      c:wait()
      assert.equal("spawn", log[1])
      assert.equal("close", log[#log])
      local count = {}
      for _, e in ipairs(log) do count[e] = (count[e] or 0) + 1 end
      assert.same({spawn = 1, data = 2, ["end"] = 2, sclose = 2, exit = 1,
                   close = 1}, count)
      assert.same({0}, exit_args)
      assert.same({0}, close_args)
    end)

    it('"spawn" is not emitted before spawn returns', function()
      local fired = false
      local c = assert(brood.spawn("true"))
      c:on("spawn", function() fired = true end)
      assert.is_false(fired)
      c:wait()
      assert.is_true(fired)
    end)

    it('"exit" gets the signal name of a killed child', function()
      local got
      local c = assert(brood.spawn("sleep", {"10"}))
      c:on("exit", function(code, sig) got = {code, sig} end)
      c:kill("SIGKILL")
      c:wait()
      assert.same({nil, "SIGKILL"}, got)
    end)

    it('"close" waits for the output of a grandchild holding stdout', function()
      local c = assert(brood.spawn("sh", {"-c", "(sleep 0.1; echo late) &"}))
      local exited, closed_out = false, nil
      c:on("exit", function() exited = true end)
      c:on("close", function() closed_out = c.stdout.closed end)
      local out = c.stdout:read_all()
      c:wait()
      assert.is_true(exited)
      assert.is_true(closed_out)
      assert.equal("late\n", out)
    end)
  end)

  describe("wait", function()
    it("returns the exit code and nil", function()
      assert.same({3, nil}, {assert(brood.spawn("sh", {"-c", "exit 3"})):wait()})
    end)

    it("returns nil and the signal name", function()
      local c = assert(brood.spawn("sleep", {"10"}))
      c:kill()
      assert.same({nil, "SIGTERM"}, {c:wait()})
    end)

    it("can be called again and returns the same", function()
      local c = assert(brood.spawn("sh", {"-c", "exit 7"}))
      assert.same({7, nil}, {c:wait()})
      assert.same({7, nil}, {c:wait()})
    end)

    it("does not block on output nobody reads", function()
      local c = assert(brood.spawn("head", {"-c", "3000000", "/dev/zero"}))
      assert.same({0, nil}, {c:wait()})
      assert.equal(3000000, #c.stdout:read_all())
    end)

    it("works from tasks, concurrently", function()
      local t1 = brood.go(function()
        return assert(brood.spawn("sh", {"-c", "sleep 0.05; exit 1"})):wait()
      end)
      local t2 = brood.go(function()
        return assert(brood.spawn("sh", {"-c", "exit 2"})):wait()
      end)
      assert.equal(2, t2:wait())
      assert.equal(1, t1:wait())
    end)
  end)

  describe("bad input", function()
    it("raises for wrong types, naming function and argument", function()
      raises("bad argument #1 to 'spawn' (file must be a string, got nil)",
             brood.spawn)
      raises("bad argument #1 to 'spawn' (file must be a string, got table)",
             brood.spawn, {})
      raises("bad argument #1 to 'spawn' (file must not be empty)",
             brood.spawn, "")
      raises("bad argument #2 to 'spawn' (args table expected, got string)",
             brood.spawn, "ls", "-l")
      raises("bad argument #2 to 'spawn' (args[2] must be a string, got table)",
             brood.spawn, "ls", {"a", {}})
      raises("bad argument #2 to 'spawn' (args must be an array of strings)",
             brood.spawn, "ls", {"a", [5] = "b"})
      raises("bad argument #3 to 'spawn' (options table expected, got string)",
             brood.spawn, "ls", {}, "x")
      raises("bad argument #3 to 'spawn' (option 'cwd' must be string, got number)",
             brood.spawn, "ls", {}, {cwd = 1})
      raises("bad argument #3 to 'spawn' (option 'env' must be table, got string)",
             brood.spawn, "ls", {}, {env = "A=1"})
      raises("bad argument #3 to 'spawn' (option 'detached' must be boolean, got number)",
             brood.spawn, "ls", {}, {detached = 1})
      raises("bad argument #3 to 'spawn' (option 'shell' must be boolean or string, got number)",
             brood.spawn, "ls", {}, {shell = 0})
      raises("bad argument #3 to 'spawn' (option 'timeout' must be a whole number >= 0, got -1)",
             brood.spawn, "ls", {}, {timeout = -1})
      raises("bad argument #3 to 'spawn' (option 'timeout' must be a whole number >= 0, got 1.5)",
             brood.spawn, "ls", {}, {timeout = 1.5})
      raises("bad argument #3 to 'spawn' (option 'cleanup' must be boolean, got string)",
             brood.spawn, "ls", {}, {cleanup = "yes"})
      raises("bad argument #3 to 'spawn' (unknown signal 'SIGNOPE')",
             brood.spawn, "ls", {}, {kill_signal = "SIGNOPE"})
      raises("bad argument #3 to 'spawn' (environment variable 'A' must be a string, got table)",
             brood.spawn, "ls", {}, {env = {A = {}}})
      raises("bad argument #3 to 'spawn' (invalid environment variable name 'A=B')",
             brood.spawn, "ls", {}, {env = {["A=B"] = "1"}})
    end)

    it("raises for unknown option names", function()
      raises("bad argument #3 to 'spawn' (unknown option 'cwdd' (did you mean 'cwd'?))",
             brood.spawn, "ls", {}, {cwdd = "/"})
      raises("bad argument #2 to 'spawn' (unknown option 'killSignal' (did you mean 'kill_signal'?))",
             brood.spawn, "ls", {killSignal = "SIGTERM"})
    end)

    it("raises for bad stdio", function()
      raises("bad argument #3 to 'spawn' (option 'stdio' must be \"pipe\", " ..
             "\"inherit\", \"ignore\" or an array, got \"foo\")",
             brood.spawn, "ls", {}, {stdio = "foo"})
      raises("bad argument #3 to 'spawn' (option 'stdio' must be string or table, got number)",
             brood.spawn, "ls", {}, {stdio = 1})
      raises("bad argument #3 to 'spawn' (stdio[1]: invalid entry \"bogus\")",
             brood.spawn, "ls", {}, {stdio = {"bogus"}})
      raises("bad argument #3 to 'spawn' (stdio[2]: invalid entry boolean)",
             brood.spawn, "ls", {}, {stdio = {"pipe", true}})
      raises("bad argument #3 to 'spawn' (stdio[3]: invalid fd -2)",
             brood.spawn, "ls", {}, {stdio = {"pipe", "pipe", -2}})
      raises("bad argument #3 to 'spawn' (option 'stdio' must be an array)",
             brood.spawn, "ls", {}, {stdio = {out = "pipe"}})
    end)

    it("a caller mistake is blamed on the caller's line", function()
      local function call()
        local c = brood.spawn("ls", {}, {cwdd = "/"})  -- not a tail call
        return c
      end
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("^[^:]*spawn_spec%.lua:%d+: bad argument #3 to 'spawn' " ..
                     "%(unknown option 'cwdd' %(did you mean 'cwd'%?%)%)$", err)
    end)

    it("raises for NUL bytes in file, args, cwd, env and argv0", function()
      raises("bad argument #1 to 'spawn' (file must not contain NUL bytes)",
             brood.spawn, "ls\0x")
      raises("bad argument #2 to 'spawn' (args[1] must not contain NUL bytes)",
             brood.spawn, "ls", {"a\0b"})
      raises("bad argument #3 to 'spawn' (option 'cwd' must not contain NUL bytes)",
             brood.spawn, "ls", {}, {cwd = "/tmp\0x"})
      raises("bad argument #3 to 'spawn' (environment variable 'A' must not contain NUL bytes)",
             brood.spawn, "ls", {}, {env = {A = "a\0b"}})
      raises("bad argument #3 to 'spawn' (invalid environment variable name 'A\0B')",
             brood.spawn, "ls", {}, {env = {["A\0B"] = "1"}})
      raises("bad argument #3 to 'spawn' (environment variable 'A' must not contain NUL bytes)",
             brood.spawn, "ls", {}, {extend_env = {A = "a\0b"}})
      raises("bad argument #3 to 'spawn' (option 'argv0' must not contain NUL bytes)",
             brood.spawn, "ls", {}, {argv0 = "l\0s"})
    end)

    it("a missing program is nil, err, \"ENOENT\" naming it", function()
      local c, err, code = brood.spawn("brood-nosuch-prog", {"a", "b"})
      assert.is_nil(c)
      assert.equal("ENOENT", code)
      assert.equal("brood.Error", getmetatable(err).__name)
      assert.equal("ENOENT", err.code)
      assert.equal(2, err.errno)
      assert.equal("spawn 'brood-nosuch-prog': ENOENT: no such file or directory",
                   err.message)
      assert.equal(err.message, tostring(err))
      assert.equal("spawn brood-nosuch-prog", err.syscall)
      assert.equal("brood-nosuch-prog", err.path)
      -- the arguments without the program, as Node's err.spawnargs
      assert.same({"a", "b"}, err.spawnargs)
    end)

    it("a missing absolute path is ENOENT too", function()
      local c, err, code = brood.spawn("/nonexistent/prog")
      assert.is_nil(c)
      assert.equal("ENOENT", code)
      assert.equal("/nonexistent/prog", err.path)
    end)

    it("a bad cwd is ENOENT naming the cwd", function()
      local c, err, code = brood.spawn("pwd", {}, {cwd = "/nonexistent/dir"})
      assert.is_nil(c)
      assert.equal("ENOENT", code)
      assert.equal(2, err.errno)
      assert.equal("spawn 'pwd': cwd '/nonexistent/dir': ENOENT: no such " ..
                   "file or directory", err.message)
      assert.equal("/nonexistent/dir", err.path)
    end)

    it("a file that is not executable is EACCES", function()
      local path = H.tmpfile("#!/bin/sh\necho no\n", "644")
      local c, err, code = brood.spawn(path)
      os.remove(path)
      assert.is_nil(c)
      assert.equal("EACCES", code)
      assert.equal(13, err.errno)
      assert.equal(("spawn '%s': EACCES: permission denied"):format(path),
                   err.message)
    end)

    it("a directory as the program is EACCES", function()
      local c, err, code = brood.spawn("/tmp")
      assert.is_nil(c)
      assert.equal("EACCES", code)
      assert.equal("/tmp", err.path)
    end)

    it("launch failures leave no zombie and no fd, again and again", function()
      local before = core.fd_count()
      for _ = 1, 100 do
        assert.is_nil((brood.spawn("brood-nosuch-prog", {},
                                   {stdio = {"pipe", "pipe", "pipe", "duplex"}})))
        assert.is_nil((brood.spawn("pwd", {}, {cwd = "/nonexistent"})))
      end
      assert.equal(before, core.fd_count())
      assert.same({}, core.zombies())
      -- without pidfds a failed launch leaves its SIGCHLD watcher closing
      -- until the next loop turn: gone then, not leaked
      assert.is_true(H.run_until(function()
        return core.default_loop:handle_count() == 0
      end, 1000))
    end)

    it("a bad stdio entry after a pipe leaks nothing", function()
      local before = core.fd_count()
      assert.has_error(function()
        brood.spawn("ls", {}, {stdio = {"pipe", "duplex", "pipe", {}}})
      end)
      assert.equal(before, core.fd_count())
    end)
  end)
end)

describe("brood.spawn under real use (issue 8)", function()
  H.guard()

  -- the pids of pid's descendants once there are n of them
  local function descendants(pid, n)
    local pids
    H.run_until(function()
      pids = core.descendants(pid)
      return #pids >= n
    end, 3000)
    return pids
  end

  it("timeout bounds wait() even when grandchildren hold the pipes",
     function()
    local t0 = core.hrtime()
    local c = assert(brood.spawn("sh", {"-c", "sleep 13 & sleep 14"},
                                 {timeout = 300}))
    local kids = descendants(c.pid, 2)
    assert.equal(2, #kids)
    assert.same({nil, "SIGTERM"}, {c:wait()})
    assert.is_true((core.hrtime() - t0) / 1e6 < 5000)
    assert.is_true(c.killed)
    assert.equal("SIGTERM", c.signal_code)
    assert.is_nil(c.exit_code)
    local left = {}
    for _, pid in ipairs(kids) do
      -- signalled, it dies at once; spared, it would live 13 s more
      if not H.gone(pid, 2000) then
        left[#left + 1] = pid
        brood.kill(pid, "SIGKILL")
      end
    end
    assert.same({}, left)  -- the timeout killed the tree
  end)

  it("timeout: a descendant that survives the kill does not hold wait()",
     function()
    local t0 = core.hrtime()
    local c = assert(brood.spawn("sh", {"-c",
      "(trap '' TERM; exec sleep 14) & echo started; sleep 13"},
      {timeout = 300}))
    assert.equal("started\n", c.stdout:read())
    local kids = descendants(c.pid, 2)
    assert.same({nil, "SIGTERM"}, {c:wait()})
    assert.is_true((core.hrtime() - t0) / 1e6 < 5000)
    assert.is_nil(c.stdout:read())  -- our side of its pipes is closed
    for _, pid in ipairs(kids) do
      if H.alive(pid) then brood.kill(pid, "SIGKILL") end
      assert.is_true(H.gone(pid))
    end
  end)

  it("kill_signal = 0 raises (a timeout would leave the child running)",
     function()
    raises("bad argument #3 to 'spawn' (option 'kill_signal' must not be 0 " ..
           "(it would not stop the child))",
           brood.spawn, "sleep", {"1"}, {timeout = 10, kill_signal = 0})
  end)

  it("a failure after the launch kills the child and returns nil, err",
     function()
    local real = core.pipe_open
    local calls = 0
    core.pipe_open = function(...)
      calls = calls + 1
      if calls == 2 then return nil, "EMFILE: too many open files", "EMFILE" end
      return real(...)
    end
    local ok, c, err, code = pcall(brood.spawn, "sleep", {"30"})
    core.pipe_open = real
    assert.is_true(ok)
    assert.is_nil(c)
    assert.equal("EMFILE", code)
    assert.equal("spawn 'sleep': cannot watch stdio[2]: EMFILE: too many " ..
                 "open files", err.message)
    -- H.guard: no fd, no zombie, no handle is left
  end)

  describe("waiting in a plain callback raises, every time", function()
    local function in_callback(fn)
      local err
      brood.set_timeout(0, function()
        local ok, e = pcall(fn)
        err = ok and "no error" or e
      end)
      brood.run()
      return err
    end

    it("child:wait() in an \"exit\" handler, before and after \"close\"",
       function()
      local c = assert(brood.spawn("true"))
      local line = debug.getinfo(1, "l").currentline + 1
      local err = in_callback(function() c:wait() end)
      assert.equal(("spec/spawn_spec.lua:%d: brood: cannot wait outside a " ..
                    "task (use brood.go)"):format(line), err)
      c:wait()
      err = in_callback(function() c:wait() end)  -- "close" has come
      assert.matches("^spec/spawn_spec%.lua:%d+: brood: cannot wait", err)
    end)
  end)

  it("a method called with a dot raises, naming the colon form", function()
    local c = assert(brood.spawn("sleep", {"30"}))
    raises("use child:wait(), not child.wait()", function() return c.wait() end)
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() c.kill("SIGTERM") end)
    assert.is_false(ok)
    assert.equal(("spec/spawn_spec.lua:%d: use child:kill(), not " ..
                  "child.kill()"):format(line), err)
    for _, m in ipairs({"ref", "unref", "on", "once", "off"}) do
      local ok2, err2 = pcall(c[m], "exit", function() end)
      assert.is_false(ok2)
      assert.matches(("use child:%s%%(%%), not child%%.%s%%(%%)$"):format(m, m),
                     err2)
    end
    assert.is_true(c:kill())
    c:wait()
  end)
end)

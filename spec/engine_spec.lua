-- The spawn engine (src/process.c): what the child starts with (fds,
-- signal state), exact launch errors, many children at once, and the
-- SIGCHLD fallback without pidfds.

local H = require "spec.helper"
local brood, core = H.brood, H.core

local function run(file, args, opts)
  local c = assert(brood.spawn(file, args, opts))
  local out = c.stdout and c.stdout:read_all()
  local code, sig = c:wait()
  return out, code, sig
end

local function sorted_lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  table.sort(t, function(a, b) return (tonumber(a) or a) < (tonumber(b) or b) end)
  return t
end

--- Run `brood -e code` to the end: stdout, stderr, code, signal.
local function host(code, opts)
  local h = assert(brood.spawn(H.host, {"-e", code}, opts))
  local t = brood.go(function() return h.stderr:read_all() end)
  local out = h.stdout:read_all()
  local err = t:wait()
  local c, s = h:wait()
  return out, err, c, s
end

describe("spawn engine", function()
  H.guard()

  describe("fds", function()
    it("the child sees only 0, 1, 2: files we opened do not leak", function()
      local path = H.tmpfile("secret")
      local f = assert(io.open(path))  -- no close-on-exec: a plain fopen
      local before = core.fd_count()
      local out = run("ls", {"-l", "/proc/self/fd"})
      local names = run("ls", {"/proc/self/fd"})
      f:close()
      os.remove(path)
      assert.is_true(before > 3)
      -- ls's own directory fd is the 3
      assert.same({"0", "1", "2", "3"}, sorted_lines(names))
      assert.is_nil(out:find(path, 1, true))
    end)

    it("a 4-entry stdio gives fd 3 as well, and nothing else", function()
      local c = assert(brood.spawn("ls", {"-l", "/proc/self/fd"},
                                   {stdio = {"ignore", "pipe", "ignore", "pipe"}}))
      local out = c.stdout:read_all()
      c:wait()
      local fds = {}
      for fd, target in out:gmatch(" (%d+) %-> (%S+)") do fds[fd] = target end
      assert.equal("/dev/null", fds["0"])
      assert.matches("^pipe:", fds["1"])
      assert.equal("/dev/null", fds["2"])
      assert.matches("^pipe:", fds["3"])
      assert.equal("/proc/" .. fds["4"]:match("/proc/(%d+)/fd") .. "/fd",
                   fds["4"])  -- ls's own directory
      local n = 0
      for _ in pairs(fds) do n = n + 1 end
      assert.equal(5, n)
    end)

    it("the pipes of one child do not leak into the next", function()
      local a = assert(brood.spawn("cat"))
      local names = run("ls", {"/proc/self/fd"})
      assert.same({"0", "1", "2", "3"}, sorted_lines(names))
      -- and so a's stdin closing is seen by a at once
      a.stdin:close("x")
      assert.equal("x", a.stdout:read_all())
      a:wait()
    end)

    it("an fd integer above 2 reaches the child at its slot", function()
      local path = H.tmpfile("")
      local f = assert(io.open(path, "w"))
      local fd = core.file_fd(f)
      assert.is_true(fd > 2)
      local out = run("sh", {"-c", "echo via-fd-5 >&5; ls /proc/self/fd"},
                      {stdio = {"ignore", "pipe", "ignore", "ignore", "ignore", fd}})
      f:close()
      local fh = assert(io.open(path))
      local content = fh:read("a")
      fh:close()
      os.remove(path)
      assert.equal("via-fd-5\n", content)
      -- ls's directory fd takes the lowest free number: 6 (3 and 4 hold
      -- /dev/null)
      assert.same({"0", "1", "2", "3", "4", "5", "6"}, sorted_lines(out))
    end)

    it("pipes and socketpairs never take fds 0, 1 or 2", function()
      -- with our fd 0 closed, a new fd would get number 0
      local keep = {}
      assert.is_true(core.close_fd(0))
      local r, w = core.pipe()
      local a, b = core.socketpair()
      keep[1] = assert(io.open("/dev/null"))  -- fd 0 again
      _G.brood_engine_spec_stdin = keep       -- never collected
      assert.equal(0, core.file_fd(keep[1]))
      for _, fd in ipairs({r, w, a, b}) do
        assert.is_true(fd > 2)
        core.close_fd(fd)
      end
    end)

    it("works when the host's fds 0 and 1 are closed", function()
      -- the host's own pipes then take numbers 0 and 1
      local c = assert(brood.spawn("sh", {"-c",
        "exec 0<&- 1>&-; exec \"$0\" -e \"$1\"", H.host, [[
          local brood = require "brood"
          local c = assert(brood.spawn("sh", {"-c", "cat; echo err >&2"}))
          c.stdin:close("in")
          local out = c.stdout:read_all()
          io.stderr:write(out, "|", c.stderr:read_all(), "|", c:wait(), "\n")
        ]]}))
      assert.equal("in|err\n|0\n", c.stderr:read_all())
      assert.same({0, nil}, {c:wait()})
    end)
  end)

  describe("signals", function()
    it("the child starts with nothing ignored and nothing blocked", function()
      -- we ignore SIGPIPE ourselves (brood.core does)
      local out = run("grep", {"-E", "^(SigIgn|SigBlk)", "/proc/self/status"})
      assert.equal("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", out)
    end)

    it("nor while we handle signals with on_signal", function()
      local h = brood.on_signal("SIGUSR1", function() end)
      local out = run("grep", {"-E", "^(SigIgn|SigBlk)", "/proc/self/status"})
      h:stop()
      assert.equal("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", out)
    end)

    it("SIGPIPE kills a child writing to a closed pipe (default action)",
       function()
      -- with SIGPIPE ignored, yes would complain of EPIPE on stderr
      local p = assert(brood.spawn("sh", {"-c", "yes | head -c 1 >/dev/null"}))
      assert.equal("", p.stderr:read_all())
      assert.same({0, nil}, {p:wait()})
      local c = assert(brood.spawn("yes"))
      c.stdout:read()
      c.stdout:destroy()
      assert.same({nil, "SIGPIPE"}, {c:wait()})
    end)
  end)

  describe("launch errors", function()
    it("report the errno and name the cwd for chdir failures", function()
      local c, err, code = brood.spawn("pwd", {}, {cwd = "/nonexistent/x"})
      assert.is_nil(c)
      assert.equal("ENOENT", code)
      assert.equal(2, err.errno)
      assert.equal("spawn 'pwd': cwd '/nonexistent/x': ENOENT: no such file " ..
                   "or directory", err.message)
      c, err, code = brood.spawn("pwd", {}, {cwd = "/etc/passwd"})
      assert.is_nil(c)
      assert.equal("ENOTDIR", code)
      assert.equal(20, err.errno)
      assert.equal("spawn 'pwd': cwd '/etc/passwd': ENOTDIR: not a directory",
                   err.message)
      assert.equal("/etc/passwd", err.path)
    end)

    it("name the failing step when it is not exec or chdir", function()
      -- fd 1000 is not open here: dup2 fails in the child
      local c, err, code = brood.spawn("true", {},
                                       {stdio = {"ignore", 1000, "ignore"}})
      assert.is_nil(c)
      assert.equal("EBADF", code)
      assert.equal(9, err.errno)
      assert.equal("spawn 'true': dup2: EBADF: bad file descriptor", err.message)
    end)

    it("report exec failures with the program's errno", function()
      local c, err = brood.spawn("/nonexistent")
      assert.is_nil(c)
      assert.equal(2, err.errno)
      c, err = brood.spawn("/etc/passwd")
      assert.is_nil(c)
      assert.equal(13, err.errno)
      c, err = brood.spawn("/etc/passwd/x")
      assert.is_nil(c)
      assert.equal("ENOTDIR", err.code)
    end)

    it("prefer EACCES over ENOENT when a PATH entry was not executable",
       function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir))
      local f = assert(io.open(dir .. "/brood-noexec", "w"))
      f:write("#!/bin/sh\n")
      f:close()
      local c, err, code = brood.spawn("brood-noexec", {},
                                       {env = {PATH = "/nonexistent:" .. dir}})
      os.execute("rm -rf " .. dir)
      assert.is_nil(c)
      assert.equal("EACCES", code)
      assert.equal("brood-noexec", err.path)
    end)

    it("an empty or odd PATH still gives ENOENT", function()
      for _, path in ipairs({"", ":", ".:.", "/nonexistent::"}) do
        local c, _, code = brood.spawn("brood-nosuch", {}, {env = {PATH = path}})
        assert.is_nil(c)
        assert.equal("ENOENT", code)
      end
    end)
  end)

  it("200 concurrent children are all reaped with their own codes", function()
    local children = {}
    for i = 1, 200 do
      children[i] = assert(brood.spawn("sh", {"-c", "echo $1; exit $(($1 % 7))",
                                              "sh", tostring(i)},
                                       {stdio = {"ignore", "pipe", "ignore"}}))
    end
    for i = 1, 200 do
      local c = children[i]
      assert.equal(i .. "\n", c.stdout:read_all())
      assert.same({i % 7, nil}, {c:wait()})
    end
    assert.same({}, core.zombies())
  end)

  it("children that exit in any order are each reaped once", function()
    local tasks = {}
    for i = 1, 20 do
      tasks[i] = brood.go(function()
        local c = assert(brood.spawn("sh", {"-c", "sleep 0.0$1; exit $1", "sh",
                                            tostring(20 - i)}, {stdio = "ignore"}))
        return (c:wait())
      end)
    end
    for i = 1, 20 do assert.equal(20 - i, tasks[i]:wait()) end
  end)

  describe("without pidfds (BROOD_NO_PIDFD=1)", function()
    local SCRIPT = [[
      local brood = require "brood"
      local core = require "brood.core"
      print(core.exit_watch, brood.core_info.exit_watch)
      local tasks = {}
      for i = 1, 5 do
        tasks[i] = brood.go(function()
          local c = assert(brood.spawn("sh", {"-c",
            "sleep 0.0" .. (6 - i) .. "; exit " .. i}))
          return (c:wait())
        end)
      end
      local k = assert(brood.spawn("sleep", {"100"}))
      assert(k:kill("SIGKILL"))
      local _, sig = k:wait()
      local codes = {}
      for i = 1, 5 do codes[i] = tasks[i]:wait() end
      print(table.concat(codes, " "), sig, k:kill())
      local c, _, code = brood.spawn("brood-nosuch")
      print(c, code)
      local t = assert(brood.spawn("sleep", {"100"}, {timeout = 20}))
      print(t:wait())
      print(#core.zombies())
    ]]

    it("falls back to SIGCHLD and reaps every child", function()
      local out, err, code = host(SCRIPT, {extend_env = {BROOD_NO_PIDFD = "1"}})
      assert.equal("", err)
      assert.equal(0, code)
      assert.equal("sigchld\tsigchld\n1 2 3 4 5\tSIGKILL\tfalse\n" ..
                   "nil\tENOENT\nnil\tSIGTERM\n0\n", out)
    end)

    it("gives the same results with the default watch", function()
      local out, err, code = host(SCRIPT, {extend_env = {BROOD_NO_PIDFD = false}})
      assert.equal("", err)
      assert.equal(0, code)
      local rest = out:match("^%a+\t%a+\n(.*)$")
      assert.equal("1 2 3 4 5\tSIGKILL\tfalse\nnil\tENOENT\nnil\tSIGTERM\n0\n", rest)
    end)
  end)
end)

describe("a process handle closed before its child was reaped", function()
  H.guard()

  it("leaves no zombie: the next spawn reaps it", function()
    local c = assert(brood.spawn("true", {}, {stdio = "ignore"}))
    c._proc:close()  -- as an embedding that drops a live handle would
    brood.sleep(50)
    local d = assert(brood.spawn("true"))
    d:wait()
    assert.are.same({}, H.core.zombies())
  end)
end)

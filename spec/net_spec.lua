-- brood.net (DESIGN §6 "Handles"): TCP and unix-socket servers and
-- sockets. Servers bind 127.0.0.1 (or a private tmp dir) only.

-- busted keeps before_each/after_each in the spec's environment, where
-- spec/helper.lua (a plain module) cannot see them.
_G.before_each, _G.after_each = before_each, after_each
local H = require "spec.helper"
local brood, core = H.brood, H.core
local net = brood.net
local Stream = require("brood.stream").Stream

local LOCAL = "127.0.0.1"

-- A server echoing every chunk back, listening on 127.0.0.1:<free port>.
local function echo_server(where)
  local srv = net.create_server(function(sock)
    sock:on("data", function(d) sock:write(d) end)
  end)
  if where then
    assert(srv:listen(where))
  else
    assert(srv:listen(0, LOCAL))
  end
  return srv
end

-- A port nothing listens on (it was free a moment ago).
local function unused_port()
  local srv = net.create_server()
  assert(srv:listen(0, LOCAL))
  local port = srv:address().port
  local closed = false
  srv:close(function() closed = true end)
  assert.is_true(H.run_until(function() return closed end))
  return port
end

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. dir))
  return dir
end

local function close_server(srv)
  local closed = false
  srv:close(function() closed = true end)
  assert.is_true(H.run_until(function() return closed end))
end

local function exists(path)
  return os.rename(path, path) == true
end

-- fn(...) raises exactly msg (after the "file:line: " of a Lua caller).
local function raises(msg, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.equal(msg, (err:gsub("^[^:]*net_spec%.lua:%d+: ", "")))
end

describe("brood.net", function()
  H.guard()

  it("is loaded on demand as brood.net", function()
    assert.equal(require("brood.net"), brood.net)
    assert.equal("function", type(net.create_server))
    assert.equal("function", type(net.connect))
  end)

  describe("TCP", function()
    it("echoes over 127.0.0.1 on a port the OS picks", function()
      local srv = echo_server()
      local addr = srv:address()
      assert.equal(LOCAL, addr.address)
      assert.equal("IPv4", addr.family)
      assert.is_true(math.type(addr.port) == "integer" and addr.port > 0)
      assert.is_true(srv.listening)
      local sock = assert(net.connect(addr.port, LOCAL))
      assert.is_true(sock.connecting)
      assert.equal(sock, sock:wait_connect())
      assert.is_false(sock.connecting)
      assert.equal(LOCAL, sock.remote_address)
      assert.equal(addr.port, sock.remote_port)
      assert.equal("IPv4", sock.remote_family)
      assert.is_true(sock:write("hello"))
      assert.equal("hello", sock:read())
      sock:close()
      assert.is_nil(sock:read())
      close_server(srv)
      assert.is_false(srv.listening)
      assert.is_nil(srv:address())
    end)

    it('"connection" gives a duplex brood Stream that knows its peer',
       function()
      local server_side
      local srv = net.create_server(function(s) server_side = s end)
      assert(srv:listen(0, LOCAL))
      local sock = assert(net.connect(srv:address().port, LOCAL))
      assert(sock:wait_connect())
      assert.is_true(H.run_until(function() return server_side ~= nil end))
      -- sockets are Streams: brood.net's Socket class extends Stream
      assert.equal(net.Socket, getmetatable(server_side))
      assert.equal(net.Socket, getmetatable(sock))
      assert.equal(Stream, net.Socket.__parent)
      assert.is_true(require("brood.stream").is_stream(sock))
      assert.is_true(server_side.readable and server_side.writable)
      assert.is_true(sock.readable and sock.writable)
      -- each side's local address is the other side's remote one
      local mine = sock:address()
      assert.equal(mine.port, server_side.remote_port)
      assert.equal(LOCAL, server_side.remote_address)
      assert.equal(srv:address().port, server_side:address().port)
      assert.equal(1, srv:connection_count())
      server_side:write("from server")
      assert.equal("from server", sock:read())
      sock:destroy()
      assert.is_nil(server_side:read())
      close_server(srv)
      assert.equal(0, srv:connection_count())
    end)

    it('"listening" comes after listen() returns; listen takes a cb',
       function()
      local log = {}
      local srv = net.create_server()
      srv:on("listening", function() log[#log + 1] = "event" end)
      assert.equal(srv, srv:listen(0, LOCAL, function()
        log[#log + 1] = "cb"
      end))
      assert.same({}, log)
      assert.is_true(H.run_until(function() return #log == 2 end))
      assert.same({"event", "cb"}, log)
      close_server(srv)
    end)

    it("connect(port, cb) defaults the host to 127.0.0.1 and calls cb",
       function()
      local srv = echo_server()
      local connected = 0
      local sock = assert(net.connect(srv:address().port, function()
        connected = connected + 1
      end))
      assert.equal(0, connected)  -- never before connect returns
      assert(sock:wait_connect())
      assert.is_true(H.run_until(function() return connected == 1 end))
      sock:write("x")
      assert.equal("x", sock:read())
      sock:close()
      close_server(srv)
    end)

    it("writes queued while connecting are sent once connected", function()
      local srv = echo_server()
      local sock = assert(net.connect(srv:address().port, LOCAL))
      assert.is_true(sock.connecting)
      sock:write("early ")
      sock:write("bird")
      local got = ""
      while #got < 10 do got = got .. assert(sock:read()) end
      assert.equal("early bird", got)
      sock:close()
      close_server(srv)
    end)

    it("serves many concurrent connections", function()
      local srv = echo_server()
      local port = srv:address().port
      local N = 50
      local tasks = {}
      for i = 1, N do
        tasks[i] = brood.go(function()
          local s = assert(net.connect(port, LOCAL))
          assert(s:wait_connect())
          local msg = ("client %d says %s\n"):format(i, ("x"):rep(i * 100))
          s:write(msg)
          local got = ""
          while #got < #msg do got = got .. assert(s:read()) end
          s:close()
          assert.is_nil(s:read())
          return got == msg
        end)
      end
      local seen = 0
      local peak = 0
      srv:on("connection", function()
        seen = seen + 1
        peak = math.max(peak, srv:connection_count())
      end)
      for i = 1, N do assert.is_true(tasks[i]:wait()) end
      assert.equal(N, seen)
      assert.is_true(peak >= 1)
      close_server(srv)
    end)

    it("connect to an unused port fails with ECONNREFUSED", function()
      local port = unused_port()
      local sock = assert(net.connect(port, LOCAL))
      local events = {}
      sock:on("error", function(e) events[#events + 1] = e end)
      local closed = false
      sock:on("close", function() closed = true end)
      local ok, err, code = sock:wait_connect()
      assert.is_nil(ok)
      assert.equal("ECONNREFUSED", code)
      assert.equal("ECONNREFUSED", err.code)
      assert.equal("connect", err.syscall)
      assert.equal(port, err.port)
      assert.equal(("connect %s:%d: ECONNREFUSED"):format(LOCAL, port),
                   tostring(err))
      assert.equal(1, #events)
      assert.equal(err, events[1])
      assert.is_true(H.run_until(function() return closed end))
      assert.is_true(sock.closed)
      -- the socket is dead: reading and writing report the failure
      local r, rerr, rcode = sock:read()
      assert.is_nil(r)
      assert.equal(err, rerr)
      assert.equal("ECONNREFUSED", rcode)
      local w, _, wcode = sock:write("x")
      assert.is_nil(w)
      assert.equal("ECONNREFUSED", wcode)
    end)

    it("a refused connect without listeners keeps the error quietly",
       function()
      local sock = assert(net.connect(unused_port(), LOCAL))
      assert.is_true(H.run_until(function() return sock.closed end))
      assert.equal("ECONNREFUSED", sock.error.code)
      local _, _, code = sock:wait_connect()
      assert.equal("ECONNREFUSED", code)
    end)

    it("a second server on the same port gets EADDRINUSE", function()
      local a = echo_server()
      local port = a:address().port
      local b = net.create_server()
      local ok, err, code = b:listen(port, LOCAL)
      assert.is_nil(ok)
      assert.equal("EADDRINUSE", code)
      assert.equal("EADDRINUSE", err.code)
      assert.equal("listen", err.syscall)
      assert.matches(("^listen 127%%.0%%.0%%.1:%d: EADDRINUSE"):format(port),
                     err.message)
      assert.is_false(b.listening)
      -- the failed server is still usable
      assert.equal(b, b:listen(0, LOCAL))
      assert.is_true(b:address().port ~= port)
      close_server(b)
      close_server(a)
    end)

    it("a host that is not an IP address gives EINVAL at once", function()
      local sock, err, code = net.connect(80, "no.such.host.invalid")
      assert.is_nil(sock)
      assert.equal("EINVAL", code)
      assert.equal("connect no.such.host.invalid:80: invalid IP address " ..
                   "(host names are not resolved)", err.message)
      local srv = net.create_server()
      local ok, lerr, lcode = srv:listen(0, "300.1.1.1")
      assert.is_nil(ok)
      assert.equal("EINVAL", lcode)
      assert.equal("listen 300.1.1.1:0: invalid IP address", lerr.message)
    end)

    it("a numeric string is a port, not a path", function()
      local srv = net.create_server()
      assert(srv:listen("0", LOCAL))
      local port = srv:address().port
      local sock = assert(net.connect(tostring(port), LOCAL))
      assert(sock:wait_connect())
      assert.equal(port, sock.remote_port)
      sock:destroy()
      close_server(srv)
    end)
  end)

  describe("unix sockets", function()
    local dir
    before_each(function() dir = tmpdir() end)
    after_each(function() os.execute("rm -rf " .. dir) end)

    it("echoes over a socket file; close removes the file", function()
      local path = dir .. "/echo.sock"
      local srv = echo_server(path)
      assert.equal(path, srv:address())
      assert.is_true(exists(path))  -- the socket file
      local sock = assert(net.connect(path))
      assert.equal(sock, sock:wait_connect())
      assert.equal(path, sock.path)
      sock:write("over unix")
      assert.equal("over unix", sock:read())
      sock:close()
      assert.is_nil(sock:read())
      close_server(srv)
      assert.is_false(exists(path))
    end)

    it("connect(path, cb) calls cb once connected", function()
      local path = dir .. "/cb.sock"
      local srv = echo_server(path)
      local connected = false
      local sock = assert(net.connect(path, function() connected = true end))
      assert.is_true(H.run_until(function() return connected end))
      sock:destroy()
      close_server(srv)
    end)

    it("connect to a missing path fails with ENOENT", function()
      local path = dir .. "/nobody.sock"
      local sock = assert(net.connect(path))
      local seen
      sock:on("error", function(e) seen = e end)
      local ok, err, code = sock:wait_connect()
      assert.is_nil(ok)
      assert.equal("ENOENT", code)
      assert.equal(path, err.path)
      assert.equal(("connect '%s': ENOENT"):format(path), err.message)
      assert.equal(err, seen)
      assert.is_true(H.run_until(function() return sock.closed end))
    end)

    it("an existing file at the path gives EADDRINUSE (no unlink)",
       function()
      local path = dir .. "/stale.sock"
      local f = assert(io.open(path, "w"))
      f:write("keep me")
      f:close()
      local srv = net.create_server()
      local ok, err, code = srv:listen(path)
      assert.is_nil(ok)
      assert.equal("EADDRINUSE", code)
      assert.equal(("listen '%s': EADDRINUSE: address already in use")
                   :format(path), err.message)
      f = assert(io.open(path))
      assert.equal("keep me", f:read("a"))
      f:close()
    end)

    it("a second server on a live socket path gets EADDRINUSE", function()
      local path = dir .. "/live.sock"
      local a = echo_server(path)
      local _, _, code = net.create_server():listen(path)
      assert.equal("EADDRINUSE", code)
      -- the first server still works
      local sock = assert(net.connect(path))
      sock:write("still here")
      assert.equal("still here", sock:read())
      sock:close()
      close_server(a)
    end)

    it("a path too long for a unix socket gives ENAMETOOLONG", function()
      local long = dir .. "/" .. ("x"):rep(200)
      local _, err, code = net.create_server():listen(long)
      assert.equal("ENAMETOOLONG", code)
      assert.equal("ENAMETOOLONG", err.code)
      local sock, _, ccode = net.connect(long)
      assert.is_nil(sock)
      assert.equal("ENAMETOOLONG", ccode)
    end)
  end)

  describe("server:close()", function()
    it("stops accepting but keeps open connections; then \"close\"",
       function()
      local srv = echo_server()
      local port = srv:address().port
      local sock = assert(net.connect(port, LOCAL))
      sock:write("before")
      assert.equal("before", sock:read())
      local log = {}
      srv:on("close", function() log[#log + 1] = "event" end)
      assert.equal(srv, srv:close(function(err)
        log[#log + 1] = err == nil and "cb" or "cb error"
      end))
      assert.is_false(srv.listening)
      -- no new connections...
      local late = assert(net.connect(port, LOCAL))
      local _, _, code = late:wait_connect()
      assert.equal("ECONNREFUSED", code)
      -- ...but the open one still echoes, and "close" waits for it
      sock:write("after")
      assert.equal("after", sock:read())
      assert.same({}, log)
      sock:close()
      assert.is_true(H.run_until(function() return #log == 2 end))
      assert.same({"event", "cb"}, log)
    end)

    it("on a server that is not listening gives ERR_SERVER_NOT_RUNNING",
       function()
      local srv = net.create_server()
      local got
      srv:close(function(err) got = err end)
      assert.is_nil(got)  -- never before close returns
      assert.is_true(H.run_until(function() return got ~= nil end))
      assert.equal("ERR_SERVER_NOT_RUNNING", got.code)
    end)

    it("unref() lets brood.run end while the server listens", function()
      local srv = net.create_server()
      local listening = false
      assert(srv:listen(0, LOCAL, function() listening = true end))
      srv:unref()
      assert.is_true(H.run_until(function() return listening end))
      -- nothing referenced is left: brood.run() would return at once
      assert.is_false(core.default_loop:alive())
      brood.run()
      assert.is_true(srv.listening)
      srv:on("connection", function(s)
        s:on("data", function(d) s:write(d) end)
      end)
      srv:ref()
      local sock = assert(net.connect(srv:address().port, LOCAL))
      sock:write("ref'd again")
      assert.equal("ref'd again", sock:read())
      sock:close()
      close_server(srv)
    end)

    it("a connection nobody listens for is closed", function()
      local srv = net.create_server()
      assert(srv:listen(0, LOCAL))
      local sock = assert(net.connect(srv:address().port, LOCAL))
      assert(sock:wait_connect())
      assert.is_nil(sock:read())  -- EOF: the server closed it
      sock:destroy()
      assert.equal(0, srv:connection_count())
      close_server(srv)
    end)
  end)

  describe("sockets as streams", function()
    it("write() returns false under backpressure, then \"drain\"",
       function()
      local server_side
      local srv = net.create_server(function(s)
        server_side = s
        s:pause()  -- read nothing until told: the kernel buffers fill
      end)
      assert(srv:listen(0, LOCAL))
      local sock = assert(net.connect(srv:address().port, LOCAL))
      assert(sock:wait_connect())
      assert.is_true(H.run_until(function() return server_side ~= nil end))
      local drained = 0
      sock:on("drain", function() drained = drained + 1 end)
      local chunk = ("z"):rep(64 * 1024)
      local sent, accepted = 0, true
      while accepted do
        accepted = sock:write(chunk)
        sent = sent + #chunk
        assert.is_true(sent <= 512 * 1024 * 1024, "write never said false")
      end
      assert.is_false(accepted)
      assert.is_true(sock:pending_bytes() > 0)
      assert.equal(0, drained)
      -- the reader catches up: everything arrives, then "drain"
      local received = 0
      server_side:on("data", function(d) received = received + #d end)
      server_side:resume()
      assert.is_true(H.run_until(function()
        return drained == 1 and received == sent
      end, 30000))
      assert.equal(sent, received)
      assert.equal(0, sock:pending_bytes())
      sock:destroy()
      close_server(srv)
    end)

    it("close() half-closes: the peer sees EOF and can still reply",
       function()
      local server_log = {}
      local srv = net.create_server(function(s)
        local got = {}
        s:on("data", function(d) got[#got + 1] = d end)
        s:on("end", function()
          server_log[#server_log + 1] = "end"
          -- our reading side is done; the writing side is not
          s:write("you said: " .. table.concat(got))
        end)
        s:on("close", function() server_log[#server_log + 1] = "close" end)
      end)
      assert(srv:listen(0, LOCAL))
      local sock = assert(net.connect(srv:address().port, LOCAL))
      local finished = false
      sock:on("finish", function() finished = true end)
      sock:write("ping")
      sock:close()
      assert.equal("you said: ping", sock:read_all())
      assert.is_true(finished)
      local _, _, code = sock:write("late")
      assert.equal("ERR_STREAM_WRITE_AFTER_END", code)
      assert.is_true(H.run_until(function()
        return #server_log == 2 and sock.closed
      end))
      assert.same({"end", "close"}, server_log)
      close_server(srv)
    end)

    it("lines() reads a line protocol from a socket", function()
      local srv = net.create_server(function(s)
        s:close("one\ntwo\nthree")
      end)
      assert(srv:listen(0, LOCAL))
      local sock = assert(net.connect(srv:address().port, LOCAL))
      local lines = {}
      for l in sock:lines() do lines[#lines + 1] = l end
      assert.same({"one", "two", "three"}, lines)
      sock:close()
      close_server(srv)
    end)

    it("leaves no fd or handle behind", function()
      local fds = core.fd_count()
      for _ = 1, 3 do
        local srv = echo_server()
        local socks = {}
        for i = 1, 5 do
          socks[i] = assert(net.connect(srv:address().port, LOCAL))
          socks[i]:write("n")
          assert.equal("n", socks[i]:read())
        end
        assert.is_true(core.fd_count() >= fds + 11)  -- 1 + 5 + 5 sockets
        for i = 1, 5 do socks[i]:close() end
        close_server(srv)
      end
      collectgarbage("collect")
      assert.is_true(H.run_until(function()
        return core.default_loop:handle_count() == 0
      end))
      assert.equal(fds, core.fd_count())
    end)
  end)

  describe("bad arguments raise, naming the function and argument", function()
    it("connect", function()
      raises("bad argument #1 to 'connect' (port number or socket path " ..
             "expected, got no value)", net.connect)
      raises("bad argument #1 to 'connect' (port number or socket path " ..
             "expected, got boolean)", net.connect, true)
      raises("bad argument #1 to 'connect' (port must be an integer from " ..
             "1 to 65535, got 0)", net.connect, 0)
      raises("bad argument #1 to 'connect' (port must be an integer from " ..
             "1 to 65535, got 70000)", net.connect, 70000)
      raises("bad argument #1 to 'connect' (port must be an integer from " ..
             "1 to 65535, got 1.5)", net.connect, 1.5)
      raises("bad argument #1 to 'connect' (socket path must not be empty)",
             net.connect, "")
      raises("bad argument #1 to 'connect' (socket path must not contain " ..
             "NUL bytes)", net.connect, "/tmp/a\0b")
      raises("bad argument #2 to 'connect' (host must be a string, got " ..
             "number)", net.connect, 80, 127)
      raises("bad argument #3 to 'connect' (function expected, got string)",
             net.connect, 80, LOCAL, "cb")
      raises("bad argument #2 to 'connect' (function expected, got table)",
             net.connect, "/tmp/x.sock", {})
    end)

    it("create_server and listen", function()
      raises("bad argument #1 to 'create_server' (function expected, got " ..
             "number)", net.create_server, 5)
      local srv = net.create_server()
      raises("bad argument #1 to 'listen' (port number or socket path " ..
             "expected, got table)", srv.listen, srv, {})
      raises("bad argument #1 to 'listen' (port must be an integer from " ..
             "0 to 65535, got -1)", srv.listen, srv, -1)
      raises("bad argument #1 to 'listen' (socket path must not contain " ..
             "NUL bytes)", srv.listen, srv, "a\0b")
      raises("bad argument #2 to 'listen' (host must be a string, got " ..
             "boolean)", srv.listen, srv, 0, true)
      raises("bad argument #3 to 'listen' (function expected, got number)",
             srv.listen, srv, 0, LOCAL, 1)
      raises("bad argument #1 to 'close' (function expected, got string)",
             srv.close, srv, "x")
      assert(srv:listen(0, LOCAL))
      raises("brood.Server: listen() on a server that is listening already",
             srv.listen, srv, 0, LOCAL)
      close_server(srv)
    end)

    it("the core functions check their arguments", function()
      local L = core.default_loop
      raises("bad argument #3 to 'brood.core.tcp_connect' (port out of " ..
             "range)", core.tcp_connect, L, LOCAL, 70000, print)
      raises("bad argument #4 to 'brood.core.tcp_connect' (function " ..
             "expected, got no value)", core.tcp_connect, L, LOCAL, 80)
      raises("bad argument #2 to 'brood.core.pipe_connect' (path contains " ..
             "a NUL byte)", core.pipe_connect, L, "a\0b", print)
      local sv = assert(core.tcp_server(L))
      assert.equal("tcp", sv:kind())
      raises("bad argument #2 to 'bind' (port out of range)",
             function() sv:bind(LOCAL, -1) end)
      raises("bad argument #1 to 'listen' (backlog out of range)",
             function() sv:listen(0, print) end)
      sv:close()
      raises("attempt to use a closed brood.server",
             function() sv:kind() end)
      local pv = assert(core.pipe_server(L))
      assert.equal("pipe", pv:kind())
      pv:close()
    end)
  end)
end)

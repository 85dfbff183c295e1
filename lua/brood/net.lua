--- brood.net: TCP and unix-domain socket servers and sockets (DESIGN §6).
--
-- A socket is a duplex brood Stream (brood.stream): read, lines, write
-- with backpressure, close (flush, then EOF: half-close), destroy, and
-- the Stream events. Sockets add `connecting`, `remote_address`,
-- `remote_port`, `remote_family` (TCP), `path` (unix sockets, client
-- side), a "connect" event, `socket:wait_connect()` and
-- `socket:address()`.
--
-- Addresses are numeric IPv4/IPv6 addresses or "localhost"; host names
-- are not resolved (a connect to one returns nil, err, "EINVAL").
-- @module brood.net
local core = require "brood.core"
local loop = require "brood.loop"
local tasks = require "brood.tasks"
local check = require "brood.check"
local emitter = require "brood.emitter"
local stream = require "brood.stream"
local Error = require "brood.error"

local M = {}

local default_loop = loop.default
local defer, await = loop.defer, tasks.await
local type, math_type, tostring, format = type, math.type, tostring,
  string.format

local BACKLOG = 511  -- Node's default

-- ----- arguments ------------------------------------------------------------

local fail = check.fail

-- Where to listen or connect: ("tcp", port) for a number or a numeric
-- string, ("pipe", path) for any other string; raises otherwise.
local function target(fname, where, min_port)
  local t = type(where)
  local port
  if t == "number" then
    port = where
  elseif t == "string" then
    port = where:match("^%s*%d+%s*$") and tonumber(where)
    if port == nil then
      if where == "" then fail(fname, 1, "socket path must not be empty") end
      if where:find("\0", 1, true) then
        fail(fname, 1, "socket path must not contain NUL bytes")
      end
      return "pipe", where
    end
  else
    fail(fname, 1, format("port number or socket path expected, got %s",
                          where == nil and "no value" or t))
  end
  if math_type(port) ~= "integer" and port ~= math.floor(port) or
     port < min_port or port > 65535 then
    fail(fname, 1, format("port must be an integer from %d to 65535, got %s",
                          min_port, tostring(where)))
  end
  return "tcp", math.floor(port)
end

local function check_host(fname, host)
  if host ~= nil and type(host) ~= "string" then
    fail(fname, 2, format("host must be a string, got %s", type(host)))
  end
  if host == "localhost" then return "127.0.0.1" end
  return host
end

local function check_cb(fname, n, cb)
  if cb ~= nil and type(cb) ~= "function" then
    fail(fname, n, format("function expected, got %s", type(cb)))
  end
end

local function net_error(syscall, where, msg, code)
  return Error.from_core(syscall .. " " .. where, msg, code,
                         {syscall = syscall})
end

-- ----- sockets --------------------------------------------------------------

--- A socket: a duplex Stream with an address and a connection.
local Socket = setmetatable({__name = "brood.Socket",
                             __parent = stream.Stream},
                            {__index = stream.Stream})
Socket.__index = Socket
M.Socket = Socket

--- socket:address(): the local {address=, family=, port=} of a TCP
-- socket, or the local path of a unix socket; nil once closed.
function Socket:address()
  if self.closed then return nil end
  local name = self._h:getsockname()
  return name
end

--- socket:wait_connect() (a waiting operation): the socket once
-- connected, or nil, err, code if the connection failed.
function Socket:wait_connect()
  if self.connecting then
    await(function(done)
      self._connect_waiters[#self._connect_waiters + 1] = done
    end)
  end
  if self.connect_error then return Error.fail(self.connect_error) end
  return self
end

check.methods(Socket, "socket", {"address", "wait_connect"})

-- Wrap a connected (or connecting) core stream as a socket.
local function new_socket(h)
  local s = stream.new(h, true, true, Socket)
  s.connecting = false
  s._connect_waiters = {}
  return s
end

local function set_remote(s)
  local peer = s._h:getpeername()
  if type(peer) == "table" then
    s.remote_address, s.remote_port, s.remote_family =
      peer.address, peer.port, peer.family
  end
end

-- The connect request finished: "connect", or the failure to everyone
-- who asked (the connect callback, wait_connect(), "error" listeners;
-- with none of them it is kept in socket.error, as a Stream does).
local function on_connect(s, code, what)
  s.connecting = false
  local waiters = s._connect_waiters
  s._connect_waiters = {}
  if code == nil then
    if not s.closed then set_remote(s) end
    s:emit("connect")
  else
    local err = Error.new({message = format("connect %s: %s", what, code),
                           code = code, syscall = "connect",
                           address = s._host, port = s._port, path = s.path})
    s.connect_error = err
    if code ~= "ECANCELED" then  -- else the socket was closed meanwhile
      s.error = s.error or err
      if s:listener_count("error") > 0 then s:emit("error", err) end
      s:destroy()
    end
  end
  for i = 1, #waiters do waiters[i]() end
end

--- connect(port, host?, cb?) or connect(path, cb?) -> socket | nil,
-- err, code. The socket is returned at once, connecting; cb runs on
-- "connect". A failure (ECONNREFUSED, ENOENT...) reaches "error"
-- listeners and wait_connect(); an address that is not numeric returns
-- nil, err, "EINVAL" here; wrong argument types raise.
function M.connect(where, host, cb)
  local kind, addr = target("connect", where, 1)
  if kind == "pipe" then
    if cb == nil and type(host) == "function" then host, cb = nil, host end
    if host ~= nil then
      fail("connect", 2, format("function expected, got %s", type(host)))
    end
  else
    if cb == nil and type(host) == "function" then host, cb = nil, host end
    host = check_host("connect", host) or "127.0.0.1"
  end
  check_cb("connect", kind == "pipe" and 2 or 3, cb)
  local s
  local what = kind == "pipe" and format("'%s'", addr)
               or format("%s:%d", host, addr)
  local function connected(code)
    if s then on_connect(s, code, what) end
  end
  local h, msg, code
  if kind == "pipe" then
    h, msg, code = core.pipe_connect(default_loop, addr, connected)
  else
    h, msg, code = core.tcp_connect(default_loop, host, addr, connected)
  end
  if not h then
    local err = net_error("connect", what, msg, code)
    if code == "EINVAL" and kind == "tcp" then
      err.message = format("connect %s: invalid IP address " ..
                           "(host names are not resolved)", what)
    end
    return Error.fail(err)
  end
  s = new_socket(h)
  s.connecting = true
  if kind == "pipe" then s.path = addr else s._host, s._port = host, addr end
  if cb then s:once("connect", cb) end
  return s
end

-- ----- servers --------------------------------------------------------------

local Server = emitter.extend({__name = "brood.Server"},
                              {"connection", "listening", "close", "error"})
Server.__index = Server
M.Server = Server

--- create_server([on_connection]) -> server; on_connection(socket)
-- listens to "connection".
function M.create_server(on_connection)
  check_cb("create_server", 1, on_connection)
  local self = setmetatable({listening = false, _connections = 0,
                             _unref = false}, Server)
  if on_connection then self:on("connection", on_connection) end
  return self
end

-- "close" once the core server has closed and every connection too.
function Server:_maybe_close()
  local st = self._close_state
  if st and st.handle_closed and self._connections == 0 then
    self._close_state = nil
    self:emit("close")
  end
end

function Server:_on_connection(code)
  local h = self._h
  if h == nil then return end
  if code ~= nil then
    local err = net_error("accept", self._where, code, code)
    if self:listener_count("error") > 0 then self:emit("error", err) end
    return
  end
  local sh = h:accept()
  if not sh then return end  -- the peer went away meanwhile
  local s = new_socket(sh)
  set_remote(s)
  if self:listener_count("connection") == 0 then
    s:destroy()  -- nobody would ever close it
    return
  end
  self._connections = self._connections + 1
  s:once("close", function()
    self._connections = self._connections - 1
    self:_maybe_close()
  end)
  self:emit("connection", s)
end

-- Start listening on core server h: true | nil, err, code (h closed).
function Server:_start(h, where)
  local ok, msg, code = h:listen(self._backlog or BACKLOG, function(c)
    self:_on_connection(c)
  end)
  if not ok then
    h:close()
    return Error.fail(net_error("listen", where, msg, code))
  end
  self._h, self._where = h, where
  self.listening = true
  if self._unref then h:unref() end
  defer(function()
    if self._h == h then self:emit("listening") end
  end)
  return self
end

--- server:listen(port, host?, cb?) or server:listen(path, cb?) -> server
-- | nil, err, code (EADDRINUSE, EACCES, ...). host defaults to every
-- interface ("::", or "0.0.0.0" where IPv6 is missing); cb listens to
-- "listening", emitted after listen returns.
function Server:listen(where, host, cb)
  local kind, addr = target("listen", where, 0)
  if cb == nil and type(host) == "function" then host, cb = nil, host end
  if kind == "pipe" then
    if host ~= nil then
      fail("listen", 2, format("function expected, got %s", type(host)))
    end
    check_cb("listen", 2, cb)
  else
    host = check_host("listen", host)
    check_cb("listen", 3, cb)
  end
  if self._h ~= nil then
    check.raise("brood.Server: listen() on a server that is listening " ..
                "already")
  end
  local h, what, ok, msg, code
  if kind == "pipe" then
    what = format("'%s'", addr)
    h = assert(core.pipe_server(default_loop))
    ok, msg, code = h:bind(addr)
  else
    local hosts = host and {host} or {"::", "0.0.0.0"}
    for i = 1, #hosts do
      what = format("%s:%d", hosts[i], addr)
      h = assert(core.tcp_server(default_loop))
      ok, msg, code = h:bind(hosts[i], addr)
      if ok or (code ~= "EAFNOSUPPORT" and code ~= "EADDRNOTAVAIL") or
         i == #hosts then
        break
      end
      h:close()
    end
  end
  if not ok then
    h:close()
    local err = net_error("listen", what, msg, code)
    if code == "EINVAL" and kind == "tcp" then
      err.message = format("listen %s: invalid IP address", what)
    end
    return Error.fail(err)
  end
  local r, err, c = self:_start(h, what)
  if not r then return r, err, c end
  if cb then self:once("listening", cb) end
  return self
end

--- {address=, family=, port=} for a TCP server, the path for a unix
-- socket server; nil when not listening.
function Server:address()
  if self._h == nil then return nil end
  local name = self._h:getsockname()
  return name
end

--- Stop accepting. Open connections stay; "close" is emitted once they
-- have all closed. cb(err) on "close", or at once with
-- ERR_SERVER_NOT_RUNNING when the server was not listening.
function Server:close(cb)
  check_cb("close", 1, cb)
  if self._h == nil then
    if cb then
      defer(cb, Error.new({message = "Server is not running.",
                           code = "ERR_SERVER_NOT_RUNNING"}))
    end
    return self
  end
  if cb then self:once("close", function() cb(nil) end) end
  local h, state = self._h, {handle_closed = false}
  self._h, self.listening, self._close_state = nil, false, state
  h:close(function()
    state.handle_closed = true
    self:_maybe_close()
  end)
  return self
end

--- Let the loop end while the server listens (and back).
function Server:unref()
  self._unref = true
  if self._h then self._h:unref() end
  return self
end

function Server:ref()
  self._unref = false
  if self._h then self._h:ref() end
  return self
end

--- Number of accepted connections not yet closed.
function Server:connection_count()
  return self._connections
end

-- ----- handle passing (brood.channel) ---------------------------------------

--- The core handle of a listening Server given to a channel's send, or
-- nil (not a server, or not listening).
function M.server_handle(v)
  if getmetatable(v) ~= Server then return nil end
  return v._h
end

--- What a core handle received over an IPC channel becomes: a Server
-- (bound and listening at the OS level already: it starts accepting at
-- once), or a socket.
function M.adopt(h, is_server)
  if h == nil then return nil end
  if is_server then
    local server = M.create_server()
    return server:_start(h, "(received)") or nil
  end
  local s = new_socket(h)
  set_remote(s)
  return s
end

return M

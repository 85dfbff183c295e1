--- The IPC channel's Lua side (DESIGN §6): send, recv, "message",
-- disconnect, "disconnect", backpressure. A Channel belongs to an owner
-- (a forked child in the parent, `brood.parent` in the child) and emits
-- its events on that owner; classes that own one take the delegating
-- methods from `extend`.
--
-- A message goes, in order of preference, to a pending recv(), to the
-- "message" listeners, or into a queue that recv() and the first
-- "message" listener drain later: no message is dropped. The channel keeps
-- the loop alive only while a "message" listener or a recv() waits.
-- @module brood.channel
local loop = require "brood.loop"
local tasks = require "brood.tasks"
local stream = require "brood.stream"
local queue = require "brood.queue"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}

local defer, await, must_wait = loop.defer, tasks.await, tasks.must_wait
local pack, unpack = table.pack, table.unpack

M.DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
M.HIGH_WATER_MARK = 1024 * 1024
-- Socket buffers asked of the kernel for a channel (it may give less).
M.SOCKET_BUFFER = 4 * 1024 * 1024

local function closed_error()
  return Error.new({message = "Channel closed", code = "ERR_IPC_CHANNEL_CLOSED"})
end

-- What a send's cb gets for the core's status: nil once written; a write
-- cancelled because the channel closed is ERR_IPC_CHANNEL_CLOSED; any
-- other status is the write's error ("write EPIPE").
local function send_status(code)
  if code == nil then return nil end
  if code == "ECANCELED" then return closed_error() end
  return Error.new({message = "write " .. code, code = code,
                    syscall = "write"})
end

local SEND_OPTIONS = {keep_open = "boolean"}

-- Frame kinds for handles (docs/wire-format.md).
local KIND = {server = 1, tcp = 2, pipe = 3}
M.KIND = KIND

local Channel = {__name = "brood.Channel"}
Channel.__index = Channel
M.Channel = Channel

--- A channel over the core channel `ch`, emitting on `owner` (an
-- emitter). `handles` converts what crosses it: `server_handle(v)` is
-- the core handle of a listening server given to send (or nil), and
-- `adopt(h, is_server)` makes a received core handle a server or socket
-- (brood.net's, supplied by the owner's module: the channel knows no
-- network class). `on_closed()` runs once the channel has closed.
function M.new(owner, ch, handles, on_closed)
  local self = setmetatable({
    connected = true,
    _ch = ch, _owner = owner, _handles = handles, _on_closed = on_closed,
    _queue = queue.new(),    -- messages nobody took yet: {msg, handle}
    _waiters = queue.new(),  -- pending recv() callers
    _holds = 0,              -- listeners and recv()s keeping the loop
    _listeners = 0,          -- "message" listeners
    _keep_alive = nil,       -- ref(): true, unref(): false, else nil
  }, Channel)
  owner.connected = true
  ch:unref()
  ch:on_drain(function() owner:emit("drain") end)
  -- core calls back (msg) for a message, (msg, handle, kind) for one with
  -- a handle, (nil, code, text) when the channel failed or ended
  ch:read_start(function(msg, a, b)
    if a == nil and self._listeners > 0 and self._waiters.length == 0 and
       self._queue.length == 0 then
      return owner:emit("message", msg)  -- the common case, straight
    end
    self:_on_frame(msg, a, b)
  end)
  return self
end

-- Keep the loop alive while someone listens or waits, unless ref() or
-- unref() said otherwise.
function Channel:_hold(delta)
  self._holds = self._holds + delta
  local ch = self._ch
  if ch == nil or ch:is_closed() then return end
  local want = self._keep_alive
  if want == nil then want = self._holds > 0 end
  if want then ch:ref() else ch:unref() end
end

--- The owner's ref() (true) or unref() (false): decides for the channel
-- whatever listens.
function Channel:keep_alive(on)
  self._keep_alive = on
  self:_hold(0)
end

--- A "message" listener was added (+1) or removed (-1) on the owner.
function Channel:listening(delta)
  self._listeners = self._listeners + delta
  self:_hold(delta)
  if delta > 0 and self._queue.length > 0 then defer(self._flush, self) end
end

--- Bytes queued for writing.
function Channel:queued()
  return self._ch and self._ch:queued() or 0
end

function Channel:_on_frame(msg, a, b)
  if type(a) == "string" then return self:_failed(a, b) end
  if a ~= nil then a = self._handles.adopt(a, b == KIND.server) end
  if self._waiters.length > 0 then
    self._waiters:shift()(msg, a)
  elseif self._owner:listener_count("message") > 0 and
         self._queue.length == 0 then  -- nothing queued before it
    self._owner:emit("message", msg, a)
  else
    self._queue:push(pack(msg, a))
  end
end

-- Deliver queued messages to the "message" listeners.
function Channel:_flush()
  local owner = self._owner
  while self._queue.length > 0 and owner:listener_count("message") > 0 do
    local m = self._queue:shift()
    owner:emit("message", m[1], m[2])
  end
end

-- EOF, or a peer that broke the protocol: close and tell. A peer that
-- went away with messages of ours unread (ECONNRESET) closed it, too.
function Channel:_failed(code, message)
  local owner = self._owner
  if code ~= "EOF" and code ~= "ECONNRESET" then
    local err = Error.new({message = "IPC channel: " .. tostring(message),
                           code = code})
    owner.channel_error = err
    -- A bad peer must not take the host down: only listeners hear of it.
    if owner:listener_count("error") > 0 then owner:emit("error", err) end
  end
  self:_close()
end

function Channel:_set_connected(on)
  self.connected, self._owner.connected = on, on
end

function Channel:_close()
  local ch = self._ch
  if ch == nil then return end
  self:_set_connected(false)
  self._ch = nil
  if not ch:is_closed() then ch:close() end
  local waiters = self._waiters:take_all()
  local err = closed_error()
  for i = 1, #waiters do waiters[i](nil, err, err.code) end
  defer(function()
    self._owner:emit("disconnect")
    if self._on_closed then self._on_closed() end
  end)
end

-- A failure to tell: to cb if given, else as the owner's "error" event.
local function report(self, err, cb)
  if cb then defer(cb, err)
  else defer(function() self._owner:emit("error", err) end) end
  return false
end

-- A send the core did not queue: a value the codec cannot carry is the
-- script's mistake, raised at its line; anything else goes to report.
local function not_sent(self, message, code, cb)
  if code == "ERR_CANNOT_ENCODE" then check.fail("send", 1, message) end
  return report(self, Error.new({message = message, code = code}), cb)
end

-- The frame kind and core handle of something given to send(): a
-- brood.net server, or a stream (TCP socket, unix socket or pipe).
local function handle_kind(self, handle)
  local server = self._handles.server_handle(handle)
  if server then return KIND.server, server end
  if not stream.is_stream(handle) or handle.closed then return nil end
  local h = handle._h
  local name = h.getsockname and h:getsockname()
  return type(name) == "table" and KIND.tcp or KIND.pipe, h
end

-- cb for the core: the user's cb gets a brood.Error; a socket or pipe
-- sent without keep_open closes on our side once on its way (Node).
local function sent_callback(handle, kind, opts, user_cb)
  if handle ~= nil and kind ~= KIND.server and
     not (opts and opts.keep_open) then
    return function(code)
      if not handle.closed then handle:destroy() end
      if user_cb then user_cb(send_status(code)) end
    end
  end
  if user_cb then return function(code) user_cb(send_status(code)) end end
  return nil
end

--- Send msg (and a handle: a brood.net server or socket, or a pipe
-- stream). Returns true while the channel's queue is under its high-water
-- mark, false above it (the message is still queued; "drain" follows).
-- cb(err) once the message is written. After disconnect: false, and
-- ERR_IPC_CHANNEL_CLOSED to cb or else an "error" event, once.
function Channel:send(msg, handle, opts, cb)
  if handle == nil and opts == nil and cb == nil and self.connected then
    local queued, full, code = self._ch:send(msg)  -- the common case
    if queued ~= nil then return not full end
    return not_sent(self, full, code)
  end
  if cb == nil and opts == nil and type(handle) == "function" then
    handle, cb = nil, handle
  elseif cb == nil and type(opts) == "function" then
    opts, cb = nil, opts
  end
  check.func("send", 4, cb, true)
  if opts ~= nil then check.options("send", 3, opts, SEND_OPTIONS) end
  if self._ch == nil or not self.connected then
    return report(self, closed_error(), cb)
  end
  local kind, h = 0, nil
  if handle ~= nil then
    kind, h = handle_kind(self, handle)
    if kind == nil then
      check.fail("send", 2, "a brood.net server or socket, or a pipe " ..
                 "stream expected")
    end
  end
  local queued, full, code = self._ch:send(msg, kind, h,
                                           sent_callback(handle, kind, opts,
                                                         cb))
  if queued == nil then  -- not queued: the callback was not taken
    return not_sent(self, full, code, cb)
  end
  return not full
end

--- Next message (a waiting operation): msg, handle; or nil, err, code
-- once the channel has closed; nil, err, "ETIMEDOUT" when `ms` run out
-- first (a later message stays for the next recv).
function Channel:recv(ms)
  if ms ~= nil then check.ms("recv", 1, ms) end
  -- first, so that it raises in a plain callback every time, and before
  -- it takes anything (a queued message, a keep-alive reference)
  must_wait()
  if self._queue.length > 0 then
    local m = self._queue:shift()
    return m[1], m[2]
  end
  if self._ch == nil then
    local err = closed_error()
    return nil, err, err.code
  end
  self:_hold(1)
  local waiter
  local r = pack(pcall(await, function(done)
    waiter = done
    self._waiters:push(done)
    return function() self._waiters:remove(done) end
  end, ms))
  self:_hold(-1)
  if not r[1] then
    -- the wait was cancelled: the next message must not go to it
    self._waiters:remove(waiter)
    error(r[2], 0)
  end
  if r[2] == tasks.TIMEDOUT then
    return Error.fail(tasks.timeout_error("recv", ms))
  end
  return unpack(r, 2, r.n)
end

--- Close the channel once everything sent so far is written; raises if
-- it is closed already. "disconnect" follows, asynchronously.
function Channel:disconnect()
  local ch = self._ch
  if ch == nil or not self.connected then
    check.raise("brood: disconnect: the IPC channel is already closed")
  end
  self:_set_connected(false)
  ch:disconnect(function() self:_close() end)
end

-- ----- owners ---------------------------------------------------------------

local function no_channel()
  check.raise("brood: no IPC channel (fork the child, or give spawn an " ..
              "'ipc' stdio entry)")
end

--- Give `class` (an emitter class whose objects hold their Channel in
-- `_channel`) send, recv and disconnect, and count its "message"
-- listeners for the channel. `send` is a plain delegation: it is hot.
function M.extend(class)
  function class:send(msg, handle, opts, cb)
    local channel = self._channel
    if channel == nil then no_channel() end
    if handle == nil and opts == nil and cb == nil and channel.connected then
      -- the common case, inline: child:send is the hot path of IPC
      local queued, full, code = channel._ch:send(msg)
      if queued ~= nil then return not full end
      return not_sent(channel, full, code)
    end
    return channel:send(msg, handle, opts, cb)
  end
  function class:recv(ms)
    local channel = self._channel
    if channel == nil then no_channel() end
    return channel:recv(ms)
  end
  function class:disconnect()
    local channel = self._channel
    if channel == nil then no_channel() end
    return channel:disconnect()
  end
  function class:_on_listen(event)
    if event == "message" and self._channel then
      self._channel:listening(1)
    end
  end
  function class:_on_unlisten(event)
    if event == "message" and self._channel then
      self._channel:listening(-1)
    end
  end
  return class
end

return M

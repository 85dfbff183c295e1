--- The IPC channel's Lua side (DESIGN §6): send, recv, "message",
-- disconnect, "disconnect", backpressure. The same methods serve a forked
-- child in the parent (`child:send`) and `brood.parent` in the child; the
-- events are emitted on that owner.
--
-- A message goes, in order of preference, to a pending recv(), to the
-- "message" listeners, or into a queue that recv() and the first
-- "message" listener drain later: no message is dropped. The channel keeps
-- the loop alive only while a "message" listener or a recv() waits.
-- @module brood.channel
local loop = require "brood.loop"
local stream = require "brood.stream"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}

local defer, await, must_wait = loop.defer, loop.await, loop.must_wait
local pack, unpack, select = table.pack, table.unpack, select

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

local net_module
local function net()
  net_module = net_module or require("brood.net")
  return net_module
end

-- The frame kind and core handle of something given to send(): a
-- brood.net server, or a stream (TCP socket, unix socket or pipe).
local function handle_kind(handle)
  if type(handle) ~= "table" then return nil end
  local mt = getmetatable(handle)
  if mt == net().Server then
    if handle._h == nil then return nil end  -- not listening
    return KIND.server, handle._h
  end
  if mt ~= stream.Stream or handle.closed then return nil end
  local h = handle._h
  local name = h.getsockname and h:getsockname()
  return type(name) == "table" and KIND.tcp or KIND.pipe, h
end

-- What a received handle becomes: a server, or a socket (a duplex Stream).
local function adopt(h, kind)
  if h == nil then return nil end
  if kind == KIND.server then return net().adopt_server(h) end
  return net().adopt_socket(h)
end

-- ----- the mixin ------------------------------------------------------------

local Mixin = {}

--- Give `owner` (an emitter) a channel over the core channel `ch`.
-- on_closed() runs once the channel is closed (child "close" waits for it).
function M.attach(owner, ch, on_closed)
  owner.connected = true
  owner._ch = ch
  owner._ch_queue, owner._ch_qhead, owner._ch_qtail = {}, 1, 0
  owner._ch_waiters = {}
  owner._ch_refs = 0
  owner._ch_listeners = 0  -- "message" listeners
  owner._ch_on_closed = on_closed
  for k, v in pairs(Mixin) do owner[k] = v end
  -- ref()/unref() also decide for the channel: kept alive (or not)
  -- whatever listens. A child's own ref/unref (process, stdio) still run.
  local own_ref, own_unref = owner.ref, owner.unref
  owner.ref = function(self)
    if own_ref then own_ref(self) end
    self._ch_forced = true
    self:_ch_ref(0)
    return self
  end
  owner.unref = function(self)
    if own_unref then own_unref(self) end
    self._ch_forced = false
    self:_ch_ref(0)
    return self
  end
  ch:unref()
  ch:on_drain(function() owner:emit("drain") end)
  -- core calls back (msg) for a message, (msg, handle, kind) for one with
  -- a handle, (nil, code, text) when the channel failed or ended
  ch:read_start(function(msg, a, b)
    if a == nil and owner._ch_listeners > 0 and #owner._ch_waiters == 0 and
       owner._ch_qhead > owner._ch_qtail then
      return owner:emit("message", msg)  -- the common case, straight
    end
    owner:_ch_frame(msg, a, b)
  end)
  local hook = owner._on_listen
  owner._on_listen = function(self, event)
    if hook then hook(self, event) end
    if event == "message" then
      self._ch_listeners = self._ch_listeners + 1
      self:_ch_ref(1)
      if self._ch_qhead <= self._ch_qtail then defer(self._ch_flush, self) end
    end
  end
  local unhook = owner._on_unlisten
  owner._on_unlisten = function(self, event)
    if unhook then unhook(self, event) end
    if event == "message" then
      self._ch_listeners = self._ch_listeners - 1
      self:_ch_ref(-1)
    end
  end
  return owner
end

-- Keep the loop alive while someone listens or waits, unless ref() or
-- unref() said otherwise.
function Mixin:_ch_ref(delta)
  self._ch_refs = self._ch_refs + delta
  local ch = self._ch
  if ch == nil or ch:is_closed() then return end
  local want = self._ch_forced
  if want == nil then want = self._ch_refs > 0 end
  if want then ch:ref() else ch:unref() end
end

function Mixin:_ch_frame(msg, a, b)
  if type(a) == "string" then return self:_ch_failed(a, b) end
  if a ~= nil then a = adopt(a, b) end
  local waiters = self._ch_waiters
  if #waiters > 0 then
    table.remove(waiters, 1)(msg, a)
  elseif self:listener_count("message") > 0 and
         self._ch_qhead > self._ch_qtail then  -- nothing queued before it
    self:emit("message", msg, a)
  else
    local t = self._ch_qtail + 1
    self._ch_qtail = t
    self._ch_queue[t] = pack(msg, a)
  end
end

-- Deliver queued messages to the "message" listeners.
function Mixin:_ch_flush()
  while self._ch_qhead <= self._ch_qtail and
        self:listener_count("message") > 0 do
    local h = self._ch_qhead
    local m = self._ch_queue[h]
    self._ch_queue[h] = nil
    self._ch_qhead = h + 1
    self:emit("message", m[1], m[2])
  end
end

-- EOF, or a peer that broke the protocol: close and tell. A peer that
-- went away with messages of ours unread (ECONNRESET) closed it, too.
function Mixin:_ch_failed(code, message)
  if code ~= "EOF" and code ~= "ECONNRESET" then
    local err = Error.new({message = "IPC channel: " .. tostring(message),
                           code = code})
    self.channel_error = err
    -- A bad peer must not take the host down: only listeners hear of it.
    if self:listener_count("error") > 0 then self:emit("error", err) end
  end
  self:_ch_close()
end

function Mixin:_ch_close()
  local ch = self._ch
  if ch == nil then return end
  self.connected = false
  self._ch = nil
  if not ch:is_closed() then ch:close() end
  local waiters = self._ch_waiters
  self._ch_waiters = {}
  local err = closed_error()
  for i = 1, #waiters do waiters[i](nil, err, err.code) end
  defer(function()
    self:emit("disconnect")
    if self._ch_on_closed then self._ch_on_closed() end
  end)
end

--- Send msg (and a handle: a brood.net server or socket, or a pipe
-- stream). Returns true while the channel's queue is under its high-water
-- mark, false above it (the message is still queued; "drain" follows).
-- cb(err) once the message is written. After disconnect: false, and
-- ERR_IPC_CHANNEL_CLOSED to cb or else an "error" event, once.
function Mixin:send(msg, handle, opts, cb)
  if handle == nil and opts == nil and cb == nil and self.connected then
    local queued, full, code = self._ch:send(msg)  -- the common case
    if queued ~= nil then return not full end
    local err = Error.new({message = full, code = code})
    defer(function() self:emit("error", err) end)
    return false
  end
  if cb == nil and opts == nil and type(handle) == "function" then
    handle, cb = nil, handle
  elseif cb == nil and type(opts) == "function" then
    opts, cb = nil, opts
  end
  if cb ~= nil and type(cb) ~= "function" then
    error(("bad argument #4 to 'send' (function expected, got %s)")
          :format(type(cb)), 2)
  end
  if opts ~= nil then
    local ok, e = pcall(check.options, "send", 3, opts, SEND_OPTIONS)
    if not ok then error((e:gsub("^.-:%d+: ", "")), 2) end  -- at the caller
  end
  local ch = self._ch
  if ch == nil or not self.connected then
    local err = closed_error()
    if cb then defer(cb, err)
    else defer(function() self:emit("error", err) end) end
    return false
  end
  local kind, h = 0, nil
  if handle ~= nil then
    kind, h = handle_kind(handle)
    if kind == nil then
      error("bad argument #2 to 'send' (a brood.net server or socket, or " ..
            "a pipe stream expected)", 2)
    end
  end
  local user_cb = cb
  local close_after = handle ~= nil and kind ~= KIND.server and
                      not (opts and opts.keep_open)
  if close_after then
    -- the sender's copy closes once the handle is on its way (Node)
    cb = function(code)
      if not handle.closed then handle:destroy() end
      if user_cb then user_cb(send_status(code)) end
    end
  elseif cb ~= nil then
    cb = function(code) user_cb(send_status(code)) end
  end
  local queued, full, code = ch:send(msg, kind, h, cb)
  if queued == nil then  -- not queued: cb was not taken
    local err = Error.new({message = full, code = code})
    if user_cb then defer(user_cb, err)
    else defer(function() self:emit("error", err) end) end
    return false
  end
  return not full
end

--- Next message (a waiting operation): msg, handle; or nil, err, code
-- once the channel has closed.
function Mixin:recv()
  -- first, so that it raises in a plain callback every time, and before
  -- it takes anything (a queued message, a keep-alive reference)
  must_wait(1)
  local h = self._ch_qhead
  if h <= self._ch_qtail then
    local m = self._ch_queue[h]
    self._ch_queue[h] = nil
    self._ch_qhead = h + 1
    return m[1], m[2]
  end
  if self._ch == nil then
    local err = closed_error()
    return nil, err, err.code
  end
  self:_ch_ref(1)
  local waiter
  local r = pack(pcall(await, function(done)
    waiter = done
    self._ch_waiters[#self._ch_waiters + 1] = done
  end))
  self:_ch_ref(-1)
  if not r[1] then
    -- the wait was cancelled: the next message must not go to it
    local waiters = self._ch_waiters
    for i = #waiters, 1, -1 do
      if waiters[i] == waiter then table.remove(waiters, i) end
    end
    error(r[2], 0)
  end
  return unpack(r, 2, r.n)
end

--- Close the channel once everything sent so far is written; raises if
-- it is closed already. "disconnect" follows, asynchronously.
function Mixin:disconnect()
  local ch = self._ch
  if ch == nil or not self.connected then
    error("brood: disconnect: the IPC channel is already closed", 2)
  end
  self.connected = false
  ch:disconnect(function() self:_ch_close() end)
end

M.KIND = KIND
return M

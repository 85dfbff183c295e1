--- A channel over a pair of byte streams instead of a socket pair: the
-- remote workers' channel (DESIGN §7, §8 `--channel=stdio`). The frames
-- are the wire format's (docs/wire-format.md): `u32 big-endian length .
-- kind . msgpack body`, kind 0 only: a byte stream that crossed ssh or
-- srun cannot carry file descriptors, so sending a handle raises.
--
-- `new(input, output, max)` makes, over two brood streams, an object with
-- the methods of the core's channel handle (send, queued, on_drain,
-- read_start, disconnect, close, is_closed, ref, unref); brood.channel
-- wraps it as it wraps the core's, so both sides get the whole Channel
-- surface (send, recv, "message", disconnect, "disconnect", backpressure)
-- from the same code. Used by brood.fork (brood.parent in a host started
-- with --channel=stdio) and brood.pool (a worker behind a launcher: its
-- stdout and stdin).
-- @module brood.stdio_channel
local loop = require "brood.loop"
local core = require "brood.core"
local check = require "brood.check"

local M = {}

local encode, decode = core.msgpack_encode, core.msgpack_decode
local spack, sunpack, concat = string.pack, string.unpack, table.concat
local defer = loop.defer

local HEADER = 5
-- Frames queued in one turn of the loop go out in one write of up to
-- this many bytes (as the core channel does).
local BATCH = 64 * 1024

local StdioChannel = {__name = "brood.StdioChannel"}
StdioChannel.__index = StdioChannel

--- A channel reading frames from `input` and writing them to `output`
-- (brood streams; they become the channel's: it closes them). `max` is
-- the largest body accepted, `hwm` the queued bytes above which send
-- reports "full".
function M.new(input, output, max, hwm)
  return setmetatable({
    _in = input, _out = output, _max = max, _hwm = hwm,
    _buf = "", _pos = 1,     -- unparsed input: _buf from _pos
    _pending = {}, _npending = 0, _pending_bytes = 0, _cbs = {},
    _flushing = false, _writing = 0,  -- bytes handed to the stream
    _want_drain = false, _closed = false, _reading = false,
  }, StdioChannel)
end

function StdioChannel:is_closed()
  return self._closed
end

function StdioChannel:ref()
  if self._closed then return end
  self._in:ref()
end

function StdioChannel:unref()
  if self._closed then return end
  self._in:unref()
end

function StdioChannel:queued()
  return self._pending_bytes + self._writing
end

function StdioChannel:on_drain(fn)
  self._drain = fn
end

-- ----- writing ------------------------------------------------------------

-- One write of everything queued this turn; the send callbacks of its
-- frames run once it is written.
function StdioChannel:_flush()
  self._flushing = false
  if self._npending == 0 or self._closed then return end
  local data = concat(self._pending, "", 1, self._npending)
  local cbs = self._cbs
  self._pending, self._npending, self._pending_bytes = {}, 0, 0
  self._cbs = {}
  local n = #data
  self._writing = self._writing + n
  local out = self._out
  local function written(err)
    self._writing = self._writing - n
    local code = err and (err.code or "EPIPE") or nil
    for i = 1, #cbs do cbs[i](code) end
    if self._want_drain and self:queued() == 0 and not self._closed then
      self._want_drain = false
      if self._drain then self._drain() end
    end
  end
  if out.closed or out.error then
    return written(out.error or {code = "ECANCELED"})
  end
  out:write(data, written)
end

--- send(msg, kind, handle, cb) -> queued bytes, full | nil, message, code
function StdioChannel:send(msg, kind, _, cb)
  if kind ~= nil and kind ~= 0 then
    check.fail("send", 2, "a handle cannot be sent over a stdio channel " ..
               "(a remote worker's: ssh or srun carry bytes only)")
  end
  if self._closed then return nil, "channel closed", "EPIPE" end
  local body = encode(msg)  -- raises "bad argument #1 to 'encode' (...)"
  if #body > 0xffffffff then
    check.fail("send", 1, "the message is too large for a frame")
  end
  local n = self._npending + 1
  self._pending[n] = spack(">I4B", #body, 0)
  self._pending[n + 1] = body
  self._npending = n + 1
  self._pending_bytes = self._pending_bytes + HEADER + #body
  if cb then self._cbs[#self._cbs + 1] = cb end
  if self._pending_bytes >= BATCH then
    self:_flush()
  elseif not self._flushing then
    self._flushing = true
    defer(self._flush, self)
  end
  local queued = self:queued()
  local full = queued >= self._hwm
  if full then self._want_drain = true end
  return queued, full
end

--- Write what is queued, then end the output (EOF for the peer); cb()
-- once that is done (or failed: the peer is gone).
function StdioChannel:disconnect(cb)
  self:_stop_reading()
  self:_flush()
  local out, done = self._out, false
  local function finished()
    if done then return end
    done = true
    if cb then cb() end
  end
  if out.closed then
    defer(finished)
  else
    out:once("finish", finished)
    out:once("close", finished)
    out:close()
  end
  return true
end

-- ----- reading ------------------------------------------------------------

function StdioChannel:_stop_reading()
  if not self._reading then return end
  self._reading = false
  self._in:off("data", self._on_data)
  self._in:off("end", self._on_end)
  self._in:off("error", self._on_error)
  self._in:pause()
end

-- Fail reading: report (nil, code, text) once and stop.
function StdioChannel:_report(code, text)
  local cb = self._cb
  self:_stop_reading()
  self._buf, self._pos = "", 1
  if cb then cb(nil, code, text) end
end

-- Deliver every complete frame in the buffer.
function StdioChannel:_parse()
  local buf, pos, cb = self._buf, self._pos, self._cb
  local len = #buf
  while self._reading and len - pos + 1 >= HEADER do
    local body, kind = sunpack(">I4B", buf, pos)
    if body > self._max then
      return self:_report("EMSGSIZE", ("the peer sent a message of %d " ..
        "bytes, over max_message_size (%d) (is something else writing to " ..
        "the worker's stdout: a login script?)"):format(body, self._max))
    end
    if kind ~= 0 then
      return self:_report("EBADMSG", kind <= 3 and
        "the peer sent a handle, which a stdio channel cannot carry" or
        "the peer sent a frame of unknown kind (is something else " ..
        "writing to the worker's stdout: a login script?)")
    end
    local stop = pos + HEADER + body - 1
    if stop > len then break end
    local v, msg = decode(buf:sub(pos + HEADER, stop))
    if msg ~= nil then
      return self:_report("EBADMSG",
                          "the peer sent malformed MessagePack: " .. msg)
    end
    pos = stop + 1
    self._pos = pos  -- the handler may stop reading, or raise
    if pos <= len and not self._rescue then
      -- frames follow: should the handler raise, they are parsed on the
      -- next turn, not left until more bytes arrive
      self._rescue = true
      defer(self._resume, self)
    end
    self._parsing = true
    cb(v)
    self._parsing = false
  end
  if pos > len then
    self._buf, self._pos = "", 1
  elseif pos > 1 then
    self._buf, self._pos = buf:sub(pos), 1
  end
end

-- After a handler raised in the middle of a chunk: parse the rest.
function StdioChannel:_resume()
  self._rescue = false
  if self._parsing then
    self._parsing = false
    if self._reading then self:_parse() end
  end
end

--- read_start(cb): cb(msg) per message; cb(nil, code, text) once at the
-- end ("EOF") or on a failure.
function StdioChannel:read_start(cb)
  self._cb = cb
  self._reading = true
  self._on_data = function(chunk)
    if self._pos > #self._buf then
      self._buf, self._pos = chunk, 1
    else
      self._buf = self._buf:sub(self._pos) .. chunk
      self._pos = 1
    end
    self:_parse()
  end
  self._on_end = function()
    if not self._reading then return end
    if self._pos <= #self._buf then
      return self:_report("EBADMSG",
        "the peer closed the channel in the middle of a message")
    end
    self:_report("EOF", "channel closed")
  end
  self._on_error = function(err)
    if not self._reading then return end
    self:_report(err.code or "EIO", "read failed")
  end
  self._in:on("data", self._on_data)
  self._in:on("end", self._on_end)
  self._in:on("error", self._on_error)
end

function StdioChannel:read_stop()
  self:_stop_reading()
end

--- Close both streams now (what is unwritten is dropped).
function StdioChannel:close()
  if self._closed then return end
  self:_stop_reading()
  self._closed = true
  local cbs = self._cbs
  self._pending, self._npending, self._pending_bytes = {}, 0, 0
  self._cbs = {}
  for i = 1, #cbs do defer(cbs[i], "ECANCELED") end
  if not self._in.closed then self._in:destroy() end
  if not self._out.closed then
    -- what is written already reaches the peer; then EOF
    if self._writing > 0 then self._out:close() else self._out:destroy() end
  end
end

--- A channel over the fds `fd_in` (read) and `fd_out` (written): the
-- host's own stdin and stdout under --channel=stdio. nil if either cannot
-- be watched (both are closed then).
function M.open_fds(fd_in, fd_out, max, hwm)
  local stream = require "brood.stream"
  local hin = core.pipe_open(loop.default, fd_in)
  local hout = hin and core.pipe_open(loop.default, fd_out)
  if not hout then
    if hin then hin:close() else core.close_fd(fd_in) end
    core.close_fd(fd_out)
    return nil
  end
  return M.new(stream.new(hin, true, false), stream.new(hout, false, true),
               max, hwm)
end

--- Give `child` (spawned with stdio {"pipe", "pipe", "pipe"}: a
-- launcher) a channel over its stdout (read) and stdin (written), as
-- brood.fork gives one over a socket pair: child:send, "message",
-- disconnect... as for a forked child.
function M.attach(child, max)
  local channel = require "brood.channel"
  local process = require "brood.process"
  local ch = M.new(child.stdout, child.stdin, max, channel.HIGH_WATER_MARK)
  child._channel = channel.new(child, ch, process.IPC_HANDLES)
  return child
end

return M

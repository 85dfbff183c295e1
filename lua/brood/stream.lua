--- Streams over brood.core stream handles (DESIGN §4): readable,
-- writable or both ("duplex").
--
-- Readable side. Reading starts at once into a buffer (up to `hwm` bytes,
-- then the pipe holds the rest: real backpressure). Data reaches, in this
-- order of preference: a pending read(), "data" listeners (flowing mode),
-- the buffer. EOF closes the fd at once; buffered data stays readable and
-- "end" is emitted when it has been consumed.
--
-- Writable side. write() returns false once the bytes queued in the
-- kernel-facing queue pass `hwm`; "drain" follows. A write error (EPIPE)
-- goes to the write's callback, else to "error" listeners; with neither it
-- is kept in `stream.error` and later writes fail with it.
-- @module brood.stream
local loop = require "brood.loop"
local tasks = require "brood.tasks"
local emitter = require "brood.emitter"
local Error = require "brood.error"
local check = require "brood.check"
local queue = require "brood.queue"

local M = {}

local READ_HWM = 64 * 1024
local WRITE_HWM = 16 * 1024
local concat = table.concat
local defer, await, must_wait = loop.defer, tasks.await, tasks.must_wait

-- "connect" is a socket's (brood.net): sockets are streams.
local Stream = emitter.extend({__name = "brood.Stream"},
  {"data", "end", "error", "close", "drain", "finish", "connect"})
Stream.__index = Stream
M.Stream = Stream

--- Is v a stream (a Stream, or a socket of brood.net)?
function M.is_stream(v)
  return getmetatable(v) == Stream or check.is_a(v, Stream)
end

--- Wrap a core stream handle. readable/writable say which sides exist;
-- `class` is Stream or a class below it (brood.net's Socket).
function M.new(handle, readable, writable, class)
  local self = setmetatable({
    _h = handle,
    readable = readable and true or false,
    writable = writable and true or false,
    closed = false,
    _buf = queue.new(), _buffered = 0,  -- chunks read, and their bytes
    _eof = not readable,
    _ended = false,
    _flowing = false, _paused = false, _collect = false,
    _reading = false,
    _readers = queue.new(),  -- pending read() callers
    _eof_waiters = {},   -- read_all() callers
    _close_waiters = {},
    _need_drain = false,
    _ending = false,     -- close() called on the writable side
    _shut = not writable,  -- write side finished
  }, class or Stream)
  if readable then self:_update_reading() end
  return self
end

local function stream_error(self, code, syscall)
  return Error.new({message = syscall .. " " .. code, code = code,
                    syscall = syscall})
end

-- ----- readable side ------------------------------------------------------

function Stream:_want_read()
  if self._eof or self.closed or self._handed then return false end
  return self._flowing or self._readers.length > 0 or self._collect or
         (not self._paused and self._buffered < READ_HWM)
end

function Stream:_update_reading()
  local want = self:_want_read()
  if want and not self._reading then
    self._reading = true
    self._h:read_start(function(chunk, code) self:_on_read(chunk, code) end)
  elseif not want and self._reading then
    self._reading = false
    self._h:read_stop()
  end
end

-- ----- handover (DESIGN §4) ------------------------------------------------
-- A readable stream given in another child's stdio is handed over: we
-- stop reading it at once, so every byte goes to that child. `_handed`
-- holds the children it went to. What we had buffered before stays ours.
-- The script takes it back by reading it explicitly (read, read_all,
-- lines, pipe, resume, a "data" listener): `_reclaim`. The owner of the
-- stream (brood.process) hears of both through `_on_handover(self)` and
-- `_on_reclaim(self)`.

--- Hand the stream over to `receiver` (a child): stop reading it.
function Stream:_hand_over(receiver)
  if not self.readable or self.closed or self._eof then return end
  local first = self._handed == nil
  self._handed = self._handed or {}
  self._handed[receiver] = true
  self:_update_reading()
  if first and self._on_handover then self:_on_handover() end
end

--- The script reads the stream again: the handover ends.
function Stream:_reclaim()
  if self._handed == nil then return end
  self._handed = nil
  if self._on_reclaim then self:_on_reclaim() end
  if not self.closed then self:_update_reading() end
end

--- `receiver` has exited: it reads no more. True when it was the last
-- child holding the stream (the handover has then ended).
function Stream:_receiver_gone(receiver)
  local handed = self._handed
  if handed == nil or not handed[receiver] then return false end
  handed[receiver] = nil
  if next(handed) ~= nil then return false end
  self:_reclaim()
  return true
end

function Stream:_push(chunk)
  self._buf:push(chunk)
  self._buffered = self._buffered + #chunk
end

function Stream:_shift()
  local chunk = self._buf:shift()
  if chunk ~= nil then self._buffered = self._buffered - #chunk end
  return chunk
end

-- Everything buffered, taken out as one string.
function Stream:_take_buffered()
  self._buffered = 0
  return concat(self._buf:take_all())
end

function Stream:_on_read(chunk, code)
  if chunk ~= nil then
    local readers = self._readers
    if readers.length > 0 then
      readers:shift()(chunk)
    elseif self._flowing then
      self:emit("data", chunk)
    else
      self:_push(chunk)
    end
    if not self.closed then self:_update_reading() end
    return
  end
  -- EOF or a read error: the fd is done with either way.
  self._eof = true
  self._reading = false
  if code ~= nil then
    self.error = stream_error(self, code, "read")
    if self:listener_count("error") > 0 then self:emit("error", self.error) end
  end
  self:_wake_at_eof()
  self:_maybe_end()
  if self._shut then
    self:_close_handle()
  elseif not self._ending and not self.closed then
    -- The peer is done ("duplex"): end our side too once the queued
    -- writes are out, as Node's sockets do (allowHalfOpen = false);
    -- else the stream, and so the child's "close", would wait forever.
    self:close()
  end
end

-- EOF: a pending read() gets nil, a pending read_all() returns.
function Stream:_wake_at_eof()
  local readers = self._readers:take_all()
  for i = 1, #readers do readers[i](nil) end
  local waiters = self._eof_waiters
  self._eof_waiters = {}
  for i = 1, #waiters do waiters[i]() end
end

function Stream:_maybe_end()
  if self._eof and not self._ended and self._buf.length == 0 and
     self.readable then
    self._ended = true
    self:emit("end")
  end
end

function Stream:_flow()
  -- after EOF the fd is closed but the buffer still holds data to deliver
  while self._flowing do
    local chunk = self:_shift()
    if chunk == nil then break end
    self:emit("data", chunk)
  end
  if self._flowing then self:_maybe_end() end
  self:_update_reading()
end

function Stream:_on_listen(event)
  if event == "data" then
    self:_reclaim()
    if not self._paused and not self._flowing then self:resume() end
  end
end

--- Flowing mode: "data" events (starts by itself on the first "data"
-- listener).
function Stream:resume()
  self:_reclaim()
  self._flowing, self._paused = true, false
  defer(self._flow, self)
  return self
end

--- Stop "data" events and reading: the child blocks once the pipe fills.
function Stream:pause()
  self._flowing, self._paused = false, true
  if self.readable then self:_update_reading() end
  return self
end

function Stream:is_paused()
  return self._paused
end

--- Next chunk (a waiting operation); nil at EOF; nil, err, code after a
-- read error; nil, err, "ETIMEDOUT" when `ms` run out first (whatever
-- arrives later stays for the next read).
function Stream:read(ms)
  if ms ~= nil then check.ms("read", 1, ms) end
  must_wait()
  if not self.readable then
    check.raise("brood.Stream: read() on a stream that is not readable")
  end
  self:_reclaim()
  local chunk = self:_shift()
  if chunk ~= nil then
    self:_update_reading()
    self:_maybe_end()
    return chunk
  end
  if not self._eof then
    chunk = await(function(done)
      self._readers:push(done)
      self:_update_reading()
      return function()
        self._readers:remove(done)
        if not self.closed and self.readable then self:_update_reading() end
      end
    end, ms)
    if chunk == tasks.TIMEDOUT then
      return Error.fail(tasks.timeout_error("stream:read", ms))
    end
    if chunk ~= nil then return chunk end
  end
  self:_maybe_end()
  if self.error then return Error.fail(self.error) end
  return nil
end

--- Everything up to EOF as one string (a waiting operation); nil, err,
-- code after a read error.
function Stream:read_all()
  must_wait()
  if not self.readable then
    check.raise("brood.Stream: read_all() on a stream that is not readable")
  end
  self:_reclaim()
  self._collect = true
  if not self._eof then
    await(function(done)
      self._eof_waiters[#self._eof_waiters + 1] = done
      self:_update_reading()
      return function()
        local w = self._eof_waiters
        for i = #w, 1, -1 do
          if w[i] == done then table.remove(w, i) end
        end
      end
    end)
  end
  local all = self:_take_buffered()
  self:_maybe_end()
  if self.error then return Error.fail(self.error) end
  return all
end

--- Read everything into the buffer from now on, ignoring the high-water
-- mark (child:wait() uses it so an unread pipe cannot block the child).
function Stream:_drain()
  if self.readable and not self._flowing and not self._handed then
    self._collect = true
    self:_update_reading()
  end
end

--- Iterator over lines (without "\n"); the last line may lack one.
-- Linear in the input: each chunk is scanned from a position, never
-- copied again per line; a line spread over chunks is joined once.
function Stream:lines()
  local chunk, pos = "", 1  -- the current chunk and where its rest starts
  local parts = {}          -- the start of a line begun in earlier chunks
  return function()
    must_wait()
    while true do
      local nl = chunk:find("\n", pos, true)
      if nl then
        local line = chunk:sub(pos, nl - 1)
        pos = nl + 1
        if #parts > 0 then
          parts[#parts + 1] = line
          line = concat(parts)
          parts = {}
        end
        return line
      end
      if pos <= #chunk then parts[#parts + 1] = chunk:sub(pos) end
      -- kept in parts now: a read that raises (a cancelled task) must not
      -- leave it in chunk too, or the next step would take it twice
      chunk, pos = "", 1
      chunk = self:read()
      if chunk == nil then
        chunk = ""
        if #parts > 0 then
          local line = concat(parts)
          parts = {}
          return line
        end
        return nil
      end
    end
  end
end

--- Send everything to `dest` (a writable), respecting its backpressure;
-- closes dest at EOF unless opts.close == false. Returns dest.
function Stream:pipe(dest, opts)
  if type(dest) ~= "table" or type(dest.write) ~= "function" or
     dest.writable == false then  -- (a brood stream's read side)
    check.fail("pipe", 1, "writable stream expected")
  end
  self:on("data", function(chunk)
    if dest:write(chunk) == false then
      self:pause()
      dest:once("drain", function() self:resume() end)
    end
  end)
  if not (opts and opts.close == false) then
    self:once("end", function() dest:close() end)
  end
  return dest
end

-- ----- writable side ------------------------------------------------------

local function deliver_write_error(self, err, cb)
  self.error = self.error or err
  if cb then cb(err)
  elseif self:listener_count("error") > 0 then self:emit("error", err) end
end

-- The callback of one core write: cb(err) and "drain", or the failure.
local function on_written(self, cb, errcode)
  if errcode ~= nil then
    if errcode ~= "ECANCELED" then
      deliver_write_error(self, stream_error(self, errcode, "write"), cb)
      self:destroy()
    elseif self._gone and cb then
      -- queued when the child went (_peer_gone): it gets EPIPE too
      cb(self.error)
    end
    return
  end
  if cb then cb(nil) end
  if self._need_drain and not self.closed and
     self._h:write_queue_size() == 0 then
    self._need_drain = false
    self:emit("drain")
  end
end

-- Why a write cannot be queued (a failure before, or the end), or nil.
local function write_refused(self)
  local err = self.error
  if err == nil and (self._ending or self.closed) then
    err = Error.new({message = "write after end",
                     code = "ERR_STREAM_WRITE_AFTER_END"})
  end
  return err
end

--- Queue data for writing: true while under the high-water mark, false
-- above it ("drain" follows); `cb(err)` once written. Returns nil, err,
-- code when the stream failed or ended before.
function Stream:write(data, cb)
  if not self.writable then
    check.raise("brood.Stream: write() on a stream that is not writable")
  end
  if type(data) ~= "string" then
    check.fail("write", 1, ("string expected, got %s"):format(type(data)))
  end
  check.func("write", 2, cb, true)
  local err = write_refused(self)
  if err == nil then
    local ok, msg, code = self._h:write(data, function(errcode)
      on_written(self, cb, errcode)
    end)
    if ok then
      if self._h:write_queue_size() < WRITE_HWM then return true end
      self._need_drain = true
      return false
    end
    err = Error.from_core("write", msg, code, {syscall = "write"})
    self.error = err
    self:destroy()
  end
  if cb then defer(cb, err) end
  return Error.fail(err)
end

--- Bytes queued and not yet handed to the kernel.
function Stream:pending_bytes()
  if self.closed then return 0 end
  return self._h:write_queue_size()
end

--- Writable side: write `data` if given, flush, then send EOF ("finish");
-- the stream closes when both sides are done. Readable only: stop
-- reading and close now.
function Stream:close(data, cb)
  if type(data) == "function" and cb == nil then data, cb = nil, data end
  if self.closed then
    if cb then defer(cb) end
    return self
  end
  if not self.writable then
    self:destroy()
    if cb then self:_when_closed(cb) end
    return self
  end
  if data ~= nil then self:write(data) end
  if cb then self:_when_closed(cb) end
  if self._ending then return self end
  self._ending = true
  if self.closed then return self end
  local ok = self._h:shutdown(function()
    self._shut = true
    self:emit("finish")
    if self._eof then self:_close_handle() end
  end)
  if not ok then self:destroy() end
  return self
end

function Stream:_when_closed(fn)
  if self.closed then defer(fn) return end
  self._close_waiters[#self._close_waiters + 1] = fn
end

function Stream:_close_handle()
  if self.closed then return end
  self.closed = true
  self._reading = false
  self._h:close(function()
    local waiters = self._close_waiters
    self._close_waiters = {}
    self:emit("close")
    for i = 1, #waiters do waiters[i]() end
  end)
  -- a read() or read_all() waiting for data gets EOF
  if not self._eof then
    self._eof = true
    self:_wake_at_eof()
  end
end

--- Close at once: unread data and unwritten bytes are dropped.
function Stream:destroy()
  self._ending = true
  self._shut = true
  self:_take_buffered()
  self:_close_handle()
  return self
end

--- The OS fd under the stream (e.g. to pass it as another child's stdio).
function Stream:fileno()
  if self.closed then return nil end
  return self._h:fileno()
end

function Stream:ref()
  if not self.closed then self._h:ref() end
end

function Stream:unref()
  if not self.closed then self._h:unref() end
end

--- Stop reading and close the fd, keeping what is buffered: it stays
-- readable, then EOF (a child's pipes held by an escaped descendant).
function Stream:_give_up()
  if self.closed then return end
  self:_close_handle()
  self:_maybe_end()
end

--- The process at the other end has gone (brood.process, when a child
-- has exited and closed): nobody will read what we write. Later writes
-- fail with EPIPE, as they would had the fd stayed open; a write the
-- script ended itself (close()) keeps ERR_STREAM_WRITE_AFTER_END.
function Stream:_peer_gone()
  if self.closed then return end
  if not self._ending and self.error == nil then
    self.error = stream_error(self, "EPIPE", "write")
    self._gone = true
  end
  self:destroy()
end

-- A public method called with a dot (stream.write(x)) raises at the
-- caller's line.
check.methods(Stream, "stream", {"resume", "pause", "is_paused", "read",
  "read_all", "lines", "pipe", "write", "pending_bytes", "close", "destroy",
  "fileno", "ref", "unref", "on", "once", "off"})

return M

--- The worker side of the pool (DESIGN §7): brood.worker(fn) serves the
-- tasks a brood.pool sends over brood.parent, one brood task each (so fn
-- may wait: exec, sleep, recv...), and answers with fn's result or the
-- error it raised. The wire format is in docs/wire-format.md ("The pool").
-- @module brood.worker
local brood = require "brood"

local await = require("brood.tasks").await

local M = {}

local type, xpcall, pcall, tostring = type, xpcall, pcall, tostring
local math_type, traceback = math.type, debug.traceback

local serving = false

-- What a task's error becomes on the wire: the message as raised (with
-- its "file:line:" when it was a string raised by error()), the worker's
-- traceback, and an error object that is not a string as it is (`value`;
-- dropped if the codec cannot carry it). The message of such an object
-- is what lua5.4 would print: its `message` field, its __tostring, a
-- number's digits, or "(error object is a <type> value)".
local function wire_error(e)
  local message
  local kind = type(e)
  if kind == "string" then
    message = e
  elseif kind == "table" and type(e.message) == "string" then
    message = e.message
  elseif kind == "number" then
    message = tostring(e)
  else
    local mt = getmetatable(e)
    local ok, s = false, nil
    if type(mt) == "table" and mt.__tostring ~= nil then
      ok, s = pcall(tostring, e)
    end
    message = ok and type(s) == "string" and s or
              ("(error object is a " .. kind .. " value)")
  end
  -- the frames below fn (this module, the loop) are no business of the
  -- task's author
  local tb = traceback(message, 2)
  tb = tb:match("^(.-)\n\t%[C%]: in function 'xpcall'") or tb
  local wire = {message = message, traceback = tb}
  if kind ~= "string" then wire.value = e end
  return wire
end

-- run(id, task): fn(task) and its answer to the pool, [id, true, result]
-- or [id, false, {message, traceback}].
local function answerer(fn, parent)
  local send = parent.send
  local reply = {0, true, nil}  -- reused: send encodes it at once
  return function(id, task)
    local ok, result = xpcall(fn, wire_error, task)
    if not parent.connected then return end  -- the pool let go meanwhile
    if ok then
      reply[1], reply[3] = id, result
      local sent, e = pcall(send, parent, reply)
      reply[3] = nil
      if sent then return end
      result = {message = "brood.worker: the task's result cannot be sent " ..
                          "to the pool: " .. (tostring(e):match(
                            "bad argument #%d+ to '[^']*' %((.*)%)$") or
                            tostring(e))}
    end
    local failed = {id, false, result}
    if result.value == nil or not pcall(send, parent, failed) then
      result.value = nil  -- the codec cannot carry the error object
      send(parent, failed)
    end
  end
end

-- The "message" handler: each task goes to a runner, a brood task that
-- takes tasks off a queue, so that fn may wait (a runner that waits
-- leaves the queue to the others, and a new one starts when none is
-- free). Resuming a parked runner costs far less than a brood.go per task.
local function dispatcher(run)
  local ids, tasks, head, tail = {}, {}, 1, 0
  local parked, nparked = {}, 0
  local go = brood.go

  local function park(wake)
    nparked = nparked + 1
    parked[nparked] = wake
  end

  local function runner()
    while true do
      while head <= tail do
        local h = head
        local id, task = ids[h], tasks[h]
        ids[h], tasks[h] = nil, nil
        head = h + 1
        run(id, task)
      end
      head, tail = 1, 0
      await(park)
    end
  end

  return function(msg)
    if type(msg) ~= "table" or math_type(msg[1]) ~= "integer" then return end
    local t = tail + 1
    tail = t
    ids[t], tasks[t] = msg[1], msg[2]
    if nparked > 0 then
      local wake = parked[nparked]
      parked[nparked] = nil
      nparked = nparked - 1
      wake()
    else
      go(runner)
    end
  end
end

--- brood.worker(fn): serve the pool that started this script; fn(task)
-- returns the task's result. Returns at once: the tasks arrive from the
-- loop (the host runs it after the script), until the pool lets go.
function M.worker(fn)
  if type(fn) ~= "function" then
    error(("bad argument #1 to 'worker' (function expected, got %s)")
          :format(fn == nil and "no value" or type(fn)), 2)
  end
  local parent = brood.parent
  if parent == nil then
    error("brood.worker: this script was not started by a pool " ..
          "(brood.parent is nil)", 2)
  end
  if serving then
    error("brood.worker: this worker already serves its pool", 2)
  end
  serving = true
  parent:on("message", dispatcher(answerer(fn, parent)))
  -- a send after the pool closed the channel: nothing to tell anyone
  parent:on("error", function() end)
  parent:send({0})  -- ready
end

return M

--- Events in the style of Node's EventEmitter: on, once, off, emit.
-- An "error" emitted with no listener is raised, as in Node.js, so it
-- ends the loop unless something handles it.
-- @module brood.emitter
local Error = require "brood.error"
local check = require "brood.check"

local M = {}

local Emitter = {}
Emitter.__index = Emitter
M.Emitter = Emitter

local function check_listener(self, fname, event, fn)
  if type(event) ~= "string" then
    check.fail(fname, 1, ("string expected, got %s"):format(type(event)))
  end
  local known = self._known_events
  if known ~= nil and not known[event] then
    check.fail(fname, 1, check.unknown("event", event, known))
  end
  check.func(fname, 2, fn)
end

local function add(self, event, fn, once)
  local all = self._events
  if all == nil then all = {}; self._events = all end
  local list = all[event]
  if list == nil then list = {}; all[event] = list end
  list[#list + 1] = {fn = fn, once = once}
  local hook = self._on_listen
  if hook then hook(self, event) end
  return self
end

--- Call fn(...) on every `event`.
function Emitter:on(event, fn)
  check_listener(self, "on", event, fn)
  return add(self, event, fn, false)
end

--- Call fn(...) on the next `event` only.
function Emitter:once(event, fn)
  check_listener(self, "once", event, fn)
  return add(self, event, fn, true)
end

--- Remove fn from `event` (all listeners of `event` when fn is nil).
-- An owner may set `_on_listen(self, event)` and `_on_unlisten(self,
-- event)` to hear of each listener added and removed.
function Emitter:off(event, fn)
  local list = self._events and self._events[event]
  if list == nil then return self end
  local hook = self._on_unlisten
  if fn == nil then
    self._events[event] = nil
    for i = 1, #list do list[i].removed = true end
    if hook then for _ = 1, #list do hook(self, event) end end
    return self
  end
  for i = #list, 1, -1 do
    if list[i].fn == fn then
      list[i].removed = true  -- an emit in progress must not call it
      table.remove(list, i)
      if hook then hook(self, event) end
      break
    end
  end
  return self
end

function Emitter:listener_count(event)
  local list = self._events and self._events[event]
  return list and #list or 0
end

--- Call the listeners of `event` in order; true if there were any.
-- Listeners added or removed meanwhile take effect from the next emit,
-- except that a once listener removed meanwhile does not run.
function Emitter:emit(event, ...)
  local list = self._events and self._events[event]
  if list == nil or #list == 0 then
    if event == "error" then
      local err = ...
      if err == nil then  -- Node's ERR_UNHANDLED_ERROR: never raise nil
        err = Error.new({message = "Unhandled error.",
                         code = "ERR_UNHANDLED_ERROR"})
      end
      error(err, 0)
    end
    return false
  end
  local n = #list
  if n == 1 and not list[1].once then  -- the common case: no copy
    list[1].fn(...)
    return true
  end
  local snapshot = table.move(list, 1, n, 1, {})
  local hook = self._on_unlisten
  for i = 1, n do
    local l = snapshot[i]
    -- A once listener that an earlier one removed meanwhile does not run
    -- (nor count as removed twice); plain listeners removed meanwhile
    -- still run this time, as in Node.js.
    if not (l.once and l.removed) then
      if l.once then
        l.removed = true
        for j = 1, #list do
          if list[j] == l then table.remove(list, j) break end
        end
        if hook then hook(self, event) end
      end
      l.fn(...)
    end
  end
  return true
end

--- Make `class` (a metatable whose __index is itself) inherit Emitter.
-- With `events` (a list of names), on and once raise for any other
-- event name: a misspelt event would otherwise never fire.
function M.extend(class, events)
  for k, v in pairs(Emitter) do
    if k ~= "__index" and class[k] == nil then class[k] = v end
  end
  if events then
    local known = {}
    for _, name in ipairs(events) do known[name] = true end
    class._known_events = known
  end
  return class
end

return M

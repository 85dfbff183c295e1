--- brood.msgpack: the channel's codec (DESIGN §6), for direct use.
-- encode(v) -> string (raises for what cannot be encoded: functions,
-- threads, userdata, cycles, nesting deeper than 128); decode(s) -> value
-- | nil, err, "EBADMSG". array(t) marks t (even empty) as an array.
-- @module brood.msgpack
local core = require "brood.core"
local Error = require "brood.error"
local check = require "brood.check"

local M = {}
local marks = core.array_marks

-- encode is the C function itself: it raises "bad argument #1 to
-- 'encode' (...)" on its own, and a Lua wrapper would cost a call.
M.encode = core.msgpack_encode

local decode = core.msgpack_decode
function M.decode(s)
  local v, msg, code = decode(s)
  if msg ~= nil then
    return nil, Error.new({message = msg, code = code}), code
  end
  return v
end

--- Mark t as an array for the codec (an empty table is a map otherwise).
function M.array(t)
  if type(t) ~= "table" then
    check.fail("array", 1, ("table expected, got %s"):format(type(t)))
  end
  marks[t] = true
  return t
end

return M

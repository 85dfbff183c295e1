--- brood.msgpack: the channel's codec (DESIGN §6), for direct use.
-- encode(v) -> string (raises for what cannot be encoded: functions,
-- threads, userdata, cycles, nesting deeper than 128); decode(s) -> value
-- | nil, err, "EBADMSG". array(t) marks t (even empty) as an array.
-- @module brood.msgpack
local core = require "brood.core"
local Error = require "brood.error"

local M = {}
local marks = core.array_marks

function M.encode(v)
  local ok, s = pcall(core.msgpack_encode, v)
  if not ok then
    error(("bad argument #1 to 'encode' (%s)"):format(
      (tostring(s):gsub("^brood%.msgpack%.encode: ", ""))), 2)
  end
  return s
end

function M.decode(s)
  if type(s) ~= "string" then
    error(("bad argument #1 to 'decode' (string expected, got %s)")
          :format(type(s)), 2)
  end
  local v, msg, code = core.msgpack_decode(s)
  if msg ~= nil then
    return nil, Error.new({message = msg, code = code}), code
  end
  return v
end

--- Mark t as an array for the codec (an empty table is a map otherwise).
function M.array(t)
  if type(t) ~= "table" then
    error(("bad argument #1 to 'array' (table expected, got %s)")
          :format(type(t)), 2)
  end
  marks[t] = true
  return t
end

return M

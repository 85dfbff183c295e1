--- brood.Error: what operational failures return (DESIGN §2).
-- A table with `message` and `code` (a string such as "ENOENT", or an
-- exit code for exec failures) and, where they apply, `errno`, `syscall`,
-- `path`, `spawnargs`, `cmd`, `signal`, `killed`, `stdout`, `stderr`.
-- `tostring(err)` is the message.
-- @module brood.error
local M = {}

local Error = {__name = "brood.Error"}
Error.__index = Error
Error.__tostring = function(e) return e.message end
M.Error = Error

--- Make an error from a table of fields (message and code at least).
function M.new(fields)
  return setmetatable(fields, Error)
end

--- Is v a brood.Error?
function M.is(v)
  return getmetatable(v) == Error
end

--- The error for a core failure: `msg` is core's "CODE: description".
-- @param context what was being done ("write", "spawn 'ls'")
function M.from_core(context, msg, code, fields)
  local e = fields or {}
  e.message = context and (context .. ": " .. tostring(msg)) or tostring(msg)
  e.code = code
  return setmetatable(e, Error)
end

--- Return `nil, err, err.code`: the shape of every operational failure.
function M.fail(err)
  return nil, err, err.code
end

return M

--- Argument checks: caller mistakes raise at once, naming the function and
-- the argument (DESIGN §2), in the wording of Lua's own luaL_argerror.
--
-- Every check raises at the script's line: the first caller on the stack
-- that is not one of brood's own modules. So a check may sit at any depth
-- inside brood (spawn's option checks serve exec, fork and the sync
-- variants) and no function counts levels; nothing catches an error to
-- raise it again, so other errors keep their own traceback.
-- @module brood.check
local core = require "brood.core"

local M = {}

local type, math_type, floor, huge = type, math.type, math.floor, math.huge
local format, getinfo, getmetatable = string.format, debug.getinfo,
  getmetatable

-- The chunk name prefix of brood's modules: this file's directory.
local HOME = debug.getinfo(1, "S").source:match("^(@.*[/\\])check%.lua$")

local function is_brood(source)
  if HOME == nil then  -- loaded from a string: name them by their form
    return source:find("brood[/\\][%w_]+%.lua$") ~= nil
  end
  return source:sub(1, #HOME) == HOME
end

--- Raise `msg` at the script's line (the first caller outside brood).
-- Only on the error path: walking the stack costs nothing otherwise.
function M.raise(msg)
  local level = 2  -- raise's caller, as error() counts (1: raise itself)
  while true do
    local info = getinfo(level, "S")
    if info == nil or not is_brood(info.source) then break end
    level = level + 1
  end
  error(msg, level)
end
local raise = M.raise

--- "bad argument #n to 'fname' (msg)", raised at the script's line.
function M.fail(fname, n, msg)
  raise(format("bad argument #%d to '%s' (%s)", n, fname, msg))
end
local fail = M.fail

--- v must be of Lua type `tname` (or nil when optional).
function M.arg(fname, n, v, tname, optional)
  if v == nil and optional then return v end
  if type(v) ~= tname then
    fail(fname, n, format("%s expected, got %s", tname,
                          v == nil and "no value" or type(v)))
  end
  return v
end

--- A string without NUL bytes (they cannot reach exec).
function M.cstring(fname, n, v, what)
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then
    fail(fname, n, format("%s must be a string, got %s", what, type(v)))
  end
  if v:find("\0", 1, true) then
    fail(fname, n, format("%s must not contain NUL bytes", what))
  end
  return v
end

--- A whole number of milliseconds or bytes >= 0 (math.huge allowed when
-- `allow_huge`); nil stays nil.
function M.count(fname, n, v, what, allow_huge)
  if v == nil then return nil end
  if type(v) ~= "number" then
    fail(fname, n, format("option '%s' must be a number, got %s", what,
                          type(v)))
  end
  if allow_huge and v == huge then return v end
  if v ~= v or v < 0 or v == huge or floor(v) ~= v then
    fail(fname, n, format("option '%s' must be a whole number >= 0, got %s",
                          what, tostring(v)))
  end
  return math_type(v) == "float" and floor(v) or v
end

--- A duration in milliseconds: a finite number >= 0.
function M.ms(fname, n, v)
  if type(v) ~= "number" then
    fail(fname, n, format("number expected, got %s",
                          v == nil and "no value" or type(v)))
  end
  if v ~= v or v < 0 or v == huge then
    fail(fname, n, format("milliseconds >= 0 expected, got %s", tostring(v)))
  end
  return v
end

--- A signal name or number, as its number.
function M.signal(fname, n, sig)
  local t = type(sig)
  if t ~= "string" and t ~= "number" then
    fail(fname, n, format("signal name or number expected, got %s",
                          sig == nil and "no value" or t))
  end
  local ok, num = pcall(core.signum, sig)
  if not ok then
    fail(fname, n, format("unknown signal '%s'", tostring(sig)))
  end
  return num
end

-- Edit distance (insertions, deletions, substitutions; a swap of two
-- neighbours counts one), for "did you mean" suggestions.
local function distance(a, b)
  local prev2, prev, cur = nil, {}, nil
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur = {[0] = i}
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and
         a:byte(i - 1) == b:byte(j) then
        d = math.min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev = prev, cur
  end
  return prev[#b]
end

-- "killSignal" -> "kill_signal", "Kill-Signal" -> "kill_signal"
local function snake(name)
  return (name:gsub("(%l)(%u)", "%1_%2"):gsub("%-", "_"):lower())
end

--- The known name closest to `name` (as written in another case style,
-- or a typo of at most a third of its letters), or nil.
function M.closest(name, known)
  if type(name) ~= "string" then return nil end
  local want = snake(name)
  local best, best_d
  for k in pairs(known) do
    if type(k) == "string" then
      local d = k == want and 0 or distance(want, k)
      if d <= math.max(1, #k // 3) and (best_d == nil or d < best_d or
         (d == best_d and k < best)) then
        best, best_d = k, d
      end
    end
  end
  return best
end

--- "unknown option 'x'" with a suggestion when one is close.
function M.unknown(what, name, known)
  local msg = format("unknown %s '%s'", what, tostring(name))
  local near = M.closest(name, known)
  if near then msg = msg .. format(" (did you mean '%s'?)", near) end
  return msg
end

--- Is `v` an object of `class`, or of a class below it? A class names
-- the class it extends in its `__parent` field.
function M.is_a(v, class)
  local mt = getmetatable(v)
  while mt ~= nil do
    if mt == class then return true end
    mt = type(mt) == "table" and rawget(mt, "__parent") or nil
  end
  return false
end
local is_a = M.is_a

--- Guard the methods `names` of `class`: one called with a dot
-- (child.wait() rather than child:wait()) raises "use child:wait(), not
-- child.wait()" (`what` names the object). Objects of classes below
-- `class` pass. A call through the guard costs one compare and a tail
-- call; hot methods that need neither (child:send) are left unguarded.
function M.methods(class, what, names)
  for _, name in ipairs(names) do
    local method = class[name]
    assert(type(method) == "function", name)
    class[name] = function(self, ...)
      if getmetatable(self) ~= class and not is_a(self, class) then
        raise(format("use %s:%s(), not %s.%s()", what, name, what, name))
      end
      return method(self, ...)
    end
  end
  return class
end

--- v must be a function (or nil when optional): "function expected, got
-- nil" names nil as passed, as the callbacks' checks always have.
function M.func(fname, n, v, optional)
  if v == nil and optional then return v end
  if type(v) ~= "function" then
    fail(fname, n, format("function expected, got %s", type(v)))
  end
  return v
end

local validators = {
  string = function(v) return type(v) == "string" end,
  number = function(v) return type(v) == "number" end,
  boolean = function(v) return type(v) == "boolean" end,
  table = function(v) return type(v) == "table" end,
  ["function"] = function(v) return type(v) == "function" end,
  integer = function(v) return math_type(v) == "integer" or
                               (type(v) == "number" and floor(v) == v) end,
  signal = function(v) return type(v) == "string" or type(v) == "number" end,
  any = function() return true end,
}

--- opts must be nil or a table whose keys are all in `spec` (a map of
-- option name to "type" or "type|type"). Returns opts or {}.
function M.options(fname, n, opts, spec)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    fail(fname, n, format("options table expected, got %s", type(opts)))
  end
  for k, v in pairs(opts) do
    local want = spec[k]
    if want == nil then
      fail(fname, n, M.unknown("option", k, spec))
    end
    local ok = false
    for t in want:gmatch("[^|]+") do
      if validators[t](v) then ok = true break end
    end
    if not ok then
      fail(fname, n, format("option '%s' must be %s, got %s", k,
                            want:gsub("|", " or "), type(v)))
    end
  end
  return opts
end

return M

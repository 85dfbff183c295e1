--- Argument checks: caller mistakes raise at once, naming the function and
-- the argument (DESIGN §2), in the wording of Lua's own luaL_argerror.
-- @module brood.check
local M = {}

local type, math_type, floor, huge = type, math.type, math.floor, math.huge
local format = string.format

local function fail(fname, n, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), (level or 2) + 1)
end
M.fail = fail

--- v must be of Lua type `tname` (or nil when optional).
function M.arg(fname, n, v, tname, optional)
  if v == nil and optional then return v end
  if type(v) ~= tname then
    fail(fname, n, format("%s expected, got %s", tname,
                          v == nil and "no value" or type(v)), 2)
  end
  return v
end

--- A string without NUL bytes (they cannot reach exec).
function M.cstring(fname, n, v, what)
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then
    fail(fname, n, format("%s must be a string, got %s", what, type(v)), 2)
  end
  if v:find("\0", 1, true) then
    fail(fname, n, format("%s must not contain NUL bytes", what), 2)
  end
  return v
end

--- A whole number of milliseconds or bytes >= 0 (math.huge allowed when
-- `allow_huge`); nil stays nil.
function M.count(fname, n, v, what, allow_huge)
  if v == nil then return nil end
  if type(v) ~= "number" then
    fail(fname, n, format("option '%s' must be a number, got %s", what,
                          type(v)), 2)
  end
  if allow_huge and v == huge then return v end
  if v ~= v or v < 0 or v == huge or floor(v) ~= v then
    fail(fname, n, format("option '%s' must be a whole number >= 0, got %s",
                          what, tostring(v)), 2)
  end
  return math_type(v) == "float" and floor(v) or v
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

--- Raise unless `self` is an object of `class`: a method called with a
-- dot (child.wait()) rather than a colon. `what` names the object
-- ("child"), `method` the method; raised at the caller of the method.
function M.self(self, class, what, method)
  if getmetatable(self) ~= class then
    error(format("use %s:%s(), not %s.%s()", what, method, what, method), 3)
  end
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
    fail(fname, n, format("options table expected, got %s", type(opts)), 2)
  end
  for k, v in pairs(opts) do
    local want = spec[k]
    if want == nil then
      fail(fname, n, M.unknown("option", k, spec), 2)
    end
    local ok = false
    for t in want:gmatch("[^|]+") do
      if validators[t](v) then ok = true break end
    end
    if not ok then
      fail(fname, n, format("option '%s' must be %s, got %s", k,
                            want:gsub("|", " or "), type(v)), 2)
    end
  end
  return opts
end

local pack, unpack = table.pack, table.unpack

local function at_caller(ok, ...)
  if ok then return pack(...) end
  local e = ...
  if type(e) == "string" then
    local msg = e:match("^[^\n]-:%d+: (bad argument #%d+ to .*)$")
    if msg then error(msg, 3) end  -- at_caller, the entry, its caller
  end
  error(e, 0)
end

--- Wrap a public function: a caller mistake raised anywhere inside it
-- ("bad argument #n to 'f' (...)") is raised again at the caller's line,
-- not at the line deep in brood that found it; other errors pass as they
-- are. (Not a tail call, so that the entry's frame stays counted.)
function M.entry(fn)
  return function(...)
    local r = at_caller(pcall(fn, ...))
    return unpack(r, 1, r.n)
  end
end

return M

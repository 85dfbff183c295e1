-- Editor types and packaging (issue 13 items 6 and 8): types/brood.lua
-- has a definition for every public name of brood and defines nothing
-- that does not exist; the host's -v and the man page.
local H = require "spec.helper"
local brood = H.brood

local function slurp(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

local TYPES = slurp("types/brood.lua")

-- Names defined for a LuaLS class: its `---@field`s (optional ones
-- apart) and the functions of the local that follows the class.
local function class_defs(class)
  local fields, optional, methods = {}, {}, {}
  local block = TYPES:match("\n%-%-%-@class " .. class:gsub("%.", "%%.") ..
                            "%f[^%w_%.][^\n]*\n(.-)local (%w+) = {}")
  local var = TYPES:match("\n%-%-%-@class " .. class:gsub("%.", "%%.") ..
                          "%f[^%w_%.][^\n]*\n.-local (%w+) = {}")
  assert(var, "no class " .. class)
  for line in (block .. "\n"):gmatch("([^\n]*)\n") do
    local name, opt = line:match("^%-%-%-@field ([%w_]+)(%??)")
    if name then
      if opt == "?" then optional[name] = true else fields[name] = true end
    end
  end
  for name in TYPES:gmatch("\nfunction " .. var .. "[.:]([%w_]+)%(") do
    methods[name] = true
  end
  return fields, optional, methods
end

local function public_functions(t, into)
  into = into or {}
  for k, v in pairs(t) do
    if type(k) == "string" and not k:match("^_") and type(v) == "function"
    then into[k] = true end
  end
  return into
end

local function sorted(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = k end
  table.sort(out)
  return out
end

describe("types/brood.lua", function()
  H.guard()

  it("defines every public name of brood, and only those", function()
    local fields, optional, fns = class_defs("brood")
    local lazy = slurp("lua/brood/init.lua"):match("\nlocal lazy = (%b{})")
    local public = {}
    for k in lazy:gmatch("[{,%s]([%w_]+) = {") do public[k] = true end
    for k in pairs(brood) do
      if type(k) == "string" and not k:match("^_") then public[k] = true end
    end
    local missing = {}
    for k in pairs(public) do
      if not (fields[k] or optional[k] or fns[k]) then
        missing[#missing + 1] = k
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
    local ghost = {}
    for k in pairs(fields) do
      if brood[k] == nil then ghost[#ghost + 1] = k end
    end
    for k in pairs(fns) do
      if type(brood[k]) ~= "function" then ghost[#ghost + 1] = k end
    end
    table.sort(ghost)
    assert.are.same({}, ghost)
  end)

  it("defines every method of each class, and only those", function()
    local fake = brood.testing.fake()
    local classes = {
      ["brood.Child"] = require("brood.process").Child,
      ["brood.Stream"] = require("brood.stream").Stream,
      ["brood.Socket"] = require("brood.net").Socket,
      ["brood.Server"] = require("brood.net").Server,
      ["brood.Pool"] = require("brood.pool").Pool,
      ["brood.Task"] = require("brood.tasks").Task,
      ["brood.Fake"] = getmetatable(fake),
      ["brood.msgpack"] = brood.msgpack,
      ["brood.net"] = brood.net,
      ["brood.testing"] = brood.testing,
    }
    fake:restore()
    local _, _, emitter = class_defs("brood.Emitter")
    local _, _, stream = class_defs("brood.Stream")
    for class, t in pairs(classes) do
      local _, _, defined = class_defs(class)
      local inherited = {}
      if TYPES:find("@class " .. class .. ": brood.Emitter", 1, true) or
         TYPES:find("@class " .. class .. ": brood.Stream", 1, true) then
        for k in pairs(emitter) do inherited[k] = true end
      end
      if TYPES:find("@class " .. class .. ": brood.Stream", 1, true) then
        for k in pairs(stream) do inherited[k] = true end
      end
      local actual = public_functions(t)
      -- brood.process's hooks for handles over a channel, not the API
      if class == "brood.net" then
        actual.adopt, actual.server_handle = nil, nil
      end
      local missing, ghost = {}, {}
      for k in pairs(actual) do
        if not defined[k] and not inherited[k] then missing[k] = true end
      end
      for k in pairs(defined) do
        if type(t[k]) ~= "function" then ghost[k] = true end
      end
      assert.are.same({class = class, missing = {}, ghost = {}},
        {class = class, missing = sorted(missing), ghost = sorted(ghost)})
    end
  end)
end)

describe("packaging", function()
  H.guard()

  it("brood -v prints brood's, Lua's and libuv's versions", function()
    local host = os.getenv("BROOD_HOST") or "build/brood"
    local out = assert(brood.exec_file_sync(host, {"-v"}))
    local uv = brood.core_info.uv_version:gsub("%.", "%%.")
    assert.truthy(out:match("^brood 0%.1%.0 %(Lua 5%.4%.%d+, libuv " .. uv ..
                            "%)\n$"), out)
  end)

  it("has a LICENSE and a man page for the host", function()
    assert.truthy(slurp("LICENSE"):find("MIT License", 1, true))
    local man = slurp("man/brood.1")
    for _, s in ipairs({".TH BROOD 1", "\\-\\-channel=stdio",
                        ".SH EXIT STATUS", ".SH SIGNALS", "BROOD_SPIN_US",
                        "BROOD_NO_PIDFD", ".SH SEE ALSO"}) do
      assert.truthy(man:find(s, 1, true), s)
    end
    local rock = slurp("rockspec/brood-scm-1.rockspec")
    assert.truthy(rock:find('license = "MIT"', 1, true))
  end)
end)

-- The worker of examples/pool_hash.lua: hash one file (FNV-1a, 32 bits,
-- in pure Lua: a stand-in for real CPU work) and return its digest.
local brood = require "brood"

local function fnv1a(data)
  local h = 2166136261
  for i = 1, #data do
    h = ((h ~ data:byte(i)) * 16777619) & 0xffffffff
  end
  return string.format("%08x", h)
end

brood.worker(function(path)
  local f = assert(io.open(path, "rb"))  -- an error fails this file only
  local data = f:read("a")
  f:close()
  return {digest = fnv1a(data), size = #data}
end)

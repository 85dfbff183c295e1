-- W8: encode + decode a 10-field message (integers, floats, short strings,
-- a boolean, a 20-integer array) 1000000 times in-process, with the
-- channel's codec, brood.msgpack. Node's side uses JSON.stringify/parse,
-- its channel's default serialization. Rate = encode+decode pairs/s.
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 1000000
local WARMUP = 10000 -- untimed

local values = {}
for i = 1, 20 do values[i] = i * 1000 end
local MSG = {id = 12345, op = "update", ratio = 0.75, temp = -12.5,
             name = "sensor-7", ok = true, count = 99999, tag = "alpha",
             values = values, seq = 7}

local encode, decode = brood.msgpack.encode, brood.msgpack.decode

-- Returns something of the result, so the work cannot be skipped.
local function once()
  local m = decode(encode(MSG))
  return m.values[20]
end

local check = decode(encode(MSG))
for k, v in pairs(MSG) do
  if k ~= "values" then assert(check[k] == v, "round trip changed " .. k) end
end
assert(math.type(check.id) == "integer" and math.type(check.ratio) == "float")
for i = 1, 20 do assert(check.values[i] == values[i], "round trip changed values") end

local sum = 0
for _ = 1, WARMUP do sum = sum + once() end
local t0 = brood.hrtime()
for _ = 1, N do sum = sum + once() end
local ns = brood.hrtime() - t0
assert(sum == (WARMUP + N) * 20000)
print(string.format("RATE %.1f", N / (ns / 1e9)))

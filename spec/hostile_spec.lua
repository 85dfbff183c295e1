-- Hostile peers (issue 14 item 5): a forked peer writing malformed and
-- abusive bytes on its channel while three well-behaved children work.
-- The hostile channel closes with exactly one "error", the others finish,
-- nothing leaks (H.guard: handles, fds, zombies).
local H = require "spec.helper"
local brood = H.brood

local function good_worker()
  local child = assert(brood.fork(H.fixtures .. "/ipc_echo.lua"))
  assert.are.equal("ready", child:recv())
  local sum = 0
  for i = 1, 200 do
    child:send(i)
    sum = sum + assert(child:recv()).echo
  end
  child:send({op = "big", n = 1024 * 1024})
  local big = assert(child:recv())
  child:send({op = "exit"})
  assert.are.equal(0, child:wait())
  return sum + #big
end

local function hostile(seed)
  local child = assert(brood.fork(H.fixtures .. "/hostile_peer.py",
    {tostring(seed)}, {exec_path = "/usr/bin/python3"}))
  local errors, messages = {}, 0
  child:on("error", function(e) errors[#errors + 1] = e end)
  child:on("message", function() messages = messages + 1 end)
  child:wait()
  return {errors = errors, messages = messages, child = child}
end

describe("hostile peers", function()
  H.guard()

  for _, seed in ipairs({1, 2, 3, 4, 101, 102}) do
    it(("a hostile peer (order %d) fails alone, once"):format(seed),
       function()
      local r = brood.all({
        function() return hostile(seed) end,
        good_worker, good_worker, good_worker,
      })
      local h = r[1]
      assert.are.equal(1, #h.errors, "errors: " .. #h.errors)
      assert.truthy(h.child.channel_error)
      assert.is_false(h.child.connected)
      for i = 2, 4 do
        assert.are.equal(200 * 201 / 2 + 1024 * 1024, r[i])
      end
    end)
  end
end)

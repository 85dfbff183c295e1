-- W5 worker: count {seq=i} messages; on {op="end"} reply {count=n} and
-- start over. Checks the order too. Ends when the parent disconnects.
local brood = require "brood"
local parent = assert(brood.parent, "run me with brood.fork")

local count = 0
parent:on("message", function(msg)
  if msg.op == "end" then
    parent:send({count = count})
    count = 0
  else
    count = count + 1
    assert(msg.seq == count, "message out of order")
  end
end)

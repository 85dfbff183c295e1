-- W6 worker: add up the payload bytes of each message; on {op="end"}
-- reply {bytes=total} and start over. Ends when the parent disconnects.
local brood = require "brood"
local parent = assert(brood.parent, "run me with brood.fork")

local bytes = 0
parent:on("message", function(msg)
  if msg.op == "end" then
    parent:send({bytes = bytes})
    bytes = 0
  else
    bytes = bytes + #msg.payload
  end
end)

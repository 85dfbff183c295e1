-- W4 worker: answer each ping with a pong of the same id. Ends when the
-- parent disconnects (the channel then no longer keeps the loop alive).
local brood = require "brood"
local parent = assert(brood.parent, "run me with brood.fork")

parent:on("message", function(msg)
  parent:send({id = msg.id, op = "pong"})
end)

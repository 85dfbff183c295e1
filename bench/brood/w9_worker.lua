-- W9 worker: send one message as soon as it starts, then disconnect (every
-- message sent before disconnect() is delivered) and exit.
local brood = require "brood"
local parent = assert(brood.parent, "run me with brood.fork")

parent:send({op = "ready"})
parent:disconnect()

-- Forked by shared_server.lua: accepts connections on the server it is
-- sent, answers each request line with its name, and stops when asked.
local brood = require "brood"
local name = "worker " .. (... or "?")
local parent = assert(brood.parent, "run me through shared_server.lua")
local server

parent:on("message", function(msg, handle)
  if msg == "serve" then
    server = handle
    server:on("connection", function(socket)
      brood.go(function()  -- a task per connection: it may wait
        local request = socket:read_all():gsub("\n$", "")
        socket:close(("%s served %s\n"):format(name, request))
      end)
    end)
  elseif msg == "stop" then
    if server then server:close() end
    parent:disconnect()
  end
end)
parent:send("ready")

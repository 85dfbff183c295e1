-- One TCP server, two forked workers accepting from it: the parent listens,
-- hands the listening socket to each worker over the IPC channel, and then
-- only watches. Every connection is served by whichever worker the kernel
-- wakes first.
--
--   brood examples/shared_server.lua
local brood = require "brood"
local here = arg and arg[0] and arg[0]:match("^(.*)/") or "examples"

local server = brood.net.create_server()
assert(server:listen(0, "127.0.0.1"))
local port = server:address().port
print(("listening on 127.0.0.1:%d"):format(port))

local workers, sent = {}, 0
for i = 1, 2 do
  local worker = assert(brood.fork(here .. "/shared_server_worker.lua",
                                   {tostring(i)}))
  assert(worker:recv() == "ready")
  worker:send("serve", server, function(err)
    assert(not err, err)
    sent = sent + 1
    -- Both workers have the socket now: the parent stops accepting.
    if sent == 2 then server:close() end
  end)
  workers[i] = worker
end

-- Some clients. Each worker answers with its own name.
for n = 1, 6 do
  local socket = brood.net.connect(port, "127.0.0.1")
  assert(socket:wait_connect())
  socket:close(("request %d\n"):format(n))  -- send, then EOF
  io.write(socket:read_all())
end

for _, worker in ipairs(workers) do worker:send("stop") end
for i, worker in ipairs(workers) do
  print(("worker %d exited with %s"):format(i, worker:wait()))
end

-- soak fork_kill: 1 000 forks of a worker that streams messages to us,
-- each killed at a random moment mid-stream, 4 at once.
--
-- For each fork: after the first message arrives, wait a random 0-20 ms,
-- then send SIGKILL or SIGTERM (half each). Meanwhile we send the worker a
-- small message for every one we receive, without a callback and without
-- an "error" listener, so writes that fail because the worker died must
-- not raise. Checks, each a failure when it does not hold:
--   - wait() returns (within 10 s) and reports the signal we sent;
--   - every message delivered is intact and in sequence (no corrupt or
--     partial message), and the worker saw ours in sequence (its `bad`);
--   - the channel closes: "disconnect" once, connected == false, and
--     recv() returns nil with ERR_IPC_CHANNEL_CLOSED;
--   - no error escapes (one would end the loop and this script);
--   - lost = 0, where lost counts the messages the worker's send callback
--     confirmed written to the channel (reported out of band on its stderr
--     pipe) that never reached us: the kernel holds written bytes for the
--     reader after the writer dies, so none may be missing.
-- A frame cut short by the kill ends the channel with channel_error
-- EBADMSG (docs/api.md, "When the channel closes"); that is counted and
-- shown, not a failure.
local brood = require "brood"
local soak = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/common.lua")

local N = soak.count(1000)
local WIDTH = 4
local MAX_DELAY = 20 -- ms
local WAIT_LIMIT = 10000 -- ms before a wait() counts as hung
local WORKER = soak.dir() .. "/fork_kill_worker.lua"
local SEED = tonumber(os.getenv("SOAK_SEED") or "") or os.time()
math.randomseed(SEED)

-- The payload of message seq (bench/soak/payload.lua, shared with the worker).
local payload = dofile(soak.dir() .. "/payload.lua")

-- Totals over the whole run; the batch function reports differences.
local T = {failures = 0, lost = 0, received = 0, confirmed = 0, corrupt = 0,
           sent_to_worker = 0, kills = {}, channel_errors = {}, first = nil}

local function fail(i, what)
  T.failures = T.failures + 1
  if not T.first then T.first = ("#%d: %s"):format(i, what) end
end

local function one(i)
  local sig = math.random(2) == 1 and "SIGKILL" or "SIGTERM"
  local delay = math.random(0, MAX_DELAY)
  local child = assert(brood.fork(WORKER, {}, {stdio = {"ignore", "ignore", "pipe"}}))

  -- Out-of-band acks: keep only the highest seq confirmed written.
  local confirmed, pending, other = 0, "", {}
  child.stderr:on("data", function(chunk)
    pending = pending .. chunk
    for line in pending:gmatch("([^\n]*)\n") do
      local s = line:match("^w (%d+)$")
      if s then
        confirmed = math.max(confirmed, tonumber(s))
      elseif #other < 5 then
        other[#other + 1] = line
      end
    end
    pending = pending:match("[^\n]*$")
  end)

  local received, corrupt, worker_bad, to_worker = 0, 0, 0, 0
  local kill_timer, kill_result, disconnects = nil, nil, 0
  child:on("disconnect", function() disconnects = disconnects + 1 end)
  child:on("message", function(msg)
    received = received + 1
    if type(msg) ~= "table" or msg.seq ~= received or msg.payload ~= payload(received) then
      corrupt = corrupt + 1
    end
    if type(msg) == "table" and (msg.bad or 0) > worker_bad then worker_bad = msg.bad end
    if received == 1 then
      kill_timer = brood.set_timeout(delay, function()
        kill_result = child:kill(sig)
      end)
    end
    if child.connected then
      to_worker = to_worker + 1
      child:send({seq = to_worker, payload = ("p%d"):format(to_worker)})
    end
  end)

  local code, signal, wcode = child:wait(WAIT_LIMIT)
  if wcode == "ETIMEDOUT" then -- (nil, err, "ETIMEDOUT"): it hung
    fail(i, "wait() did not return within " .. WAIT_LIMIT .. " ms")
    child:kill("SIGKILL")
    code, signal = child:wait()
  end
  if kill_timer then kill_timer:stop() end

  if kill_result ~= true then
    fail(i, ("kill(%s) returned %s (the worker ended first: %s %s)")
      :format(sig, tostring(kill_result), tostring(code), tostring(signal)))
  elseif code ~= nil or signal ~= sig then
    fail(i, ("sent %s, the worker ended with %s %s"):format(sig, tostring(code), tostring(signal)))
  end
  if corrupt > 0 then fail(i, ("%d corrupt or out-of-sequence messages"):format(corrupt)) end
  if worker_bad > 0 then fail(i, ("the worker saw %d of ours out of sequence"):format(worker_bad)) end
  if #other > 0 then fail(i, "worker stderr: " .. table.concat(other, " | ")) end

  -- Let the deferred "disconnect" run before checking it.
  brood.sleep(0)
  local m, _, rcode = child:recv(0)
  if disconnects ~= 1 or child.connected or m ~= nil or rcode ~= "ERR_IPC_CHANNEL_CLOSED" then
    fail(i, ("channel not closed: disconnect events %d, connected %s, recv %s %s")
      :format(disconnects, tostring(child.connected), tostring(m), tostring(rcode)))
  end

  local lost = math.max(0, confirmed - received)
  if lost > 0 then fail(i, ("%d confirmed-written messages lost"):format(lost)) end

  T.lost = T.lost + lost
  T.received = T.received + received
  T.confirmed = T.confirmed + confirmed
  T.corrupt = T.corrupt + corrupt
  T.sent_to_worker = T.sent_to_worker + to_worker
  T.kills[sig] = (T.kills[sig] or 0) + 1
  local ce = child.channel_error and (child.channel_error.code or tostring(child.channel_error)) or "none"
  T.channel_errors[ce] = (T.channel_errors[ce] or 0) + 1
end

local function counts(t)
  local keys, parts = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = ("%s %d"):format(k, t[k]) end
  return table.concat(parts, ", ")
end

local function batch(first, last)
  local f0, l0 = T.failures, T.lost
  soak.parallel(first, last, WIDTH, one)
  local notes = {}
  if last == N then
    notes[#notes + 1] = ("messages received %d (confirmed written by the workers %d), corrupt %d; sent to the workers %d")
      :format(T.received, T.confirmed, T.corrupt, T.sent_to_worker)
    notes[#notes + 1] = ("kills: %s; channel_error at close: %s; seed %d")
      :format(counts(T.kills), counts(T.channel_errors), SEED)
    if T.first then notes[#notes + 1] = "first failure " .. T.first end
  end
  return {failures = T.failures - f0, lost = T.lost - l0,
          notes = notes}
end

local pass = soak.run("fork_kill", N, batch, {
  unit = "forks",
  detail = ("each killed 0-%d ms after its first message, SIGKILL or SIGTERM, %d at once")
    :format(MAX_DELAY, WIDTH),
})
os.exit(pass and 0 or 1, true) -- close the state: its cleanup runs, and leak tools see a clean exit

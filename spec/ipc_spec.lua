-- fork and the IPC channel (DESIGN §6, issue 5): messages both ways, order,
-- size limits, broken peers, disconnect semantics, backpressure, interop.
local H = require "spec.helper"
local brood = H.brood

local ECHO = H.fixtures .. "/ipc_echo.lua"
local MiB = 1024 * 1024

local function fork_echo(opts) return H.fork_ready(ECHO, opts) end
local finish = H.finish

describe("brood.fork", function()
  H.guard()

  it("starts the host on a script with a channel both ways", function()
    local child = fork_echo()
    assert.is_true(child.connected)
    assert.is_true(child.pid > 0)
    assert.is_true(child:send({hello = "world", n = 42}))
    local reply = child:recv()
    assert.are.same({echo = {hello = "world", n = 42}}, reply)
    assert.are.equal(0, finish(child))
    assert.is_false(child.connected)
  end)

  it("passes args, exec_argv and sets arg like the host does", function()
    local child = assert(brood.fork(ECHO, {"a", "b c"},
                                    {exec_argv = {"-e", "X_SET = 1"}}))
    assert.are.equal("ready", child:recv())
    child:send({op = "args"})
    local r = child:recv()
    assert.are.same({"a", "b c"}, r.args)
    assert.are.equal(ECHO, r.arg0)
    finish(child)
  end)

  it("keeps brood.parent nil in a script that was not forked", function()
    assert.is_nil(brood.parent)
    local out = assert(brood.exec_file_sync(H.host, {"-e",
      "print(require('brood').parent == nil)"}))
    assert.are.equal("true\n", out)
  end)

  it("silent = true pipes the child's stdio", function()
    local child = assert(brood.fork(H.fixtures .. "/ipc_burst_exit.lua",
                                    {"0"}, {silent = true}))
    assert.is_table(child.stdout)
    assert.are.equal("", child.stdout:read_all())
    assert.are.equal(0, child:wait())
  end)

  it("reports a missing host program as ENOENT", function()
    local child, err, code = brood.fork(ECHO, {}, {exec_path = "/no/brood"})
    assert.is_nil(child)
    assert.are.equal("ENOENT", code)
    assert.matches("/no/brood", err.message, 1, true)
  end)

  it("a missing script is nil, err, \"ENOENT\" naming it (no child)",
     function()
    local child, err, code = brood.fork("/no/such/script.lua", {},
                                        {silent = true})
    assert.is_nil(child)
    assert.are.equal("ENOENT", code)
    assert.matches("/no/such/script.lua", err.message, 1, true)
  end)

  it("raises for bad arguments", function()
    assert.has_error(function() brood.array(5) end,
      "bad argument #1 to 'array' (table expected, got number)")
    assert.has_error(function() brood.fork({}) end,
      "bad argument #1 to 'fork' (module_path must be a string, got table)")
    assert.has_error(function() brood.fork(ECHO, {}, {silnet = true}) end,
      "bad argument #3 to 'fork' (unknown option 'silnet' (did you mean 'silent'?))")
    assert.has_error(function()
      brood.fork(ECHO, {}, {max_message_size = -1})
    end)
    assert.has_error(function()
      brood.fork(ECHO, {}, {stdio = {"pipe", "pipe", "pipe", "ipc", "ipc"}})
    end, "bad argument #3 to 'fork' (stdio may hold one 'ipc' only)")
  end)
end)

describe("the IPC channel", function()
  H.guard()

  it("keeps 10,000 messages in order, both ways", function()
    local child = fork_echo()
    for i = 1, 10000 do child:send(i) end
    for i = 1, 10000 do
      assert.are.same({echo = i}, child:recv())
    end
    child:send({op = "burst", n = 10000})
    for i = 1, 10000 do assert.are.equal(i, child:recv()) end
    finish(child)
  end)

  it("delivers everything a child sent before it exited", function()
    local child = assert(brood.fork(H.fixtures .. "/ipc_burst_exit.lua",
                                    {"5000"}))
    local got = {}
    child:on("message", function(m) got[#got + 1] = m.seq end)
    assert.are.equal(0, child:wait())
    assert.are.equal(5000, #got)
    assert.are.equal(5000, got[5000])
    assert.are.equal(1, got[1])
  end)

  it("carries a 16 MiB message both ways", function()
    local child = fork_echo()
    local big = ("0123456789abcdef"):rep(MiB)
    child:send(big)
    local r = child:recv()
    assert.are.equal(16 * MiB, #r.echo)
    assert.is_true(r.echo == big)
    child:send({op = "big", n = 16 * MiB})
    assert.are.equal(16 * MiB, #child:recv())
    finish(child)
  end)

  it("keeps integers, floats and bytes as they are", function()
    local child = fork_echo()
    local v = {1, 1.0, -0.0, math.huge, -math.huge, math.maxinteger,
               math.mininteger, "\0\255", "é", brood.array({}), {}, true}
    child:send(v)
    local r = child:recv().echo
    assert.are.equal("integer", math.type(r[1]))
    assert.are.equal("float", math.type(r[2]))
    assert.are.equal(-math.huge, 1 / r[3])
    assert.are.equal(math.huge, r[4])
    assert.are.equal(-math.huge, r[5])
    assert.are.equal(math.maxinteger, r[6])
    assert.are.equal(math.mininteger, r[7])
    assert.are.equal("\0\255", r[8])
    assert.are.equal("é", r[9])
    assert.are.equal("\x90", brood.msgpack.encode(r[10]))  -- still an array
    assert.are.equal("\x80", brood.msgpack.encode(r[11]))  -- still a map
    assert.is_true(r[12])
    child:send(0 / 0)
    local nan = child:recv().echo
    assert.is_true(nan ~= nan)
    finish(child)
  end)

  it("raises on what cannot be sent and stays usable", function()
    local child = fork_echo()
    assert.has_error(function() child:send(print) end,
      "bad argument #1 to 'send' (cannot encode a function)")
    local cyc = {}
    cyc.self = cyc
    assert.has_error(function() child:send(cyc) end)
    assert.has_error(function() child:send({co = coroutine.create(print)}) end)
    assert.is_true(child:send("still fine"))
    assert.are.same({echo = "still fine"}, child:recv())
    finish(child)
  end)

  it("refuses an oversized message on the sending side", function()
    local child = fork_echo({max_message_size = 1024})
    local err
    assert.is_false(child:send(("x"):rep(2000), function(e) err = e end))
    H.run_until(function() return err ~= nil end)
    assert.are.equal("EMSGSIZE", err.code)
    assert.is_true(child:send("small"))
    assert.are.same({echo = "small"}, child:recv())
    finish(child)
  end)

  it("closes the channel of a child that sends an oversized frame", function()
    local child = fork_echo({max_message_size = 1000, silent = true})
    local errors = {}
    child:on("error", function(e) errors[#errors + 1] = e end)
    child:send({op = "big", n = 5000})  -- the child's own limit is ours
    local m, err, code = child:recv()
    assert.is_nil(m)
    assert.are.equal("ERR_IPC_CHANNEL_CLOSED", code)
    assert.is_table(err)
    -- the child refused to send it (its unhandled error ended it):
    -- nothing broke on our side
    assert.matches("exceeds max_message_size", child.stderr:read_all())
    assert.are.equal(1, child:wait())
    assert.are.equal(0, #errors)
  end)

  for _, case in ipairs({{"oversized", "EMSGSIZE"}, {"garbage", "EBADMSG"},
                         {"badkind", "EBADMSG"}, {"midframe", "EBADMSG"}}) do
    it("closes the channel of a peer that writes " .. case[1] ..
       " bytes, and carries on", function()
      local good = fork_echo()
      local bad = assert(brood.fork(H.fixtures .. "/ipc_raw.sh", {case[1]},
                                    {exec_path = "/bin/sh"}))
      local errors = {}
      bad:on("error", function(e) errors[#errors + 1] = e end)
      local m, _, code = bad:recv()
      assert.is_nil(m)
      assert.are.equal("ERR_IPC_CHANNEL_CLOSED", code)
      bad:wait()
      assert.are.equal(1, #errors)
      assert.are.equal(case[2], errors[1].code)
      assert.are.equal(case[2], bad.channel_error.code)
      -- the host and the other child carry on
      good:send("after")
      assert.are.same({echo = "after"}, good:recv())
      finish(good)
    end)
  end

  it("a bad peer without an error listener does not raise", function()
    local bad = assert(brood.fork(H.fixtures .. "/ipc_raw.sh", {"garbage"},
                                  {exec_path = "/bin/sh"}))
    bad:wait()
    assert.are.equal("EBADMSG", bad.channel_error.code)
  end)

  it("reports a child that dies mid-conversation as a closed channel",
     function()
    local child = fork_echo()
    child:send({op = "crash"})
    local m, _, code = child:recv()
    assert.is_nil(m)
    assert.are.equal("ERR_IPC_CHANNEL_CLOSED", code)
    assert.are.equal(3, child:wait())
  end)

  describe("disconnect", function()
    it("delivers everything sent before it, then the child ends", function()
      local child = fork_echo()
      for i = 1, 100 do child:send(i) end
      child:disconnect()
      assert.is_false(child.connected)
      -- the echo child saw all 100 and answered until the channel closed
      assert.are.equal(0, child:wait())
    end)

    it("emits disconnect asynchronously, with connected already false",
       function()
      local child = fork_echo()
      local seen
      child:on("disconnect", function() seen = child.connected end)
      child:disconnect()
      assert.is_nil(seen)
      child:wait()
      assert.is_false(seen)
    end)

    it("a second disconnect raises", function()
      local child = fork_echo()
      child:disconnect()
      assert.has_error(function() child:disconnect() end,
        "brood: disconnect: the IPC channel is already closed")
      child:wait()
    end)

    it("send after disconnect: false, ERR_IPC_CHANNEL_CLOSED once", function()
      local child = fork_echo()
      child:disconnect()
      local via_cb, via_event = {}, {}
      child:on("error", function(e) via_event[#via_event + 1] = e end)
      assert.is_false(child:send("late", function(e)
        via_cb[#via_cb + 1] = e
      end))
      assert.is_false(child:send("later"))
      child:wait()
      H.run_until(function() return #via_event == 1 end)
      assert.are.equal(1, #via_cb)
      assert.are.equal("ERR_IPC_CHANNEL_CLOSED", via_cb[1].code)
      assert.are.equal(1, #via_event)
      assert.are.equal("ERR_IPC_CHANNEL_CLOSED", via_event[1].code)
    end)

    it("recv after the channel closed returns nil, err, code", function()
      local child = fork_echo()
      child:send({op = "exit"})
      child:wait()
      local m, err, code = child:recv()
      assert.is_nil(m)
      assert.are.equal("ERR_IPC_CHANNEL_CLOSED", code)
      assert.are.equal(code, err.code)
    end)
  end)

  it("an error in one message handler loses no other message", function()
    local child = fork_echo()
    local got = {}
    child:on("message", function(m)
      got[#got + 1] = m
      if m == 1 then error("boom in handler") end
    end)
    child:send({op = "burst", n = 3})
    local ok, err = pcall(brood.run)
    assert.is_false(ok)
    assert.matches("boom in handler", err)
    H.run_until(function() return #got == 3 end)
    assert.are.same({1, 2, 3}, got)
    child:off("message")
    finish(child)
  end)

  it("send returns false past the high-water mark, then drain", function()
    -- the child stalls its loop: nothing is read, the queue must grow
    local child = assert(brood.fork(H.fixtures .. "/ipc_idle.lua",
                                    {"stall"}))
    assert.are.equal("ready", child:recv())
    local payload = ("y"):rep(256 * 1024)
    local full_at
    for i = 1, 2000 do  -- the kernel's buffers hold some MiB first
      if not child:send(payload) then full_at = i break end
    end
    assert.is_number(full_at)
    -- let the child go on: end the sleep its loop is stuck in (once it is)
    H.run_until(function() return #H.core.descendants(child.pid) > 0 end)
    for _, pid in ipairs(H.core.descendants(child.pid)) do
      brood.kill(pid, "SIGKILL")
    end
    local drained = false
    child:once("drain", function() drained = true end)
    H.run_until(function() return drained end, 10000)
    assert.is_true(drained)
    for _ = 1, full_at do assert.are.equal(#payload, child:recv()) end
    child:send("stop")
    assert.are.equal(0, child:wait())
  end)

  it("keeps a child alive only while it listens or waits", function()
    local idle = assert(brood.fork(H.fixtures .. "/ipc_idle.lua"))
    assert.are.equal(0, idle:wait())  -- ended by itself, never disconnected
    local listening = assert(brood.fork(H.fixtures .. "/ipc_idle.lua",
                                        {"listen"}))
    brood.sleep(100)
    assert.is_true(listening.connected)
    assert.is_nil(listening.exit_code)  -- still there, waiting
    listening:send("hi")
    assert.are.same({got = "hi"}, listening:recv())
    assert.are.equal(0, listening:wait())  -- listener gone: it ended
  end)

  it("parent:unref() lets a listening child end; ref() keeps it", function()
    local child = assert(brood.fork(H.fixtures .. "/ipc_idle.lua",
                                    {"unref"}))
    assert.are.equal(0, child:wait())
  end)

  it("a sender that respects backpressure keeps its queue bounded",
     function()
    local child = fork_echo({silent = true})
    local payload = ("z"):rep(MiB)
    local sent, peak, done = 0, 0, false
    local function pump()
      while sent < 64 do
        sent = sent + 1
        local ok = child:send({op = "noop", payload = payload})
        peak = math.max(peak, child._channel:queued())
        if not ok then
          child:once("drain", pump)
          return
        end
      end
      done = true
    end
    pump()
    local replies = 0
    while replies < 64 do
      assert.is_table(child:recv())
      replies = replies + 1
    end
    assert.is_true(done)
    -- never more than the high-water mark plus the message that crossed it
    assert.is_true(peak <= 1024 * 1024 + MiB + 64,
                   ("peak queue %d bytes"):format(peak))
    finish(child)
  end)

  it("speaks with a Python worker written from docs/wire-format.md",
     function()
    local child = assert(brood.fork(H.fixtures .. "/py_worker.py", {},
                                    {exec_path = "/usr/bin/python3"}))
    local hello = child:recv()
    assert.are.equal("python", hello.lang)
    assert.are.equal(child.pid, hello.pid)
    child:send({1, 2.5, "é", {a = true}, "\255bin"})
    local r = child:recv()
    assert.are.equal("list", r.type)
    assert.are.same({1, 2.5, "é", {a = true}, "\255bin"}, r.echo)
    assert.are.equal("float", math.type(r.echo[2]))
    child:send({op = "exit"})
    assert.are.equal(0, child:wait())
  end)
end)

describe("brood.msgpack", function()
  local mp = brood.msgpack

  it("round-trips values and keeps number types", function()
    for _, v in ipairs({0, -1, 127, 128, -33, 65536, 2^53, 1.5, -0.25,
                        math.maxinteger, math.mininteger, "", "abc",
                        ("z"):rep(70000), true, false}) do
      local back = mp.decode(mp.encode(v))
      assert.are.equal(v, back)
      assert.are.equal(math.type(v), math.type(back))
    end
    assert.are.same({1, {2, {3}}, {k = "v"}}, mp.decode(mp.encode(
      {1, {2, {3}}, {k = "v"}})))
  end)

  it("tells arrays from maps", function()
    assert.are.equal("\x92\x01\x02", mp.encode({1, 2}))
    assert.are.equal("\x80", mp.encode({}))
    assert.are.equal("\x90", mp.encode(mp.array({})))
    local holes = mp.decode(mp.encode({1, nil, 3}))
    assert.are.equal(3, holes[3])
    local sparse = {}
    sparse[2] = "b"
    sparse[1] = "a"  -- keys 1..2, inserted out of order: still an array
    assert.are.equal("\x92\xa1a\xa1b", mp.encode(sparse))
    assert.are.equal(0x81, mp.encode({[3] = "x"}):byte(1))  -- a map
  end)

  it("raises on what it cannot encode, with a clear message", function()
    assert.has_error(function() mp.encode(print) end,
      "bad argument #1 to 'encode' (cannot encode a function)")
    local t = {}
    t[1] = t
    assert.has_error(function() mp.encode(t) end,
      "bad argument #1 to 'encode' (cannot encode a table that contains " ..
      "itself (a cycle))")
    local deep = {}
    local cur = deep
    for _ = 1, 200 do cur[1] = {} cur = cur[1] end
    assert.has_error(function() mp.encode(deep) end,
      "bad argument #1 to 'encode' (nesting deeper than 128 levels)")
  end)

  -- A table whose first element is a table and which then turns out not
  -- to be a plain sequence (a field after it; integer keys out of
  -- order, as a decoded map gives) must not encode its elements twice:
  -- nested 100 deep, twice per level is 2^100. Run in a child with a
  -- generous timeout, so a regression fails here instead of hanging.
  it("encodes nested mixed and out-of-order tables in linear time",
     function()
    local script = H.tmpfile([[
      package.cpath = ]] .. ("%q"):format(H.build_abs .. "/lib/?.so;") ..
      [[ .. package.cpath
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      local mp = require("brood").msgpack
      local mixed, leaf = {}, {}
      local cur = mixed
      for _ = 1, 100 do cur[1] = {} cur.x = 1 cur = cur[1] end
      -- {1: child, 3: 0} as a MessagePack map, nested 100 deep
      local wire = ("\x82\x01"):rep(100) .. "\xc0" .. ("\x03\x00"):rep(100)
      local decoded = assert(mp.decode(wire))
      local back = mp.decode(mp.encode(decoded))
      for _ = 1, 99 do back = back[1] end
      assert(back[3] == 0 and back[1] == nil)
      back = mp.decode(mp.encode(mixed))
      for _ = 1, 99 do back = back[1] end
      assert(back.x == 1)
      -- keys 1..n inserted out of order, a table under each: an array
      local sparse = {}
      cur = sparse
      for _ = 1, 100 do
        local child = {}
        cur[3] = "c" cur[2] = "b" cur[1] = child
        cur = child
      end
      assert(mp.encode(sparse):byte(1) == 0x93)
      io.write("done\n")
    ]])
    local file, argv = H.lua54({script})
    local r = assert(brood.exec_file(file, argv, {timeout = 60000}))
    os.remove(script)
    assert.are.equal("done\n", r.stdout)
    assert.are.equal(0, r.code)
  end)

  it("survives mutated input: a value or nil, err, EBADMSG, never a raise",
     function()
    math.randomseed(7)
    local seeds = {mp.encode({1, 2.5, "x", {a = {b = {1, 2, 3}}}, true}),
                   mp.encode({k = ("z"):rep(300), n = -1}),
                   mp.encode({[1] = 1, [3] = 3})}
    local bad = 0
    for round = 1, 20000 do
      local b = {seeds[round % #seeds + 1]:byte(1, -1)}
      for _ = 1, math.random(1, 4) do
        b[math.random(1, #b)] = math.random(0, 255)
      end
      if round % 3 == 0 then
        for _ = 1, math.random(1, 5) do table.remove(b) end
      end
      local ok, v, err, code = pcall(mp.decode, string.char(table.unpack(b)))
      assert(ok, v)
      if v == nil and err ~= nil then
        assert.are.equal("EBADMSG", code)
        bad = bad + 1
      end
    end
    assert.is_true(bad > 0)
  end)

  it("returns nil, err, EBADMSG for malformed input", function()
    for _, bad in ipairs({"", "\xc1", "\x92\x01", "\xdd\xff\xff\xff\xff",
                          "\x01\x02", "\xd9\x05ab", "\x81\xc0\x01",
                          "\xc7\x01\x01\x00"}) do
      local v, err, code = mp.decode(bad)
      assert.is_nil(v)
      assert.are.equal("EBADMSG", code)
      assert.are.equal("EBADMSG", err.code)
    end
    assert.has_error(function() mp.decode(5) end,
      "bad argument #1 to 'decode' (string expected, got number)")
  end)
end)

describe("handle passing", function()
  H.guard()
  local HANDLES = H.fixtures .. "/ipc_handles.lua"

  local function fork_handles()
    local child = assert(brood.fork(HANDLES))
    assert.are.equal("ready", child:recv())
    return child
  end

  it("a TCP server arrives listening and accepts there", function()
    local server = brood.net.create_server()
    assert(server:listen(0, "127.0.0.1"))
    local port = server:address().port
    local child = fork_handles()
    local sent
    child:send("serve", server, function(err) sent = err or true end)
    local r = child:recv()
    assert.are.same({kind = "server", listening = true}, r)
    assert.is_true(sent)
    server:close()  -- only the child accepts from now on
    local socket = brood.net.connect(port, "127.0.0.1")
    assert(socket:wait_connect())
    assert.are.equal("served by the worker\n", socket:read_all())
    socket:destroy()
    child:send("stop")
    assert.are.equal(0, child:wait())
  end)

  -- A server on 127.0.0.1 (or at a unix path), a client connected to it,
  -- and the server's end of that connection.
  local function connected_pair(path)
    local server = brood.net.create_server()
    assert(server:listen(path or 0, not path and "127.0.0.1" or nil))
    local accepted
    server:on("connection", function(s) accepted = s end)
    local client = path and brood.net.connect(path)
                   or brood.net.connect(server:address().port, "127.0.0.1")
    assert(client:wait_connect())
    H.run_until(function() return accepted ~= nil end)
    return server, client, accepted
  end

  it("a TCP socket arrives usable; the sender's copy closes", function()
    local server, client, accepted = connected_pair()
    local child = fork_handles()
    child:send("greet", accepted)
    assert.are.same({kind = "greeted"}, child:recv())
    assert.are.equal("hello from the worker\n", client:read_all())
    H.run_until(function() return accepted.closed end)
    assert.is_true(accepted.closed)
    client:destroy()
    server:close()
    child:send("stop")
    child:wait()
  end)

  it("keep_open keeps the sender's socket open", function()
    local server, client, accepted = connected_pair()
    local child = fork_handles()
    local written
    child:send("other", accepted, {keep_open = true},
               function() written = true end)
    assert.are.same({other = "other", has_handle = true}, child:recv())
    H.run_until(function() return written end)
    assert.is_false(accepted.closed)
    accepted:destroy()
    client:destroy()
    server:close()
    child:send("stop")
    child:wait()
  end)

  it("a unix socket arrives as a stream and reads what was written",
     function()
    local path = os.tmpname()
    os.remove(path)
    local server, client, accepted = connected_pair(path)
    local child = fork_handles()
    child:send("read", accepted)
    client:close("through a passed unix socket")
    assert.are.same({got = "through a passed unix socket"}, child:recv())
    server:close()
    child:send("stop")
    child:wait()
  end)

  it("delivers a handle even when the sender disconnects at once",
     function()
    local server = brood.net.create_server()
    assert(server:listen(0, "127.0.0.1"))
    local child = assert(brood.fork(HANDLES, {}, {silent = true}))
    assert.are.equal("ready", child:recv())
    child:send("serve", server)
    child:disconnect()
    -- the child got it, then saw the channel close, said so and ended
    assert.are.equal("had the server\n", child.stdout:read_all())
    assert.are.equal(0, child:wait())
    server:close()
  end)

  it("a passed fd that is no stream (a file) arrives as nil, no crash",
     function()
    local child = assert(brood.fork(H.fixtures .. "/py_worker.py", {},
                                    {exec_path = "/usr/bin/python3"}))
    assert.are.equal("python", child:recv().lang)
    child:send({op = "send-file-fd"})
    local msg, handle = child:recv()
    assert.are.equal("a file", msg)
    assert.is_nil(handle)
    child:send("still talking")
    assert.are.equal("still talking", child:recv().echo)
    child:send({op = "exit"})
    assert.are.equal(0, child:wait())
  end)

  it("raises for something that is not a handle", function()
    local child = fork_handles()
    assert.has_error(function() child:send("x", {}) end,
      "bad argument #2 to 'send' (a brood.net server or socket, or a pipe " ..
      "stream expected)")
    child:send("stop")
    child:wait()
  end)
end)

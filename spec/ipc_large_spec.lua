-- Large IPC messages (issue 10, part 2): strings of 32 KiB or more are
-- written from Lua's own copy, not copied into the frame buffer. What
-- must hold: every byte arrives, wherever the strings sit in the value;
-- a backlog of large sends costs no memory beyond the strings themselves;
-- every send callback runs once and every string is let go once, when
-- the write is done, fails, or the channel closes first.
local H = require "spec.helper"
local brood = H.brood

local LARGE = H.fixtures .. "/ipc_large.lua"
local MiB = 1024 * 1024

local function fork_large(opts) return H.fork_ready(LARGE, opts) end
local finish = H.finish

local function echo(child, value)
  assert.is_true(child:send({op = "echo", value = value}) ~= nil)
  return child:recv(20000)
end

-- A string of n bytes that no other call returns (all 256 byte values,
-- so not UTF-8: it travels as MessagePack bin).
local function bytes_of(n, seed)
  local parts, chunk = {}, {}
  for i = 0, 255 do chunk[#chunk + 1] = string.char((i * 7 + seed) % 256) end
  chunk = table.concat(chunk)
  parts[1] = ("%08d"):format(seed)
  local len = 8
  while len < n do
    local piece = chunk:sub(1, n - len)
    parts[#parts + 1] = piece
    len = len + #piece
  end
  return table.concat(parts)
end

-- How many registry slots hold s (the refs that keep it for a write).
local function held(s)
  local count = 0
  for _, v in pairs(debug.getregistry()) do
    if v == s then count = count + 1 end
  end
  return count
end

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local kb = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
  f:close()
  return kb
end

-- A whole script, under the host and under lua5.4 with this checkout's
-- brood. Under a sanitizer build, lua5.4 (not instrumented) needs the
-- ASan runtime preloaded to load brood.core.
local function whole_script_runs(script, ...)
  local setup = ("package.cpath = '%s/lib/?.so;' .. package.cpath; " ..
                 "package.path = 'lua/?.lua;lua/?/init.lua;' .. " ..
                 "package.path"):format(H.build)
  return {{H.host, {script, ...}, {}},
          {"lua5.4", {"-e", setup, script, ...}, {extend_env = H.lua54_env}}}
end

describe("large IPC messages", function()
  H.guard()

  it("carries a 1 MiB message both ways, byte for byte", function()
    local child = fork_large()
    local text = ("0123456789abcdef"):rep(MiB // 16)
    local bin = bytes_of(MiB, 1)
    assert.are.equal(text, echo(child, text))
    assert.are.equal(bin, echo(child, bin))
    assert.are.equal(0, finish(child))
  end)

  it("carries a 16 MiB message both ways", function()
    local child = fork_large()
    local big = bytes_of(16 * MiB, 2)
    local got = echo(child, {big = big, n = 16})
    assert.are.equal(16, got.n)
    assert.is_true(got.big == big, "the 16 MiB string came back changed")
    assert.are.equal(0, finish(child))
  end)

  it("keeps large strings nested anywhere in tables", function()
    local child = fork_large()
    local a, b, c = bytes_of(40000, 3), ("é"):rep(30000), bytes_of(MiB, 4)
    local edge, below = bytes_of(32 * 1024, 5), bytes_of(32 * 1024 - 1, 6)
    local wide = {}  -- a map of 20 entries: a header shorter than reserved
    for i = 1, 20 do wide["k" .. i] = i % 2 == 0 and a or i end
    local mixed = {c}  -- starts as an array, turns out to be a map
    mixed.x = b
    local value = {
      a = a, n = 1, list = {b, "small", 2.5, {deep = {c, true}}},
      edge = edge, below = below, wide = wide, mixed = mixed,
      array = brood.array({a, a, a}), [7] = b,
    }
    local got = echo(child, value)
    assert.is_true(got.a == a and got.list[1] == b and
                   got.list[4].deep[1] == c and got[7] == b)
    assert.are.same({"small", 2.5, true},
                    {got.list[2], got.list[3], got.list[4].deep[2]})
    assert.is_true(got.edge == edge and got.below == below)
    for i = 1, 20 do
      assert.is_true(got.wide["k" .. i] == (i % 2 == 0 and a or i))
    end
    assert.is_true(got.mixed[1] == c and got.mixed.x == b)
    assert.is_true(got.array[1] == a and got.array[3] == a)
    assert.are.equal(0, finish(child))
  end)

  it("carries many large strings in one message", function()
    local child = fork_large()
    local many = {}
    for i = 1, 100 do many[i] = bytes_of(40000 + i, 100 + i) end
    local got = echo(child, many)
    assert.are.equal(100, #got)
    for i = 1, 100 do
      assert.is_true(got[i] == many[i], "string " .. i .. " came back changed")
    end
    assert.are.equal(0, finish(child))
  end)

  it("sends the same 1 MiB string 200 times without drain, memory flat",
     function()
    local child = fork_large()
    local payload = bytes_of(MiB, 7)
    local calls, errors = {}, 0
    local before = rss_kb()
    for i = 1, 200 do
      child:send({seq = i, payload = payload}, function(err)
        calls[i] = (calls[i] or 0) + 1
        if err ~= nil then errors = errors + 1 end
      end)
    end
    -- every send is queued before the loop runs: a copy each would be
    -- 200 MiB more (and was)
    local grown = rss_kb() - before
    assert.is_true(grown < 32 * 1024,
                   ("RSS grew %d KiB with 200 MiB queued"):format(grown))
    assert.is_true(child._channel:queued() >= 190 * MiB)
    assert.is_true(held(payload) > 0)
    child:send({op = "count"})
    local got = child:recv(30000)
    assert.are.same({200, 200 * MiB, true}, {got.n, got.bytes, got.same})
    assert.is_true(got.first == payload)
    H.run_until(function() return #calls == 200 end)
    for i = 1, 200 do assert.are.equal(1, calls[i]) end
    assert.are.equal(0, errors)
    assert.are.equal(0, held(payload))  -- every ref let go
    assert.are.equal(0, finish(child))
  end)

  it("a child that dies with large sends queued: each callback once",
     function()
    local child = fork_large()
    local payload = bytes_of(MiB, 8)
    local calls, errors = {}, 0
    child:send({op = "die"})
    for i = 1, 50 do
      child:send({seq = i, payload = payload}, function(err)
        calls[i] = (calls[i] or 0) + 1
        if err ~= nil then errors = errors + 1 end
      end)
    end
    assert.are.equal(3, child:wait())
    H.run_until(function() return #calls == 50 end)
    for i = 1, 50 do assert.are.equal(1, calls[i]) end
    assert.is_true(errors > 0)  -- it died before reading them all
    brood.sleep(20)  -- no callback comes twice
    for i = 1, 50 do assert.are.equal(1, calls[i]) end
    assert.are.equal(0, held(payload))
  end)

  it("a channel closed with large writes queued cancels each once",
     function()
    local child = fork_large()
    local payload = bytes_of(MiB, 9)
    local calls, errors = {}, 0
    finally(function() child:kill("SIGKILL") end)  -- never left stopped
    child:kill("SIGSTOP")  -- reads nothing: the writes stay queued
    for i = 1, 30 do
      child:send({seq = i, payload = payload}, function(err)
        calls[i] = (calls[i] or 0) + 1
        if err ~= nil then errors = errors + 1 end
      end)
    end
    brood.sleep(10)
    assert.is_true(held(payload) > 0)
    child:kill("SIGKILL")
    local _, signal = child:wait()
    assert.are.equal("SIGKILL", signal)
    H.run_until(function() return #calls == 30 end)
    for i = 1, 30 do assert.are.equal(1, calls[i]) end
    assert.is_true(errors > 0)
    assert.are.equal(0, held(payload))
  end)

  it("disconnect writes the queued large messages first", function()
    local child = assert(brood.fork(LARGE, {"print"}, {silent = true}))
    local payload = bytes_of(MiB, 10)
    local calls = 0
    for i = 1, 20 do
      child:send({seq = i, payload = payload}, function(err)
        assert.is_nil(err)
        calls = calls + 1
      end)
    end
    child:disconnect()
    assert.are.equal("20 " .. 20 * MiB .. "\n", child.stdout:read_all())
    assert.are.equal(0, child:wait())
    assert.are.equal(20, calls)
    assert.are.equal(0, held(payload))
  end)

  it("a failed encoding or an oversized message lets the strings go",
     function()
    local child = fork_large({max_message_size = MiB})
    local big = bytes_of(MiB, 11)
    assert.has_error(function() child:send({big, print}) end)
    local err
    assert.is_false(child:send({big, big}, function(e) err = e end))
    assert.are.equal(0, held(big))
    H.run_until(function() return err ~= nil end)
    assert.are.equal("EMSGSIZE", err.code)
    local half = big:sub(1, MiB // 2)
    assert.are.equal(half, echo(child, half))  -- still usable
    assert.are.equal(0, finish(child))
  end)

  it("a whole script sends 100 MiB without drain under brood and lua5.4",
     function()
    local script = H.fixtures .. "/ipc_large_script.lua"
    for _, run in ipairs(whole_script_runs(script)) do
      local c = assert(brood.spawn(run[1], run[2], run[3]))
      local out, err = c.stdout:read_all(), c.stderr:read_all()
      assert.same({0, nil}, {c:wait()})
      assert.equal("", err)
      local round = "pid (%d+)\n100 104857600\ncalled 100 failed 0 code 0\n"
      local pid1, pid2 = out:match("^" .. round .. round .. "fds kept\n$")
      assert.is_not_nil(pid2, out)
      assert.is_true(H.gone(tonumber(pid1)) and H.gone(tonumber(pid2)))
    end
  end)

  it("a script that raises with 100 MiB queued ends cleanly", function()
    local script = H.fixtures .. "/ipc_large_script.lua"
    for _, run in ipairs(whole_script_runs(script, "raise")) do
      local c = assert(brood.spawn(run[1], run[2], run[3]))
      local out, err = c.stdout:read_all(), c.stderr:read_all()
      assert.same({1, nil}, {c:wait()})
      assert.matches("boom with 100 MiB queued", err, 1, true)
      local pid = out:match("^pid (%d+)\n$")
      assert.is_not_nil(pid, out)
      assert.is_true(H.gone(tonumber(pid)), "the child outlived the script")
    end
  end)
end)

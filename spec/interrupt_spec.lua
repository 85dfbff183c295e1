-- SIGINT, SIGTERM and SIGHUP while a script waits (DESIGN §8): under the
-- host, cleanup children die with their whole trees before the host dies
-- of the signal; under plain lua5.4, SIGINT interrupts the waiting call
-- with "interrupted!" as lua5.4 interrupts a Lua line.
local H = require "spec.helper"
local brood, core = H.brood, H.core

local FIXTURE = H.fixtures .. "/sig_wait.lua"
local MS = 1e6

-- The command line of pid, words joined by spaces; nil once it is gone.
local function cmdline(pid)
  local f = io.open("/proc/" .. pid .. "/cmdline")
  if not f then return nil end
  local s = f:read("a")  -- nil if it went meanwhile
  f:close()
  return s and (s:gsub("%z$", ""):gsub("%z", " "))
end

-- Wait until every command line in `wanted` runs among pid's descendants;
-- returns all of its descendants then.
local function tree_with(pid, wanted)
  local list
  local ok = H.run_until(function()
    list = core.descendants(pid)
    local found = {}
    for _, p in ipairs(list) do
      local c = cmdline(p)
      if c then found[c] = true end
    end
    for _, w in ipairs(wanted) do
      if not found[w] then return false end
    end
    return true
  end, 5000)
  assert(ok, "the script's processes did not start: " ..
         table.concat(wanted, ", "))
  return list
end

-- Processes a test found, killed after it whatever happened.
local recorded = {}

local function remember(pids)
  for _, p in ipairs(pids) do recorded[#recorded + 1] = p end
end

-- Wait (up to ms) for child to exit; true if it did. A child that does
-- not is killed, so that a failing test does not hang the suite.
local function exits_within(child, ms)
  local exited = child.exit_code ~= nil or child.signal_code ~= nil
  child:once("exit", function() exited = true end)
  if not H.run_until(function() return exited end, ms) then
    child:kill("SIGKILL", {tree = true})
    return false
  end
  return true
end

-- The process group of pid, or nil.
local function pgrp(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local stat = f:read("a") or ""
  f:close()
  return tonumber(stat:match("%) %a %d+ (%d+)"))
end

local function count(s, pattern)
  local _, n = s:gsub(pattern, "")
  return n
end

describe("a signal under the host", function()
  H.guard()
  after_each(function()
    for _, p in ipairs(recorded) do
      if H.alive(p) then brood.kill(p, "SIGKILL") end
    end
    recorded = {}
  end)

  -- Start the host on the fixture, wait for `wanted` to run, send sig;
  -- the host must die of it at once and take the whole tree along.
  local function interrupt(sig, args, wanted)
    local h = assert(brood.spawn(H.host, args,
                                 {stdio = {"ignore", "pipe", "pipe"}}))
    local tree = tree_with(h.pid, wanted)
    remember(tree)
    local start = core.hrtime()
    assert.is_true(h:kill(sig))
    assert.is_true(exits_within(h, 10000), "the host did not exit")
    local out, err = h.stdout:read_all(), h.stderr:read_all()
    assert.same({nil, sig}, {h:wait()})
    assert.equal("", out)
    assert.equal("", err)
    for _, p in ipairs(tree) do
      assert.is_true(H.gone(p, 3000),
                     ("%s (pid %d) survived"):format(tostring(cmdline(p)), p))
    end
    local took = (core.hrtime() - start) / MS
    assert.is_true(took < 5000, ("took %.0f ms"):format(took))
  end

  for _, sig in ipairs({"SIGINT", "SIGTERM", "SIGHUP"}) do
    it(sig .. " during exec kills the shell's child too", function()
      interrupt(sig, {FIXTURE, "exec", "43"}, {"sleep 43"})
    end)

    it(sig .. " during a spawned shell's wait kills its background jobs",
       function()
      interrupt(sig, {FIXTURE, "spawn", "44", "45"}, {"sleep 44", "sleep 45"})
    end)

    it(sig .. " during exec_sync kills the child's tree", function()
      interrupt(sig, {FIXTURE, "exec_sync", "46"}, {"sleep 46"})
    end)
  end

  it("SIGINT kills the process group of a group = true child", function()
    local h = assert(brood.spawn(H.host, {"-e", [[
      local brood = require "brood"
      local c = assert(brood.spawn("sh", {"-c",
        "sh -c 'sleep 51 & echo x' >/dev/null; sleep 52"}, {group = true}))
      c:wait()
    ]]}, {stdio = "ignore"}))
    local tree = tree_with(h.pid, {"sleep 52"})
    -- the middle shell exited: its sleep 51 now belongs to init, but
    -- still to the group
    local orphan
    assert.is_true(H.run_until(function()
      orphan = nil
      for _, p in ipairs(core.descendants(1)) do
        if cmdline(p) == "sleep 51" and pgrp(p) == pgrp(tree[1]) then
          orphan = p
        end
      end
      return orphan ~= nil
    end), "the orphan did not start")
    remember(tree)
    remember({orphan})
    assert.is_true(h:kill("SIGINT"))
    assert.is_true(exits_within(h, 10000))
    assert.same({nil, "SIGINT"}, {h:wait()})
    for _, p in ipairs(tree) do assert.is_true(H.gone(p, 3000)) end
    assert.is_true(H.gone(orphan, 3000))
  end)
end)

describe("SIGINT under plain lua5.4", function()
  H.guard()
  after_each(function()
    for _, p in ipairs(recorded) do
      if H.alive(p) then brood.kill(p, "SIGKILL") end
    end
    recorded = {}
  end)

  -- brood.spawn for plain lua5.4 (ASan runtime preloaded if need be)
  local function spawn_lua54(args, opts)
    local file, argv = H.lua54(args)
    return brood.spawn(file, argv, opts)
  end

  -- lua5.4 running the fixture with this checkout's brood.
  local function lua(args)
    local setup = ("package.path = 'lua/?.lua;lua/?/init.lua;' .. " ..
                   "package.path; package.cpath = '%s/lib/?.so;' .. " ..
                   "package.cpath"):format(H.build)
    local argv = {"-e", setup, FIXTURE}
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return assert(spawn_lua54(argv,
                              {stdio = {"ignore", "pipe", "pipe"}}))
  end

  -- Send SIGINT to l once it waits: it must fail at once with
  -- "interrupted!" and one traceback, and leave none of `tree` alive.
  local function interrupted(l, tree)
    remember(tree)
    -- the child runs: let the script get from the spawn into the wait
    brood.sleep(100)
    local start = core.hrtime()
    assert.is_true(l:kill("SIGINT"))
    assert.is_true(exits_within(l, 10000), "lua5.4 was not interrupted")
    local out, err = l.stdout:read_all(), l.stderr:read_all()
    assert.same({1, nil}, {l:wait()})
    assert.equal("", out)
    assert.matches("^lua5%.4: interrupted!\nstack traceback:\n", err)
    assert.equal(1, count(err, "stack traceback:"), err)
    for _, p in ipairs(tree) do
      assert.is_true(H.gone(p, 3000),
                     ("%s (pid %d) survived"):format(tostring(cmdline(p)), p))
    end
    local took = (core.hrtime() - start) / MS
    assert.is_true(took < 5000, ("took %.0f ms"):format(took))
  end

  it("interrupts exec and kills the shell's child", function()
    local l = lua({"exec", "47"})
    interrupted(l, tree_with(l.pid, {"sleep 47"}))
  end)

  it("interrupts exec_sync and kills its child's tree", function()
    local l = lua({"exec_sync", "48"})
    interrupted(l, tree_with(l.pid, {"sleep 48"}))
  end)

  it("interrupts a spawned shell's wait and kills its background jobs",
     function()
    local l = lua({"spawn", "53", "54"})
    interrupted(l, tree_with(l.pid, {"sleep 53", "sleep 54"}))
  end)

  it("interrupts brood.sleep", function()
    local l = lua({"sleep"})
    -- no child to look for: it says when it reaches the wait
    assert.equal("waiting\n", l.stderr:read())
    interrupted(l, {})
  end)

  it("raises an error a script can catch; brood works afterwards",
     function()
    local l = assert(spawn_lua54({"-e",
      ("package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path; " ..
       "package.cpath = '%s/lib/?.so;' .. package.cpath"):format(H.build),
      "-e", [[
        local brood = require "brood"
        local ok, err = pcall(brood.exec, "sleep 49")
        print("caught", ok, err)
        print("again", brood.exec("echo fine").stdout)
        local ok2, err2 = pcall(brood.exec_sync, "sleep 50")
        print("caught", ok2, err2)
        print("again", brood.exec_sync("echo fine"))
      ]]}, {stdio = {"ignore", "pipe", "pipe"}}))
    local first = tree_with(l.pid, {"sleep 49"})
    remember(first)
    brood.sleep(100)  -- from the spawn into the wait
    assert.is_true(l:kill("SIGINT"))
    local second = tree_with(l.pid, {"sleep 50"})
    remember(second)
    brood.sleep(100)
    assert.is_true(l:kill("SIGINT"))
    assert.is_true(exits_within(l, 10000))
    local out, err = l.stdout:read_all(), l.stderr:read_all()
    assert.same({0, nil}, {l:wait()})
    assert.equal("", err)
    assert.equal("caught\tfalse\tinterrupted!\nagain\tfine\n\n" ..
                 "caught\tfalse\tinterrupted!\nagain\tfine\n\n", out)
    for _, p in ipairs(first) do assert.is_true(H.gone(p, 3000)) end
    for _, p in ipairs(second) do assert.is_true(H.gone(p, 3000)) end
  end)

  it("leaves lua5.4's SIGINT handler in place after the loop returns",
     function()
    -- after a wait, a SIGINT during plain Lua still interrupts that line
    local l = assert(spawn_lua54({"-e",
      ("package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path; " ..
       "package.cpath = '%s/lib/?.so;' .. package.cpath"):format(H.build),
      "-e", [[
        local brood = require "brood"
        brood.sleep(1)
        print("looping")
        io.stdout:flush()
        while true do end
      ]]}, {stdio = {"ignore", "pipe", "pipe"}}))
    assert.equal("looping", l.stdout:lines()())
    assert.is_true(l:kill("SIGINT"))
    assert.is_true(exits_within(l, 10000))
    local err = l.stderr:read_all()
    l.stdout:read_all()
    assert.same({1, nil}, {l:wait()})
    -- lua.c's own message: with the position of the Lua line it stopped
    assert.matches("^lua5%.4: [^\n]*interrupted!\nstack traceback:\n", err)
  end)

  it("a script's on_signal handler for SIGINT still gets it", function()
    local l = assert(spawn_lua54({"-e",
      ("package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path; " ..
       "package.cpath = '%s/lib/?.so;' .. package.cpath"):format(H.build),
      "-e", [[
        local brood = require "brood"
        local h
        h = brood.on_signal("SIGINT", function(name)
          print("handled", name)
          h:stop()
        end)
        print("ready")
        io.stdout:flush()
        brood.run()
        print("done")
      ]]}, {stdio = {"ignore", "pipe", "pipe"}}))
    local lines = l.stdout:lines()
    assert.equal("ready", lines())
    brood.sleep(200)
    assert.is_true(l:kill("SIGINT"))
    assert.is_true(exits_within(l, 10000))
    local out = l.stdout:read_all()
    assert.equal("", l.stderr:read_all())
    assert.same({0, nil}, {l:wait()})
    assert.equal("handled\tSIGINT\ndone\n", out)
  end)
end)

-- The race a tree kill must not lose: a shell running `sleep A; sleep B`
-- starts `sleep B` the moment `sleep A` dies. Signalled one process after
-- the other, the shell may fork before its own signal comes, and the new
-- sleep escapes to init. Eight such shells at once, a few rounds: on the
-- code that signalled descendants first, most rounds left some behind.
describe("no process escapes a tree kill", function()
  H.guard()
  local TAG = tostring(core.getpid())
  local A, B = "60.5" .. TAG, "61.5" .. TAG  -- this run's own lengths

  -- pids of this run's sleeps, wherever they are now (init adopts them)
  local function sleeps()
    local pids = {}
    for _, p in ipairs(core.descendants(1)) do
      local c = cmdline(p)
      if c == "sleep " .. A or c == "sleep " .. B then pids[#pids + 1] = p end
    end
    return pids
  end

  after_each(function()
    for _, p in ipairs(sleeps()) do brood.kill(p, "SIGKILL") end
  end)

  local SHELLS = ([[
    local brood = require "brood"
    for _ = 1, 8 do
      assert(brood.spawn("sh", {"-c", "sleep %s; sleep %s"},
                         {stdio = "ignore"}))
    end
  ]]):format(A, B)

  -- Start the host (or plain lua5.4) with `script`, wait for its eight
  -- `sleep A`, do `act(h)`; afterwards no sleep of ours may be left.
  local function none_escape(script, act, lua54)
    for _ = 1, 4 do
      local file, argv = H.host, {"-e", script}
      if lua54 then
        file, argv = H.lua54({"-e", ("package.path = " ..
          "'lua/?.lua;lua/?/init.lua;' .. package.path; package.cpath = " ..
          "'%s/lib/?.so;' .. package.cpath"):format(H.build), "-e", script})
      end
      local h = assert(brood.spawn(file, argv,
                                   {stdio = {"pipe", "ignore", "pipe"}}))
      assert(H.run_until(function() return #sleeps() == 8 end, 5000),
             "the shells did not start")
      act(h)
      assert.is_true(exits_within(h, 10000), "the host did not exit")
      h.stderr:read_all()
      h:wait()
      -- a shell that escaped its signal has started `sleep B` by now
      brood.sleep(200)
      local left = sleeps()
      assert.are.equal(0, #left, #left .. " sleep(s) escaped: " ..
                       table.concat(left, " "))
    end
  end

  it("SIGINT to the host", function()
    none_escape(SHELLS .. "brood.sleep(60000)", function(h)
      h:kill("SIGINT")
    end)
  end)

  it("Ctrl-C under plain lua5.4", function()
    none_escape(SHELLS .. "brood.sleep(60000)", function(h)
      h:kill("SIGINT")
    end, true)
  end)

  it("kill(sig, {tree = true}) and a timeout", function()
    for round = 1, 4 do
      local children = {}
      for i = 1, 8 do
        children[i] = assert(brood.spawn("sh", {"-c",
          ("sleep %s; sleep %s"):format(A, B)},
          {stdio = "ignore", timeout = round % 2 == 0 and 300 or nil}))
      end
      assert(H.run_until(function() return #sleeps() == 8 end, 5000))
      if round % 2 == 1 then
        for _, c in ipairs(children) do c:kill("SIGTERM", {tree = true}) end
      end
      for _, c in ipairs(children) do assert.is_nil(c:wait()) end
      brood.sleep(200)
      local left = sleeps()
      assert.are.equal(0, #left, #left .. " sleep(s) escaped")
    end
  end)

  it("the host's exit after an uncaught error", function()
    -- the script waits for a line, then fails
    none_escape(SHELLS .. "io.read('l') error('failed')", function(h)
      h.stdin:write("go\n")
    end)
  end)
end)

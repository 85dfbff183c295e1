-- Policy out of C (issue 9): loading brood.core changes nothing
-- process-wide; core.setup_process() does, and `require "brood"` calls
-- it; core.configure takes the options init.lua reads from the
-- environment.

local H = require "spec.helper"
local brood = H.brood

-- Run `code` under plain lua5.4 with this checkout's modules, through
-- `sh -c PREFIX; exec env --ignore-signal=CHLD lua5.4 -e CODE` (PREFIX
-- may close fds); returns stdout, stderr, exit code.
local function lua(code, prefix)
  local setup = ("package.path = 'lua/?.lua;lua/?/init.lua;' .. " ..
                 "package.path; package.cpath = '%s/lib/?.so;' .. " ..
                 "package.cpath\n"):format(H.build)
  local c = assert(brood.spawn("sh", {"-c",
    (prefix or ":") .. "; exec env --ignore-signal=CHLD " .. H.lua54_sh() ..
    ' -e "$0"',
    setup .. code},
    {stdio = {"pipe", "pipe", "pipe"}}))
  local out, err = c.stdout:read_all(), c.stderr:read_all()
  return out, err, c:wait()
end

-- Prints the SigIgn mask and whether fd 0 is open.
local REPORT = [[
  local function report(when)
    local f = assert(io.open("/proc/self/status"))
    local ign = f:read("a"):match("SigIgn:%s*(%x+)")
    f:close()
    local fd0 = io.open("/proc/self/fdinfo/0") ~= nil
    io.stderr:write(when, " ", ign, " ", tostring(fd0), "\n")
  end
]]

local SIGPIPE_BIT = 1 << (13 - 1)
local SIGCHLD_BIT = 1 << (17 - 1)

local function masks(err)
  local t = {}
  for when, ign, fd0 in err:gmatch("(%a+) (%x+) (%a+)\n") do
    t[when] = {ign = tonumber(ign, 16), fd0 = fd0 == "true"}
  end
  return t
end

describe("process-wide settings (issue 9)", function()
  H.guard()

  it("loading brood.core changes no signal disposition and no fd", function()
    local _, err, code = lua(REPORT .. [[
      report("before")
      local core = require "brood.core"
      report("after")
    ]], "exec 0<&-")
    assert.equal(0, code, err)
    local m = masks(err)
    assert.equal(m.before.ign, m.after.ign)
    assert.equal(0, m.after.ign & SIGPIPE_BIT)
    assert.equal(SIGCHLD_BIT, m.after.ign & SIGCHLD_BIT)
    assert.is_false(m.before.fd0)
    assert.is_false(m.after.fd0)
  end)

  it("core.setup_process() ignores SIGPIPE, stops ignoring SIGCHLD and " ..
     "fills fds 0-2", function()
    local _, err, code = lua(REPORT .. [[
      report("before")
      local core = require "brood.core"
      core.setup_process()
      report("after")
      core.setup_process()  -- idempotent
      report("again")
    ]], "exec 0<&-")
    assert.equal(0, code, err)
    local m = masks(err)
    assert.equal(SIGCHLD_BIT, m.before.ign & SIGCHLD_BIT)
    assert.is_false(m.before.fd0)
    assert.equal(SIGPIPE_BIT, m.after.ign & SIGPIPE_BIT)
    assert.equal(0, m.after.ign & SIGCHLD_BIT)
    assert.is_true(m.after.fd0)
    assert.same(m.after, m.again)
  end)

  it("require 'brood' sets them up, and works with fds 0 and 1 closed",
     function()
    local _, err, code = lua(REPORT .. [[
      local brood = require "brood"
      report("after")
      local c = assert(brood.spawn("sh", {"-c", "cat; echo err >&2"}))
      c.stdin:close("in")
      local out = c.stdout:read_all()
      io.stderr:write(out, "|", c.stderr:read_all(), "|", c:wait(), "\n")
    ]], "exec 0<&- 1>&-")
    assert.equal(0, code, err)
    local m = masks(err)
    assert.equal(SIGPIPE_BIT, m.after.ign & SIGPIPE_BIT)
    assert.equal(0, m.after.ign & SIGCHLD_BIT)
    assert.truthy(err:find("\nin|err\n|0\n", 1, true), err)
  end)
end)

describe("core.configure (issue 9)", function()
  H.guard()

  it("pidfd = false watches exits through SIGCHLD; true goes back",
     function()
    local out, err, code = lua([[
      local brood = require "brood"
      local core = require "brood.core"
      local first = core.exit_watch
      core.configure{pidfd = false}
      print(core.exit_watch, brood.core_info.exit_watch == first)
      local c = assert(brood.spawn("sh", {"-c", "exit 3"}))
      print(c:wait())
      core.configure{pidfd = true}
      print(core.exit_watch == first)
      c = assert(brood.spawn("sh", {"-c", "exit 4"}))
      print(c:wait())
      print(#core.zombies())
    ]])
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal("sigchld\ttrue\n3\tnil\ntrue\n4\tnil\n0\n", out)
  end)

  it("takes spin_us; options left out stay as they are", function()
    local out, err, code = lua([[
      local core = require "brood.core"
      local watch = core.exit_watch
      core.configure{spin_us = 0}
      core.configure{}
      print(core.exit_watch == watch)
      print(pcall(core.configure, {spin_us = "many"}))
      print(pcall(core.configure))
    ]])
    assert.equal("", err)
    assert.equal(0, code)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("true", lines[1])
    assert.matches("^false\t.*number expected", lines[2])
    assert.matches("^false\t.*table expected", lines[3])
  end)

  it("BROOD_SPIN_US and BROOD_NO_PIDFD are read by require 'brood'",
     function()
    local c = assert(brood.spawn(H.host, {"-e", [[
      local brood = require "brood"
      print(brood.core_info.exit_watch, require("brood.core").exit_watch)
    ]]}, {env = {BROOD_NO_PIDFD = "1", BROOD_SPIN_US = "0",
                 PATH = os.getenv("PATH")}}))
    local out = c.stdout:read_all()
    assert.equal("sigchld\tsigchld\n", out)
    assert.same({0, nil}, {c:wait()})
  end)
end)

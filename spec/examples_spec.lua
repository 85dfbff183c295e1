-- The examples a user would write (issue 13 item 7), run as whole
-- scripts under the host and under plain lua5.4 with this checkout on
-- the paths: each must end by itself with the expected output and leave
-- no process behind.
local H = require "spec.helper"
local brood = H.brood

local LUA = "lua5.4"
local env = {
  LUA_PATH = "lua/?.lua;lua/?/init.lua;;",
  LUA_CPATH = H.build .. "/lib/?.so;;",
}

-- Run argv in a process group of its own; returns the exec result (with
-- check = false) once it has exited, after proving that nothing of its
-- group is left.
local function run(file, args)
  local r = assert(brood.exec_file(file, args,
    {check = false, timeout = 30000, detached = true, extend_env = env}))
  local left = brood.exec_sync("kill -0 -- -" .. r.pid .. " 2>/dev/null",
                               {check = false})
  assert.are_not.equal(0, left.code, "processes left in the group of " ..
                       file .. " " .. table.concat(args, " "))
  return r
end

-- each example under both runners
local function both(script, args, check_result)
  for _, runner in ipairs({H.host, LUA}) do
    local argv = {script}
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    if runner == LUA then  -- with the ASan runtime preloaded if need be
      check_result(run(H.lua54(argv)), runner)
    else
      check_result(run(runner, argv), runner)
    end
  end
end

describe("examples", function()
  H.guard()

  it("build_runner.lua compiles in parallel, links and runs", function()
    both("examples/build_runner.lua", nil, function(r, who)
      assert.are.equal(0, r.code, who .. ": " .. r.stderr)
      assert.truthy(r.stdout:find("sum of squares 1..8 = 204\n", 1, true))
      assert.truthy(r.stdout:find("%[9/9%] [%w.]+\n"))
      assert.truthy(r.stdout:find("build ok", 1, true))
    end)
  end)

  it("build_runner.lua --broken fails fast with the compiler's error",
     function()
    both("examples/build_runner.lua", {"--broken"}, function(r, who)
      assert.are.equal(1, r.code, who)
      assert.truthy(r.stdout:find("build failed\n", 1, true))
      assert.falsy(r.stdout:find("build ok", 1, true))
      assert.falsy(r.stdout:find("[9/9]", 1, true))
      assert.truthy(r.stderr:find("unit5.c", 1, true))
    end)
  end)

  it("log_follower.lua stops after three matching lines", function()
    both("examples/log_follower.lua", nil, function(r, who)
      assert.are.equal(0, r.code, who .. ": " .. r.stderr)
      assert.are.equal("match 1: ERROR disk 3 full\n" ..
                       "match 2: ERROR disk 6 full\n" ..
                       "match 3: ERROR disk 9 full\n" ..
                       "3 matching line(s)\n", r.stdout)
    end)
  end)

  it("log_follower.lua stops when a wait runs out", function()
    -- (ERROR lines come 150 ms apart; tail -F may be slow to pass them)
    both("examples/log_follower.lua", {"10", "1500"}, function(r, who)
      assert.are.equal(0, r.code, who .. ": " .. r.stderr)
      assert.are.equal("match 1: ERROR disk 3 full\n" ..
                       "match 2: ERROR disk 6 full\n" ..
                       "match 3: ERROR disk 9 full\n" ..
                       "match 4: ERROR disk 12 full\n" ..
                       "no ERROR line within 1500 ms: stopping\n" ..
                       "4 matching line(s)\n", r.stdout)
    end)
  end)

  it("deploy.lua packs paths with spaces and quotes through a pipeline",
     function()
    both("examples/deploy.lua", nil, function(r, who)
      assert.are.equal(0, r.code, who .. ": " .. r.stderr)
      assert.truthy(r.stdout:find("^packed 3 files, cksum %d+\n"))
      assert.truthy(r.stdout:find("| gzip -9 > '", 1, true))
      assert.truthy(r.stdout:find("site'\\''s build.tar.gz'", 1, true))
    end)
  end)

  it("deploy.lua reports a failing tar stage with its exit codes",
     function()
    local dir = brood.exec_sync("mktemp -d"):gsub("\n$", "")
    local dest = dir .. "/a b.tar.gz"
    both("examples/deploy.lua", {dir .. "/missing", dest}, function(r, who)
      assert.are.equal(1, r.code, who)
      assert.are.equal("", r.stdout)
      assert.truthy(r.stderr:find("deploy failed: pack: tar failed " ..
                                  "(codes 2,0)", 1, true), r.stderr)
    end)
    brood.exec_file_sync("rm", {"-rf", dir})
  end)

  it("every example runs plainly from the repo root", function()
    -- what the before-stop hook does: each examples/*.lua but workers
    local ls = brood.exec_sync("ls examples/*.lua")
    local n = 0
    for script in ls:gmatch("[^\n]+") do
      if not script:find("worker") then
        n = n + 1
        local r = run(H.host, {script})
        assert.are.equal(0, r.code, script .. ": " .. r.stderr)
      end
    end
    assert.is_true(n >= 3)
  end)
end)

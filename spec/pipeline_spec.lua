-- brood.pipeline (DESIGN §10, issue 13 item 3).
local H = require "spec.helper"
local brood = H.brood

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error: " .. pattern)
  assert.matches(pattern, err)
end

describe("brood.pipeline (issue 13)", function()
  H.guard()

  it("seq 1 1000000 | grep 7 | wc -l gives the shell's answer, 20 times",
     function()
    local want = assert(brood.exec("seq 1 1000000 | grep 7 | wc -l")).stdout
    for _ = 1, 20 do
      local r = assert(brood.pipeline({{"seq", "1", "1000000"},
                                       {"grep", "7"}, {"wc", "-l"}}))
      assert.are.equal(want, r.stdout)
      assert.are.same({0, 0, 0}, r.codes)
      assert.are.equal(0, r.code)
      assert.are.equal("seq 1 1000000 | grep 7 | wc -l", r.cmd)
    end
  end)

  it("stages are real pipes: the parent reads only the last stdout",
     function()
    -- stage 2 sees a pipe (not a socket) on stdin; stage 1's output never
    -- reaches us
    local r = assert(brood.pipeline({
      "echo secret; echo e1 >&2",
      "test -p /dev/stdin && echo pipe; cat > /dev/null; echo e2 >&2",
    }))
    assert.are.equal("pipe\n", r.stdout)
    assert.are.equal("e1\ne2\n", r.stderr)
    assert.are.same({"e1\n", "e2\n"}, r.stderrs)
    assert.are.equal(2, #r.pids)
  end)

  it("pipefail: a failing stage fails it; codes per stage", function()
    local r, err, code = brood.pipeline({"echo a; exit 3", {"cat"}})
    assert.is_nil(r)
    assert.are.equal(3, code)
    assert.are.equal(3, err.code)
    assert.are.same({3, 0}, err.codes)
    assert.are.equal("a\n", err.stdout)
    assert.matches("^Command failed: echo a; exit 3 | cat", err.message)
    -- the last failing stage decides, as pipefail does
    r, err, code = brood.pipeline({"exit 2", "exit 5", "true"})
    assert.is_nil(r)
    assert.are.equal(5, code)
    assert.are.same({2, 5, 0}, err.codes)
  end)

  it("check = false returns the result with the codes", function()
    local r = assert(brood.pipeline({"printf x; exit 4", "cat"},
                                    {check = false}))
    assert.are.equal(4, r.code)
    assert.are.same({4, 0}, r.codes)
    assert.are.equal("x", r.stdout)
  end)

  it("a stage that stops reading early ends the ones before it", function()
    local r = assert(brood.pipeline({{"yes"}, {"head", "-n", "2"}}))
    assert.are.equal("y\ny\n", r.stdout)
    assert.are.equal("SIGPIPE", r.signals[1])
    r = assert(brood.pipeline({"yes", "head -n 1"}))
    assert.are.equal("y\n", r.stdout)
  end)

  it("input feeds the first stage", function()
    local r = assert(brood.pipeline({{"tr", "a-z", "A-Z"}, {"rev"}},
                                    {input = "abc\nxyz\n"}))
    assert.are.equal("CBA\nZYX\n", r.stdout)
  end)

  it("timeout kills every stage's tree", function()
    local t0 = brood.hrtime()
    local r, err, code = brood.pipeline({
      "sleep 30 & echo $! >&2; wait", "sleep 30; cat",
    }, {timeout = 1000})  -- (time for the first stage to print $!)
    assert.is_nil(r)
    assert.are.equal("ETIMEDOUT", code)
    assert.is_true(err.killed)
    assert.is_true((brood.hrtime() - t0) / 1e6 < 10000)
    local grandchild = tonumber(err.stderr:match("(%d+)"))
    assert.is_true(H.gone(grandchild))
  end)

  it("max_buffer cuts the last stdout and stops the pipeline", function()
    local r, err, code = brood.pipeline({"yes", "cat"}, {max_buffer = 100})
    assert.is_nil(r)
    assert.are.equal("ERR_CHILD_PROCESS_STDIO_MAXBUFFER", code)
    assert.are.equal(100, #err.stdout)
  end)

  it("a stage that cannot start: ENOENT, the others reaped", function()
    local r, err, code = brood.pipeline({{"sleep", "30"},
                                         {"/no/such/program"}})
    assert.is_nil(r)
    assert.are.equal("ENOENT", code)
    assert.matches("/no/such/program", err.message)
  end)

  it("shell strings and argv arrays mix; one stage works", function()
    local r = assert(brood.pipeline({{"printf", "%s\\n", "b", "a"}, "sort"}))
    assert.are.equal("a\nb\n", r.stdout)
    assert.are.equal("one\n", assert(brood.pipeline({"echo one"})).stdout)
  end)

  it("cancelling the waiting task kills every stage", function()
    local t = brood.go(function()
      return brood.pipeline({"sleep 30", "sleep 30"})
    end)
    brood.sleep(30)
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.are.equal("ECANCELED", err.code)
  end)

  it("a whole script under the host and under lua5.4", function()
    local cwd = assert(H.core.cwd())
    local script = H.tmpfile([[
      local brood = require "brood"
      local r = assert(brood.pipeline({"printf 'b\na\n'", {"sort"}}))
      io.write(r.stdout, table.concat(r.codes, ","), "\n")
    ]])
    local env = {LUA_PATH = cwd .. "/lua/?.lua;" .. cwd .. "/lua/?/init.lua;;",
                 LUA_CPATH = H.build_abs .. "/lib/?.so;;"}
    local a = assert(brood.exec_file(H.host, {script}, {extend_env = env}))
    local file, argv = H.lua54({"-e", "package.path = os.getenv('LUA_PATH') "
      .. "package.cpath = os.getenv('LUA_CPATH')", script})
    local b = assert(brood.exec_file(file, argv, {extend_env = env}))
    os.remove(script)
    assert.are.equal("a\nb\n0,0\n", a.stdout)
    assert.are.equal("a\nb\n0,0\n", b.stdout)
  end)

  it("bad input raises", function()
    raises("bad argument #1 to 'pipeline' %(table of stages expected, " ..
           "got no value%)", brood.pipeline)
    raises("bad argument #1 to 'pipeline' %(at least one stage expected%)",
           brood.pipeline, {})
    raises("bad argument #1 to 'pipeline' %(stages%[2%] must be a string " ..
           "or an argv table, got number%)", brood.pipeline, {"true", 3})
    raises("bad argument #1 to 'pipeline' %(stages%[1%] must not be empty%)",
           brood.pipeline, {{}})
    raises("bad argument #1 to 'pipeline' %(stages%[1%]%[2%] must not " ..
           "contain NUL bytes%)", brood.pipeline, {{"echo", "a\0"}})
    raises("bad argument #2 to 'pipeline' %(unknown option 'stdio'",
           brood.pipeline, {"true"}, {stdio = "inherit"})
    raises("bad argument #2 to 'pipeline' %(unknown option 'tiemout' %(did " ..
           "you mean 'timeout'%?%)%)", brood.pipeline, {"true"},
           {tiemout = 1})
    raises("bad argument #2 to 'pipeline' %(option 'timeout' must be a " ..
           "whole number >= 0, got %-1%)", brood.pipeline, {"true"},
           {timeout = -1})
  end)
end)

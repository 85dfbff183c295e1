-- A brood stream given in another child's stdio is handed over (DESIGN
-- §4): the parent stops reading it at once, so no byte meant for that
-- child lands in the parent's buffer; it reads it again only when the
-- script explicitly does. Waits on every child end, and no fd leaks.

local H = require "spec.helper"
local brood, core = H.brood, H.core

local function shell(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read("a")
  f:close()
  return out
end

local function sh(script, opts)
  return assert(brood.spawn("sh", {"-c", script}, opts))
end

describe("handing a stream to another child", function()
  H.guard()

  it("seq | grep 7 | wc -l from streams: the exact count, 50 times",
     function()
    local want = shell("seq 1 100000 | grep 7 | wc -l")
    assert.equal("40951", want:match("%d+"))
    for round = 1, 50 do
      local seq = assert(brood.spawn("seq", {"1", "100000"}))
      local grep = assert(brood.spawn("grep", {"7"},
                                      {stdio = {seq.stdout, "pipe", "pipe"}}))
      local wc = assert(brood.spawn("wc", {"-l"},
                                    {stdio = {grep.stdout, "pipe", "pipe"}}))
      -- the first waits must neither drain the handed streams nor hang
      assert.same({0, nil}, {seq:wait()})
      assert.same({0, nil}, {grep:wait()})
      assert.equal(want, wc.stdout:read_all(), "round " .. round)
      assert.same({0, nil}, {wc:wait()})
      assert.equal("", seq.stderr:read_all())
    end
  end)

  it("seq | wc -l from streams, waiting last to first, 50 times", function()
    for round = 1, 50 do
      local seq = assert(brood.spawn("seq", {"1", "100000"},
                                     {stdio = {"ignore", "pipe", "ignore"}}))
      local wc = assert(brood.spawn("wc", {"-l"},
                                    {stdio = {seq.stdout, "pipe", "ignore"}}))
      assert.equal("100000", wc.stdout:read_all():match("%d+"),
                   "round " .. round)
      assert.same({0, nil}, {wc:wait()})
      assert.same({0, nil}, {seq:wait()})
    end
  end)

  it("the parent reads the rest once the script asks, after the reader",
     function()
    -- sh's read takes one line, byte by byte, and leaves the rest
    local src = sh("printf 'one\\ntwo\\nthree\\n'")
    local reader = sh('read l; echo "got $l"',
                      {stdio = {src.stdout, "pipe", "pipe"}})
    assert.equal("got one\n", reader.stdout:read_all())
    assert.same({0, nil}, {reader:wait()})
    assert.same({0, nil}, {src:wait()})
    assert.equal("two\nthree\n", src.stdout:read_all())
  end)

  it("the script may take it back while the other child runs", function()
    local src = sh("echo first; read x; echo second")
    local reader = sh('read l; echo "got $l"; exec sleep 30',
                      {stdio = {src.stdout, "pipe", "pipe"}})
    assert.equal("got first\n", reader.stdout:read())
    src.stdin:close("go\n")
    assert.equal("second\n", src.stdout:read_all())  -- reclaimed by reading
    assert.same({0, nil}, {src:wait()})
    reader:kill()
    assert.same({nil, "SIGTERM"}, {reader:wait()})
  end)

  it("what the parent buffered before the handover stays the parent's",
     function()
    local src = sh("echo early; read x; echo late")
    assert.is_true(H.run_until(function()
      return src.stdout._buffered > 0
    end))
    local cat = assert(brood.spawn("cat", {},
                                   {stdio = {src.stdout, "pipe", "pipe"}}))
    src.stdin:close("go\n")
    assert.equal("late\n", cat.stdout:read_all())
    assert.same({0, nil}, {cat:wait()})
    assert.same({0, nil}, {src:wait()})
    assert.equal("early\n", src.stdout:read_all())
  end)

  it("a \"data\" listener added after the handover takes it back",
     function()
    local src = sh("read x; echo after")
    local cat = assert(brood.spawn("sh", {"-c", "exec sleep 30"},
                                   {stdio = {src.stdout, "ignore", "ignore"}}))
    local got = {}
    src.stdout:on("data", function(d) got[#got + 1] = d end)
    src.stdin:close("go\n")
    assert.same({0, nil}, {src:wait()})
    assert.equal("after\n", table.concat(got))
    cat:kill()
    cat:wait()
  end)

  it("a whole script builds the pipeline under brood and under lua5.4",
     function()
    local want = shell("seq 1 100000 | grep 7 | wc -l")
    local script = H.fixtures .. "/handover_pipeline.lua"
    local setup = ("package.cpath = '%s/lib/?.so;' .. package.cpath; " ..
                   "package.path = 'lua/?.lua;lua/?/init.lua;' .. " ..
                   "package.path"):format(H.build)
    for _, argv in ipairs({{H.host, {script}},
                           {H.lua54({"-e", setup, script})}}) do
      local c = assert(brood.spawn(argv[1], argv[2]))
      local out, err = c.stdout:read_all(), c.stderr:read_all()
      assert.same({0, nil}, {c:wait()})
      assert.equal("", err)
      -- every round the exact count; then the fds and children it left
      local rounds, before, after, kids =
        out:match("^(.-)fds (%d+) (%d+)\nkids (%d+)\n$")
      assert.equal(("count " .. want):rep(5), rounds)
      assert.equal(before, after)
      assert.equal("0", kids)
    end
  end)
end)

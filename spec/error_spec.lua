-- brood.Error: the shape of operational failures (DESIGN §2).
local H = require "spec.helper"
local brood = H.brood
local Error = require "brood.error"

describe("brood.Error", function()
  H.guard()

  it("is the metatable of errors, named brood.Error", function()
    assert.is_table(brood.Error)
    assert.equal("brood.Error", brood.Error.__name)
    assert.equal(Error.Error, brood.Error)
  end)

  it("has message and code, and tostring gives the message", function()
    local e = Error.new({message = "it broke", code = "EBROKE"})
    assert.equal(brood.Error, getmetatable(e))
    assert.equal("it broke", e.message)
    assert.equal("EBROKE", e.code)
    assert.equal("it broke", tostring(e))
    assert.is_true(Error.is(e))
    assert.is_false(Error.is({message = "x"}))
    assert.is_false(Error.is("x"))
  end)

  it("keeps an integer code (exec failures)", function()
    local e = Error.new({message = "exit 2", code = 2})
    assert.equal(2, e.code)
    assert.equal("integer", math.type(e.code))
  end)

  it("from_core prefixes the context and keeps extra fields", function()
    local e = Error.from_core("write", "EPIPE: broken pipe", "EPIPE",
                              {syscall = "write"})
    assert.equal("write: EPIPE: broken pipe", e.message)
    assert.equal("EPIPE", e.code)
    assert.equal("write", e.syscall)
    assert.equal(brood.Error, getmetatable(e))
    local bare = Error.from_core(nil, "ENOENT: no such file", "ENOENT")
    assert.equal("ENOENT: no such file", tostring(bare))
  end)

  it("fail returns nil, err, code", function()
    local e = Error.new({message = "m", code = "ECODE"})
    local r = table.pack(Error.fail(e))
    assert.equal(3, r.n)
    assert.is_nil(r[1])
    assert.equal(e, r[2])
    assert.equal("ECODE", r[3])
  end)

  it("raised, it travels as the same table", function()
    local e = Error.new({message = "m", code = "ECODE"})
    local ok, got = pcall(error, e)
    assert.is_false(ok)
    assert.equal(e, got)
  end)

  it("is what spawn returns for a missing program", function()
    local child, err, code = brood.spawn("nosuch-brood-program")
    assert.is_nil(child)
    assert.equal("ENOENT", code)
    assert.equal(brood.Error, getmetatable(err))
    assert.equal("ENOENT", err.code)
    assert.equal("spawn 'nosuch-brood-program': ENOENT: no such file or "
                 .. "directory", err.message)
    assert.equal(err.message, tostring(err))
    assert.equal("spawn nosuch-brood-program", err.syscall)
    assert.equal("nosuch-brood-program", err.path)
    assert.same({}, err.spawnargs)  -- without the program, as Node's
    assert.equal("integer", math.type(err.errno))
  end)

  it("names the cwd when the cwd is the culprit", function()
    local child, err, code = brood.spawn("true", {"a"},
                                         {cwd = "/nonexistent-brood-dir"})
    assert.is_nil(child)
    assert.equal("ENOENT", code)
    assert.equal(brood.Error, getmetatable(err))
    assert.equal("spawn 'true': cwd '/nonexistent-brood-dir': ENOENT: no " ..
                 "such file or directory", tostring(err))
    assert.equal("/nonexistent-brood-dir", err.path)
    assert.same({"a"}, err.spawnargs)
  end)

  it("is what kill returns for a pid that is gone", function()
    local child = assert(brood.spawn("true"))
    local pid = child.pid
    child:wait()
    local ok, err, code = brood.kill(pid, "SIGTERM")
    assert.is_nil(ok)
    assert.equal("ESRCH", code)
    assert.equal(brood.Error, getmetatable(err))
    assert.equal(code, err.code)
    assert.equal("kill", err.syscall)
  end)
end)

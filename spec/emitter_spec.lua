-- brood.emitter: on, once, off, emit in the style of Node's EventEmitter.
local H = require "spec.helper"
local emitter = require "brood.emitter"

local function new()
  return setmetatable({}, emitter.Emitter)
end

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return err
end

describe("brood.emitter", function()
  H.guard()

  it("calls listeners in the order they were added, with the arguments",
     function()
    local e, log = new(), {}
    e:on("ev", function(...) log[#log + 1] = {"a", ...} end)
    e:on("ev", function(...) log[#log + 1] = {"b", ...} end)
    e:on("other", function() log[#log + 1] = {"other"} end)
    assert.is_true(e:emit("ev", 1, "two"))
    assert.same({{"a", 1, "two"}, {"b", 1, "two"}}, log)
  end)

  it("passes nils in the arguments through", function()
    local e, got = new(), nil
    e:on("ev", function(...) got = table.pack(...) end)
    e:emit("ev", nil, 2, nil)
    assert.equal(3, got.n)
    assert.same({nil, 2, nil}, {got[1], got[2], got[3]})
  end)

  it("emit returns false when nobody listens", function()
    local e = new()
    assert.is_false(e:emit("ev", 1))
    e:on("ev", function() end)
    e:off("ev")
    assert.is_false(e:emit("ev"))
  end)

  it("on and once return the emitter (for chaining)", function()
    local e = new()
    local f = function() end
    assert.equal(e, e:on("a", f))
    assert.equal(e, e:once("a", f))
    assert.equal(e, e:off("a", f))
    assert.equal(e, e:off("nothing"))
  end)

  it("once fires once, in its place among the others", function()
    local e, log = new(), {}
    e:on("ev", function() log[#log + 1] = "on1" end)
    e:once("ev", function() log[#log + 1] = "once" end)
    e:on("ev", function() log[#log + 1] = "on2" end)
    e:emit("ev")
    e:emit("ev")
    assert.same({"on1", "once", "on2", "on1", "on2"}, log)
    assert.equal(2, e:listener_count("ev"))
  end)

  it("once fires once even when emit is re-entered from it", function()
    local e, n = new(), 0
    e:once("ev", function()
      n = n + 1
      e:emit("ev")
    end)
    e:emit("ev")
    assert.equal(1, n)
    assert.equal(0, e:listener_count("ev"))
  end)

  it("off removes one listener; the same function added twice needs two",
     function()
    local e, n = new(), 0
    local f = function() n = n + 1 end
    e:on("ev", f)
    e:on("ev", f)
    e:off("ev", f)
    e:emit("ev")
    assert.equal(1, n)
    e:off("ev", f)
    e:emit("ev")
    assert.equal(1, n)
  end)

  it("off removes a once listener before it fires", function()
    local e, n = new(), 0
    local f = function() n = n + 1 end
    e:once("ev", f)
    e:off("ev", f)
    assert.is_false(e:emit("ev"))
    assert.equal(0, n)
  end)

  it("off without a function removes every listener of the event",
     function()
    local e, n = new(), 0
    e:on("ev", function() n = n + 1 end)
    e:on("ev", function() n = n + 1 end)
    e:on("keep", function() n = n + 10 end)
    e:off("ev")
    e:emit("ev")
    e:emit("keep")
    assert.equal(10, n)
  end)

  it("off of an unknown listener changes nothing", function()
    local e, n = new(), 0
    e:on("ev", function() n = n + 1 end)
    e:off("ev", function() end)
    e:emit("ev")
    assert.equal(1, n)
  end)

  it("off during emit takes effect from the next emit", function()
    local e, log = new(), {}
    local b = function() log[#log + 1] = "b" end
    e:on("ev", function()
      log[#log + 1] = "a"
      e:off("ev", b)
    end)
    e:on("ev", b)
    e:emit("ev")
    assert.same({"a", "b"}, log)
    e:emit("ev")
    assert.same({"a", "b", "a"}, log)
  end)

  it("a once listener removed by an earlier listener of the same emit " ..
     "does not run, and the unlisten hook fires once", function()
    local e, log, unlistened = new(), {}, 0
    e._on_unlisten = function() unlistened = unlistened + 1 end
    local b = function() log[#log + 1] = "b" end
    e:on("ev", function()
      log[#log + 1] = "a"
      e:off("ev", b)
    end)
    e:once("ev", b)
    e:emit("ev")
    assert.same({"a"}, log)
    assert.equal(1, unlistened)
    assert.equal(1, e:listener_count("ev"))
    e:emit("ev")
    assert.same({"a", "a"}, log)
    assert.equal(1, unlistened)
  end)

  it("a once listener fires the unlisten hook once when it runs", function()
    local e, unlistened = new(), 0
    e._on_unlisten = function() unlistened = unlistened + 1 end
    e:once("ev", function() end)
    e:on("ev", function() end)
    e:emit("ev")
    e:emit("ev")
    assert.equal(1, unlistened)
  end)

  it("raises for an event name its class does not emit, suggesting one",
     function()
    local Class = emitter.extend({__name = "T"}, {"exit", "close"})
    Class.__index = Class
    local e = setmetatable({}, Class)
    local err = raises(e.on, e, "exitt", function() end)
    assert.matches("bad argument #1 to 'on' %(unknown event 'exitt' " ..
                   "%(did you mean 'exit'%?%)%)$", err)
    err = raises(e.once, e, "finish", function() end)
    assert.matches("bad argument #1 to 'once' %(unknown event 'finish'%)$",
                   err)
    e:on("close", function() end)
    assert.equal(1, e:listener_count("close"))
  end)

  it("a listener can remove itself during emit", function()
    local e, log = new(), {}
    local self_removing
    self_removing = function()
      log[#log + 1] = "self"
      e:off("ev", self_removing)
    end
    e:on("ev", self_removing)
    e:on("ev", function() log[#log + 1] = "next" end)
    e:emit("ev")
    e:emit("ev")
    assert.same({"self", "next", "next"}, log)
  end)

  it("a listener added during emit runs from the next emit", function()
    local e, log = new(), {}
    e:on("ev", function()
      log[#log + 1] = "first"
      e:on("ev", function() log[#log + 1] = "added" end)
    end)
    e:emit("ev")
    assert.same({"first"}, log)
    e:emit("ev")
    assert.same({"first", "first", "added"}, log)
  end)

  it("listener_count counts per event", function()
    local e = new()
    assert.equal(0, e:listener_count("ev"))
    local f = function() end
    e:on("ev", f)
    e:once("ev", f)
    e:on("x", f)
    assert.equal(2, e:listener_count("ev"))
    assert.equal(1, e:listener_count("x"))
    e:emit("ev")
    assert.equal(1, e:listener_count("ev"))
  end)

  it("an error from a listener propagates out of emit", function()
    local e, later = new(), false
    e:on("ev", function() error("listener failed", 0) end)
    e:on("ev", function() later = true end)
    assert.equal("listener failed", raises(e.emit, e, "ev"))
    assert.is_false(later)
  end)

  it("'error' with no listener raises the error value itself", function()
    local e = new()
    local err = setmetatable({message = "bad", code = "EBAD"}, H.brood.Error)
    assert.equal(err, raises(e.emit, e, "error", err))
    assert.equal("plain", raises(e.emit, e, "error", "plain"))
  end)

  it("'error' with no value and no listener raises ERR_UNHANDLED_ERROR",
     function()
    local e = new()
    local err = raises(e.emit, e, "error")
    assert.equal(H.brood.Error, getmetatable(err))
    assert.equal("ERR_UNHANDLED_ERROR", err.code)
    assert.equal("Unhandled error.", tostring(err))
  end)

  it("'error' with a listener goes to it and does not raise", function()
    local e, got = new(), nil
    e:on("error", function(x) got = x end)
    assert.is_true(e:emit("error", "oops"))
    assert.equal("oops", got)
  end)

  it("'error' raises again once its only once-listener is used", function()
    local e, got = new(), nil
    e:once("error", function(x) got = x end)
    e:emit("error", "first")
    assert.equal("first", got)
    assert.equal("second", raises(e.emit, e, "error", "second"))
  end)

  it("wrong types raise, naming the method and the argument", function()
    local e = new()
    local f = function() end
    assert.equal("bad argument #1 to 'on' (string expected, got number)",
                 raises(e.on, e, 1, f))
    assert.equal("bad argument #2 to 'on' (function expected, got nil)",
                 raises(e.on, e, "ev"))
    assert.equal("bad argument #1 to 'once' (string expected, got nil)",
                 raises(e.once, e, nil, f))
    assert.equal("bad argument #2 to 'once' (function expected, got string)",
                 raises(e.once, e, "ev", "f"))
    assert.equal(0, e:listener_count("ev"))
  end)

  it("names the caller's line in a type error", function()
    local e = new()
    local ok, err = pcall(function() e:on("ev", 42) end)
    assert.is_false(ok)
    assert.matches("^[^\n]-emitter_spec%.lua:%d+: bad argument #2 to 'on' "
                   .. "%(function expected, got number%)$", err)
  end)

  it("extend gives a class the emitter methods, keeping its own", function()
    local Class = {__name = "Thing"}
    Class.__index = Class
    function Class:emit() return "own" end
    emitter.extend(Class)
    local obj = setmetatable({}, Class)
    local got
    obj:on("x", function(v) got = v end)
    assert.equal("own", obj:emit("x", 1))
    assert.is_nil(got)
    assert.equal(1, obj:listener_count("x"))
    assert.equal(Class, getmetatable(obj).__index)
  end)

  it("child processes are emitters", function()
    local child = assert(H.brood.spawn("true"))
    local events = {}
    child:once("exit", function(code) events[#events + 1] = code end)
    assert.equal(1, child:listener_count("exit"))
    child:wait()
    assert.same({0}, events)
    assert.equal(0, child:listener_count("exit"))
  end)
end)

-- The `brood` host executable (DESIGN §8).
local H = require "spec.helper"
local brood = H.brood

local F = H.fixtures .. "/"

-- Run the host with args (and optional stdin text); returns stdout,
-- stderr, exit code, signal.
local function host(args, input)
  local child = assert(brood.spawn(H.host, args))
  if input then child.stdin:write(input) end
  child.stdin:close()
  local out = assert(child.stdout:read_all())
  local err = assert(child.stderr:read_all())
  local code, sig = child:wait()
  return out, err, code, sig
end

-- Reads one line from a readable stream (waiting).
local function read_line(stream)
  return stream:lines()()
end

local function lines_of(s)
  local t = {}
  for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

describe("brood host", function()
  H.guard()

  it("-e runs a statement", function()
    local out, err, code = host({"-e", "print(1)"})
    assert.equal("1\n", out)
    assert.equal("", err)
    assert.equal(0, code)
  end)

  it("-e may be given more than once, run in order", function()
    local out, _, code = host({"-e", "x = 40", "-e", "print(x + 2)"})
    assert.equal("42\n", out)
    assert.equal(0, code)
  end)

  it("-e and -l also take their argument in the same word", function()
    local out, _, code = host({"-ex = 40", "-lstring", "-eprint(x + 2)"})
    assert.equal("42\n", out)
    assert.equal(0, code)
  end)

  it("puts its SIGTERM cleanup handler back after a script's handler stops",
     function()
    local out, _, code = host({F .. "host_signal_restore.lua"})
    assert.equal("at start\ttrue\nwith handler\ttrue\nafter stop\ttrue\n",
                 out)
    assert.equal(0, code)
  end)

  it("-v prints a version line", function()
    local out, err, code = host({"-v"})
    assert.matches("^brood %d+%.%d+%.%d+ %(Lua 5%.4%.%d+, " ..
                   "libuv %d+%.%d+%.%d+%)\n$", out)
    assert.equal("", err)
    assert.equal(0, code)
  end)

  it("-l requires a module into a global of that name", function()
    local out, _, code = host({"-l", "brood", "-e",
                               "print(type(brood), type(brood.spawn))"})
    assert.equal("table\tfunction\n", out)
    assert.equal(0, code)
  end)

  it("-l of a missing module fails with exit 1", function()
    local out, err, code = host({"-l", "nosuch_brood_module", "-e", "print(1)"})
    assert.equal("", out)
    assert.matches("module 'nosuch_brood_module' not found", err, 1, true)
    assert.equal(1, code)
  end)

  it("sets arg and ... as lua5.4 does", function()
    local out, err, code = host({F .. "host_args.lua", "one", "two"})
    assert.equal("", err)
    assert.equal(0, code)
    assert.same({
      "varargs 2 one,two",
      "arg[-3]=nil",
      "arg[-2]=nil",
      "arg[-1]=" .. H.host,
      "arg[0]=" .. F .. "host_args.lua",
      "arg[1]=one",
      "arg[2]=two",
    }, lines_of(out))
  end)

  it("puts options before the script at negative indices of arg", function()
    local out, _, code = host({"-e", "x=1", F .. "host_args.lua", "a"})
    assert.equal(0, code)
    assert.same({
      "varargs 1 a",
      "arg[-3]=" .. H.host,
      "arg[-2]=-e",
      "arg[-1]=x=1",
      "arg[0]=" .. F .. "host_args.lua",
      "arg[1]=a",
    }, lines_of(out))
  end)

  it("stops handling options at --", function()
    local out, _, code = host({"--", F .. "host_args.lua", "-v"})
    assert.equal(0, code)
    assert.equal("varargs 1 -v", lines_of(out)[1])
    assert.equal("arg[1]=-v", lines_of(out)[6])
  end)

  it("without a script, arg[0] is the host and arg[1..] its options",
     function()
    local chunk = "print(arg[0], arg[1], arg[2], arg[-1])"
    local out, _, code = host({"-e", chunk})
    assert.equal(0, code)
    assert.equal(H.host .. "\t-e\t" .. chunk .. "\tnil\n", out)
  end)

  it("runs a script read from stdin with -", function()
    local out, err, code = host({"-", "p", "q"},
                                "local a, b = ...\n" ..
                                "print(a, b, arg[0], arg[1], arg[2])\n")
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal("p\tq\t-\tp\tq\n", out)
  end)

  it("runs the loop after the script", function()
    local out, err, code = host({F .. "host_timer.lua"})
    assert.equal("script done\ntimer fired\n", out)
    assert.equal("", err)
    assert.equal(0, code)
  end)

  it("runs the loop after -e too", function()
    local out, _, code = host({"-e",
      "require('brood').set_timeout(1, function() print('late') end) " ..
      "print('early')"})
    assert.equal("early\nlate\n", out)
    assert.equal(0, code)
  end)

  it("prints an uncaught error with its traceback and exits 1", function()
    local out, err, code = host({F .. "host_error.lua"})
    assert.equal("before\n", out)
    assert.equal(1, code)
    assert.matches("host_error.lua:3: script failed\nstack traceback:\n",
                   err, 1, true)
    assert.matches("in local 'deep'", err, 1, true)
    -- one report, prefixed with the program name
    assert.equal(H.host .. ": ", err:sub(1, #H.host + 2))
    local _, n = err:gsub("stack traceback:", "")
    assert.equal(1, n)
  end)

  it("prints an error raised in a callback of the implicit loop and exits 1",
     function()
    local out, err, code = host({F .. "host_callback_error.lua"})
    assert.equal("script done\n", out)  -- the later timer never ran
    assert.equal(1, code)
    assert.matches("host_callback_error.lua:4: callback failed\n" ..
                   "stack traceback:\n", err, 1, true)
    assert.matches("\n\t" .. F .. "host_callback_error.lua:4: in ", err, 1,
                   true)
    local _, n = err:gsub("stack traceback:", "")
    assert.equal(1, n)
  end)

  it("prints the error of a task nobody waits for and exits 1", function()
    local out, err, code = host({"-e",
      "require('brood').go(function() error('task failed') end) " ..
      "print('after go')"})
    assert.equal("after go\n", out)
    assert.equal(1, code)
    assert.matches("(command line):1: task failed\nstack traceback:\n", err,
                   1, true)
    local _, n = err:gsub("stack traceback:", "")
    assert.equal(1, n)
  end)

  it("prints an error object through its __tostring", function()
    local out, err, code = host({"-e",
      "error(setmetatable({}, {__tostring = function() return 'OBJ' end}))"})
    assert.equal("", out)
    assert.equal(1, code)
    assert.equal(H.host .. ": OBJ\n", err)
  end)

  it("reports a syntax error and exits 1", function()
    local out, err, code = host({"-e", "print("})
    assert.equal("", out)
    assert.equal(1, code)
    assert.matches("(command line):1:", err, 1, true)
  end)

  it("reports a missing script and exits 1", function()
    local _, err, code = host({"/nonexistent/brood-script.lua"})
    assert.equal(1, code)
    assert.matches("cannot open /nonexistent/brood-script.lua", err, 1, true)
  end)

  it("prints usage for an unknown option and exits 1", function()
    local out, err, code = host({"-x"})
    assert.equal("", out)
    assert.equal(1, code)
    assert.matches("unrecognized option '-x'", err, 1, true)
    assert.matches("usage: ", err, 1, true)
  end)

  it("prints usage when -e lacks its argument and exits 1", function()
    local out, err, code = host({"-e"})
    assert.equal("", out)
    assert.equal(1, code)
    assert.matches("usage: ", err, 1, true)
  end)

  it("on SIGTERM without a handler signals its cleanup children and dies",
     function()
    local child = assert(brood.spawn(H.host, {F .. "host_sigterm.lua"}))
    local pid = math.tointeger(tonumber(read_line(child.stdout)))
    assert.is_truthy(pid)
    assert.is_true(H.alive(pid))
    assert.is_true(child:kill("SIGTERM"))
    assert.equal("", child.stdout:read_all())
    assert.same({nil, "SIGTERM"}, {child:wait()})
    assert.is_true(H.gone(pid, 5000))
  end)

  it("on SIGTERM with a script handler runs the handler instead", function()
    local child = assert(brood.spawn(H.host, {F .. "host_sigterm_handler.lua"}))
    local pid = math.tointeger(tonumber(read_line(child.stdout)))
    assert.is_truthy(pid)
    assert.is_true(child:kill("SIGTERM"))
    local rest = child.stdout:read_all()
    assert.same({0, nil}, {child:wait()})
    assert.equal("handled SIGTERM child alive true\nchild exit SIGKILL\n", rest)
    assert.is_false(H.alive(pid))
  end)
end)

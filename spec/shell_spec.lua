-- brood.shell_quote / shell_join, check = false on the exec family,
-- brood.pid (DESIGN §10, issue 13 item 4).
local H = require "spec.helper"
local brood = H.brood

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error: " .. pattern)
  assert.matches(pattern, err)
end

-- What /bin/sh makes of `words` (a command line fragment): each
-- argument it sees, as bytes.
local function sh_args(words)
  local script = 'for a in ' .. words .. '; do printf "%s\\0" "$a"; done'
  local out = assert(brood.exec_file_sync("/bin/sh", {"-c", script}))
  local got = {}
  for a in out:gmatch("(%Z*)%z") do got[#got + 1] = a end
  return got
end

describe("brood.shell_quote and shell_join (issue 13)", function()
  H.guard()

  it("every byte 1-255 alone round-trips through /bin/sh", function()
    local words, want = {}, {}
    for b = 1, 255 do
      want[b] = string.char(b)
      words[b] = brood.shell_quote(want[b])
    end
    assert.are.same(want, sh_args(table.concat(words, " ")))
  end)

  it("every byte 1-255 in one word, and the hard cases, round-trip",
     function()
    local all = {}
    for b = 1, 255 do all[#all + 1] = string.char(b) end
    local want = {table.concat(all), "", "'", "''", '"', "a b", " ",
                  "line\nbreak\n", "-n", "--", "-e x", "$HOME", "`id`",
                  "$(id)", "*", "~", "a\\b", "!", "#c", "x=1", "it's",
                  "\\'", "\t", "%s", ";rm", "|", "&", "\255\254"}
    local words = {}
    for i, w in ipairs(want) do words[i] = brood.shell_quote(w) end
    assert.are.same(want, sh_args(table.concat(words, " ")))
    assert.are.same(want, sh_args(brood.shell_join(want)))
  end)

  it("sh -c 'printf %s \"$1\"' sh <quoted> gives the word back", function()
    for _, w in ipairs({"", "-n", "a b\nc", "'\"'", "\1\2\127\200"}) do
      local cmd = "sh -c 'printf %s \"$1\"' sh " .. brood.shell_quote(w)
      assert.are.equal(w, assert(brood.exec_sync(cmd)), cmd)
    end
  end)

  it("plain words stay as they are; the empty string is ''", function()
    assert.are.equal("abc-1.2/x_y", brood.shell_quote("abc-1.2/x_y"))
    assert.are.equal("''", brood.shell_quote(""))
    assert.are.equal("'it'\\''s'", brood.shell_quote("it's"))
    assert.are.equal("-n", brood.shell_quote("-n"))
    assert.are.equal("12", brood.shell_quote(12))
    assert.are.equal("ls -l 'a b' ''", brood.shell_join({"ls", "-l", "a b", ""}))
    assert.are.equal("", brood.shell_join({}))
  end)

  it("bad input raises", function()
    raises("bad argument #1 to 'shell_quote' %(word must be a string, got nil%)",
           brood.shell_quote)
    raises("bad argument #1 to 'shell_quote' %(word must be a string, " ..
           "got table%)", brood.shell_quote, {})
    raises("bad argument #1 to 'shell_quote' %(word must not contain NUL",
           brood.shell_quote, "a\0b")
    raises("bad argument #1 to 'shell_join' %(table expected, got string%)",
           brood.shell_join, "ls")
    raises("bad argument #1 to 'shell_join' %(argv%[2%] must be a string, " ..
           "got boolean%)", brood.shell_join, {"a", true})
    raises("bad argument #1 to 'shell_join' %(argv%[1%] must not contain NUL",
           brood.shell_join, {"\0"})
  end)
end)

describe("brood.pid (issue 13)", function()
  H.guard()

  it("is the pid of the process running the script", function()
    assert.are.equal("integer", math.type(brood.pid))
    local f = assert(io.open("/proc/self/stat"))
    local self_pid = tonumber(f:read("a"):match("^(%d+)"))
    f:close()
    assert.are.equal(self_pid, brood.pid)
    -- a child's parent is us
    local r = assert(brood.exec("echo $PPID"))
    assert.are.equal(brood.pid .. "\n", r.stdout)
  end)

  it("under the host, in a forked script, it is that process's pid",
     function()
    local path = H.tmpfile([[
      local brood = require "brood"
      io.write(brood.pid, " ", brood.exec_sync("echo $PPID"))
    ]])
    local r = assert(brood.exec_file(H.host, {path}))
    os.remove(path)
    local a, b = r.stdout:match("^(%d+) (%d+)\n$")
    assert.are.equal(a, b)
    assert.are.equal(tostring(r.pid), a)
  end)
end)

describe("check = false on the exec family (issue 13)", function()
  H.guard()

  it("exec: a non-zero exit returns the result with its code", function()
    local r = assert(brood.exec("echo out; echo err >&2; exit 3",
                                {check = false}))
    assert.are.equal(3, r.code)
    assert.is_nil(r.signal)
    assert.are.equal("out\n", r.stdout)
    assert.are.equal("err\n", r.stderr)
    assert.are.equal("echo out; echo err >&2; exit 3", r.cmd)
    -- the default is still an error
    local r2, err, code = brood.exec("exit 3")
    assert.is_nil(r2)
    assert.are.equal(3, code)
    assert.are.equal(3, err.code)
    assert.are.equal(0, brood.exec("true", {check = false}).code)
    assert.are.equal(0, brood.exec("true", {check = true}).code)
  end)

  it("exec_file: a signal death returns the result with its signal",
     function()
    local r = assert(brood.exec_file("sh", {"-c", "kill -TERM $$"},
                                     {check = false}))
    assert.is_nil(r.code)
    assert.are.equal("SIGTERM", r.signal)
  end)

  it("exec with a callback: err is nil, the result comes 4th", function()
    local got
    brood.exec("exit 2", {check = false}, function(...)
      got = table.pack(...)
    end)
    assert.is_true(H.run_until(function() return got ~= nil end))
    assert.is_nil(got[1])
    assert.are.equal(2, got[4].code)
  end)

  it("exec_sync and exec_file_sync return the result table", function()
    local r = assert(brood.exec_sync("echo x; exit 4", {check = false}))
    assert.are.same({4, "x\n", ""}, {r.code, r.stdout, r.stderr})
    r = assert(brood.exec_sync("echo y", {check = false}))
    assert.are.same({0, "y\n"}, {r.code, r.stdout})
    r = assert(brood.exec_file_sync("sh", {"-c", "kill -KILL $$"},
                                    {check = false}))
    assert.are.same({nil, "SIGKILL"}, {r.code, r.signal})
    assert.are.equal("y\n", brood.exec_sync("echo y", {check = true}))
  end)

  it("launch failures, timeouts and max_buffer stay errors", function()
    local function fails(want, r, err, code)
      assert.is_nil(r)
      assert.are.equal(want, code)
      assert.are.equal(want, err.code)
    end
    fails("ENOENT", brood.exec_file("/no/such/prog", {}, {check = false}))
    fails("ENOENT", brood.exec_file_sync("/no/such/prog", {},
                                         {check = false}))
    fails("ETIMEDOUT", brood.exec("sleep 5", {check = false, timeout = 50}))
    fails("ETIMEDOUT", brood.exec_sync("sleep 5",
                                       {check = false, timeout = 50}))
    fails("ERR_CHILD_PROCESS_STDIO_MAXBUFFER",
          brood.exec("yes", {check = false, max_buffer = 10}))
    fails("ERR_CHILD_PROCESS_STDIO_MAXBUFFER",
          brood.exec_sync("yes", {check = false, max_buffer = 10}))
  end)

  it("bad check values and spawn_sync's refusal raise", function()
    raises("bad argument #2 to 'exec' %(option 'check' must be boolean, " ..
           "got string%)", brood.exec, "true", {check = "no"})
    raises("bad argument #2 to 'exec_sync' %(option 'check' must be " ..
           "boolean, got number%)", brood.exec_sync, "true", {check = 0})
    raises("bad argument #3 to 'spawn_sync' %(unknown option 'check'",
           brood.spawn_sync, "true", {}, {check = false})
  end)
end)

-- Run several commands at once, stream their output line by line with a
-- prefix as it comes, and report how each one ended.
--
--   brood examples/parallel.lua
local brood = require "brood"

local commands = {
  {"disk",  "df -h / | tail -n 1"},
  {"ticks", "for i in 1 2 3; do echo tick $i; sleep 0.2; done"},
  {"fails", "echo 'something went wrong' >&2; exit 3"},
  {"kernel", "uname -sr"},
}

local width = 0
for _, c in ipairs(commands) do width = math.max(width, #c[1]) end

local function prefixed(name, stream, mark)
  for line in stream:lines() do
    print(("%-" .. width .. "s %s %s"):format(name, mark, line))
  end
end

-- One task per command; each reads stdout and stderr concurrently.
local tasks = {}
for _, c in ipairs(commands) do
  local name, command = c[1], c[2]
  tasks[#tasks + 1] = brood.go(function()
    local child = assert(brood.spawn(command, {}, {shell = true}))
    local errors = brood.go(prefixed, name, child.stderr, "!")
    prefixed(name, child.stdout, "|")
    errors:wait()
    local code, signal = child:wait()
    return name, code, signal, child.duration
  end)
end

-- Waiting at the top level of a script runs the loop until done.
local results = {}
for i, task in ipairs(tasks) do results[i] = table.pack(task:wait()) end

print("--- summary")
local failed = 0
for _, r in ipairs(results) do
  local name, code, signal, ms = table.unpack(r, 1, r.n)
  local how = signal and ("killed by " .. signal) or ("exit " .. code)
  if code ~= 0 then failed = failed + 1 end
  print(("%-" .. width .. "s %-10s %6.1f ms"):format(name, how, ms))
end
print(("%d of %d commands failed"):format(failed, #commands))

-- W7 over ssh: the W7 pool of 4 workers, 64 tasks in flight per worker,
-- once as local forks and once with every worker behind `ssh -T` to an
-- sshd on 127.0.0.1 (started for the run by scripts/test-sshd, stopped
-- after), both on this machine. Also the pool behind an empty launcher
-- (the worker runs here, over `--channel=stdio`), to tell the cost of
-- the stdio channel from that of ssh. Prints RATE_LOCAL, RATE_STDIO,
-- RATE_SSH (tasks/s) and RATIO (ssh / local).
local brood = require "brood"

local N = tonumber(arg and arg[1]) or 20000
local WARMUP = 500
local DIR = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local ROOT = DIR .. "/../.."

local function abs(p)
  if p:sub(1, 1) == "/" then return p end
  return assert(require("brood.core").cwd()) .. "/" .. p
end
local WORKER = abs(DIR .. "/w7_worker.lua")
local HOST = abs(require("brood.fork").host_path())

local tasks = {}
for i = 1, N do tasks[i] = i end

local function rate(opts)
  opts.size, opts.min_size, opts.concurrency = 4, 4, 64
  local pool <close> = assert(brood.pool(WORKER, opts))
  assert(pool:map(table.move(tasks, 1, WARMUP, 1, {})))
  local t0 = brood.hrtime()
  local results = assert(pool:map(tasks))
  local ns = brood.hrtime() - t0
  for i = 1, N, 997 do assert(results[i] == i, "wrong result") end
  assert(#results == N, "missing results")
  return N / (ns / 1e9)
end

local p = assert(io.popen(ROOT .. "/scripts/test-sshd start"))
local env = p:read("a")
assert(p:close(), "scripts/test-sshd could not start sshd: " .. env)
local sshd = {}
for k, v in env:gmatch("(%u[%u_]*)=([^\n]*)") do sshd[k] = v end

local ok, err = pcall(function()
  local remote = {HOST, "--channel=stdio", WORKER}
  local local_rate = rate({})
  local stdio_rate = rate({launcher = {}, remote_command = remote})
  local ssh_rate = rate({remote_command = remote, launcher = {
    "ssh", "-T", "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
    "-o", "LogLevel=ERROR", "-i", sshd.SSHD_KEY, "-p", sshd.SSHD_PORT,
    sshd.SSHD_USER .. "@127.0.0.1"}})
  print(string.format("RATE_LOCAL %.1f", local_rate))
  print(string.format("RATE_STDIO %.1f", stdio_rate))
  print(string.format("RATE_SSH %.1f", ssh_rate))
  print(string.format("RATIO %.2f", ssh_rate / local_rate))
end)
os.execute(ROOT .. "/scripts/test-sshd stop " .. sshd.SSHD_DIR)
assert(ok, err)

-- bench/soak/common.lua: what every soak measures, and how it reports.
--
-- A soak runs its workload in two phases: a warm-up of ~2% of the
-- iterations (so lazily created loop fds, interned strings, malloc arenas
-- and the like exist before the baseline; a soak may ask for more, and
-- the output says how much), then the rest in ten parts. fds are
-- counted after the warm-up, with no child of ours alive, and after the
-- last child has been waited for; RSS after each part (see M.run).
--
-- The counters here read /proc directly rather than brood.core's helpers
-- (core.fd_count, core.zombies): a leak check should not trust the code
-- under test.
local brood = require "brood"

local M = {}

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- VmRSS of this process in KiB, after two full collections (the first
--- runs finalizers, the second frees what they released).
function M.rss_kb()
  collectgarbage("collect")
  collectgarbage("collect")
  return tonumber(read_file("/proc/self/status"):match("VmRSS:%s*(%d+)"))
end

--- Open fds: the entries of /proc/self/fd. Lua cannot list a directory,
--- so probe /proc/self/fdinfo/N for every N below the fd table's size
--- (FDSize). fdinfo files are plain text, so probing opens nothing but the
--- probe itself, and the probe's own fd is allocated only after the path
--- is resolved, so it never counts itself.
function M.fd_count()
  local size = tonumber(read_file("/proc/self/status"):match("FDSize:%s*(%d+)"))
  local n = 0
  for fd = 0, size - 1 do
    local f = io.open("/proc/self/fdinfo/" .. fd)
    if f then
      n = n + 1
      f:close()
    end
  end
  return n
end

--- Our children in state Z: every /proc/<pid>/stat with ppid == our pid.
--- The shell and cat doing the scan are our children too, but running.
function M.zombies()
  local me = brood.pid
  local p = assert(io.popen("exec cat /proc/[0-9]*/stat 2>/dev/null"))
  local out = p:read("a")
  p:close()
  local pids = {}
  for line in out:gmatch("[^\n]+") do
    -- "pid (comm) state ppid ...": comm may hold spaces and parentheses,
    -- so split at the last ')'.
    local pid, rest = line:match("^(%d+) %(.*%) (.*)$")
    if pid then
      local state, ppid = rest:match("^(%S+) (%d+)")
      if state == "Z" and tonumber(ppid) == me then pids[#pids + 1] = pid end
    end
  end
  return pids
end

--- Let deferred closes finish before counting: handles closed by the last
--- "close" events give their fds back within a loop turn or two.
function M.settle()
  collectgarbage("collect")
  collectgarbage("collect")
  brood.sleep(100)
  collectgarbage("collect")
  collectgarbage("collect")
end

--- Run a soak and report it.
---   name      soak name (first column of the table)
---   total     iterations in all (warm-up included)
---   batch     function(first, last) -> stats: runs iterations first..last
---             to completion (every child waited for); returns a table with
---             optional fields failures, lost, sent, received, notes (array of
---             strings printed under the figures)
---   opts      unit = "iterations", detail = "..." for the header line;
---             warm = the warm-up's share of total (default 0.02);
---             after = function() -> {failures =, notes =}, a last check run
---             once the end figures are taken
--- Prints a block, then a RESULT line for bench/soak/run, and returns true
--- when the soak passed.
function M.run(name, total, batch, opts)
  opts = opts or {}
  local unit = opts.unit or "iterations"
  local warm = math.max(1, math.floor(total * (opts.warm or 0.02)))
  local t0 = brood.hrtime()

  local w = batch(1, warm)
  M.settle()
  local fds0 = M.fd_count()
  local heap0 = collectgarbage("count")

  -- The rest runs in 10 parts, each to completion, with RSS sampled after
  -- each. What glibc keeps of the heap after a part depends on that
  -- part's peak (how many messages were queued at once, say), so one
  -- sample wanders by megabytes: the start is the highest of the first
  -- three samples, the end the highest of the last three. A leak climbs
  -- from one to the other; a high-water mark does not. SOAK_TRACE=1 also
  -- prints the Lua heap and fds after each part (stderr).
  local parts = 10
  local trace = os.getenv("SOAK_TRACE") == "1"
  local samples = {}
  local s = {failures = 0, notes = {}}
  local from = warm + 1
  for part = 1, parts do
    local to = part == parts and total or warm + (total - warm) * part // parts
    local r = batch(from, to)
    s.failures = s.failures + (r.failures or 0)
    if r.lost then s.lost = (s.lost or 0) + r.lost end
    if r.sent then s.sent = (s.sent or 0) + r.sent end
    if r.received then s.received = (s.received or 0) + r.received end
    for _, note in ipairs(r.notes or {}) do s.notes[#s.notes + 1] = note end
    M.settle()
    samples[part] = M.rss_kb()
    if trace then
      io.stderr:write(("trace %s: after %d, rss %d KiB, lua heap %.0f KiB, fds %d\n")
        :format(name, to, samples[part], collectgarbage("count"), M.fd_count()))
    end
    from = to + 1
  end
  local rss0 = math.max(samples[1], samples[2], samples[3])
  local rss1 = math.max(samples[8], samples[9], samples[10])
  local fds1 = M.fd_count()
  local heap1 = collectgarbage("count")
  local zombies = M.zombies()
  local after = opts.after and opts.after() or {}
  local secs = (brood.hrtime() - t0) / 1e9

  local failures = (w.failures or 0) + (s.failures or 0) + (after.failures or 0)
  local lost = nil
  if w.lost or s.lost then lost = (w.lost or 0) + (s.lost or 0) end
  local pct = (rss1 - rss0) * 100 / rss0
  if math.abs(pct) < 0.05 then pct = 0 end -- no "-0.0%"

  local checks = {
    {math.abs(pct) <= 10, "RSS changed by more than 10%"},
    {fds1 == fds0, "fd count changed"},
    {#zombies == 0, "zombie children left"},
    {(lost or 0) == 0, "messages lost"},
    {failures == 0, "iterations failed their checks"},
  }
  local why = {}
  for _, c in ipairs(checks) do
    if not c[1] then why[#why + 1] = c[2] end
  end
  local pass = #why == 0

  print(("soak %s: %d %s in %.1f s%s"):format(name, total, unit, secs,
    opts.detail and (" (" .. opts.detail .. ")") or ""))
  print(("  rss     start %d KiB, end %d KiB, change %+.1f%% (highest of the first and of the last three of ten samples after a warm-up of %d %s, %g%%)")
    :format(rss0, rss1, pct, warm, unit, warm * 100 / total))
  print("  samples " .. table.concat(samples, " ") .. " KiB")
  print(("  lua     heap %.0f KiB -> %.0f KiB (collectgarbage \"count\", same moments; part of RSS)")
    :format(heap0, heap1))
  print(("  fds     before %d (after the warm-up), after %d"):format(fds0, fds1))
  print(("  zombies %d%s"):format(#zombies,
    #zombies > 0 and (" (pids " .. table.concat(zombies, " ") .. ")") or ""))
  if lost and (s.sent or s.received) then
    print(("  lost    %d (sent %d, received %d)"):format(lost,
      (w.sent or 0) + (s.sent or 0), (w.received or 0) + (s.received or 0)))
  elseif lost then
    print(("  lost    %d"):format(lost))
  end
  print(("  failed  %d"):format(failures))
  for _, stats in ipairs({w, s, after}) do
    for _, note in ipairs(stats.notes or {}) do print("  " .. note) end
  end
  print("  " .. (pass and "PASS" or ("FAIL: " .. table.concat(why, "; "))))
  -- One machine-readable line for bench/soak/run's table.
  print(("RESULT %s %d %.1f %d %d %+.1f %d %d %d %s %d %s"):format(
    name, total, secs, rss0, rss1, pct, fds0, fds1, #zombies,
    lost and tostring(lost) or "-", failures, pass and "PASS" or "FAIL"))
  io.stdout:flush()
  return pass
end

--- Run fn(i) for i = first..last in `width` tasks at once; each task takes
--- the next index when it is free. Returns when all are done. Nothing is
--- kept per iteration (a results table would grow RSS by itself).
function M.parallel(first, last, width, fn)
  local next_i = first
  local function worker()
    while next_i <= last do
      local i = next_i
      next_i = i + 1
      fn(i)
    end
  end
  local tasks = {}
  for k = 1, width do tasks[k] = brood.go(worker) end
  for k = 1, width do tasks[k]:wait() end
end

--- Live processes (not zombies: their cmdline is empty) with an argument
--- that matches the grep regex `re` whole; written so that the regex does
--- not match itself (e.g. "5[.]123" matches "5.123", not "5[.]123").
function M.live_matching(re)
  local p = assert(io.popen("exec grep -lszx -- '" .. re .. "' /proc/[0-9]*/cmdline"))
  local out = p:read("a")
  p:close()
  local pids = {}
  for pid in out:gmatch("/proc/(%d+)/cmdline") do pids[#pids + 1] = pid end
  return pids
end

--- The directory of the running script, for its worker scripts.
function M.dir()
  return (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
end

--- A count from the first argument or SOAK_SCALE (a fraction for quick
--- runs: SOAK_SCALE=0.01), else the full size.
function M.count(full)
  local n = tonumber(arg and arg[1])
  if n then return math.floor(n) end
  local scale = tonumber(os.getenv("SOAK_SCALE") or "")
  if scale then return math.max(50, math.floor(full * scale)) end
  return full
end

return M

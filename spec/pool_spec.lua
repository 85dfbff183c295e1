-- The process pool (DESIGN §7, issue 11): brood.pool and brood.worker.
local H = require "spec.helper"
local brood = H.brood

local F = H.fixtures .. "/"
local WORKER = F .. "pool_worker.lua"
local CWD = assert(H.core.cwd())

local raises = H.raises

-- A pool that is destroyed when the test ends, whatever happens.
local pools
local function pool(opts, path)
  local p = assert(brood.pool(path or WORKER, opts))
  pools[#pools + 1] = p
  return p
end

local function ms_since(t0) return (brood.hrtime() - t0) / 1e6 end

-- Run a whole script (argv), with extra environment; returns stdout,
-- stderr, code.
local function run_script(argv, extend_env)
  local child = assert(brood.spawn(argv[1], table.move(argv, 2, #argv, 1, {}),
                                   {extend_env = extend_env}))
  child.stdin:close()
  local out = assert(child.stdout:read_all())
  local err = assert(child.stderr:read_all())
  local code, sig = child:wait()
  return out, err, code, sig
end

local LUA_ENV = {
  LUA_PATH = CWD .. "/lua/?.lua;" .. CWD .. "/lua/?/init.lua;;",
  LUA_CPATH = H.build_abs ..
              "/lib/?.so;;",
}

-- The script under the brood host and under plain lua5.4 (which runs the
-- loop only where the script asks: brood.run()).
local function both(script, fn)
  local path = H.tmpfile(script)
  fn(run_script({H.host, path}, LUA_ENV))
  local file, argv = H.lua54({"-e", "package.path = os.getenv('LUA_PATH') "
    .. "package.cpath = os.getenv('LUA_CPATH')", path})
  fn(run_script({file, table.unpack(argv)}, LUA_ENV))
  os.remove(path)
end

local function pids_of(out)
  local pids = {}
  for pid in out:gmatch("pid (%d+)") do pids[#pids + 1] = tonumber(pid) end
  return pids
end

describe("brood.pool: bad input raises at once (issue 11)", function()
  -- before H.guard: the pools go before it counts what is left
  before_each(function() pools = {} end)
  after_each(function() for _, p in ipairs(pools) do p:destroy() end end)
  H.guard()

  it("module_path and options are checked, with the exact message", function()
    raises("bad argument #1 to 'pool' (module_path must be a string, got " ..
           "no value)",
           brood.pool)
    raises("bad argument #2 to 'pool' (unknown option 'sise' (did you mean " ..
           "'size'?))", brood.pool, WORKER, {sise = 2})
    raises("bad argument #2 to 'pool' (unknown option 'maxQueue' (did you " ..
           "mean 'max_queue'?))", brood.pool, WORKER, {maxQueue = 2})
    raises("bad argument #2 to 'pool' (options table expected, got string)",
           brood.pool, WORKER, "size=2")
    raises("bad argument #2 to 'pool' (option 'size' must be number, got " ..
           "string)", brood.pool, WORKER, {size = "2"})
    for _, bad in ipairs({0, -1, 1.5, math.huge}) do
      raises(("bad argument #2 to 'pool' (option 'size' must be a whole " ..
              "number >= 1, got %s)"):format(tostring(bad)),
             brood.pool, WORKER, {size = bad})
    end
    raises("bad argument #2 to 'pool' (option 'min_size' (3) must not be " ..
           "more than 'size' (2))", brood.pool, WORKER,
           {size = 2, min_size = 3})
    raises("bad argument #2 to 'pool' (option 'min_size' must be a whole " ..
           "number >= 0, got -1)", brood.pool, WORKER, {min_size = -1})
    raises("bad argument #2 to 'pool' (option 'concurrency' must be a whole " ..
           "number >= 1, got 0)", brood.pool, WORKER, {concurrency = 0})
    raises("bad argument #2 to 'pool' (option 'task_timeout' must be a " ..
           "number of ms >= 0, got -1)", brood.pool, WORKER,
           {task_timeout = -1})
    raises("bad argument #2 to 'pool' (option 'retries' must be a whole " ..
           "number >= 0, got -2)", brood.pool, WORKER, {retries = -2})
    raises("bad argument #2 to 'pool' (option 'max_queue' must be a whole " ..
           "number >= 0, got -1)", brood.pool, WORKER, {max_queue = -1})
    raises("bad argument #2 to 'pool' (option 'max_tasks_per_worker' must " ..
           "be a whole number >= 1, got 0)", brood.pool, WORKER,
           {max_tasks_per_worker = 0})
  end)

  it("a missing worker script is nil, err, \"ENOENT\"", function()
    local p, err, code = brood.pool("nope.lua")
    assert.is_nil(p)
    assert.are.equal("ENOENT", code)
    assert.are.equal("pool 'nope.lua': ENOENT: no such file or directory",
                     err.message)
    p, err, code = brood.pool("pool_worker.lua", {cwd = "/"})
    assert.is_nil(p)
    assert.are.equal("ENOENT", code)
    assert.are.equal("//pool_worker.lua", err.path)
  end)

  it("tasks, callbacks and method calls are checked", function()
    local p = pool({size = 1})
    raises("bad argument #1 to 'run' (the task cannot be sent to a worker " ..
           "(a function))", p.run, p, print)
    raises("bad argument #2 to 'submit' (function expected, got no value)",
           p.submit, p, 1)
    raises("bad argument #1 to 'submit' (the task cannot be sent to a " ..
           "worker (a thread))", p.submit, p, coroutine.create(print),
           function() end)
    raises("bad argument #1 to 'map' (table expected, got string)",
           p.map, p, "1,2,3")
    raises("bad argument #1 to 'map' (tasks[2] cannot be sent to a worker " ..
           "(a function))", p.map, p, {1, print})
    raises("bad argument #2 to 'map' (unknown option 'progres' (did you " ..
           "mean 'progress'?))", p.map, p, {1}, {progres = true})
    raises("use pool:run(), not pool.run()", p.run, 1)
    raises("use pool:stats(), not pool.stats()", p.stats)
    raises("bad argument #1 to 'on' (unknown event 'exti' (did you mean " ..
           "'exit'?))", p.on, p, "exti", print)
    raises("bad argument #2 to 'on' (function expected, got nil)",
           p.on, p, "exit")
    assert.are.equal(0, p:stats().size)  -- nothing started
  end)

  it("waiting calls raise in a plain callback", function()
    local p = pool({size = 1})
    local errs = {}
    brood.set_timeout(0, function()
      errs[1] = select(2, pcall(p.run, p, 1))
      errs[2] = select(2, pcall(p.map, p, {1}))
      errs[3] = select(2, pcall(p.close, p))
    end)
    brood.sleep(20)
    for i = 1, 3 do
      assert.matches("cannot wait outside a task", errs[i], 1, true)
    end
  end)

  it("brood.worker wants a function, and a pool", function()
    raises("bad argument #1 to 'worker' (function expected, got number)",
           brood.worker, 42)
    raises("brood.worker: this script was not started by a pool " ..
           "(brood.parent is nil)", brood.worker, function() end)
  end)
end)

describe("brood.pool: running tasks (issue 11)", function()
  -- before H.guard: the pools go before it counts what is left
  before_each(function() pools = {} end)
  after_each(function() for _, p in ipairs(pools) do p:destroy() end end)
  H.guard()

  it("run returns the result; values keep their types", function()
    local p = pool({size = 1})
    assert.are.equal(42, p:run(42))
    assert.are.equal("float", math.type(p:run(1.0)))
    assert.are.equal("bytes\0\255", p:run("bytes\0\255"))
    assert.are.same({a = {1, 2, {b = true}}},
                    p:run({op = "echo", value = {a = {1, 2, {b = true}}}}))
    assert.is_nil(p:run(nil))
    assert.is_nil((p:run({op = "echo"})))
  end)

  it("submit calls back later, never before it returns", function()
    local p = pool({size = 1})
    local got, returned = nil, false
    assert.is_true(p:submit(7, function(err, v)
      assert.is_true(returned)
      got = {err, v}
    end))
    returned = true
    assert.is_true(H.run_until(function() return got ~= nil end))
    assert.are.same({nil, 7}, got)
  end)

  it("map returns the results in input order", function()
    local p = pool({size = 2})
    local tasks = {}
    for i = 1, 200 do tasks[i] = i * 3 end
    local r = assert(p:map(tasks))
    assert.are.same(tasks, r)
    assert.are.same({}, p:map({}))
    -- slow first tasks do not reorder the results
    r = assert(p:map({{op = "sleep", ms = 150, value = "a"}, "b", "c",
                      {op = "sleep", ms = 50, value = "d"}}))
    assert.are.same({"a", "b", "c", "d"}, r)
  end)

  it("map: the first failure by position, with err.index; every task runs",
     function()
    local p = pool({size = 2})
    local flag = os.tmpname()
    os.remove(flag)
    local r, err, code = p:map({1, {op = "sleep", ms = 100, value = 2},
                                {op = "raise", message = "third"},
                                {op = "raise", message = "second"},
                                {op = "echo", value = flag}})
    assert.is_nil(r)
    assert.are.equal("ERR_TASK_FAILED", code)
    assert.are.equal(3, err.index)
    assert.matches("third$", err.message)
    local s = p:stats()
    assert.are.equal(3, s.completed)
    assert.are.equal(2, s.failed)
    assert.are.equal(0, s.queued)
    assert.are.equal(0, s.running)
  end)

  it("a task that raises fails with the worker's message, line and " ..
     "traceback; it is not retried and the worker lives on", function()
    local p = pool({size = 1, retries = 3})
    local pid = p:run({op = "pid"})
    local v, err, code = p:run({op = "raise", message = "boom"})
    assert.is_nil(v)
    assert.are.equal("ERR_TASK_FAILED", code)
    assert.are.equal(brood.Error, getmetatable(err))
    assert.are.equal("spec/fixtures/pool_worker.lua:13: boom", err.message)
    assert.matches("^spec/fixtures/pool_worker.lua:13: boom\nstack traceback:",
                   err.traceback)
    assert.matches("pool_worker.lua:13: in function", err.traceback, 1, true)
    assert.is_nil(err.traceback:find("brood/worker.lua", 1, true))
    assert.are.equal(pid, err.pid)
    v, err = p:run({op = "raise_table"})
    assert.are.equal("a table error", err.message)
    assert.are.same({message = "a table error", code = "EX"}, err.value)
    assert.are.equal(pid, p:run({op = "pid"}))
    local s = p:stats()
    assert.are.equal(0, s.restarts)
    assert.are.equal(2, s.failed)
  end)

  it("an error object other than a string comes back as err.value",
     function()
    local p = pool({size = 1})
    local pid = p:run({op = "pid"})
    -- a table without a message: lua5.4's words for it, and the table
    local v, err, code = p:run({op = "raise_value", value = {code = 42}})
    assert.is_nil(v)
    assert.are.equal("ERR_TASK_FAILED", code)
    assert.are.equal("(error object is a table value)", err.message)
    assert.are.same({code = 42}, err.value)
    _, err = p:run({op = "raise_value", value = 42})
    assert.are.equal("42", err.message)
    assert.are.equal(42, err.value)
    _, err = p:run({op = "raise_value", value = false})
    assert.are.equal("(error object is a boolean value)", err.message)
    assert.are.equal(false, err.value)
    -- a string error has no value: its message is it
    _, err = p:run({op = "raise", message = "plain"})
    assert.is_nil(err.value)
    -- one the codec cannot carry: the message only, and the worker lives
    _, err, code = p:run({op = "raise_func"})
    assert.are.equal("ERR_TASK_FAILED", code)
    assert.are.equal("(error object is a table value)", err.message)
    assert.is_nil(err.value)
    assert.are.equal(pid, p:run({op = "pid"}))
    assert.are.equal(0, p:stats().restarts)
  end)

  it("an unserialisable result fails that task; the worker lives on",
     function()
    local p = pool({size = 1})
    local pid = p:run({op = "pid"})
    local v, err, code = p:run({op = "func"})
    assert.is_nil(v)
    assert.are.equal("ERR_TASK_FAILED", code)
    assert.are.equal("brood.worker: the task's result cannot be sent to " ..
                     "the pool: cannot encode a function", err.message)
    assert.are.equal(pid, p:run({op = "pid"}))
    -- a task that cannot be encoded fails alone, too
    v, err, code = p:run({op = "echo", value = {f = print}})
    assert.is_nil(v)
    assert.are.equal("EINVAL", code)
    assert.are.equal("pool: cannot send the task to a worker: cannot " ..
                     "encode a function", err.message)
    assert.are.equal(pid, p:run({op = "pid"}))
  end)

  it("a worker killed mid-task fails its task (ERR_WORKER_DIED) and is " ..
     "replaced", function()
    local p = pool({size = 1})
    local exits = {}
    p:on("exit", function(pid, c, s) exits[#exits + 1] = {pid, c, s} end)
    local pid = p:run({op = "pid"})
    local v, err, code = p:run({op = "kill_self"})
    assert.is_nil(v)
    assert.are.equal("ERR_WORKER_DIED", code)
    assert.are.equal("SIGKILL", err.signal)
    assert.are.equal(pid, err.pid)
    assert.matches("was killed by SIGKILL", err.message)
    v, err, code = p:run({op = "exit", code = 9})
    assert.are.equal("ERR_WORKER_DIED", code)
    assert.are.equal(9, err.exit_code)
    local pid3 = p:run({op = "pid"})
    assert.are_not.equal(pid, pid3)
    assert.are.equal(2, p:stats().restarts)
    assert.are.same({pid, nil, "SIGKILL"}, exits[1])
    assert.are.equal(9, exits[2][2])
  end)

  it("retries: a task whose worker died goes to a new worker", function()
    local p = pool({size = 1, retries = 1})
    local flag = os.tmpname()
    os.remove(flag)
    assert.are.equal("second try", p:run({op = "die_once", flag = flag}))
    assert.are.equal(1, p:stats().restarts)
    -- retries = 1: a task that kills every worker fails after 2 tries
    local v, err, code = p:run({op = "exit", code = 4})
    assert.is_nil(v)
    assert.are.equal("ERR_WORKER_DIED", code)
    assert.are.equal(4, err.exit_code)
    assert.are.equal(3, p:stats().restarts)
    os.remove(flag)
  end)

  it("task_timeout kills and replaces the worker; the task is ETIMEDOUT",
     function()
    local p = pool({size = 1, task_timeout = 1000})
    local pid = p:run({op = "pid"})
    local t0 = brood.hrtime()
    local v, err, code = p:run({op = "spin", s = 30})
    assert.is_true(ms_since(t0) < 10000)
    assert.is_nil(v)
    assert.are.equal("ETIMEDOUT", code)
    assert.are.equal(pid, err.pid)
    assert.matches("timed out after 1000 ms", err.message)
    assert.is_true(H.gone(pid))
    assert.are_not.equal(pid, p:run({op = "pid"}))
    assert.are.equal(1, p:stats().restarts)
    -- tasks within the timeout are fine
    assert.are.equal("ok", p:run({op = "sleep", ms = 50, value = "ok"}))
  end)

  it("task_timeout counts from the worker's ready, not its start-up",
     function()
    -- the worker takes 2 s to start, the task 2 s to run, and a task
    -- may take 3 s: together they would not fit
    local p = pool({size = 1, task_timeout = 3000,
                    env = {POOL_WORKER_START_MS = "2000"}})
    assert.are.equal("on time", p:run({op = "sleep", ms = 2000,
                                       value = "on time"}))
    assert.are.equal(0, p:stats().restarts)
    -- and once ready, a task past it still fails
    local v, _, code = p:run({op = "sleep", ms = 60000})
    assert.is_nil(v)
    assert.are.equal("ETIMEDOUT", code)
  end)

  it("a worker that does not start within task_timeout fails its task",
     function()
    local p = pool({size = 1, task_timeout = 300,
                    env = {POOL_WORKER_START_MS = "60000"}})
    local t0 = brood.hrtime()
    local v, err, code = p:run({op = "pid"})
    assert.is_true(ms_since(t0) < 10000)
    assert.is_nil(v)
    assert.are.equal("ETIMEDOUT", code)
    assert.matches("timed out after 300 ms", err.message)
  end)

  it("max_tasks_per_worker recycles workers (not counted as restarts)",
     function()
    local p = pool({size = 1, max_tasks_per_worker = 2})
    local exits = {}
    p:on("exit", function(pid, c) exits[#exits + 1] = {pid, c} end)
    local pids = {}
    for i = 1, 5 do pids[i] = p:run({op = "pid"}) end
    assert.are.equal(pids[1], pids[2])
    assert.are.equal(pids[3], pids[4])
    assert.are_not.equal(pids[2], pids[3])
    assert.are_not.equal(pids[4], pids[5])
    assert.is_true(H.run_until(function() return #exits == 2 end))
    -- the two retired workers exit on their own time: in either order
    table.sort(exits, function(a, b) return a[1] < b[1] end)
    local retired = {{pids[1], 0}, {pids[3], 0}}
    table.sort(retired, function(a, b) return a[1] < b[1] end)
    assert.are.same(retired, exits)
    assert.are.equal(0, p:stats().restarts)
  end)

  it("workers start on demand up to size; idle ones are reused", function()
    local p = pool({size = 3})
    local started = {}
    p:on("worker", function(pid) started[#started + 1] = pid end)
    for _ = 1, 5 do p:run(1) end
    assert.are.equal(1, p:stats().size)
    local r = assert(p:map({{op = "sleep", ms = 200, value = 1},
                            {op = "sleep", ms = 200, value = 2},
                            {op = "sleep", ms = 200, value = 3},
                            {op = "sleep", ms = 200, value = 4},
                            {op = "pid"}}))
    assert.are.same({1, 2, 3, 4}, {r[1], r[2], r[3], r[4]})
    local s = p:stats()
    assert.are.equal(3, s.size)
    assert.are.equal(3, s.idle)
    assert.are.equal(0, s.busy)
    assert.are.equal(3, #started)
  end)

  it("min_size workers start at once and are kept", function()
    local p = pool({size = 3, min_size = 2})
    local started = {}
    p:on("worker", function(pid) started[#started + 1] = pid end)
    assert.are.equal(2, p:stats().size)
    assert.is_true(H.run_until(function() return #started == 2 end))
    -- one dies: a new one takes its place
    p:run({op = "exit"})
    assert.is_true(H.run_until(function() return #started == 3 end))
    assert.are.equal(2, p:stats().size)
  end)

  it("concurrency: several tasks in flight on one worker", function()
    local p = pool({size = 1, concurrency = 4})
    assert.are.equal(0, p:run(0))  -- the worker has started
    local t0 = brood.hrtime()
    local tasks = {}
    for i = 1, 4 do tasks[i] = {op = "sleep", ms = 1000, value = i} end
    assert.are.same({1, 2, 3, 4}, p:map(tasks))
    assert.is_true(ms_since(t0) < 3500)  -- not 4 x 1000 ms
    assert.are.equal(1, p:stats().size)
  end)

  it("max_queue: past it a task is refused (ERR_POOL_QUEUE_FULL)", function()
    local p = pool({size = 1, max_queue = 1})
    local results = {}
    local returned = false
    assert.is_true(p:submit({op = "sleep", ms = 100, value = "a"},
      function(_, v) results[#results + 1] = v end))  -- runs
    assert.is_true(p:submit("b", function(_, v) results[#results + 1] = v end))
    local refused
    assert.is_false(p:submit("c", function(err)
      assert.is_true(returned)
      refused = err
    end))
    returned = true
    local v, err, code = p:run("d")
    assert.is_nil(v)
    assert.are.equal("ERR_POOL_QUEUE_FULL", code)
    assert.are.equal("pool: the queue is full (max_queue = 1)", err.message)
    assert.is_true(H.run_until(function() return #results == 2 end))
    assert.are.equal("ERR_POOL_QUEUE_FULL", refused.code)
    assert.are.same({"a", "b"}, results)
    -- max_queue = 0: only what a worker can take at once
    local q = pool({size = 1, max_queue = 0})
    assert.is_true(q:submit({op = "sleep", ms = 50}, function() end))
    assert.is_false(q:submit(1, function() end))
  end)

  it("env and cwd reach the workers", function()
    local p = pool({size = 1, env = {POOL_SPEC = "yes"}, cwd = "/tmp"},
                   CWD .. "/" .. WORKER)
    assert.are.equal("yes", p:run({op = "env", name = "POOL_SPEC"}))
    assert.is_nil(p:run({op = "env", name = "HOME"}))
    assert.are.equal("/tmp", p:run({op = "cwd"}))
  end)

  it("stats counts", function()
    local p = pool({size = 2})
    local s = p:stats()
    assert.are.same({size = 0, idle = 0, busy = 0, queued = 0, running = 0,
                     completed = 0, failed = 0, restarts = 0}, s)
    local done = 0
    for i = 1, 3 do
      p:submit({op = "sleep", ms = 200, value = i},
               function() done = done + 1 end)
    end
    s = p:stats()
    assert.are.equal(2, s.size)
    assert.are.equal(2, s.busy)
    assert.are.equal(1, s.queued)
    assert.are.equal(2, s.running)
    assert.is_true(H.run_until(function() return done == 3 end))
    s = p:stats()
    assert.are.equal(3, s.completed)
    assert.are.equal(2, s.idle)
  end)

  it("close finishes the queued work, then stops the workers", function()
    local p = pool({size = 1})
    local got = {}
    for i = 1, 3 do
      p:submit({op = "sleep", ms = 30, value = i}, function(_, v)
        got[#got + 1] = v
      end)
    end
    local pid = p:pids()[1]
    assert.is_true(p:close())
    assert.are.same({1, 2, 3}, got)
    assert.is_false(H.alive(pid))
    assert.are.equal(0, p:stats().size)
    -- a closed pool refuses tasks
    local refused
    assert.is_false(p:submit(1, function(err) refused = err end))
    local v, err, code = p:run(1)
    assert.is_nil(v)
    assert.are.equal("ERR_POOL_CLOSED", code)
    assert.are.equal("pool: the pool is closed", err.message)
    v, err, code = p:map({1})
    assert.is_nil(v)
    assert.are.equal("ERR_POOL_CLOSED", code)
    assert.is_true(H.run_until(function() return refused ~= nil end))
    assert.are.equal("ERR_POOL_CLOSED", refused.code)
    assert.is_true(p:close())  -- again: nothing to do
  end)

  it("destroy kills the workers and fails what is pending (ECANCELED)",
     function()
    local p = pool({size = 1})
    local got = {}
    p:submit(1, function(err, v) got[1] = {err, v} end)
    assert.is_true(H.run_until(function() return got[1] ~= nil end))
    p:submit({op = "sleep", ms = 5000}, function(err) got[2] = err end)
    p:submit(3, function(err) got[3] = err end)
    local pid = p:pids()[1]
    p:destroy()
    assert.is_nil(got[2])  -- later, not inside destroy
    assert.is_true(H.run_until(function() return got[3] ~= nil end))
    assert.are.same({nil, 1}, got[1])
    assert.are.equal("ECANCELED", got[2].code)
    assert.are.equal("ECANCELED", got[3].code)
    assert.is_true(H.gone(pid))
    local v, _, code = p:run(1)
    assert.is_nil(v)
    assert.are.equal("ERR_POOL_CLOSED", code)
  end)

  it("a <close> pool closes at the end of its scope", function()
    local pid
    do
      local p <close> = assert(brood.pool(WORKER, {size = 1}))
      pid = p:run({op = "pid"})
    end
    assert.is_true(H.gone(pid))
  end)
end)

describe("brood.pool: workers that cannot start (issue 11)", function()
  -- before H.guard: the pools go before it counts what is left
  before_each(function() pools = {} end)
  after_each(function() for _, p in ipairs(pools) do p:destroy() end end)
  H.guard()

  local function broken(script, want)
    -- stdio: the worker's traceback would clutter the spec's output
    local p = pool({size = 2, stdio = {"inherit", "inherit", "ignore"}},
                   F .. script)
    local errors = {}
    p:on("error", function(e) errors[#errors + 1] = e end)
    local t0 = brood.hrtime()
    local r, err, code = p:map({1, 2, 3})
    assert.is_true(ms_since(t0) < 10000)
    assert.is_nil(r)
    assert.are.equal("ERR_WORKER_DIED", code)
    assert.are.equal(1, err.index)
    assert.matches(want, err.message)
    assert.matches("before it called brood.worker", err.message, 1, true)
    assert.matches("3 times in a row", err.message, 1, true)
    assert.is_true(H.run_until(function() return #errors >= 3 end))
    assert.are.equal("ERR_WORKER_START", errors[1].code)
    -- the pool stopped starting workers; a new task tries again
    assert.is_true(H.run_until(function() return p:stats().size == 0 end))
    local v, _, code2 = p:run(1)
    assert.is_nil(v)
    assert.are.equal("ERR_WORKER_DIED", code2)
    assert.are.equal(0, p:stats().restarts)
  end

  it("a worker script that raises at load", function()
    broken("pool_raise_at_load.lua", "exited with code 1")
  end)

  it("a worker script that never calls brood.worker", function()
    broken("pool_no_worker.lua", "exited with code 0")
  end)

  it("a worker script that exits at once", function()
    broken("pool_exit_at_once.lua", "exited with code 7")
  end)
end)

describe("brood.pool: whole scripts (issue 11)", function()
  H.guard()

  it("an idle pool does not keep the loop alive; pending work does",
     function()
    local script = ([[
      local brood = require "brood"
      local pool = assert(brood.pool(%q, {min_size = 1, size = 1}))
      print("first", pool:run(1), "pid " .. pool:run({op = "pid"}))
      pool:submit({op = "sleep", ms = 200, value = "late"}, function(err, v)
        print("pending", v)
      end)
      brood.run()  -- the host runs the loop anyway; lua5.4 needs this
      print("end")
    ]]):format(CWD .. "/" .. WORKER)
    both(script, function(out, err, code)
      assert.are.equal("", err)
      assert.are.equal(0, code)
      local pids = pids_of(out)
      assert.matches("^first\t1\tpid %d+\npending\tlate\nend\n$", out)
      assert.is_true(H.gone(pids[1]))
    end)
  end)

  it("a script that ends with tasks submitted still gets their results",
     function()
    local path = H.tmpfile(([[
      local brood = require "brood"
      local pool = assert(brood.pool(%q, {size = 2}))
      for i = 1, 4 do
        pool:submit({op = "sleep", ms = 50, value = i}, function(err, v)
          print("got", v)
        end)
      end
    ]]):format(CWD .. "/" .. WORKER))
    local t0 = brood.hrtime()
    local out, err, code = run_script({H.host, path}, LUA_ENV)
    os.remove(path)
    assert.is_true(ms_since(t0) < 5000)
    assert.are.equal("", err)
    assert.are.equal(0, code)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.are.same({"got\t1", "got\t2", "got\t3", "got\t4"}, lines)
  end)

  local PROGRESS = [[
    local brood = require "brood"
    local pool = assert(brood.pool(%q, {size = 2}))
    local tasks = {}
    for i = 1, 30 do tasks[i] = {op = "sleep", ms = 20, value = i} end
    local r = assert(pool:map(tasks, {progress = true}))
    pool:close()
    io.stdout:write("done ", #r, "\n")
  ]]

  it("map's progress line: drawn on a terminal, erased at the end",
     function()
    local path = H.tmpfile(PROGRESS:format(CWD .. "/" .. WORKER))
    local cmd = ("%s %s"):format(H.host, path)
    local out, err, code = run_script({"script", "-qefc", cmd, "/dev/null"},
                                      LUA_ENV)
    os.remove(path)
    assert.are.equal(0, code, err)
    assert.matches("\r%d+/30 tasks %(%d+%%%)  %d+/s  ETA %d+s\27%[K", out)
    assert.matches("\r\27%[Kdone 30\r?\n$", out)
  end)

  it("map's progress line: nothing when stderr is not a terminal",
     function()
    local path = H.tmpfile(PROGRESS:format(CWD .. "/" .. WORKER))
    local out, err, code = run_script({H.host, path}, LUA_ENV)
    os.remove(path)
    assert.are.equal(0, code)
    assert.are.equal("done 30\n", out)
    assert.are.equal("", err)
  end)
end)

describe("brood.pool: a worker in another language (issue 11)", function()
  -- before H.guard: the pools go before it counts what is left
  before_each(function() pools = {} end)
  after_each(function() for _, p in ipairs(pools) do p:destroy() end end)
  H.guard()

  it("the Python worker of spec/fixtures serves a brood pool", function()
    local p = pool({size = 2, concurrency = 4, exec_path = "/usr/bin/python3"},
                   F .. "py_pool_worker.py")
    local tasks = {}
    for i = 1, 50 do tasks[i] = i end
    local r = assert(p:map(tasks))
    for i = 1, 50 do assert.are.equal(2 * i, r[i]) end
    assert.are.same({lang = "python", echo = {a = "b"}},
                    p:run({echo = {a = "b"}}))
    local v, err, code = p:run({raise = "no such thing"})
    assert.is_nil(v)
    assert.are.equal("ERR_TASK_FAILED", code)
    assert.are.equal("ValueError: no such thing", err.message)
    assert.matches("Traceback", err.traceback, 1, true)
    assert.are.equal(6, p:run(3))  -- it lives on
    assert.is_true(p:close())
  end)
end)

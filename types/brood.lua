---@meta brood
-- LuaLS definitions of brood's public API (DESIGN.md). Installed to
-- <prefix>/share/brood/types (the rock's directory under luarocks): add
-- that folder to "workspace.library" in .luarc.json. spec/types_spec.lua
-- keeps it true: every public name has a definition here, and every
-- definition here names something that exists.

---@alias brood.Signal string|integer  "SIGTERM", "SIGKILL", ... or a number
---@alias brood.StdioEntry "pipe"|"duplex"|"inherit"|"ignore"|"ipc"|integer|brood.Stream|file*

---@class brood.Error
---@field message string
---@field code string|integer  "ENOENT", "ETIMEDOUT", ... or an exit code
---@field errno? integer
---@field syscall? string
---@field path? string
---@field spawnargs? string[]
---@field cmd? string
---@field signal? string
---@field killed? boolean
---@field timed_out? boolean
---@field stdout? string
---@field stderr? string
---@field index? integer
---@field traceback? string
---@field value? any  a pool task's error object, when not a string

---@class brood.SpawnOptions
---@field cwd? string
---@field env? table<string, string>  replaces the environment
---@field extend_env? table<string, string|false>  merged into it
---@field argv0? string
---@field stdio? "pipe"|"inherit"|"ignore"|brood.StdioEntry[]
---@field detached? boolean
---@field group? boolean
---@field uid? integer
---@field gid? integer
---@field shell? boolean|string
---@field timeout? number  ms, then kill_signal
---@field kill_signal? brood.Signal
---@field cleanup? boolean
---@field kill_grace? number
---@field max_message_size? number

---@class brood.ExecOptions: brood.SpawnOptions
---@field max_buffer? number  bytes per stream (default 1 MiB)
---@field input? string
---@field force_kill_after? number
---@field idle_timeout? number
---@field merge_stderr? boolean
---@field check? boolean  false: a non-zero exit returns the result

---@class brood.ForkOptions: brood.SpawnOptions
---@field silent? boolean
---@field exec_path? string
---@field exec_argv? string[]

---@class brood.ExecResult
---@field stdout string
---@field stderr string
---@field code integer
---@field signal? string
---@field cmd string
---@field pid integer
---@field duration number
---@field rusage brood.Rusage

---@class brood.PipelineResult: brood.ExecResult
---@field codes integer[]

---@class brood.Rusage
---@field maxrss_kb integer
---@field utime number
---@field stime number

---@class brood.SpawnSyncResult
---@field pid integer
---@field stdout? string
---@field stderr? string
---@field status? integer
---@field signal? string
---@field error? brood.Error

---@class brood.Emitter
local Emitter = {}
---@param event string
---@param fn function
---@return self
function Emitter:on(event, fn) end
---@param event string
---@param fn function
---@return self
function Emitter:once(event, fn) end
---@param event string
---@param fn? function
---@return self
function Emitter:off(event, fn) end
---@param event string
---@return boolean
function Emitter:emit(event, ...) end
---@param event string
---@return integer
function Emitter:listener_count(event) end

--- A readable and/or writable stream. Events: "data"(chunk), "end",
--- "error"(err), "close", "drain", "finish".
---@class brood.Stream: brood.Emitter
---@field readable boolean
---@field writable boolean
---@field closed boolean
local Stream = {}
---@param ms? number
---@return string|nil chunk, brood.Error? err, string? code
function Stream:read(ms) end
---@return string
function Stream:read_all() end
---@return fun(): string?
function Stream:lines() end
---@param dest brood.Stream
---@return brood.Stream
function Stream:pipe(dest) end
---@return self
function Stream:pause() end
---@return self
function Stream:resume() end
---@return boolean
function Stream:is_paused() end
---@param data string
---@param cb? fun(err: brood.Error?)
---@return boolean
function Stream:write(data, cb) end
---@return integer
function Stream:pending_bytes() end
---@param data? string
function Stream:close(data) end
function Stream:destroy() end
---@return integer|nil
function Stream:fileno() end
---@return self
function Stream:ref() end
---@return self
function Stream:unref() end

--- A TCP or Unix socket: a stream with an address.
---@class brood.Socket: brood.Stream
local Socket = {}
---@return table
function Socket:address() end
---@return true|nil, brood.Error?, string?
function Socket:wait_connect() end

---@class brood.Server: brood.Emitter
local Server = {}
---@param port integer|string  a port or a socket path
---@param host? string
---@return true|nil, brood.Error?, string?
function Server:listen(port, host) end
---@return table
function Server:address() end
---@param cb? function
function Server:close(cb) end
---@return self
function Server:ref() end
---@return self
function Server:unref() end
---@return integer
function Server:connection_count() end

--- A child process. Events: "spawn", "exit"(code, signal),
--- "close"(code, signal), "error"(err), "message"(msg, handle),
--- "disconnect", "drain".
---@class brood.Child: brood.Emitter
---@field pid integer
---@field stdin? brood.Stream
---@field stdout? brood.Stream
---@field stderr? brood.Stream
---@field stdio brood.Stream[]
---@field exit_code? integer
---@field signal_code? string
---@field killed boolean
---@field timed_out? boolean
---@field connected boolean
---@field spawnfile string
---@field spawnargs string[]
---@field rusage? brood.Rusage
---@field duration? number
local Child = {}
---@param sig? brood.Signal
---@param opts? {tree: boolean}
---@return boolean
function Child:kill(sig, opts) end
---@param ms? number
---@return integer|nil code, string|brood.Error|nil signal_or_err
function Child:wait(ms) end
---@return self
function Child:ref() end
---@return self
function Child:unref() end
---@param msg any
---@param handle? brood.Server|brood.Socket|brood.Stream
---@param opts? {keep_open: boolean}
---@param cb? fun(err: brood.Error?)
---@return boolean
function Child:send(msg, handle, opts, cb) end
---@param ms? number
---@return any msg, any handle_or_err, string? code
function Child:recv(ms) end
function Child:disconnect() end

--- The channel to the parent in a forked script (brood.parent).
---@class brood.Parent: brood.Emitter
---@field connected boolean
local Parent = {}
---@param msg any
---@param handle? any
---@param opts? table
---@param cb? fun(err: brood.Error?)
---@return boolean
function Parent:send(msg, handle, opts, cb) end
---@param ms? number
---@return any msg, any handle_or_err, string? code
function Parent:recv(ms) end
function Parent:disconnect() end

---@class brood.Task
local Task = {}
---@param ms? number
---@return any ...
function Task:wait(ms) end
function Task:cancel() end

---@class brood.Timer
local Timer = {}
function Timer:stop() end

---@class brood.SignalHandler
local SignalHandler = {}
function SignalHandler:stop() end

---@class brood.PoolOptions
---@field size? integer
---@field min_size? integer
---@field concurrency? integer
---@field max_queue? integer
---@field task_timeout? number
---@field max_tasks_per_worker? integer
---@field retries? integer
---@field launcher? string[]|fun(index: integer): string[]
---@field env? table<string, string>
---@field cwd? string

---@class brood.PoolStats
---@field size integer
---@field idle integer
---@field busy integer
---@field queued integer
---@field completed integer
---@field failed integer
---@field restarts integer

--- A process pool. Events: "worker"(pid), "exit"(pid, code, signal),
--- "error"(err).
---@class brood.Pool: brood.Emitter
local Pool = {}
---@param task any
---@return any result, brood.Error? err, string? code
function Pool:run(task) end
---@param task any
---@param cb fun(err: brood.Error?, result: any)
function Pool:submit(task, cb) end
---@param tasks any[]
---@param opts? {progress: boolean}
---@return any[]|nil results, brood.Error? err, string? code
function Pool:map(tasks, opts) end
function Pool:close() end
function Pool:destroy() end
---@return brood.PoolStats
function Pool:stats() end
---@return integer[]
function Pool:pids() end
---@param event string
---@return integer
function Pool:listener_count(event) end

---@class brood.MapOptions
---@field concurrency? integer
---@field progress? boolean

---@class brood.FakeScript
---@field stdout? string
---@field stderr? string
---@field code? integer
---@field signal? brood.Signal
---@field delay? number  virtual ms before it exits

---@class brood.FakeCall
---@field file string
---@field args string[]
---@field opts table
---@field pid integer
---@field child brood.Child
---@field stdin fun(): string  what was written to its stdin

--- The fake spawner of brood.testing.fake().
---@class brood.Fake
---@field calls brood.FakeCall[]
local Fake = {}
---@param program string|fun(file: string, args: string[]): boolean
---@param args? string[]
---@param script? brood.FakeScript
---@return self
function Fake:on(program, args, script) end
---@param ms number
---@return number now
function Fake:advance(ms) end
---@return number
function Fake:now() end
function Fake:restore() end

---@class brood.testing
local testing = {}
---@return brood.Fake
function testing.fake() end

---@class brood.msgpack
local msgpack = {}
---@param v any
---@return string
function msgpack.encode(v) end
---@param s string
---@return any
function msgpack.decode(s) end
---@generic T: table
---@param t T
---@return T
function msgpack.array(t) end

---@class brood.net
local net = {}
---@param on_connection? fun(socket: brood.Socket)
---@return brood.Server
function net.create_server(on_connection) end
---@param where integer|string  a port or a socket path
---@param host? string
---@param cb? function
---@return brood.Socket|nil, brood.Error?, string?
function net.connect(where, host, cb) end

---@class brood
---@field _VERSION string
---@field parent? brood.Parent  in a forked script only
---@field pid integer
---@field max_children? integer
---@field core_info {uv_version: string, exit_watch: string}
---@field Error table  the metatable of brood.Error values
---@field msgpack brood.msgpack
---@field net brood.net
---@field testing brood.testing
local brood = {}

---@param fn? function
function brood.run(fn) end
function brood.stop() end
---@param fn function
---@return brood.Task
function brood.go(fn, ...) end
---@param ms number
function brood.sleep(ms) end
---@return brood.Task|nil
function brood.current_task() end
---@param ms number
---@param fn function
---@return brood.Timer
function brood.set_timeout(ms, fn, ...) end
---@param ms number
---@param fn function
---@return brood.Timer
function brood.set_interval(ms, fn, ...) end
---@return number
function brood.now() end
---@return integer
function brood.hrtime() end
---@param sig brood.Signal
---@param fn fun(sig: string)
---@return brood.SignalHandler
function brood.on_signal(sig, fn) end
---@param pid integer
---@param sig? brood.Signal
---@return true|nil, brood.Error?, string?
function brood.kill(pid, sig) end

---@param file string
---@param args? string[]
---@param opts? brood.SpawnOptions
---@return brood.Child|nil, brood.Error?, string?
function brood.spawn(file, args, opts) end
---@param command string
---@param opts? brood.ExecOptions
---@param cb? fun(err: brood.Error?, stdout: string, stderr: string)
---@return brood.ExecResult|brood.Child|nil, brood.Error?, string|integer|nil
function brood.exec(command, opts, cb) end
---@param file string
---@param args? string[]
---@param opts? brood.ExecOptions
---@param cb? fun(err: brood.Error?, stdout: string, stderr: string)
---@return brood.ExecResult|brood.Child|nil, brood.Error?, string|integer|nil
function brood.exec_file(file, args, opts, cb) end
---@param file string
---@param args? string[]
---@param opts? brood.ExecOptions
---@return brood.SpawnSyncResult
function brood.spawn_sync(file, args, opts) end
---@param command string
---@param opts? brood.ExecOptions
---@return string|brood.ExecResult|nil, brood.Error?, string|integer|nil
function brood.exec_sync(command, opts) end
---@param file string
---@param args? string[]
---@param opts? brood.ExecOptions
---@return string|brood.ExecResult|nil, brood.Error?, string|integer|nil
function brood.exec_file_sync(file, args, opts) end
---@param module_path string
---@param args? string[]
---@param opts? brood.ForkOptions
---@return brood.Child|nil, brood.Error?, string?
function brood.fork(module_path, args, opts) end
---@generic T: table
---@param t T
---@return T
function brood.array(t) end
---@param module_path string
---@param opts? brood.PoolOptions
---@return brood.Pool
function brood.pool(module_path, opts) end
---@param fn fun(task: any): any
function brood.worker(fn) end

---@param fns function[]
---@return any[]
function brood.all(fns) end
---@param fns function[]
---@return any ...
function brood.race(fns) end
---@param items any[]
---@param fn fun(item: any, i: integer): any
---@param opts? brood.MapOptions
---@return any[]
function brood.map(items, fn, opts) end
---@param stages (string|string[])[]
---@param opts? brood.ExecOptions
---@return brood.PipelineResult|nil, brood.Error?, string|integer|nil
function brood.pipeline(stages, opts) end
---@param s string
---@return string
function brood.shell_quote(s) end
---@param argv string[]
---@return string
function brood.shell_join(argv) end

return brood

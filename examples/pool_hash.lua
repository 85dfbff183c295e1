-- Hash every file of a tree on all cores, with a progress line.
--
--   brood examples/pool_hash.lua [dir]     (default: this project's lua/)
--
-- The list of files comes from `find`; each file is one task for the
-- pool; pool:map returns the digests in the order of the list (a file
-- that cannot be read fails alone, and map still hashes the rest).
local brood = require "brood"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local dir = arg and arg[1] or (here .. "/../lua")

local found = assert(brood.exec_file("find", {dir, "-type", "f"}))
local files = {}
for path in found.stdout:gmatch("[^\n]+") do files[#files + 1] = path end
table.sort(files)

local pool <close> = assert(brood.pool(here .. "/pool_hash_worker.lua"))
local t0 = brood.hrtime()
local results, err = pool:map(files, {progress = true})
if not results then
  io.stderr:write(("%s: %s\n"):format(files[err.index], err.message))
  os.exit(1)
end
local bytes = 0
for i, r in ipairs(results) do
  print(r.digest, files[i])
  bytes = bytes + r.size
end
io.stderr:write(("%d files, %d bytes, %.0f ms on %d workers\n"):format(
  #files, bytes, (brood.hrtime() - t0) / 1e6, pool:stats().size))

-- Package a directory as a .tar.gz through a pipeline, verify the archive
-- and print its checksum. Paths may hold spaces or quotes: argv stages
-- need no quoting, and the one shell stage quotes with brood.shell_quote.
-- Failures are looked at, not raised: check = false returns the result
-- with every stage's exit code.
--
--   brood examples/deploy.lua [src_dir dest.tar.gz]
--
-- Without arguments it packs a small generated site (file and directory
-- names with spaces) into a temp dir and cleans up after itself.
--
-- As a module (spec/deploy_spec.lua tests it with brood.testing):
--   local deploy = require "examples.deploy"
--   local summary, why = deploy(src_dir, dest)
local brood = require "brood"

local q = brood.shell_quote

-- deploy(src, dest) -> {files =, checksum =, cmd =} | nil, message
local function deploy(src, dest)
  -- tar writes to gzip through a real pipe; the shell stage writes the
  -- file, so the archive never passes through this process
  local r, err = brood.pipeline({
    {"tar", "-cf", "-", "-C", src, "."},
    "gzip -9 > " .. q(dest),
  }, {check = false, timeout = 120000})
  if not r then  -- not an exit status: a launch failure or the timeout
    return nil, "pack: " .. tostring(err)
  end
  if r.code ~= 0 or r.signal then
    local stage = r.codes[1] ~= 0 and "tar" or "gzip"
    return nil, ("pack: %s failed (codes %s): %s"):format(stage,
      table.concat(r.codes, ","), r.stderr:gsub("\n$", ""))
  end

  -- list it back: every entry must be there
  local list = brood.exec("tar -tzf " .. q(dest), {check = false})
  if not list then return nil, "verify: tar did not run" end
  if list.code ~= 0 then
    return nil, ("verify: %s is not a valid archive (exit %s)")
      :format(dest, tostring(list.code))
  end
  local files = 0
  for line in list.stdout:gmatch("[^\n]+") do
    if not line:find("/$") then files = files + 1 end
  end

  local sum = assert(brood.exec_file("cksum", {dest}))
  return {files = files, checksum = sum.stdout:match("^(%d+)"),
          cmd = r.cmd}
end

-- required as a module: hand the function over, run nothing
if ... == "examples.deploy" then return deploy end

local function main(src, dest)
  local tmp
  if not src then
    tmp = brood.exec_sync("mktemp -d"):gsub("\n$", "")
    src, dest = tmp .. "/my site", tmp .. "/out dir/site's build.tar.gz"
    brood.exec_sync("mkdir -p " .. brood.shell_join({src .. "/css",
      src .. "/blog posts", tmp .. "/out dir"}))
    for name, text in pairs({["index.html"] = "<h1>hi</h1>\n",
                             ["css/main.css"] = "h1 { color: teal }\n",
                             ["blog posts/first post.md"] = "# First\n"}) do
      local f = assert(io.open(src .. "/" .. name, "w"))
      f:write(text)
      f:close()
    end
  end
  local summary, why = deploy(src, dest)
  if tmp then brood.exec_file_sync("rm", {"-rf", tmp}) end
  if not summary then
    io.stderr:write("deploy failed: ", why, "\n")
    return 1
  end
  print(("packed %d files, cksum %s"):format(summary.files,
                                             summary.checksum))
  print("via: " .. summary.cmd)
  return 0
end

os.exit(main(arg and arg[1], arg and arg[2]))

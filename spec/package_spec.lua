-- Packaging (issue 2): `luarocks make` of our rockspec works offline and
-- installs the Lua modules, brood.core and the host into the tree's bin/.
local H = require "spec.helper"
local brood = H.brood

describe("luarocks make rockspec/brood-scm-1.rockspec", function()
  local tree

  setup(function()
    tree = os.tmpname()
    os.remove(tree)
    assert(os.execute("mkdir -p " .. tree))
  end)

  teardown(function()
    os.execute("rm -rf " .. tree)
  end)

  it("installs brood, brood.core and the host, offline", function()
    local r = brood.spawn_sync("luarocks", {"--lua-version=5.4",
      "--tree=" .. tree, "make", "rockspec/brood-scm-1.rockspec"},
      {timeout = 200000, max_buffer = math.huge})
    assert.are.equal(0, r.status, (r.stdout or "") .. (r.stderr or ""))

    -- plain lua5.4 with the tree's paths finds the module and its core
    local lua_path = tree .. "/share/lua/5.4/?.lua;" .. tree ..
                     "/share/lua/5.4/?/init.lua;;"
    local lua_cpath = tree .. "/lib/lua/5.4/?.so;;"
    local out = assert(brood.exec_file_sync("lua5.4", {"-e",
      "local b = require 'brood'; print(b._VERSION); " ..
      "print(package.searchpath('brood', package.path)); " ..
      "print(package.searchpath('brood.core', package.cpath))"},
      {extend_env = {LUA_PATH = lua_path, LUA_CPATH = lua_cpath}}))
    assert.are.equal(("brood 0.1.0\n%s/share/lua/5.4/brood/init.lua\n" ..
                      "%s/lib/lua/5.4/brood/core.so\n"):format(tree, tree), out)

    -- under plain lua5.4, brood.fork starts the host installed beside the
    -- module (the tree's bin/brood), which finds the modules by itself
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write('require("brood").parent:send(arg[-1] or "?")\n')
    f:close()
    out = assert(brood.exec_file_sync("lua5.4", {"-e", ([[
      local brood = require "brood"
      local child = assert(brood.fork(%q))
      print((child:recv()))
      print(child:wait())
    ]]):format(script)}, {extend_env = {LUA_PATH = lua_path,
                                         LUA_CPATH = lua_cpath}}))
    os.remove(script)
    assert.are.equal(tree .. "/bin/brood\n0\tnil\n", out)

    -- the host in the tree's bin/ finds the installed modules by itself
    local host = tree .. "/bin/brood"
    assert.are.equal("1\n", assert(brood.exec_file_sync(host,
      {"-e", "print(1)"}, {extend_env = {LUA_PATH = false}})))
    assert.are.equal("hi\n", assert(brood.exec_file_sync(host, {"-e",
      "print(require('brood').exec_sync('echo hi'):sub(1, -2))"},
      {extend_env = {LUA_PATH = false, LUA_CPATH = false}})))
  end)
end)

-- What `require "brood"` costs: it loads no other Lua module of brood
-- until a field is used, and each field still works on first use.
local H = require "spec.helper"

-- The brood modules a fresh process has loaded after `code`.
local function loaded_after(runner, code)
  local script = [[
    local before = {}
    for k in pairs(package.loaded) do before[k] = true end
  ]] .. code .. [[
    local new = {}
    for k in pairs(package.loaded) do
      if not before[k] and k:find("^brood") then new[#new + 1] = k end
    end
    table.sort(new)
    io.write(table.concat(new, " "))
  ]]
  local argv = runner == "host" and {"-e", script} or
    {"-e", "package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path; " ..
           "package.cpath = '" .. H.build .. "/lib/?.so;' .. package.cpath",
     "-e", script}
  local file = H.host
  if runner ~= "host" then file, argv = H.lua54(argv) end
  local r = H.brood.spawn_sync(file, argv)
  assert.are.equal("", r.stderr)
  assert.are.equal(0, r.status)
  return r.stdout
end

describe("require \"brood\"", function()
  H.guard()

  for _, runner in ipairs({"host", "lua5.4"}) do
    it("loads only brood and brood.core (" .. runner .. ")", function()
      assert.are.equal("brood brood.core",
                       loaded_after(runner, 'local brood = require "brood"'))
    end)
  end

  it("loads what a field needs on first use, and the field works",
     function()
    local out = loaded_after("host", [[
      local brood = require "brood"
      assert(brood.hrtime() > 0)
      assert(type(brood.Error) == "table")
      assert(brood.exec_sync("echo x") == "x\n")
    ]])
    assert.matches("brood.sync", out, 1, true)
    assert.is_nil(out:find("brood.net", 1, true))
    assert.is_nil(out:find("brood.pool", 1, true))
  end)

  it("brood.run() with nothing started loads nothing (the host calls it " ..
     "after every script)", function()
    assert.are.equal("brood brood.core", loaded_after("host", [[
      local brood = require "brood"
      brood.run()
    ]]))
  end)

end)

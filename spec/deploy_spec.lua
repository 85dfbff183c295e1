-- A user's spec for examples/deploy.lua (issue 13 item 7): its logic
-- tested with brood.testing's scripted programs. No real process runs
-- here: not tar, not gzip, not a shell.
local H = require "spec.helper"
local brood = H.brood

local deploy = require "examples.deploy"

local SRC, DEST = "/srv/my site", "/var/out dir/site's.tar.gz"
local GZIP = "gzip -9 > '/var/out dir/site'\\''s.tar.gz'"

-- a program matcher for one exact command line (no pattern escaping)
local function exactly(cmd)
  return function(file) return file == cmd end
end

local no_real_children = H.no_real_children

describe("examples/deploy.lua", function()
  H.guard()
  local fake
  before_each(function()
    fake = brood.testing.fake()
    fake:on("tar", {"-cf", "-", "-C", SRC, "."}, {delay = 3000})
    fake:on(exactly(GZIP), nil, {delay = 3100})
    fake:on(exactly("tar -tzf '/var/out dir/site'\\''s.tar.gz'"), nil,
            {stdout = "./\n./index.html\n./css/\n./css/main.css\n"})
    fake:on("cksum", {DEST}, {stdout = "1234567 210 " .. DEST .. "\n"})
  end)
  after_each(function() fake:restore() end)

  it("packs, verifies and sums, quoting the destination for the shell",
     function()
    local summary = assert(deploy(SRC, DEST))
    assert.are.same({files = 2, checksum = "1234567",
                     cmd = "tar -cf - -C '/srv/my site' . | " .. GZIP},
                    summary)
    local files = {}
    for i, c in ipairs(fake.calls) do files[i] = c.file end
    assert.are.same({"tar", GZIP,
                     "tar -tzf '/var/out dir/site'\\''s.tar.gz'", "cksum"},
                    files)
    assert.is_true(fake:now() >= 3100)  -- the virtual clock, not real time
    assert.is_true(no_real_children())
  end)

  it("names the failing stage with every stage's exit code", function()
    fake:on("tar", nil, {stderr = "tar: /srv/my site: Cannot open\n",
                         code = 2})
    local ok, why = deploy(SRC, DEST)
    assert.is_nil(ok)
    assert.are.equal("pack: tar failed (codes 2,0): " ..
                     "tar: /srv/my site: Cannot open", why)
    assert.are.equal(2, #fake.calls)  -- it stopped there
  end)

  it("a gzip that fails (a full disk) fails the pack", function()
    fake:on(exactly(GZIP), nil, {stderr = "gzip: write error\n", code = 1})
    local ok, why = deploy(SRC, DEST)
    assert.is_nil(ok)
    assert.are.equal("pack: gzip failed (codes 0,1): gzip: write error", why)
  end)

  it("an archive that does not list back fails the verify", function()
    fake:on(exactly("tar -tzf '/var/out dir/site'\\''s.tar.gz'"), nil,
            {stderr = "gzip: stdin: unexpected end of file\n", code = 2})
    local ok, why = deploy(SRC, DEST)
    assert.is_nil(ok)
    assert.are.equal("verify: " .. DEST ..
                     " is not a valid archive (exit 2)", why)
  end)

  it("a pack that hangs is killed by the timeout", function()
    fake:on("tar", nil, {delay = 3600 * 1000})  -- an hour, virtually
    local ok, why = deploy(SRC, DEST)
    assert.is_nil(ok)
    assert.truthy(why:find("^pack: "), why)
    assert.truthy(why:find("timed out", 1, true), why)
    assert.are.equal(120000, fake:now())
  end)

  it("a missing tar is a launch failure, not an exit code", function()
    fake:restore()
    fake = brood.testing.fake()  -- nothing scripted: every program missing
    local ok, why = deploy(SRC, DEST)
    assert.is_nil(ok)
    assert.truthy(why:find("^pack: .*ENOENT"), why)
  end)
end)

--- Quoting for /bin/sh (DESIGN §10): brood.shell_quote and shell_join.
-- @module brood.shell
local check = require "brood.check"

local M = {}

local format = string.format

--- One word for /bin/sh: `s` itself when every byte is one the shell
-- never treats specially, else `s` in single quotes (inside which only
-- the quote itself needs care: close, escape it, reopen). The empty
-- string is ''. NUL cannot be in an argument, so it raises.
function M.shell_quote(s)
  s = check.cstring("shell_quote", 1, s, "word")
  if s ~= "" and not s:find("[^%w@%%+=:,./_-]") then return s end
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end
local quote = M.shell_quote

--- The argument list as one /bin/sh command line: each word quoted,
-- joined by spaces.
function M.shell_join(argv)
  if type(argv) ~= "table" then
    check.fail("shell_join", 1, format("table expected, got %s",
      argv == nil and "no value" or type(argv)))
  end
  local words = {}
  for i = 1, #argv do
    local v = argv[i]
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" then
      check.fail("shell_join", 1, format("argv[%d] must be a string, got %s",
                                         i, type(v)))
    end
    if v:find("\0", 1, true) then
      check.fail("shell_join", 1,
                 format("argv[%d] must not contain NUL bytes", i))
    end
    words[i] = quote(v)
  end
  return table.concat(words, " ")
end

return M

--- Facts about the running process (DESIGN §10): brood.pid.
-- @module brood.host
local core = require "brood.core"

return {
  --- The pid of the process running the script (the host, or lua5.4).
  pid = core.getpid(),
}

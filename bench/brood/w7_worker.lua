-- W7 worker: the trivial task, returned as it came.
local brood = require "brood"
brood.worker(function(x) return x end)

--- A first-in, first-out queue: the loop's deferred calls, a stream's
-- buffered chunks, a channel's undelivered messages, pending readers.
-- Items live at integer keys from `first` to `last`; `length` is theirs
-- to read (hot paths test `q.length == 0` rather than call a method).
-- Items must not be nil.
-- @module brood.queue
local M = {}

local Queue = {__name = "brood.Queue"}
Queue.__index = Queue
M.Queue = Queue

function M.new()
  return setmetatable({first = 1, last = 0, length = 0}, Queue)
end

function Queue:push(item)
  local last = self.last + 1
  self.last, self[last] = last, item
  self.length = self.length + 1
end

--- The oldest item, removed; nil when empty.
function Queue:shift()
  local first = self.first
  if first > self.last then return nil end
  local item = self[first]
  self[first] = nil
  self.first, self.length = first + 1, self.length - 1
  return item
end

--- The oldest item, left in place; nil when empty.
function Queue:peek()
  return self[self.first]
end

--- Remove the oldest item equal to `item`; true if there was one.
function Queue:remove(item)
  for i = self.first, self.last do
    if self[i] == item then
      table.move(self, i + 1, self.last, i)
      self[self.last] = nil
      self.last, self.length = self.last - 1, self.length - 1
      return true
    end
  end
  return false
end

--- Take every item out at once: returns them as a list (1..n).
function Queue:take_all()
  local list = table.move(self, self.first, self.last, 1, {})
  for i = self.first, self.last do self[i] = nil end
  self.first, self.last, self.length = 1, 0, 0
  return list
end

return M

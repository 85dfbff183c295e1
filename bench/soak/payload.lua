-- bench/soak/payload.lua: payload(seq), the payload of fork_kill's
-- message seq, for both sides (loaded with dofile). Its length depends
-- on seq; its bytes are a prefix of one fixed string of numbered
-- 8-byte cells ("0000000|0000001|...", 8191 of them, then again: a period
-- that no write size divides), so a shifted, dropped or foreign byte shows.
-- Built once per length and reused: the check is then a plain string
-- comparison, and neither side churns megabytes of garbage, which would
-- only measure the allocator.
local CELLS = {}
for k = 0, 8190 do CELLS[#CELLS + 1] = ("%07d|"):format(k) end
CELLS = table.concat(CELLS)
CELLS = CELLS:rep(1024 * 1024 // #CELLS + 1)
local by_len = {}
return function(seq)
  local len
  if seq % 64 >= 5 and seq % 64 <= 7 then len = 1024 * 1024
  elseif seq % 8 == 3 then len = 200 * 1024
  elseif seq % 8 == 6 then len = 5000
  else len = 10 + seq % 190 end
  local p = by_len[len]
  if not p then
    p = CELLS:sub(1, len)
    by_len[len] = p
  end
  return p
end

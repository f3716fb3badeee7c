-- The registry of network bans, so that a request looks up its networks of the lengths
-- in use only. KEYS: the lengths in use (a sorted set: "4/24" -> when the last ban of a
-- network of that length ends), the count of operator changes (see registry_answer),
-- then for "add" and "remove" the networks of one length
-- (a sorted set: network -> when its ban ends). ARGV: now or "", action, then for "add"
-- and "remove" the network, its length ("4/24") and the end of its ban.
-- "add": the network's ban ends then (an entry never moves earlier: a ban is never
-- shortened, and calls may cross); "remove": the ban that ended then is over (an entry
-- that ends later, from a ban made since, stays); "read": nothing more.
-- Returns the count of changes, then the lengths in use.
local now, action = clock(ARGV[1]), ARGV[2]
local lengths = KEYS[1]
if action ~= 'read' then
  registry_change(lengths, KEYS[3], now, action, ARGV[3], ARGV[4], tonumber(ARGV[5]))
end
return registry_answer(lengths, KEYS[2], now)

-- The subnet ban rule's step alone, on the network's slot (Redis Cluster: the registry
-- sits on another). KEYS: the network's ban, its banned addresses. ARGV: now or "", the
-- banned client's key, the rule's count, window and duration (microseconds).
-- Returns the network's ban_detail when this banned it, else {}.
local now = clock(ARGV[1])
if escalate(KEYS[1], KEYS[2], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
    tonumber(ARGV[5]), now) then
  return ban_detail(KEYS[1], now)
end
return {}

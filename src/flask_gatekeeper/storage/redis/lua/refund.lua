-- Take back what one admitted request reserved in some of its deferred scopes (a
-- count_when route whose function did not count the response), and nothing else; what
-- no longer counts is left alone. The same steps as MemoryStorage.refund.
-- KEYS: per scope as hit.lua takes them (see read_scopes). ARGV[1]: now or ""; ARGV[2]:
-- how many values the reservations take, then the reservations: per scope the stamp the
-- hit used, each stateful rule's state[1] after it, each distinct rule's 1 when the hit
-- added its value; then the scopes as read_scopes reads them.
local now = clock(ARGV[1])
local at = 3
for _, scope in ipairs(read_scopes(3 + tonumber(ARGV[2]), 1)) do
  local stamp = tonumber(ARGV[at])
  at = at + 1
  -- its timestamps, while they count (those of one microsecond are interchangeable)
  if scope.depth > 0 and stamp + scope.ttl > now then
    redis.call('LREM', scope.log, scope.cost, int(stamp))
  end
  for _, rule in ipairs(scope.stateful) do
    local left = tonumber(ARGV[at])
    at = at + 1
    if rule.state then
      local state = strategy_refund(rule.code, rule.state, rule.count, rule.window, now,
        scope.cost, left)
      if state then
        rule.state = state
        strategy_save(rule, now)
      end
    end
  end
  for _, rule in ipairs(scope.distinct) do
    -- its own value: added by it, and not seen since
    if ARGV[at] == '1' and tonumber(redis.call('ZSCORE', rule.key, rule.value)) == stamp then
      redis.call('ZREM', rule.key, rule.value)
    end
    at = at + 1
  end
end
return 0

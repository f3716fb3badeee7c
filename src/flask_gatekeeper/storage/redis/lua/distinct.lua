-- Distinct rules (Rule.distinct): per client, scope and rule, a sorted set of the values
-- seen within the window, each scored with when it was last seen (microseconds). The
-- same steps as _Distinct in storage/memory.py (keep the two in step). A rule read by
-- read_scopes is {key, count, window, value}, value nil when the request has none.

-- drop the values out of the window: seen at or before now - window
local function distinct_prune(rule, now)
  redis.call('ZREMRANGEBYSCORE', rule.key, '-inf', int(now - rule.window))
end

-- whole microseconds until the request's value fits (0: admit now): a value seen within
-- the window always does, a new one while fewer than `count` values are
local function distinct_check(rule, now)
  if not rule.value then
    return 0
  end
  distinct_prune(rule, now)
  if redis.call('ZSCORE', rule.key, rule.value) or redis.call('ZCARD', rule.key) < rule.count then
    return 0
  end
  local oldest = redis.call('ZRANGE', rule.key, 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + rule.window - now
end

-- the request's value seen now; only the newest `count` are kept (more only after a
-- smaller count; ties go by the values' bytes). Returns 1 when the value is new, else 0.
local function distinct_record(rule, now)
  if not rule.value then
    return 0
  end
  distinct_prune(rule, now)
  local added = redis.call('ZADD', rule.key, int(now), rule.value)
  local excess = redis.call('ZCARD', rule.key) - rule.count
  if excess > 0 then
    redis.call('ZREMRANGEBYRANK', rule.key, 0, excess - 1)
  end
  expire_after(rule.key, rule.window)
  return added
end

-- values left (the count less the live values), and microseconds until the oldest live
-- value leaves the window; reads only
local function distinct_usage(rule, now)
  local floor = '(' .. int(now - rule.window)
  local live = redis.call('ZCOUNT', rule.key, floor, '+inf')
  if live == 0 then
    return rule.count, 0
  end
  local oldest = redis.call('ZRANGEBYSCORE', rule.key, floor, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return math.max(0, rule.count - live), tonumber(oldest[2]) + rule.window - now
end

-- One request, atomically: ban check, every rule's check, record if admitted.
-- KEYS: ban, reports, then per scope its sliding log (a list, newest first) followed by
-- one state key per stateful rule.
-- ARGV[1]: now (microseconds) or "" for the server's clock; ARGV[2]: "1" to return usage;
-- ARGV[3]: "1" when a refusal counts as a report, then ARGV[4..9] the ban rule
-- (count, window, duration, factor, max_duration or 0, forget_after);
-- from ARGV[10], per scope: depth, ttl, number of sliding-log rules, (count, window) for
-- each, number of stateful rules, (count, window, strategy code, shift) for each.
-- Returns {status, wait, rule, usage_rule, remaining, reset, new_ban}: status 0 admitted,
-- 1 banned (then `rule` is 1 for a ban set by hand), 2 limited; rules are numbered over
-- every scope from 0, sliding-log rules first in each scope; -1 means none.
local now = clock(ARGV[1])
local finish = ban_end(KEYS[1])
if finish > now then  -- the third value says whether the ban was set by hand
  return {1, finish - now, redis.call('HGET', KEYS[1], 'm') == '1' and 1 or 0, -1, 0, 0, -1}
end

local scopes, arg, key = {}, 10, 3
while arg <= #ARGV do
  local scope = {log = KEYS[key], depth = tonumber(ARGV[arg]), ttl = tonumber(ARGV[arg + 1])}
  scope.logged = numbers(arg + 3, arg + 2 + 2 * tonumber(ARGV[arg + 2]))
  arg = arg + 3 + #scope.logged
  local stateful = numbers(arg + 1, arg + 4 * tonumber(ARGV[arg]))
  arg = arg + 1 + #stateful
  scope.stateful = {}
  for r = 1, #stateful, 4 do
    key = key + 1
    local rule = {key = KEYS[key], count = stateful[r], window = stateful[r + 1],
      code = stateful[r + 2], shift = stateful[r + 3]}
    rule.state = load_state(rule.key)
    scope.stateful[#scope.stateful + 1] = rule
  end
  key = key + 1
  scopes[#scopes + 1] = scope
end

local wait, worst, index = 0, -1, 0
for _, scope in ipairs(scopes) do
  local size = redis.call('LLEN', scope.log)
  -- keep at least the newest `depth`, and never fewer than before (rules may have shrunk)
  scope.keep = math.max(scope.depth, size)
  for r = 1, #scope.logged, 2 do
    local count, window = scope.logged[r], scope.logged[r + 1]
    if size >= count then
      local free_at = tonumber(redis.call('LINDEX', scope.log, count - 1)) + window
      if free_at - now > wait then
        wait, worst = free_at - now, index
      end
    end
    index = index + 1
  end
  for _, rule in ipairs(scope.stateful) do
    local rule_wait = strategy_check(rule.code, rule.state, rule.count, rule.window, rule.shift, now)
    if rule_wait > wait then
      wait, worst = rule_wait, index
    end
    index = index + 1
  end
end
if worst >= 0 then
  local new_ban = -1
  if ARGV[3] == '1' then
    new_ban = report(KEYS[2], KEYS[1], now, numbers(4, 9))
  end
  return {2, wait, worst, worst, 0, wait, new_ban}
end

for _, scope in ipairs(scopes) do
  if scope.depth > 0 then
    redis.call('LPUSH', scope.log, int(now))
    redis.call('LTRIM', scope.log, 0, scope.keep - 1)
    expire_after(scope.log, scope.ttl)
  end
  for _, rule in ipairs(scope.stateful) do
    rule.state = strategy_record(rule.code, rule.state, rule.count, rule.window, rule.shift, now)
    local ttl = 2 * rule.window
    if rule.code == GCRA then
      ttl = rule.state[1] - now
    end
    save_state(rule.key, rule.state, ttl)
  end
end
if ARGV[2] ~= '1' then
  return {0, 0, -1, -1, 0, 0, -1}
end

-- the rule with the fewest requests left (then the longest reset)
local closest, remaining, reset = -1, 0, 0
local function consider(rule_index, left, rule_reset)
  if closest < 0 or left < remaining or (left == remaining and rule_reset > reset) then
    closest, remaining, reset = rule_index, left, rule_reset
  end
end
index = 0
for _, scope in ipairs(scopes) do
  local stamps = redis.call('LRANGE', scope.log, 0, scope.keep - 1)
  for r = 1, #scope.logged, 2 do
    local count, window = scope.logged[r], scope.logged[r + 1]
    local used, rule_reset = 0, 0
    for i = 1, math.min(#stamps, count) do
      local free_at = tonumber(stamps[i]) + window
      if free_at <= now then
        break
      end
      used, rule_reset = i, free_at - now
    end
    consider(index, count - used, rule_reset)
    index = index + 1
  end
  for _, rule in ipairs(scope.stateful) do
    consider(index, strategy_usage(rule.code, rule.state, rule.count, rule.window, rule.shift, now))
    index = index + 1
  end
end
return {0, 0, -1, closest, remaining, reset, -1}

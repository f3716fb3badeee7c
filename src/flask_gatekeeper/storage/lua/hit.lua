-- One request, atomically: ban check, every rule's check, record if admitted.
-- KEYS: ban, reports, then one sliding log per scope (a list, newest first).
-- ARGV[1]: now (microseconds) or "" for the server's clock; ARGV[2]: "1" to return usage;
-- ARGV[3]: "1" when a refusal counts as a report, then ARGV[4..9] the ban rule
-- (count, window, duration, factor, max_duration or 0, forget_after);
-- from ARGV[10], per scope: depth, ttl, number of rules, then (count, window) per rule.
-- Returns {status, wait, rule, usage_rule, remaining, reset, new_ban}: status 0 admitted,
-- 1 banned, 2 limited; rules are numbered over every scope from 0; -1 means none.
local now = clock(ARGV[1])
local finish = ban_end(KEYS[1])
if finish > now then
  return {1, finish - now, -1, -1, 0, 0, -1}
end

local scopes, arg = {}, 10
for key = 3, #KEYS do
  local scope = {key = KEYS[key], depth = tonumber(ARGV[arg]), ttl = tonumber(ARGV[arg + 1])}
  scope.rules = numbers(arg + 3, arg + 2 + 2 * tonumber(ARGV[arg + 2]))
  arg = arg + 3 + #scope.rules
  scopes[#scopes + 1] = scope
end

local wait, worst, index = 0, -1, 0
for _, scope in ipairs(scopes) do
  local size = redis.call('LLEN', scope.key)
  -- keep at least the newest `depth`, and never fewer than before (rules may have shrunk)
  scope.keep = math.max(scope.depth, size)
  for r = 1, #scope.rules, 2 do
    local count, window = scope.rules[r], scope.rules[r + 1]
    if size >= count then
      local free_at = tonumber(redis.call('LINDEX', scope.key, count - 1)) + window
      if free_at - now > wait then
        wait, worst = free_at - now, index
      end
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
  redis.call('LPUSH', scope.key, int(now))
  redis.call('LTRIM', scope.key, 0, scope.keep - 1)
  expire_after(scope.key, scope.ttl)
end
if ARGV[2] ~= '1' then
  return {0, 0, -1, -1, 0, 0, -1}
end

-- the rule with the fewest requests left (then the longest reset)
local closest, remaining, reset = -1, 0, 0
index = 0
for _, scope in ipairs(scopes) do
  local stamps = redis.call('LRANGE', scope.key, 0, scope.keep - 1)
  for r = 1, #scope.rules, 2 do
    local count, window = scope.rules[r], scope.rules[r + 1]
    local used, rule_reset = 0, 0
    for i = 1, math.min(#stamps, count) do
      local free_at = tonumber(stamps[i]) + window
      if free_at <= now then
        break
      end
      used, rule_reset = i, free_at - now
    end
    if closest < 0 or count - used < remaining
        or (count - used == remaining and rule_reset > reset) then
      closest, remaining, reset = index, count - used, rule_reset
    end
    index = index + 1
  end
end
return {0, 0, -1, closest, remaining, reset, -1}

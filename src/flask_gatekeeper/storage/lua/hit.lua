-- One request, atomically: ban check, every rule's check, record if admitted.
-- KEYS[1]: the client's ban; KEYS[2..]: one sliding log per scope (a list, newest first).
-- ARGV[1]: now in microseconds, or "" for the server's clock.
-- Then per scope: depth (timestamps kept), ttl_ms, number of rules, (count, window_us)...
-- Returns {0, 0, -1} admitted; {1, wait_us, -1} banned; {2, wait_us, rule_index} limited,
-- where rule_index counts the rules of every scope in order, from 0.
local now = tonumber(ARGV[1])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end

local ban_end = redis.call('GET', KEYS[1])
if ban_end and tonumber(ban_end) > now then
  return {1, tonumber(ban_end) - now, -1}
end

local arg, rule_index, wait, worst = 2, 0, 0, -1
local depths, ttls = {}, {}
for scope = 2, #KEYS do
  local depth, ttl, rules = tonumber(ARGV[arg]), ARGV[arg + 1], tonumber(ARGV[arg + 2])
  depths[scope], ttls[scope] = depth, ttl
  arg = arg + 3
  local size = redis.call('LLEN', KEYS[scope])
  for _ = 1, rules do
    local count, window = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1])
    arg = arg + 2
    if size >= count then
      local free_at = tonumber(redis.call('LINDEX', KEYS[scope], count - 1)) + window
      if free_at - now > wait then
        wait, worst = free_at - now, rule_index
      end
    end
    rule_index = rule_index + 1
  end
end
if worst >= 0 then
  return {2, wait, worst}
end

local stamp = string.format('%d', now)
for scope = 2, #KEYS do
  redis.call('LPUSH', KEYS[scope], stamp)
  redis.call('LTRIM', KEYS[scope], 0, depths[scope] - 1)
  redis.call('PEXPIRE', KEYS[scope], ttls[scope])
end
return {0, 0, -1}

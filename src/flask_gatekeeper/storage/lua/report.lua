-- One offence, atomically: record it, and ban when the ban rule is complete.
-- KEYS[1]: the client's reports (a list, newest first); KEYS[2]: its ban.
-- ARGV: now_us or "" for the server's clock, count, window_us, duration_us.
-- Returns 1 when this report bans the client, else 0.
local now = tonumber(ARGV[1])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local count, window, duration = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

redis.call('LPUSH', KEYS[1], string.format('%d', now))
redis.call('LTRIM', KEYS[1], 0, count - 1)
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
if redis.call('LLEN', KEYS[1]) < count then
  return 0
end
if tonumber(redis.call('LINDEX', KEYS[1], count - 1)) + window <= now then
  return 0
end

redis.call('DEL', KEYS[1])
local ban_end = now + duration
local current = redis.call('GET', KEYS[2])
if current and tonumber(current) > ban_end then
  ban_end = tonumber(current)
end
-- the expiry only collects garbage (a second late): decisions compare the stored end
redis.call('SET', KEYS[2], string.format('%d', ban_end), 'PX', math.ceil((ban_end - now) / 1000) + 1000)
return 1

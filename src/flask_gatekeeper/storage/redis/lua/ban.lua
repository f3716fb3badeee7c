-- Manual control of one client's ban. KEYS: ban. ARGV: now or "", action, duration, and
-- for "ban" its reason and offence ("" for the default; kept only for a ban rule's
-- reason: a ban handed over from the outage fallback). "ban": ban for duration (a longer
-- ban stands), returns when the ban in force ends; "unban": end it and forget the
-- history (returns when it would have ended if it was active, else 0); "left":
-- microseconds left (0 when not banned); "state": {microseconds left, 1 when set by
-- hand, offence}; "detail": ban_detail's {end, left, microseconds since it started,
-- reason, strikes, offence ("" for the default offence and for a ban without a ban
-- rule)}.
local now, action = clock(ARGV[1]), ARGV[2]
local left = math.max(0, ban_end(KEYS[1]) - now)
if action == 'ban' then
  ban_for(KEYS[1], now, tonumber(ARGV[3]), ARGV[4], ARGV[5])
  return ban_end(KEYS[1])
elseif action == 'state' then
  return {left, manual(KEYS[1]) and 1 or 0, redis.call('HGET', KEYS[1], 'o') or ''}
elseif action == 'detail' then
  return ban_detail(KEYS[1], now)
elseif action == 'unban' then
  local finish = ban_end(KEYS[1])
  redis.call('DEL', KEYS[1])
  return left > 0 and finish or 0
end
return left

-- Shared by every script (prepended when loaded, after the constants that scripts.py
-- writes from Python: MICROSECONDS, MAX_MICROSECONDS, GARBAGE_DELAY_MS, the strategy
-- codes, the ban reasons REASON_* and the set BY_NO_BAN_RULE). Times are integer
-- microseconds.
-- A ban is a hash: t = start, e = end, r = reason, o = the offence whose reports made it
-- ("" for a ban by hand), s = bans lately (for escalation, of any offence), f = when to
-- forget them.
-- Expiries only collect garbage, a second late: decisions compare stored times.

local function clock(argument)
  local now = tonumber(argument)
  if now then
    return now
  end
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end

local function int(number)
  return string.format('%d', number)
end

-- With `longer_only`, an expiry already further away stands (a key shared by entries
-- with deadlines of their own).
local function expire_after(key, microseconds, longer_only)
  local milliseconds = math.ceil(microseconds / 1000) + GARBAGE_DELAY_MS
  if not longer_only or redis.call('PTTL', key) < milliseconds then
    redis.call('PEXPIRE', key, milliseconds)
  end
end

local function ban_end(ban_key)
  return tonumber(redis.call('HGET', ban_key, 'e') or 0) or 0
end

-- Ban until now + duration for `reason` (and `offence`) unless a longer ban stands (it
-- stays as it was); keep `strikes` and forget them `forget_after` after the end.
local function set_ban(ban_key, now, duration, strikes, forget_after, reason, offence)
  local start, finish = now, now + duration
  if ban_end(ban_key) > finish then
    start = tonumber(redis.call('HGET', ban_key, 't') or now)
    finish = ban_end(ban_key)
    reason = redis.call('HGET', ban_key, 'r') or reason
    offence = redis.call('HGET', ban_key, 'o') or ''
  end
  redis.call('HSET', ban_key, 't', int(start), 'e', int(finish), 'r', reason, 's', strikes,
    'f', int(finish + forget_after), 'o', offence)
  expire_after(ban_key, finish + forget_after - now)
end

-- The registry of network bans, as every script returns it: the count of operator
-- actions that ended refusals (unban, reset), then the lengths ("4/24") that a network
-- banned now uses. Both keys share the registry's hash tag.
local function registry_answer(lengths_key, changes_key, now)
  local answer = redis.call('ZRANGEBYSCORE', lengths_key, '(' .. int(now), '+inf')
  table.insert(answer, 1, tonumber(redis.call('GET', changes_key) or 0))
  return answer
end

-- Whether the ban was made without the ban rule, by hand or by the subnet ban rule (its
-- refusal names no rule).
local function manual(ban_key)
  local reason = redis.call('HGET', ban_key, 'r')
  return BY_NO_BAN_RULE[reason] == true
end

-- The bans a client had lately, for escalation: none once their forget time has passed.
local function strikes(ban_key, now)
  if tonumber(redis.call('HGET', ban_key, 'f') or 0) > now then
    return tonumber(redis.call('HGET', ban_key, 's') or 0)
  end
  return 0
end

-- One report of `offence` (its own reports key): returns the new ban's duration (banned
-- for `reason` and `offence`) when it completes the offence's ban rule, else -1.
-- rule = {count, window, duration, factor, longest ban, forget_after}; the duration is
-- BanRule.duration_after's expression, in the same order on the same doubles.
local function report(reports_key, ban_key, now, rule, reason, offence)
  local count, window = rule[1], rule[2]
  -- keep the newest `count`, and never fewer than before (the ban rule may have shrunk)
  local keep = math.max(count, redis.call('LLEN', reports_key))
  redis.call('LPUSH', reports_key, int(now))
  redis.call('LTRIM', reports_key, 0, keep - 1)
  expire_after(reports_key, window)
  if redis.call('LLEN', reports_key) < count
      or tonumber(redis.call('LINDEX', reports_key, count - 1)) + window <= now then
    return -1
  end
  redis.call('DEL', reports_key)
  local earlier = strikes(ban_key, now)
  local duration = math.floor(math.min(rule[3] * rule[4] ^ math.min(earlier, 64), rule[5]) + 0.5)
  set_ban(ban_key, now, duration, earlier + 1, rule[6], reason, offence)
  return duration
end

local function numbers(first, last)
  local values = {}
  for index = first, last do
    values[#values + 1] = tonumber(ARGV[index])
  end
  return values
end

-- A sliding-log rule's requests left and whole microseconds until the oldest counted
-- frees, from the log's stamps (newest first).
local function log_usage(stamps, count, window, now)
  local used, reset = 0, 0
  for i = 1, math.min(#stamps, count) do
    local free_at = tonumber(stamps[i]) + window
    if free_at <= now then
      break
    end
    used, reset = i, free_at - now
  end
  return count - used, reset
end

-- The ban in force at `ban_key`: {end, microseconds left, microseconds since it started,
-- reason, strikes, offence} (left 0 when none; offence "" for a ban by hand).
local function ban_detail(ban_key, now)
  local finish = ban_end(ban_key)
  return {finish, math.max(0, finish - now), now - tonumber(redis.call('HGET', ban_key, 't') or now),
    redis.call('HGET', ban_key, 'r') or '', tonumber(redis.call('HGET', ban_key, 's') or 0),
    redis.call('HGET', ban_key, 'o') or ''}
end

-- A ban by hand (or by the subnet ban rule) for `duration` unless a longer ban stands;
-- the history still remembered stays, with its forget time. `offence` ("" for the
-- default) is kept only for a ban rule's reason (a ban handed over from the fallback).
local function ban_for(ban_key, now, duration, reason, offence)
  if BY_NO_BAN_RULE[reason] then
    offence = ''
  end
  if math.max(0, ban_end(ban_key) - now) < duration then
    local forget_at = tonumber(redis.call('HGET', ban_key, 'f') or 0)
    set_ban(ban_key, now, duration, strikes(ban_key, now), math.max(0, forget_at - now - duration),
      reason, offence or '')
  end
end

-- Change the registry of network bans (see networks.lua): "add" the network's entry,
-- ending at `finish` (an entry never moves earlier), or "remove" the one that ended then.
-- KEYS of the registry's tag: `lengths` (the lengths in use), `networks` (the networks
-- of `length`, "4/24").
local function registry_change(lengths, networks, now, action, network, length, finish)
  redis.call('ZREMRANGEBYSCORE', networks, '-inf', int(now))
  local listed = tonumber(redis.call('ZSCORE', networks, network) or 0)
  if action == 'add' and finish > listed then
    redis.call('ZADD', networks, int(finish), network)
  elseif action == 'remove' and listed > 0 and listed <= finish then
    redis.call('ZREM', networks, network)
  end
  local last = redis.call('ZRANGE', networks, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('ZADD', lengths, last[2], length)
    expire_after(networks, tonumber(last[2]) - now)
  else
    redis.call('ZREM', lengths, length)
  end
  redis.call('ZREMRANGEBYSCORE', lengths, '-inf', int(now))
  local longest = redis.call('ZRANGE', lengths, -1, -1, 'WITHSCORES')
  if longest[2] then
    expire_after(lengths, tonumber(longest[2]) - now)
  end
end

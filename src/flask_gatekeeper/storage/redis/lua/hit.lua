-- One request, atomically: ban check, every rule's check, every concurrency limit's
-- check, record and take a slot if admitted.
-- KEYS: ban, the reports of the offence a refusal counts toward, the bans of the other
-- clients that refuse this request too (the address behind a key_func key, the client's
-- banned networks, the keys of rules with their own), the registry of network bans and
-- the count of operator changes when ARGV[13] is "1", then per scope its sliding log (a
-- list, newest first) followed by one state key per stateful rule, one sorted set per
-- distinct rule and, when it has a concurrency limit, its slots (see read_scopes); last,
-- when step arguments follow (ARGV[3] starts with "2"), the keys of what follows a ban
-- (after_ban in steps.lua: as many as its first STEP_ARGS argument says).
-- ARGV[1]: now (microseconds) or "" for the server's clock; ARGV[2]: "1" to return usage;
-- ARGV[3]: "0" when a refusal is no report; else "1", or "2" when the last STEP_ARGS
-- ARGV say what follows a ban that report makes (after_ban), then "=<name>" when it
-- counts toward the offence <name> of ban_rules (nothing: the default offence); then
-- ARGV[4..9] the offence's ban rule (count, window, duration, factor, longest ban,
-- forget_after); ARGV[10]: 1 for a request (ban, check, record), 2 to record (nothing
-- else), 3 to check as for a request without recording (no slot either), 4 as 3 without
-- the ban (Redis Cluster: a key's rules, when the request does not name the key's ban);
-- ARGV[11]: how many other clients' bans follow the reports key; ARGV[12]: the request's
-- token, its slot in every scope with a concurrency limit (mode 1 only; "": it takes
-- none, and those limits are not checked); ARGV[13]: "1" to return the registry (the
-- count of changes, then the prefix lengths of the networks banned now); from ARGV[14],
-- the scopes as read_scopes reads them (each with its cost).
-- Returns {status, wait, rule, usage_rule, remaining, reset, new_ban, lengths, reserved,
-- shadowed}: status 0 admitted, 1 banned (then `rule` is 1 for a ban set by hand,
-- `usage_rule` 0 for the client's own ban or i for the i-th other client's, and
-- `remaining` the ban's offence), 2 limited, 3 too many in flight (then `rule` is the
-- full scope's index, from 0); rules are numbered over every scope from 0, in each scope
-- sliding-log rules, then stateful, then distinct; -1 means none; `lengths` the registry
-- as networks.lua returns it, when asked (else empty); `reserved`, once recorded, what
-- each deferred scope's Reservation holds, in order (absent otherwise); a refusal counted
-- as a report ends with {} (no reservation) and after_ban's answer ({} without steps).
-- `shadowed`, once checked and admitted, the shadow rules that would have refused: each
-- rule's number, then its wait (absent otherwise). Shadow rules never refuse, and the
-- usage leaves them out.
-- LPUSH `times` copies of `value` (never more than the log keeps: further copies would
-- only be trimmed), PUSH_CHUNK at a time: unpack fails past about 8000 values.
local PUSH_CHUNK = 1000
local function push_copies(key, value, times)
  local chunk = {}
  for i = 1, math.min(times, PUSH_CHUNK) do
    chunk[i] = value
  end
  while times > 0 do
    redis.call('LPUSH', key, unpack(chunk, 1, math.min(times, PUSH_CHUNK)))
    times = times - PUSH_CHUNK
  end
end

local now = clock(ARGV[1])
local mode, others = tonumber(ARGV[10]), tonumber(ARGV[11])
local registry, lengths = 0, {}
if ARGV[13] == '1' then
  registry = 2  -- keys: the lengths in use, the count of changes
  lengths = registry_answer(KEYS[3 + others], KEYS[4 + others], now)
end
if mode == 1 or mode == 3 then
  local longest, banned = 0, -1
  for i = 0, others do  -- the client's own ban (KEYS[1]), then the others' (KEYS[3]...)
    local ban_key = KEYS[1]
    if i > 0 then
      ban_key = KEYS[2 + i]
    end
    local finish = ban_end(ban_key)
    if finish - now > longest then
      longest, banned = finish - now, i
    end
    if i == 0 and banned == 0 then
      break  -- the client's own ban decides
    end
  end
  if banned >= 0 then  -- the third value says whether the ban was set by hand
    local ban_key = banned == 0 and KEYS[1] or KEYS[2 + banned]
    return {1, longest, manual(ban_key) and 1 or 0, banned, redis.call('HGET', ban_key, 'o') or '',
      0, -1, lengths}
  end
end

local token = ARGV[12]
local stepped = string.sub(ARGV[3], 1, 1) == '2'
local scopes = read_scopes(14, 3 + others + registry, stepped and #ARGV - STEP_ARGS)

-- the rule with the fewest requests left (then the longest reset), with its requests
-- left and reset; -1 when usage was not asked for, or no scope has a rule
local function closest_usage()
  local closest, remaining, reset, index = -1, 0, 0, 0
  if ARGV[2] ~= '1' then
    return closest, remaining, reset
  end
  each_usage(scopes, now, function(left, rule_reset, shadow)
    if not shadow and (closest < 0 or left < remaining
        or (left == remaining and rule_reset > reset)) then
      closest, remaining, reset = index, left, rule_reset
    end
    index = index + 1
  end)
  return closest, remaining, reset
end

local function strike()
  if ARGV[3] ~= '0' then  -- the default offence is stored as ""
    return report(KEYS[2], KEYS[1], now, numbers(4, 9), REASON_RATE_LIMIT, string.sub(ARGV[3], 3))
  end
  return -1
end

-- A refusal's answer: counted as a report when asked, and what follows the ban it makes.
local function refusal(status, wait, rule, closest, remaining, reset)
  local new_ban = strike()
  local steps = stepped and after_ban(new_ban, KEYS[1], now) or {}
  return {status, wait, rule, closest, remaining, reset, new_ban, lengths, {}, steps}
end

local shadowed = {}  -- the shadow rules that would refuse: number, wait, number, wait...
if mode ~= 2 then
  local wait, worst, index = 0, -1, 0
  local function consider(rule_wait, shadow)
    if shadow then
      if rule_wait > 0 then
        shadowed[#shadowed + 1] = index
        shadowed[#shadowed + 1] = rule_wait
      end
    elseif rule_wait > wait then
      wait, worst = rule_wait, index
    end
    index = index + 1
  end
  for _, scope in ipairs(scopes) do
    local cost = scope.cost
    for r = 1, #scope.logged, 2 do
      local count, window = scope.logged[r], scope.logged[r + 1]
      local needed = count - cost + 1  -- the needed-th newest decides
      local shadow = scope.shadow[(r + 1) / 2]
      if needed < 1 then  -- more than the rule ever admits
        consider(window, shadow)
      elseif scope.size >= needed then
        consider(tonumber(redis.call('LINDEX', scope.log, needed - 1)) + window - now, shadow)
      else
        consider(0, shadow)
      end
    end
    for _, rule in ipairs(scope.stateful) do
      if cost > rule.count then
        consider(rule.window, rule.shadow)
      else
        consider(strategy_check(rule.code, rule.state, rule.count, rule.window, rule.shift, now,
          cost), rule.shadow)
      end
    end
    for _, rule in ipairs(scope.distinct) do
      consider(distinct_check(rule, now), rule.shadow)
    end
  end
  if worst >= 0 then
    return refusal(2, wait, worst, worst, 0, wait)
  end
  if mode == 1 and token ~= '' then  -- expired leases go, as they are met
    for i, scope in ipairs(scopes) do
      if scope.concurrency > 0 then
        redis.call('ZREMRANGEBYSCORE', scope.slots, '-inf', int(now))
        if redis.call('ZCARD', scope.slots) >= scope.concurrency then
          local closest, remaining, reset = closest_usage()
          return refusal(3, 0, i - 1, closest, remaining, reset)
        end
      end
    end
  end
end

if mode >= 3 then  -- checked only: recorded by another call (Redis Cluster)
  local closest, remaining, reset = closest_usage()
  return {0, 0, -1, closest, remaining, reset, -1, lengths, {}, shadowed}
end
local reserved = {}  -- per deferred scope: now, each stateful rule's state[1], each distinct
-- rule's 1 when it added its value (a Reservation, for refund.lua)
for _, scope in ipairs(scopes) do
  local cost = scope.cost
  if scope.deferred then
    reserved[#reserved + 1] = now
  end
  if scope.depth > 0 then
    push_copies(scope.log, int(now), math.min(cost, scope.keep))
    redis.call('LTRIM', scope.log, 0, scope.keep - 1)
    expire_after(scope.log, scope.ttl)
  end
  for _, rule in ipairs(scope.stateful) do
    rule.state = strategy_record(rule.code, rule.state, rule.count, rule.window, rule.shift, now,
      cost)
    strategy_save(rule, now)
    if scope.deferred then
      reserved[#reserved + 1] = string.format('%.17g', rule.state[1])
    end
  end
  for _, rule in ipairs(scope.distinct) do
    local added = distinct_record(rule, now)
    if scope.deferred then
      reserved[#reserved + 1] = added
    end
  end
  if mode == 1 and token ~= '' and scope.concurrency > 0 then
    redis.call('ZADD', scope.slots, int(now + scope.lease), token)
    expire_after(scope.slots, scope.lease, true)
  end
end

local closest, remaining, reset = closest_usage()
return {0, 0, -1, closest, remaining, reset, -1, lengths, reserved, shadowed}

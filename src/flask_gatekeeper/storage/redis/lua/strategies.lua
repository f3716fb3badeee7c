-- The stateful strategies, the same expressions as strategies.py (keep the two in step;
-- tests/test_differential.py checks that they are). A state is a string of numbers:
-- fixed-window "index count", sliding-window "index count previous", gcra "tat". Times
-- are microseconds. FIXED_WINDOW, SLIDING_WINDOW and GCRA come from strategies.py.

local function load_state(key)
  local text = redis.call('GET', key)
  if not text then
    return nil
  end
  local state = {}
  for number in string.gmatch(text, '%S+') do
    state[#state + 1] = tonumber(number)
  end
  return state
end

local function save_state(key, state, ttl)
  local parts = {}
  for i, number in ipairs(state) do
    parts[i] = string.format('%.17g', number)
  end
  redis.call('SET', key, table.concat(parts, ' '), 'PX', math.ceil(ttl / 1000) + GARBAGE_DELAY_MS)
end

local function window_index(now, window, shift)
  return math.floor((now - shift) / window)
end

-- this window's and the previous window's counts as of window `index`
local function counts(state, index)
  if not state then
    return 0, 0
  end
  if state[1] == index then
    return state[2], state[3] or 0
  end
  if state[1] == index - 1 then
    return 0, state[2]
  end
  return 0, 0
end

-- whole microseconds until the strategy admits a request of `cost` (0: admit now); the
-- caller refuses a cost above `count` before asking
local function strategy_check(code, state, count, window, shift, now, cost)
  if code == GCRA then
    local allow_at = math.max(state and state[1] or now, now) + cost * window / count - window
    if allow_at > now then
      return math.ceil(allow_at - now)
    end
    return 0
  end
  local index = window_index(now, window, shift)
  local current, previous = counts(state, index)
  local start = index * window + shift
  if code == FIXED_WINDOW then
    if current + cost > count then
      return start + window - now
    end
    return 0
  end
  local fraction = (now - start) / window
  if previous * (1 - fraction) + current + cost <= count then
    return 0
  end
  local free_at
  if current + cost > count then
    free_at = start + window + math.max(0, 1 - (count - cost) / current) * window
  else
    free_at = start + (1 - (count - cost - current) / previous) * window
  end
  return math.max(1, math.ceil(free_at - now))
end

-- the state after an admitted request of `cost`
local function strategy_record(code, state, count, window, shift, now, cost)
  if code == GCRA then
    return {math.max(state and state[1] or now, now) + cost * window / count}
  end
  local index = window_index(now, window, shift)
  local current, previous = counts(state, index)
  if code == SLIDING_WINDOW then
    return {index, current + cost, previous}
  end
  return {index, current + cost}
end

-- store a stateful rule's state, kept while it matters (a window's for two windows, GCRA's
-- until its bucket is empty)
local function strategy_save(rule, now)
  local ttl = 2 * rule.window
  if rule.code == GCRA then
    ttl = rule.state[1] - now
  end
  save_state(rule.key, rule.state, ttl)
end

-- the state once an admitted request of `cost` is taken back, given `left`, the state[1]
-- its record left (see strategies.refund); nil when none of it counts any more
local function strategy_refund(code, state, count, window, now, cost, left)
  if code == GCRA then
    local back = math.min(cost * window / count, left - now, state[1] - now)
    if back > 0 then
      return {state[1] - back}
    end
    return nil
  end
  if state[1] == left then
    state[2] = math.max(0, state[2] - cost)
  elseif code == SLIDING_WINDOW and state[1] == left + 1 then
    state[3] = math.max(0, state[3] - cost)
  else
    return nil
  end
  return state
end

-- requests left, and whole microseconds until the quota is whole again
local function strategy_usage(code, state, count, window, shift, now)
  if code == GCRA then
    local tat = math.max(state and state[1] or now, now)
    return math.max(0, math.floor((now + window - tat) / (window / count))), math.ceil(tat - now)
  end
  local index = window_index(now, window, shift)
  local current, previous = counts(state, index)
  local start = index * window + shift
  if code == SLIDING_WINDOW then
    current = current + previous * (1 - (now - start) / window)
  end
  return math.max(0, math.floor(count - current)), start + window - now
end

-- The scopes described from ARGV[first_arg] on (to ARGV[last_arg], the last unless
-- given), their keys from KEYS[first_key] on: per scope, depth, ttl, cost, deferred (1: a
-- hit returns its reservation), concurrency (0: no limit), lease (microseconds), number
-- of sliding-log rules, (count, window) for each, number of stateful rules, (count,
-- window, strategy code, shift) for each, number of distinct rules, (count, window, 1
-- when the request has a value for it, the value) for each, then the positions of its
-- shadow rules (from 1, over its sliding-log, stateful and distinct rules in that order)
-- separated by spaces ("" for none). Keys: per scope its log, then its stateful rules'
-- states, then its distinct rules' sets, then its slots (a sorted set: token -> lease
-- deadline) when it has a concurrency limit. Reads each log's length and each stateful
-- rule's state.
local function read_scopes(first_arg, first_key, last_arg)
  local scopes, arg, key = {}, first_arg, first_key
  while arg <= (last_arg or #ARGV) do
    local scope = {log = KEYS[key], depth = tonumber(ARGV[arg]), ttl = tonumber(ARGV[arg + 1]),
      cost = tonumber(ARGV[arg + 2]), deferred = ARGV[arg + 3] == '1',
      concurrency = tonumber(ARGV[arg + 4]), lease = tonumber(ARGV[arg + 5])}
    scope.logged = numbers(arg + 7, arg + 6 + 2 * tonumber(ARGV[arg + 6]))
    arg = arg + 7 + #scope.logged
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
    scope.distinct = {}
    for d = 1, tonumber(ARGV[arg]) do
      key = key + 1
      local rule = {key = KEYS[key], count = tonumber(ARGV[arg + 1]),
        window = tonumber(ARGV[arg + 2])}
      if ARGV[arg + 3] == '1' then
        rule.value = ARGV[arg + 4]
      end
      scope.distinct[d] = rule
      arg = arg + 4
    end
    arg = arg + 1
    -- shadow rules never refuse: scope.shadow[i] for the i-th sliding-log rule, and a
    -- flag on each stateful and distinct rule
    local shadow = {}
    for position in string.gmatch(ARGV[arg], '%d+') do
      shadow[tonumber(position)] = true
    end
    arg = arg + 1
    local logged = #scope.logged / 2
    for i, rule in ipairs(scope.stateful) do
      rule.shadow = shadow[logged + i] == true
    end
    for d, rule in ipairs(scope.distinct) do
      rule.shadow = shadow[logged + #scope.stateful + d] == true
    end
    scope.shadow = shadow
    key = key + 1
    if scope.concurrency > 0 then
      scope.slots = KEYS[key]
      key = key + 1
    end
    scope.size = redis.call('LLEN', scope.log)
    -- keep at least the newest `depth`, and never fewer than before (rules may have shrunk)
    scope.keep = math.max(scope.depth, scope.size)
    scopes[#scopes + 1] = scope
  end
  return scopes
end

-- Each rule's requests left and microseconds until its quota is whole again, in order,
-- and whether it is a shadow rule.
local function each_usage(scopes, now, visit)
  for _, scope in ipairs(scopes) do
    local stamps = redis.call('LRANGE', scope.log, 0, scope.keep - 1)
    for r = 1, #scope.logged, 2 do
      local left, reset = log_usage(stamps, scope.logged[r], scope.logged[r + 1], now)
      visit(left, reset, scope.shadow[(r + 1) / 2] == true)
    end
    for _, rule in ipairs(scope.stateful) do
      local left, reset = strategy_usage(rule.code, rule.state, rule.count, rule.window,
        rule.shift, now)
      visit(left, reset, rule.shadow)
    end
    for _, rule in ipairs(scope.distinct) do
      local left, reset = distinct_usage(rule, now)
      visit(left, reset, rule.shadow)
    end
  end
end

-- What follows a ban that a report made, in the same script (storage.base.BanSteps):
-- the ban's detail, a network client's entry in the registry, the subnet ban rule's
-- escalation. Needs distinct.lua.

-- How many ARGV a script given BanSteps ends with (see after_ban).
local STEP_ARGS = 9

-- The subnet ban rule's step: unless the network is banned now, count `client` among
-- its banned addresses (the sorted set of the distinct rule {count, window}, as a
-- request of its "banned addresses" scope with usage would: distinct_check,
-- distinct_record, distinct_usage), and ban the network for `duration` (REASON_SUBNET,
-- as ban.lua) once the rule had no room for a new address or has none left. Returns
-- whether it banned the network.
local function escalate(network_ban, addresses, client, count, window, duration, now)
  if ban_end(network_ban) > now then
    return false
  end
  local rule = {key = addresses, count = count, window = window, value = client}
  if distinct_check(rule, now) == 0 then
    distinct_record(rule, now)
    if distinct_usage(rule, now) > 0 then
      return false
    end
  end
  ban_for(network_ban, now, duration, REASON_SUBNET)
  return true
end

-- After a report made the ban at `ban_key` (when `duration` >= 0), the steps that the
-- last STEP_ARGS ARGV ask for: how many KEYS they use (the last ones), "1" for the
-- details, the client's key, the client's length in the registry ("4/24"; "" when it
-- does not enter it), the network to escalate to ("" for none) and its length, the
-- subnet ban rule's count, window and duration (microseconds). KEYS, in order: the
-- registry's lengths and count of changes (when an entry is added), the networks of
-- the client's length (when it enters), the network's ban, its banned addresses and
-- the networks of its length (when escalating).
-- Returns {the client's ban_detail, the network's when this banned it, the registry's
-- answer when it changed}, each {} otherwise; {} when nothing was banned.
local function after_ban(duration, ban_key, now)
  if duration < 0 then
    return {}
  end
  local a, k = #ARGV - STEP_ARGS + 1, #KEYS - tonumber(ARGV[#ARGV - STEP_ARGS + 1]) + 1
  local details, client, length = ARGV[a + 1] == '1', ARGV[a + 2], ARGV[a + 3]
  local network, network_length = ARGV[a + 4], ARGV[a + 5]
  local lengths, changes
  if length ~= '' or network ~= '' then
    lengths, changes, k = KEYS[k], KEYS[k + 1], k + 2
  end
  local own, wider, registry = {}, {}, {}
  if details or length ~= '' then
    own = ban_detail(ban_key, now)
  end
  if length ~= '' then
    registry_change(lengths, KEYS[k], now, 'add', client, length, own[1])
    k = k + 1
  end
  if network ~= '' and escalate(KEYS[k], KEYS[k + 1], client, tonumber(ARGV[a + 6]),
      tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8]), now) then
    wider = ban_detail(KEYS[k], now)
    if network_length ~= '' then
      registry_change(lengths, KEYS[k + 2], now, 'add', network, network_length, wider[1])
    end
  end
  if lengths then
    registry = registry_answer(lengths, changes, now)
  end
  return {own, wider, registry}
end

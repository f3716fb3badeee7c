-- The traffic of benchmarks/load.py for wrk: GET / with the client in X-Forwarded-For
-- (the app trusts one proxy), the statuses counted, and one JSON line printed at the end.
--
-- wrk -s load.lua URL -- MIX CLIENTS
--   MIX "normal": every request from a legitimate client, CLIENTS of them per wrk
--     thread in turn (10.T.x.y for thread T), each far below its limits;
--   MIX "attack": 9 requests in 10 from one attacker (192.0.2.1), which stays over its
--     limits, and every 10th from the legitimate clients, in turn as above.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local function get(client)
  return wrk.format("GET", "/", { ["X-Forwarded-For"] = client })
end

function init(args)
  mix = args[1]
  local clients = tonumber(args[2])
  if (mix ~= "normal" and mix ~= "attack") or clients == nil or clients < 1
      or clients > 250 * 256 then
    error("usage: wrk -s load.lua URL -- normal|attack CLIENTS (1 to 64000)")
  end
  legit = {}
  for k = 0, clients - 1 do
    legit[k + 1] = get(string.format("10.%d.%d.%d", id, math.floor(k / 250), k % 250 + 1))
  end
  attacker = get("192.0.2.1")
  sent, next_legit = 0, 0
  statuses = {}
end

function request()
  sent = sent + 1
  if mix == "attack" and sent % 10 ~= 0 then
    return attacker
  end
  next_legit = next_legit % #legit + 1
  return legit[next_legit]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(counts) do
    table.insert(parts, string.format('"%s": %d', status, count))
  end
  local errors = summary.errors
  io.write(string.format(
    'LOAD-RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
      .. '"errors": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect + errors.read + errors.write + errors.timeout, table.concat(parts, ", ")))
end

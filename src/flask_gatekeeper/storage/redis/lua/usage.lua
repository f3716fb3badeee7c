-- Read without spending: every rule's requests left and microseconds until its quota is
-- whole again, in the order of the scopes and their rules. KEYS: per scope its log, its
-- stateful rules' states, its distinct rules' sets and its slots (unread) when it has a
-- concurrency limit. ARGV[1]: now or ""; from ARGV[2], the scopes as hit.lua takes them.
-- Returns {remaining, reset, remaining, reset, ...}.
local now = clock(ARGV[1])
local answer = {}
each_usage(read_scopes(2, 1), now, function(left, reset)
  answer[#answer + 1] = left
  answer[#answer + 1] = reset
end)
return answer

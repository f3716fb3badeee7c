-- Give back one request's slots in several scopes in one command (one scope needs only
-- a ZREM). KEYS: each scope's slots; ARGV[1]: the request's token.
for _, key in ipairs(KEYS) do
  redis.call('ZREM', key, ARGV[1])
end
return 0

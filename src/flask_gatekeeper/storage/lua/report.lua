-- One offence, atomically. KEYS: reports, ban.
-- ARGV: now or "", then the ban rule (count, window, duration, factor, longest ban,
-- forget_after), then the reason a ban would have. Returns the new ban's duration when
-- this report bans, else -1; given BanSteps (STEP_ARGS more ARGV, and their KEYS after
-- the ban), {that duration, after_ban's answer}.
local now = clock(ARGV[1])
local duration = report(KEYS[1], KEYS[2], now, numbers(2, 7), ARGV[8])
if #ARGV == 8 then
  return duration
end
return {duration, after_ban(duration, KEYS[2], now)}

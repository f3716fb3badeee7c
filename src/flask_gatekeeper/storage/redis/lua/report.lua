-- One report, atomically. KEYS: the offence's reports, ban.
-- ARGV: now or "", then the offence's ban rule (count, window, duration, factor, longest
-- ban, forget_after), then the reason a ban would have, then the offence ("" for the
-- default offence). Returns the new ban's duration when this report bans, else -1; given
-- BanSteps (STEP_ARGS more ARGV, and their KEYS after the ban), {that duration,
-- after_ban's answer}.
local now = clock(ARGV[1])
local duration = report(KEYS[1], KEYS[2], now, numbers(2, 7), ARGV[8], ARGV[9])
if #ARGV == 9 then
  return duration
end
return {duration, after_ban(duration, KEYS[2], now)}

-- One report, atomically. KEYS: the offence's reports, ban.
-- ARGV: now or "", then the offence's ban rule (count, window, duration, factor, longest
-- ban, forget_after), then the reason a ban would have, then the offence (absent for the
-- default offence, stored as ""). Returns the new ban's duration when this report bans,
-- else -1.
return report(KEYS[1], KEYS[2], clock(ARGV[1]), numbers(2, 7), ARGV[8], ARGV[9] or '')

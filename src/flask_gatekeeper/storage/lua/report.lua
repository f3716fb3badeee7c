-- One offence, atomically. KEYS: reports, ban.
-- ARGV: now or "", then the ban rule (count, window, duration, factor, max_duration or 0,
-- forget_after). Returns the new ban's duration when this report bans, else -1.
return report(KEYS[1], KEYS[2], clock(ARGV[1]), numbers(2, 7))

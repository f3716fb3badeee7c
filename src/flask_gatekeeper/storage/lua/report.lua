-- One offence, atomically. KEYS: reports, ban.
-- ARGV: now or "", then the ban rule (count, window, duration, factor, longest ban,
-- forget_after), then the reason a ban would have. Returns the new ban's duration when
-- this report bans, else -1.
return report(KEYS[1], KEYS[2], clock(ARGV[1]), numbers(2, 7), ARGV[8])

-- Findings, part 4 (PostgreSQL only): what the planner needs to know about heartbeats after a
-- silence. It cannot size `flags & 32 <> 0` (the partial index heartbeats_after_silence) from
-- the column's statistics and guessed a third of all heartbeats, so silent_kiosk read the whole
-- table instead of the few rows of that index. Statistics on the expression fix the estimate.
CREATE STATISTICS heartbeats_after_silence_stats ON (flags & 32) FROM heartbeats;

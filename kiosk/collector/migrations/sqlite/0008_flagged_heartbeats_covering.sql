-- The heartbeat findings read the flagged heartbeats of a window's partial hours by time
-- (kiosk/collector/findings/sqlite.py). Their index held the time alone, so each of those
-- heartbeats cost a look-up in the heartbeats table (a day of a city's heartbeats every 60 s:
-- 18 M rows): at 10,000 kiosks that was 25 of the 39 ms of that part of the city-wide query.
-- The same partial index, now holding what the query reads. Flagged heartbeats are a few
-- percent of all, so storing them costs little more.

DROP INDEX heartbeats_flagged_received;
CREATE INDEX heartbeats_flagged_received ON heartbeats (received_at, kiosk_id, venue_id, flags)
    WHERE flags <> 0;

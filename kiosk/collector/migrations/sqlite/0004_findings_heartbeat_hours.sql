-- Findings, part 2 (kiosk/collector/findings): hourly counts of flagged heartbeats, so that a
-- window's heartbeat findings read kiosks × hours rows instead of every flagged heartbeat (a
-- kiosk with a skewed clock flags every heartbeat, 1,440 a day or more), and two more indexes
-- by time. Kept by a trigger in the transaction that stores the heartbeat.

CREATE TABLE heartbeat_hours (
    kiosk_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    kind INTEGER NOT NULL,  -- one HEARTBEAT_* bit: 1 fault, 2 stale trust, 4 clock skew, 16 drift
    venue_id TEXT NOT NULL,
    beats INTEGER NOT NULL,
    first REAL NOT NULL,
    last REAL NOT NULL,
    PRIMARY KEY (kiosk_id, hour, kind)
) WITHOUT ROWID;
CREATE INDEX heartbeat_hours_hour ON heartbeat_hours (hour, kiosk_id, kind, venue_id, beats, first, last);

INSERT INTO heartbeat_hours (kiosk_id, hour, kind, venue_id, beats, first, last)
SELECT h.kiosk_id, CAST(h.received_at / 3600 AS INTEGER) * 3600, k.bit, h.venue_id, count(*),
       min(h.received_at), max(h.received_at)
FROM heartbeats AS h
JOIN (SELECT 1 AS bit UNION ALL SELECT 2 UNION ALL SELECT 4 UNION ALL SELECT 16) AS k
  ON h.flags & k.bit
GROUP BY h.kiosk_id, CAST(h.received_at / 3600 AS INTEGER), k.bit;

CREATE TRIGGER heartbeats_hours AFTER INSERT ON heartbeats
WHEN NEW.flags & 23
BEGIN
    INSERT INTO heartbeat_hours (kiosk_id, hour, kind, venue_id, beats, first, last)
    SELECT NEW.kiosk_id, CAST(NEW.received_at / 3600 AS INTEGER) * 3600, k.bit, NEW.venue_id, 1,
           NEW.received_at, NEW.received_at
    FROM (SELECT 1 AS bit UNION ALL SELECT 2 UNION ALL SELECT 4 UNION ALL SELECT 16) AS k
    WHERE NEW.flags & k.bit
    ON CONFLICT (kiosk_id, hour, kind) DO UPDATE SET
        beats = beats + 1, first = min(first, excluded.first), last = max(last, excluded.last);
END;

-- Heartbeats after a silence (silent_kiosk), by receive time.
CREATE INDEX heartbeats_after_silence ON heartbeats (received_at) WHERE flags & 32;
-- The readings of the window's whole hours (thermometer_fault) without visiting the table.
CREATE INDEX kiosk_hours_readings ON kiosk_hours
    (hour, kiosk_id, venue_id, readings, readings_sum_dc, readings_sumsq_dc, implausible)
    WHERE readings > 0;

-- Findings (kiosk/collector/findings): what the inspectors' queries read by time, so that their
-- cost follows the window and the offending rows, never the number of entries stored.

-- Flagged entries (overrides, unchecked allows, broken links) and readings, by time.
CREATE INDEX entries_flagged_ts ON entries (ts) WHERE flags <> 0;
CREATE INDEX entries_readings_ts ON entries (ts, kiosk_id, venue_id, temperature_c)
    WHERE temperature_c IS NOT NULL;
-- Flagged heartbeats (fault, stale trust, skew, drift, after a silence), by receive time.
CREATE INDEX heartbeats_flagged_received ON heartbeats (received_at) WHERE flags <> 0;

-- code_reuse: the excess uses of one code, found when an allow arrives. An allow is excess when
-- at least 3 allows of the same subject at the same venue precede it, by (ts, id), less than
-- 600 s earlier (kiosk/findings.py). A new allow can only make itself or later allows excess,
-- within 600 s after it, and an excess allow stays excess, so each arrival re-judges the allows
-- of its subject in [ts, ts + 600) on the (venue_id, subject, ts) index and records new ones.
CREATE TABLE code_reuse (
    entry_id TEXT PRIMARY KEY,
    kiosk_id TEXT NOT NULL,
    venue_id TEXT NOT NULL,
    ts REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX code_reuse_ts ON code_reuse (ts);

CREATE TRIGGER entries_code_reuse AFTER INSERT ON entries
WHEN NEW.decision = 'allow' AND NEW.subject IS NOT NULL
    -- Nearly every arrival stops here: fewer than 4 allows of its subject within 10 minutes
    -- either side of it means it cannot complete an excess use.
    AND (SELECT count(*) FROM entries AS n INDEXED BY entries_allowed_subject
         WHERE n.venue_id = NEW.venue_id AND n.subject = NEW.subject AND n.decision = 'allow'
           AND n.ts > NEW.ts - 600 AND n.ts < NEW.ts + 600) >= 4
BEGIN
    INSERT OR IGNORE INTO code_reuse (entry_id, kiosk_id, venue_id, ts)
    SELECT a.id, a.kiosk_id, a.venue_id, a.ts
    FROM entries AS a INDEXED BY entries_allowed_subject
    WHERE a.venue_id = NEW.venue_id AND a.subject = NEW.subject AND a.decision = 'allow'
      AND a.ts >= NEW.ts AND a.ts < NEW.ts + 600
      AND (SELECT count(*) FROM entries AS b INDEXED BY entries_allowed_subject
           WHERE b.venue_id = a.venue_id AND b.subject = a.subject AND b.decision = 'allow'
             AND b.ts > a.ts - 600 AND b.ts <= a.ts
             AND (b.ts < a.ts OR b.id <= a.id)) >= 4;
END;

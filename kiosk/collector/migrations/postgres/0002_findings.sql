-- Findings (kiosk/collector/findings): what the inspectors' queries read by time, so that their
-- cost follows the window and the offending rows, never the number of entries stored. The same
-- as ../sqlite/0002_findings.sql.

-- Flagged entries (overrides, unchecked allows, broken links) and readings, by time.
CREATE INDEX entries_flagged_ts ON entries (ts) WHERE flags <> 0;
CREATE INDEX entries_readings_ts ON entries (ts) INCLUDE (kiosk_id, venue_id, temperature_c)
    WHERE temperature_c IS NOT NULL;
-- Flagged heartbeats (fault, stale trust, skew, drift, after a silence), by receive time.
CREATE INDEX heartbeats_flagged_received ON heartbeats (received_at) INCLUDE (kiosk_id, flags)
    WHERE flags <> 0;

-- code_reuse: the excess uses of one code, found when allows arrive. An allow is excess when at
-- least 3 allows of the same subject at the same venue precede it, by (ts, id), less than 600 s
-- earlier (kiosk/findings.py): when the third allow before it, in that order, is less than
-- 600 s older. A new allow can only make itself or later allows excess, within 600 s after it,
-- and an excess allow stays excess. So after each statement that stores entries, per venue, the
-- allows of the venue from 600 s before its earliest new allow to 600 s after its latest are
-- read (a range per kiosk of the venue on (kiosk_id, ts)), those of the new subjects ordered,
-- and the excess ones recorded: set-based, so the cost follows the batch, not each entry.
-- (SQLite has no statement triggers: its migration judges each arriving allow instead.)
CREATE TABLE code_reuse (
    entry_id uuid PRIMARY KEY,
    kiosk_id text NOT NULL,
    venue_id text NOT NULL,
    ts timestamptz NOT NULL
);
CREATE INDEX code_reuse_ts ON code_reuse (ts);

-- Row estimates of a transition table are guesses, and a nested loop over two sets of a batch's
-- size is quadratic: the function plans without nested loops (nothing here needs one).
CREATE FUNCTION findings_code_reuse() RETURNS trigger LANGUAGE plpgsql
SET enable_nestloop = off AS $$
DECLARE
    span record;
    venue_kiosks text[];
BEGIN
    FOR span IN
        SELECT venue_id, min(ts) - interval '600 seconds' AS low,
               max(ts) + interval '600 seconds' AS high
        FROM new_entries WHERE decision = 'allow' AND subject IS NOT NULL
        GROUP BY venue_id
    LOOP
        -- Batches of two kiosks of one venue, stored at once by two collectors, must see each
        -- other's allows: one venue's judging at a time, each with a fresh snapshot.
        PERFORM pg_advisory_xact_lock(1919251827, hashtext(span.venue_id));  -- 'reus'
        SELECT array_agg(kiosk_id) INTO venue_kiosks FROM kiosks WHERE venue_id = span.venue_id;
        -- Allows re-judged here whose earlier allows fall before `low` can only come out
        -- "not excess", and a recorded excess use is never removed: no harm in judging them.
        WITH nearby AS (
            SELECT e.id, e.kiosk_id, e.venue_id, e.ts,
                   lag(e.ts, 3) OVER (PARTITION BY e.subject ORDER BY e.ts, e.id) AS third_before
            FROM entries AS e
            WHERE e.kiosk_id = ANY (venue_kiosks) AND e.ts >= span.low AND e.ts < span.high
              AND e.venue_id = span.venue_id AND e.decision = 'allow'
              AND e.subject IN (
                  SELECT n.subject FROM new_entries AS n
                  WHERE n.venue_id = span.venue_id AND n.decision = 'allow'
                    AND n.subject IS NOT NULL)
        )
        INSERT INTO code_reuse (entry_id, kiosk_id, venue_id, ts)
        SELECT id, kiosk_id, venue_id, ts FROM nearby
        WHERE third_before > ts - interval '600 seconds'
        ON CONFLICT (entry_id) DO NOTHING;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER entries_code_reuse AFTER INSERT ON entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION findings_code_reuse();

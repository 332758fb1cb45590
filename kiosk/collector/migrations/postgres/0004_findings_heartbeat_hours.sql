-- Findings, part 2: the same as ../sqlite/0004_findings_heartbeat_hours.sql.

CREATE TABLE heartbeat_hours (
    kiosk_id text NOT NULL,
    hour timestamptz NOT NULL,
    kind integer NOT NULL,  -- one HEARTBEAT_* bit: 1 fault, 2 stale trust, 4 clock skew, 16 drift
    venue_id text NOT NULL,
    beats integer NOT NULL,
    first timestamptz NOT NULL,
    last timestamptz NOT NULL,
    PRIMARY KEY (kiosk_id, hour, kind)
);
CREATE INDEX heartbeat_hours_hour ON heartbeat_hours (hour)
    INCLUDE (kiosk_id, kind, venue_id, beats, first, last);

-- Whole hours of Unix time, whatever the session's time zone.
CREATE FUNCTION findings_hour(t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_timestamp(floor(extract(epoch FROM t) / 3600) * 3600);

INSERT INTO heartbeat_hours (kiosk_id, hour, kind, venue_id, beats, first, last)
SELECT h.kiosk_id, findings_hour(h.received_at), k.bit, min(h.venue_id), count(*),
       min(h.received_at), max(h.received_at)
FROM heartbeats AS h JOIN (VALUES (1), (2), (4), (16)) AS k (bit) ON h.flags & k.bit <> 0
GROUP BY h.kiosk_id, findings_hour(h.received_at), k.bit;

CREATE FUNCTION findings_heartbeat_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO heartbeat_hours (kiosk_id, hour, kind, venue_id, beats, first, last)
    SELECT NEW.kiosk_id, findings_hour(NEW.received_at), k.bit, NEW.venue_id, 1,
           NEW.received_at, NEW.received_at
    FROM (VALUES (1), (2), (4), (16)) AS k (bit) WHERE NEW.flags & k.bit <> 0
    ON CONFLICT (kiosk_id, hour, kind) DO UPDATE SET
        beats = heartbeat_hours.beats + 1,
        first = least(heartbeat_hours.first, EXCLUDED.first),
        last = greatest(heartbeat_hours.last, EXCLUDED.last);
    RETURN NULL;
END
$$;

CREATE TRIGGER heartbeats_hours AFTER INSERT ON heartbeats
    FOR EACH ROW WHEN (NEW.flags & 23 <> 0) EXECUTE FUNCTION findings_heartbeat_hours();

-- Heartbeats after a silence (silent_kiosk), by receive time.
CREATE INDEX heartbeats_after_silence ON heartbeats (received_at) INCLUDE (kiosk_id, gap_s)
    WHERE flags & 32 <> 0;
-- The readings of the window's whole hours (thermometer_fault) from the index alone.
CREATE INDEX kiosk_hours_readings ON kiosk_hours (hour)
    INCLUDE (kiosk_id, venue_id, readings, readings_sum_dc, readings_sumsq_dc, implausible)
    WHERE readings > 0;

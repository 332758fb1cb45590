-- Findings, part 3: running totals of each kiosk's readings (thermometer_fault). A row per
-- kiosk and hour with readings holds the totals of all its readings up to and including that
-- hour, so a window's whole hours cost two lookups per kiosk (the latest row before each end)
-- instead of a row per hour. Kept by triggers on the hourly rollups, in the ingest transaction:
-- an hour's change is added to its row and to every later row of the kiosk (only the current
-- hour's row, unless a kiosk sends an old backlog).

CREATE TABLE readings_running (
    kiosk_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    venue_id TEXT NOT NULL,
    readings INTEGER NOT NULL,
    sum_dc INTEGER NOT NULL,
    sumsq_dc INTEGER NOT NULL,
    implausible INTEGER NOT NULL,
    PRIMARY KEY (kiosk_id, hour)
) WITHOUT ROWID;

INSERT INTO readings_running (kiosk_id, hour, venue_id, readings, sum_dc, sumsq_dc, implausible)
SELECT kiosk_id, hour, venue_id, sum(readings) OVER running, sum(readings_sum_dc) OVER running,
       sum(readings_sumsq_dc) OVER running, sum(implausible) OVER running
FROM kiosk_hours WHERE readings > 0
WINDOW running AS (PARTITION BY kiosk_id ORDER BY hour);

CREATE TRIGGER kiosk_hours_running_insert AFTER INSERT ON kiosk_hours
WHEN NEW.readings > 0
BEGIN
    -- (No OR IGNORE: a trigger's conflict clause yields to the outer upsert's.)
    INSERT INTO readings_running
        (kiosk_id, hour, venue_id, readings, sum_dc, sumsq_dc, implausible)
    SELECT NEW.kiosk_id, NEW.hour, NEW.venue_id, coalesce(p.readings, 0), coalesce(p.sum_dc, 0),
           coalesce(p.sumsq_dc, 0), coalesce(p.implausible, 0)
    FROM (SELECT 1) LEFT JOIN (
        SELECT * FROM readings_running
        WHERE kiosk_id = NEW.kiosk_id AND hour < NEW.hour ORDER BY hour DESC LIMIT 1
    ) AS p
    WHERE NOT EXISTS (
        SELECT 1 FROM readings_running WHERE kiosk_id = NEW.kiosk_id AND hour = NEW.hour
    );
    UPDATE readings_running SET
        readings = readings + NEW.readings, sum_dc = sum_dc + NEW.readings_sum_dc,
        sumsq_dc = sumsq_dc + NEW.readings_sumsq_dc, implausible = implausible + NEW.implausible
    WHERE kiosk_id = NEW.kiosk_id AND hour >= NEW.hour;
END;

CREATE TRIGGER kiosk_hours_running_update AFTER UPDATE ON kiosk_hours
WHEN NEW.readings <> OLD.readings
BEGIN
    -- (No OR IGNORE: a trigger's conflict clause yields to the outer upsert's.)
    INSERT INTO readings_running
        (kiosk_id, hour, venue_id, readings, sum_dc, sumsq_dc, implausible)
    SELECT NEW.kiosk_id, NEW.hour, NEW.venue_id, coalesce(p.readings, 0), coalesce(p.sum_dc, 0),
           coalesce(p.sumsq_dc, 0), coalesce(p.implausible, 0)
    FROM (SELECT 1) LEFT JOIN (
        SELECT * FROM readings_running
        WHERE kiosk_id = NEW.kiosk_id AND hour < NEW.hour ORDER BY hour DESC LIMIT 1
    ) AS p
    WHERE NOT EXISTS (
        SELECT 1 FROM readings_running WHERE kiosk_id = NEW.kiosk_id AND hour = NEW.hour
    );
    UPDATE readings_running SET
        readings = readings + NEW.readings - OLD.readings,
        sum_dc = sum_dc + NEW.readings_sum_dc - OLD.readings_sum_dc,
        sumsq_dc = sumsq_dc + NEW.readings_sumsq_dc - OLD.readings_sumsq_dc,
        implausible = implausible + NEW.implausible - OLD.implausible
    WHERE kiosk_id = NEW.kiosk_id AND hour >= NEW.hour;
END;

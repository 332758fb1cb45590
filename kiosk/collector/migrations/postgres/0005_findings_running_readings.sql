-- Findings, part 3: running totals of each kiosk's readings, as ../sqlite/0006_findings_running_readings.sql

CREATE TABLE readings_running (
    kiosk_id text NOT NULL,
    hour timestamptz NOT NULL,
    venue_id text NOT NULL,
    readings bigint NOT NULL,
    sum_dc bigint NOT NULL,
    sumsq_dc numeric NOT NULL,
    implausible bigint NOT NULL,
    PRIMARY KEY (kiosk_id, hour)
);

INSERT INTO readings_running (kiosk_id, hour, venue_id, readings, sum_dc, sumsq_dc, implausible)
SELECT kiosk_id, hour, venue_id, sum(readings) OVER running, sum(readings_sum_dc) OVER running,
       sum(readings_sumsq_dc) OVER running, sum(implausible) OVER running
FROM kiosk_hours WHERE readings > 0
WINDOW running AS (PARTITION BY kiosk_id ORDER BY hour);

CREATE FUNCTION findings_running_readings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    added_readings bigint := NEW.readings;
    added_sum bigint := NEW.readings_sum_dc;
    added_sumsq bigint := NEW.readings_sumsq_dc;
    added_implausible bigint := NEW.implausible;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        added_readings := added_readings - OLD.readings;
        added_sum := added_sum - OLD.readings_sum_dc;
        added_sumsq := added_sumsq - OLD.readings_sumsq_dc;
        added_implausible := added_implausible - OLD.implausible;
    END IF;
    IF added_readings = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO readings_running
        (kiosk_id, hour, venue_id, readings, sum_dc, sumsq_dc, implausible)
    SELECT NEW.kiosk_id, NEW.hour, NEW.venue_id, coalesce(p.readings, 0), coalesce(p.sum_dc, 0),
           coalesce(p.sumsq_dc, 0), coalesce(p.implausible, 0)
    FROM (SELECT 1) AS one LEFT JOIN LATERAL (
        SELECT * FROM readings_running AS r
        WHERE r.kiosk_id = NEW.kiosk_id AND r.hour < NEW.hour ORDER BY r.hour DESC LIMIT 1
    ) AS p ON true
    ON CONFLICT (kiosk_id, hour) DO NOTHING;
    UPDATE readings_running SET
        readings = readings + added_readings, sum_dc = sum_dc + added_sum,
        sumsq_dc = sumsq_dc + added_sumsq, implausible = implausible + added_implausible
    WHERE kiosk_id = NEW.kiosk_id AND hour >= NEW.hour;
    RETURN NULL;
END
$$;

CREATE TRIGGER kiosk_hours_running AFTER INSERT OR UPDATE ON kiosk_hours
    FOR EACH ROW EXECUTE FUNCTION findings_running_readings();

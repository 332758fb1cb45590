-- The collector's tables on PostgreSQL: the same as ../sqlite/0001_initial.sql, with timestamptz
-- for times, uuid for ids, and `entries` partitioned by day of `ts` (one partition per UTC day,
-- created on demand at ingest; days far from the collector's clock go to entries_default).
-- kiosk/collector/storage describes each table.

CREATE TABLE settings (
    key text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO settings (key, value) VALUES ('config_generation', '1');

CREATE TABLE pseudonym_keys (
    version integer PRIMARY KEY,
    key text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE venues (
    venue_id text PRIMARY KEY,
    name text NOT NULL,
    region text NOT NULL,
    venue_type text NOT NULL,
    created_at timestamptz NOT NULL,
    unit_status text NOT NULL DEFAULT 'open' CHECK (unit_status IN ('open', 'closed')),
    status_note text,
    status_set_by text,
    status_set_at timestamptz
);
CREATE INDEX venues_region ON venues (region text_pattern_ops);

CREATE TABLE unit_status_changes (
    change_id bigserial PRIMARY KEY,
    venue_id text NOT NULL REFERENCES venues (venue_id),
    status text NOT NULL CHECK (status IN ('open', 'closed')),
    note text NOT NULL,
    set_by text NOT NULL,
    set_at timestamptz NOT NULL
);
CREATE INDEX unit_status_changes_venue ON unit_status_changes (venue_id, set_at);

CREATE TABLE kiosks (
    kiosk_id text PRIMARY KEY,
    venue_id text NOT NULL REFERENCES venues (venue_id),
    provisioned_at timestamptz NOT NULL
);
CREATE INDEX kiosks_venue ON kiosks (venue_id);

CREATE TABLE principals (
    name text PRIMARY KEY,
    role text NOT NULL CHECK (role IN ('kiosk', 'inspector', 'admin')),
    region text,
    kiosk_id text REFERENCES kiosks (kiosk_id),
    token_hash text UNIQUE,
    token_issued_at timestamptz,
    token_revoked_at timestamptz,
    created_at timestamptz NOT NULL
);

CREATE TABLE policies (
    publication_id bigserial PRIMARY KEY,
    venue_type text NOT NULL,
    policy_version text NOT NULL,
    policy jsonb NOT NULL,
    max_trust_age_hours double precision NOT NULL,
    published_at timestamptz NOT NULL,
    published_by text NOT NULL
);
CREATE INDEX policies_type ON policies (venue_type, publication_id);

CREATE TABLE documents (
    name text PRIMARY KEY CHECK (name IN ('trust_list', 'revocation_list')),
    body text NOT NULL,
    updated_at timestamptz NOT NULL,
    updated_by text NOT NULL
);

CREATE TABLE audit (
    audit_id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    role text NOT NULL,
    action text NOT NULL,
    target text,
    detail jsonb NOT NULL
);
CREATE INDEX audit_at ON audit (at);

-- Every id ever accepted, keyed by id alone: the partitioned table's key includes ts, so this
-- is what makes an id unique across days and tells duplicates from ids of another kiosk.
CREATE TABLE entry_ids (
    id uuid PRIMARY KEY,
    kiosk_id text NOT NULL,
    ts timestamptz NOT NULL
);

CREATE TABLE entries (
    id uuid NOT NULL,
    ts timestamptz NOT NULL,
    kiosk_id text NOT NULL,
    venue_id text NOT NULL,
    log_id uuid NOT NULL,
    seq bigint NOT NULL,
    received_at timestamptz NOT NULL,
    decision text NOT NULL,
    has_override boolean NOT NULL,
    flags integer NOT NULL,
    subject text,
    temperature_c double precision,
    mask text NOT NULL,
    code_format text NOT NULL,
    code_verdict text NOT NULL,
    code_status text,
    policy_version text NOT NULL,
    link text NOT NULL,
    chain text NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE entries_default PARTITION OF entries DEFAULT;
CREATE INDEX entries_kiosk_ts ON entries (kiosk_id, ts);
CREATE INDEX entries_log_seq ON entries (log_id, seq);
CREATE INDEX entries_allowed_subject ON entries (venue_id, subject, ts)
    WHERE decision = 'allow' AND subject IS NOT NULL;
CREATE INDEX entries_flagged ON entries (kiosk_id, ts) WHERE flags <> 0;

CREATE TABLE logs (
    log_id uuid PRIMARY KEY,
    kiosk_id text NOT NULL,
    venue_id text NOT NULL,
    first_received_at timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL,
    max_seq bigint NOT NULL,
    held bigint NOT NULL,
    runs integer NOT NULL
);
CREATE INDEX logs_kiosk ON logs (kiosk_id);

CREATE TABLE log_runs (
    log_id uuid NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    last_chain text NOT NULL,
    PRIMARY KEY (log_id, first_seq)
);

CREATE TABLE kiosk_hours (
    kiosk_id text NOT NULL,
    hour timestamptz NOT NULL,
    venue_id text NOT NULL,
    entries integer NOT NULL,
    allows integer NOT NULL,
    denies integer NOT NULL,
    overrides integer NOT NULL,
    no_code integer NOT NULL,
    no_temperature integer NOT NULL,
    mask_unchecked integer NOT NULL,
    unchecked integer NOT NULL,
    unchecked_with_mask integer NOT NULL,
    readings integer NOT NULL,
    readings_sum_dc bigint NOT NULL,
    readings_sumsq_dc bigint NOT NULL,
    implausible integer NOT NULL,
    PRIMARY KEY (kiosk_id, hour)
);
CREATE INDEX kiosk_hours_hour ON kiosk_hours (hour);

CREATE TABLE kiosk_hour_reasons (
    kiosk_id text NOT NULL,
    hour timestamptz NOT NULL,
    decision text NOT NULL,
    reason text NOT NULL,
    entries integer NOT NULL,
    PRIMARY KEY (kiosk_id, hour, decision, reason)
);

CREATE TABLE heartbeats (
    row_id bigserial PRIMARY KEY,
    kiosk_id text NOT NULL,
    venue_id text NOT NULL,
    received_at timestamptz NOT NULL,
    ts timestamptz NOT NULL,
    offset_s double precision NOT NULL,
    log_id uuid NOT NULL,
    last_seq bigint NOT NULL,
    backlog bigint NOT NULL,
    policy_version text NOT NULL,
    published_policy_version text NOT NULL,
    max_trust_age_hours double precision NOT NULL,
    camera text NOT NULL,
    thermometer text NOT NULL,
    trust_age_s double precision,
    set_aside bigint,
    storage_used_ratio double precision,
    software text,
    flags integer NOT NULL,
    gap_s double precision,
    drift_since timestamptz,
    body jsonb NOT NULL
);
CREATE INDEX heartbeats_kiosk_received ON heartbeats (kiosk_id, received_at);
CREATE INDEX heartbeats_received ON heartbeats (received_at);
CREATE INDEX heartbeats_flagged ON heartbeats (kiosk_id, received_at) WHERE flags <> 0;
CREATE INDEX heartbeats_log ON heartbeats (log_id, received_at);

CREATE TABLE kiosk_state (
    kiosk_id text PRIMARY KEY,
    venue_id text NOT NULL,
    first_received_at timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL,
    last_ts timestamptz NOT NULL,
    last_offset_s double precision NOT NULL,
    log_id uuid NOT NULL,
    last_seq bigint NOT NULL,
    backlog bigint NOT NULL,
    policy_version text NOT NULL,
    drift_since timestamptz,
    heartbeats bigint NOT NULL,
    body jsonb NOT NULL
);

-- The collector's tables on SQLite. Times are Unix seconds (REAL), hours whole Unix hours.
-- The same tables exist on PostgreSQL (../postgres/0001_initial.sql); kiosk/collector/storage
-- describes each one.

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO settings (key, value) VALUES ('config_generation', '1');

CREATE TABLE pseudonym_keys (
    version INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE venues (
    venue_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    venue_type TEXT NOT NULL,
    created_at REAL NOT NULL,
    unit_status TEXT NOT NULL DEFAULT 'open' CHECK (unit_status IN ('open', 'closed')),
    status_note TEXT,
    status_set_by TEXT,
    status_set_at REAL
) WITHOUT ROWID;
CREATE INDEX venues_region ON venues (region);

CREATE TABLE unit_status_changes (
    change_id INTEGER PRIMARY KEY,
    venue_id TEXT NOT NULL REFERENCES venues (venue_id),
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    note TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at REAL NOT NULL
);
CREATE INDEX unit_status_changes_venue ON unit_status_changes (venue_id, set_at);

CREATE TABLE kiosks (
    kiosk_id TEXT PRIMARY KEY,
    venue_id TEXT NOT NULL REFERENCES venues (venue_id),
    provisioned_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX kiosks_venue ON kiosks (venue_id);

CREATE TABLE principals (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('kiosk', 'inspector', 'admin')),
    region TEXT,
    kiosk_id TEXT REFERENCES kiosks (kiosk_id),
    token_hash TEXT UNIQUE,
    token_issued_at REAL,
    token_revoked_at REAL,
    created_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE policies (
    publication_id INTEGER PRIMARY KEY,
    venue_type TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    policy TEXT NOT NULL,
    max_trust_age_hours REAL NOT NULL,
    published_at REAL NOT NULL,
    published_by TEXT NOT NULL
);
CREATE INDEX policies_type ON policies (venue_type, publication_id);

CREATE TABLE documents (
    name TEXT PRIMARY KEY CHECK (name IN ('trust_list', 'revocation_list')),
    body TEXT NOT NULL,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit (
    audit_id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);

CREATE TABLE entries (
    row_id INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kiosk_id TEXT NOT NULL,
    venue_id TEXT NOT NULL,
    log_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    received_at REAL NOT NULL,
    decision TEXT NOT NULL,
    has_override INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    subject TEXT,
    temperature_c REAL,
    mask TEXT NOT NULL,
    code_format TEXT NOT NULL,
    code_verdict TEXT NOT NULL,
    code_status TEXT,
    policy_version TEXT NOT NULL,
    link TEXT NOT NULL,
    chain TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX entries_kiosk_ts ON entries (kiosk_id, ts);
CREATE INDEX entries_log_seq ON entries (log_id, seq);
CREATE INDEX entries_allowed_subject ON entries (venue_id, subject, ts)
    WHERE decision = 'allow' AND subject IS NOT NULL;
CREATE INDEX entries_flagged ON entries (kiosk_id, ts) WHERE flags <> 0;

CREATE TABLE logs (
    log_id TEXT PRIMARY KEY,
    kiosk_id TEXT NOT NULL,
    venue_id TEXT NOT NULL,
    first_received_at REAL NOT NULL,
    last_received_at REAL NOT NULL,
    max_seq INTEGER NOT NULL,
    held INTEGER NOT NULL,
    runs INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX logs_kiosk ON logs (kiosk_id);

CREATE TABLE log_runs (
    log_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    last_chain TEXT NOT NULL,
    PRIMARY KEY (log_id, first_seq)
) WITHOUT ROWID;

CREATE TABLE kiosk_hours (
    kiosk_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    venue_id TEXT NOT NULL,
    entries INTEGER NOT NULL,
    allows INTEGER NOT NULL,
    denies INTEGER NOT NULL,
    overrides INTEGER NOT NULL,
    no_code INTEGER NOT NULL,
    no_temperature INTEGER NOT NULL,
    mask_unchecked INTEGER NOT NULL,
    unchecked INTEGER NOT NULL,
    unchecked_with_mask INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    readings_sum_dc INTEGER NOT NULL,
    readings_sumsq_dc INTEGER NOT NULL,
    implausible INTEGER NOT NULL,
    PRIMARY KEY (kiosk_id, hour)
) WITHOUT ROWID;
CREATE INDEX kiosk_hours_hour ON kiosk_hours (hour);

CREATE TABLE kiosk_hour_reasons (
    kiosk_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    entries INTEGER NOT NULL,
    PRIMARY KEY (kiosk_id, hour, decision, reason)
) WITHOUT ROWID;

CREATE TABLE heartbeats (
    row_id INTEGER PRIMARY KEY,
    kiosk_id TEXT NOT NULL,
    venue_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    ts REAL NOT NULL,
    offset_s REAL NOT NULL,
    log_id TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    backlog INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    published_policy_version TEXT NOT NULL,
    max_trust_age_hours REAL NOT NULL,
    camera TEXT NOT NULL,
    thermometer TEXT NOT NULL,
    trust_age_s REAL,
    set_aside INTEGER,
    storage_used_ratio REAL,
    software TEXT,
    flags INTEGER NOT NULL,
    gap_s REAL,
    drift_since REAL,
    body TEXT NOT NULL
);
CREATE INDEX heartbeats_kiosk_received ON heartbeats (kiosk_id, received_at);
CREATE INDEX heartbeats_received ON heartbeats (received_at);
CREATE INDEX heartbeats_flagged ON heartbeats (kiosk_id, received_at) WHERE flags <> 0;
CREATE INDEX heartbeats_log ON heartbeats (log_id, received_at);

CREATE TABLE kiosk_state (
    kiosk_id TEXT PRIMARY KEY,
    venue_id TEXT NOT NULL,
    first_received_at REAL NOT NULL,
    last_received_at REAL NOT NULL,
    last_ts REAL NOT NULL,
    last_offset_s REAL NOT NULL,
    log_id TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    backlog INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    drift_since REAL,
    heartbeats INTEGER NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;

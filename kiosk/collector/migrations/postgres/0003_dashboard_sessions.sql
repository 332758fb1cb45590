-- Dashboard sign-in sessions (kiosk/collector/sessions.py). A row holds the SHA-256 of the
-- session id the browser's cookie carries and the SHA-256 of the token it was made from; never
-- either secret. Every request also looks the token up, so a revoked token ends its sessions.
CREATE TABLE dashboard_sessions (
    session_key text PRIMARY KEY,
    token_hash text NOT NULL,
    principal text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);

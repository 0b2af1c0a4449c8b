-- Durable background jobs, leased so that with many nodes each job runs once.
-- state: pending -> running -> done | failed (a failed attempt with attempts left goes back to
-- pending). A running job whose lease expired may be claimed again by any node.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL,
    key              TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_after        INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
-- Scheduling is idempotent: one pending or running job per (kind, key).
CREATE UNIQUE INDEX jobs_active_key ON jobs(kind, key) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_by_key ON jobs(kind, key);
CREATE INDEX jobs_due ON jobs(state, run_after);
CREATE INDEX jobs_by_updated ON jobs(state, updated_at);

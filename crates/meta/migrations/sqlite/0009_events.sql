-- The event log (a transactional outbox): every state change appends its domain events in the
-- transaction that makes the change. SQLite serializes writers, so `seq` order is commit order
-- and `txid` stays 0; PostgreSQL's twin records the writing transaction's id (see there).
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    txid       BIGINT  NOT NULL DEFAULT 0,
    event_id   TEXT    NOT NULL UNIQUE,
    account_id TEXT    NOT NULL,
    region     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    repository TEXT,
    detail     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX events_order ON events(txid, seq);
CREATE INDEX events_by_time ON events(created_at);

-- Where each consumer of the log stands: it has handled every event at or before (txid, seq).
CREATE TABLE event_cursors (
    consumer   TEXT   PRIMARY KEY,
    txid       BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Webhook subscriptions of an account; the secret is sealed under the server key.
CREATE TABLE webhooks (
    id                TEXT   PRIMARY KEY,
    account_id        TEXT   NOT NULL,
    url               TEXT   NOT NULL,
    events            TEXT   NOT NULL,
    repository_filter TEXT,
    secret_enc        TEXT   NOT NULL,
    created_at        BIGINT NOT NULL,
    lease_owner       TEXT,
    lease_until       BIGINT
);

-- One row per (webhook, event) to deliver, in event order; the oldest undelivered one of a
-- webhook holds back the others (per-endpoint ordering) until it is delivered or dead.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      TEXT    NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries(webhook_id, state, id);

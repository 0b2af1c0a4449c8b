-- The audit trail: one CloudTrail record per API call, hash-chained per node (`chain` is the
-- node id, `seq` counts 1, 2, 3, ... within it, `hash` = SHA-256 over `prev_hash` and the
-- record's canonical content, `event_json` included; see berth_events::audit). The attribute
-- columns are what CloudTrail's LookupEvents filters on; `id` orders records written at the
-- same millisecond (newest first) for keyset pagination.
CREATE TABLE audit_records (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    chain         TEXT    NOT NULL,
    seq           BIGINT  NOT NULL,
    event_id      TEXT    NOT NULL,
    event_time    BIGINT  NOT NULL,
    account       TEXT    NOT NULL,
    event_name    TEXT    NOT NULL,
    event_source  TEXT    NOT NULL,
    read_only     TEXT    NOT NULL,
    username      TEXT,
    access_key_id TEXT,
    resource_type TEXT,
    resource_name TEXT,
    event_json    TEXT    NOT NULL,
    prev_hash     TEXT    NOT NULL,
    hash          TEXT    NOT NULL,
    UNIQUE (chain, seq)
);
-- Indexes cost every insert (a record per API call, pulls included), so only the lookups that
-- need one have one: time ranges, EventId, EventName and Username. Lookups by EventSource,
-- AccessKeyId, ResourceName, ResourceType or ReadOnly walk the account's time index.
CREATE INDEX audit_by_time ON audit_records(account, event_time, id);
CREATE INDEX audit_by_event_id ON audit_records(account, event_id);
CREATE INDEX audit_by_event_name ON audit_records(account, event_name, event_time, id);
CREATE INDEX audit_by_username ON audit_records(account, username, event_time, id);
CREATE INDEX audit_by_purge ON audit_records(event_time);

-- Where a chain's retained records start: the last record retention deleted (its seq and
-- hash), so verification of what is left starts from it instead of from seq 1.
CREATE TABLE audit_chain_anchors (
    chain TEXT   PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT   NOT NULL
);

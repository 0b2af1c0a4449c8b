-- One garbage collection pass at a time across nodes (and `berth gc` next to them): the pass
-- holding this row's lease runs; it renews the lease while it works and drops the row at the end.
-- A pass that died leaves a lease that expires.
CREATE TABLE gc_pass (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    owner       TEXT    NOT NULL,
    started_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

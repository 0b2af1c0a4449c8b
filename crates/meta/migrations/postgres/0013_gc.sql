-- Garbage collection of blobs (docs/gc.md has the protocol and why it is safe).
-- Per-digest holds: holder '' is the digest's mutex row (every party upserts it first, which
-- serializes them on the digest); 'upload:<id>' is an upload writing the digest's bytes;
-- 'gc' is a deletion in flight (the row is gone, the bytes are being deleted).
CREATE TABLE blob_holds (
    digest      TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (digest, holder)
);

-- Blobs no repository links, found by a pass: deleted by a later pass once the grace period has
-- passed since they were found, if nothing links or references them then.
CREATE TABLE gc_candidates (
    digest      TEXT    PRIMARY KEY,
    marked_at   BIGINT NOT NULL
);
CREATE INDEX gc_candidates_by_mark ON gc_candidates(marked_at);
-- Links older than the grace period that no manifest of their repository references.
CREATE INDEX repo_blobs_by_age ON repo_blobs(created_at);

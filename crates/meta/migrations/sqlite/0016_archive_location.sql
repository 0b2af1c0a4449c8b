-- Where a blob's bytes are: 'standard' (the blob store) or 'archive' (the archive store, for
-- blobs that only archived images reference). A 'move' hold in blob_holds marks a move (or the
-- clean-up of a copy) in flight; docs/gc.md has the protocol.
ALTER TABLE blobs ADD COLUMN location TEXT NOT NULL DEFAULT 'standard';
CREATE INDEX blobs_archived ON blobs(location) WHERE location <> 'standard';

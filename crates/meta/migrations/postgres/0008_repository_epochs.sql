-- Per-repository data epochs replace the one global row: every write to a repository's
-- manifests and tags (and its mutability changes) moves that repository's epoch, in the write's
-- transaction and as its first statement (which also serializes writes to one repository), so
-- writes to different repositories never contend and a node drops only the caches of the
-- repositories that changed.
ALTER TABLE repositories ADD COLUMN data_epoch BIGINT NOT NULL DEFAULT 0;
DROP TABLE data_epoch;

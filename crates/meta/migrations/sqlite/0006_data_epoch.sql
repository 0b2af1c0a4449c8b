-- Bumped by every write that changes what a repository's tags or manifests resolve to, or its
-- settings: nodes drop their read caches when it moves (other nodes' writes).
CREATE TABLE data_epoch (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    epoch  BIGINT  NOT NULL
);
INSERT INTO data_epoch (id, epoch) VALUES (1, 0);

-- Replication (issue 14): each registry's (account, region) replication configuration as ECR's
-- JSON (with when one was first put: earlier pushes are not replicated), and the replication status of each pushed image to each destination.
CREATE TABLE replication_configs (
    account_id  TEXT    NOT NULL,
    region      TEXT    NOT NULL,
    config      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (account_id, region)
);
CREATE TABLE replication_status (
    account_id     TEXT    NOT NULL,
    region         TEXT    NOT NULL,
    repository     TEXT    NOT NULL,
    digest         TEXT    NOT NULL,
    dest_region    TEXT    NOT NULL,
    dest_registry  TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    failure_code   TEXT,
    pushed_at      BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (account_id, region, repository, digest, dest_region, dest_registry)
);

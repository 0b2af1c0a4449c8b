-- Repository creation templates (twin of the SQLite migration). Prefixes sort bytewise
-- (COLLATE "C"), as in SQLite, for nextToken pagination.
CREATE TABLE creation_templates (
    account_id             TEXT    NOT NULL,
    region                 TEXT    NOT NULL,
    prefix_key             TEXT    COLLATE "C" NOT NULL,
    prefix                 TEXT    NOT NULL,
    description            TEXT,
    encryption_type        TEXT    NOT NULL,
    kms_key                TEXT,
    resource_tags          TEXT    NOT NULL,
    image_tag_mutability   TEXT    NOT NULL,
    mutability_exclusions  TEXT,
    repository_policy      TEXT,
    lifecycle_policy       TEXT,
    applied_for            TEXT    NOT NULL,
    custom_role_arn        TEXT,
    created_at             BIGINT  NOT NULL,
    updated_at             BIGINT  NOT NULL,
    version                BIGINT  NOT NULL,
    PRIMARY KEY (account_id, region, prefix_key)
);

-- Repository creation templates (ECR CreateRepositoryCreationTemplate), per registry (account,
-- region). `prefix_key` is the prefix without a trailing '/' ('ROOT' for the registry-wide
-- template): `prod` and `prod/` name the same template; `prefix` is kept as the caller spelled
-- it. `resource_tags` is a JSON array of [key, value] pairs, `applied_for` a JSON array of
-- REPLICATION / PULL_THROUGH_CACHE / CREATE_ON_PUSH, `mutability_exclusions` the JSON array
-- repositories keep. `version` moves on every update (compare-and-set of read-modify-writes).
CREATE TABLE creation_templates (
    account_id             TEXT    NOT NULL,
    region                 TEXT    NOT NULL,
    prefix_key             TEXT    NOT NULL,
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
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    version                INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, prefix_key)
);

-- KMS keys (issue 13): symmetric keys per account and region, their key material versions
-- (sealed under the operator's master key), aliases and tags. Every change to them moves the
-- authorization epoch (auth_epoch), as key state and key policies decide requests.
-- key_state: Enabled | Disabled | PendingDeletion. key_manager: CUSTOMER | AWS.
-- rotation_period_days is set while automatic rotation is on; next_rotation_at then says when.
CREATE TABLE kms_keys (
    key_id                TEXT    PRIMARY KEY,
    account_id            TEXT    NOT NULL REFERENCES accounts(account_id),
    region                TEXT    NOT NULL,
    description           TEXT    NOT NULL,
    key_manager           TEXT    NOT NULL,
    key_state             TEXT    NOT NULL,
    policy                TEXT    NOT NULL,
    created_at            INTEGER NOT NULL,
    deletion_date         INTEGER,
    pending_window_days   INTEGER,
    rotation_period_days  INTEGER,
    next_rotation_at      INTEGER,
    current_version       INTEGER NOT NULL
);
CREATE INDEX kms_keys_by_namespace ON kms_keys(account_id, region, key_id);
CREATE INDEX kms_keys_by_deletion ON kms_keys(deletion_date) WHERE deletion_date IS NOT NULL;
CREATE INDEX kms_keys_by_rotation ON kms_keys(next_rotation_at) WHERE next_rotation_at IS NOT NULL;

-- One row per version of a key's material: sealed (base64) under the master key with the key ARN
-- and version as context. rotation_type: NULL for the first version, AUTOMATIC or ON_DEMAND.
CREATE TABLE kms_key_material (
    key_id         TEXT    NOT NULL REFERENCES kms_keys(key_id) ON DELETE CASCADE,
    version        INTEGER NOT NULL,
    sealed         TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    rotation_type  TEXT,
    PRIMARY KEY (key_id, version)
);

-- Aliases (`alias/...`), unique per account and region.
CREATE TABLE kms_aliases (
    account_id     TEXT    NOT NULL,
    region         TEXT    NOT NULL,
    alias_name     TEXT    NOT NULL,
    target_key_id  TEXT    NOT NULL REFERENCES kms_keys(key_id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, alias_name)
);
CREATE INDEX kms_aliases_by_key ON kms_aliases(target_key_id);

CREATE TABLE kms_key_tags (
    key_id     TEXT NOT NULL REFERENCES kms_keys(key_id) ON DELETE CASCADE,
    tag_key    TEXT NOT NULL,
    tag_value  TEXT NOT NULL,
    PRIMARY KEY (key_id, tag_key)
);

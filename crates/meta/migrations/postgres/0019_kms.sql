-- KMS keys (issue 13): symmetric keys per account and region, their key material versions
-- (sealed under the operator's master key), aliases and tags. Every change to them moves the
-- authorization epoch (auth_epoch), as key state and key policies decide requests.
-- key_state: Enabled | Disabled | PendingDeletion. key_manager: CUSTOMER | AWS.
-- rotation_period_days is set while automatic rotation is on; next_rotation_at then says when.
-- Ids, alias names and tag keys sort bytewise (COLLATE "C"), as in SQLite, for Marker pagination.
CREATE TABLE kms_keys (
    key_id                TEXT    COLLATE "C" PRIMARY KEY,
    account_id            TEXT    NOT NULL REFERENCES accounts(account_id),
    region                TEXT    NOT NULL,
    description           TEXT    NOT NULL,
    key_manager           TEXT    NOT NULL,
    key_state             TEXT    NOT NULL,
    policy                TEXT    NOT NULL,
    created_at            BIGINT  NOT NULL,
    deletion_date         BIGINT,
    pending_window_days   BIGINT,
    rotation_period_days  BIGINT,
    next_rotation_at      BIGINT,
    current_version       BIGINT  NOT NULL
);
CREATE INDEX kms_keys_by_namespace ON kms_keys(account_id, region, key_id);
CREATE INDEX kms_keys_by_deletion ON kms_keys(deletion_date) WHERE deletion_date IS NOT NULL;
CREATE INDEX kms_keys_by_rotation ON kms_keys(next_rotation_at) WHERE next_rotation_at IS NOT NULL;

-- One row per version of a key's material: sealed (base64) under the master key with the key ARN
-- and version as context. rotation_type: NULL for the first version, AUTOMATIC or ON_DEMAND.
CREATE TABLE kms_key_material (
    key_id         TEXT    COLLATE "C" NOT NULL REFERENCES kms_keys(key_id) ON DELETE CASCADE,
    version        BIGINT  NOT NULL,
    sealed         TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    rotation_type  TEXT,
    PRIMARY KEY (key_id, version)
);

-- Aliases (`alias/...`), unique per account and region.
CREATE TABLE kms_aliases (
    account_id     TEXT    NOT NULL,
    region         TEXT    NOT NULL,
    alias_name     TEXT    COLLATE "C" NOT NULL,
    target_key_id  TEXT    COLLATE "C" NOT NULL REFERENCES kms_keys(key_id) ON DELETE CASCADE,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (account_id, region, alias_name)
);
CREATE INDEX kms_aliases_by_key ON kms_aliases(target_key_id);

CREATE TABLE kms_key_tags (
    key_id     TEXT COLLATE "C" NOT NULL REFERENCES kms_keys(key_id) ON DELETE CASCADE,
    tag_key    TEXT COLLATE "C" NOT NULL,
    tag_value  TEXT NOT NULL,
    PRIMARY KEY (key_id, tag_key)
);

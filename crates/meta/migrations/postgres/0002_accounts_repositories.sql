-- Accounts, access keys and repository settings (twin of the SQLite migration).
CREATE TABLE accounts (
    account_id  TEXT   PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

CREATE TABLE access_keys (
    access_key_id TEXT   PRIMARY KEY,
    account_id    TEXT   NOT NULL REFERENCES accounts(account_id),
    user_name     TEXT,
    secret_enc    TEXT   NOT NULL,
    status        TEXT   NOT NULL DEFAULT 'Active',
    created_at    BIGINT NOT NULL
);
CREATE INDEX access_keys_by_account ON access_keys(account_id);

ALTER TABLE repositories ADD COLUMN image_tag_mutability TEXT NOT NULL DEFAULT 'MUTABLE';
ALTER TABLE repositories ADD COLUMN mutability_exclusions TEXT;
ALTER TABLE repositories ADD COLUMN scan_on_push BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE repositories ADD COLUMN encryption_type TEXT NOT NULL DEFAULT 'AES256';
ALTER TABLE repositories ADD COLUMN kms_key TEXT;

CREATE TABLE repository_tags (
    repo_id  BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    key      TEXT   NOT NULL,
    value    TEXT   NOT NULL,
    PRIMARY KEY (repo_id, key)
);

CREATE TABLE server_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

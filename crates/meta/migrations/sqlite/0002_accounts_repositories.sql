-- Accounts, access keys and repository settings for the ECR control plane.
CREATE TABLE accounts (
    account_id  TEXT    PRIMARY KEY,
    created_at  INTEGER NOT NULL
);

-- Secret access keys are stored encrypted under the server key, never in clear.
CREATE TABLE access_keys (
    access_key_id TEXT    PRIMARY KEY,
    account_id    TEXT    NOT NULL REFERENCES accounts(account_id),
    user_name     TEXT,
    secret_enc    TEXT    NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'Active',
    created_at    INTEGER NOT NULL
);
CREATE INDEX access_keys_by_account ON access_keys(account_id);

ALTER TABLE repositories ADD COLUMN image_tag_mutability TEXT NOT NULL DEFAULT 'MUTABLE';
-- JSON array of {"filterType","filter"}; NULL when none.
ALTER TABLE repositories ADD COLUMN mutability_exclusions TEXT;
ALTER TABLE repositories ADD COLUMN scan_on_push INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN encryption_type TEXT NOT NULL DEFAULT 'AES256';
ALTER TABLE repositories ADD COLUMN kms_key TEXT;

-- Resource tags (TagResource) of repositories.
CREATE TABLE repository_tags (
    repo_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    key      TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (repo_id, key)
);

-- Deployment-wide settings (e.g. the default account of the data plane).
CREATE TABLE server_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

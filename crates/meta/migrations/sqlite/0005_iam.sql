-- IAM identities and policies, resource policies, and the authorization epoch.
-- Names are unique per account without regard to case, as in IAM: `*_key` is the lower-cased name.
CREATE TABLE iam_users (
    account_id  TEXT    NOT NULL REFERENCES accounts(account_id),
    name_key    TEXT    NOT NULL,
    user_name   TEXT    NOT NULL,
    user_id     TEXT    NOT NULL UNIQUE,
    path        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, name_key)
);

CREATE TABLE iam_groups (
    account_id  TEXT    NOT NULL REFERENCES accounts(account_id),
    name_key    TEXT    NOT NULL,
    group_name  TEXT    NOT NULL,
    group_id    TEXT    NOT NULL UNIQUE,
    path        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, name_key)
);

CREATE TABLE iam_group_members (
    account_id  TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    user_key    TEXT NOT NULL,
    PRIMARY KEY (account_id, group_key, user_key)
);
CREATE INDEX iam_group_members_by_user ON iam_group_members(account_id, user_key);

-- Customer managed policies (one version each, v1).
CREATE TABLE iam_managed_policies (
    account_id   TEXT    NOT NULL REFERENCES accounts(account_id),
    name_key     TEXT    NOT NULL,
    policy_name  TEXT    NOT NULL,
    policy_id    TEXT    NOT NULL UNIQUE,
    path         TEXT    NOT NULL,
    arn          TEXT    NOT NULL UNIQUE,
    document     TEXT    NOT NULL,
    description  TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, name_key)
);

-- Inline policies of users and groups (owner_kind 'user' or 'group').
CREATE TABLE iam_inline_policies (
    account_id   TEXT NOT NULL,
    owner_kind   TEXT NOT NULL,
    owner_key    TEXT NOT NULL,
    policy_name  TEXT NOT NULL,
    document     TEXT NOT NULL,
    PRIMARY KEY (account_id, owner_kind, owner_key, policy_name)
);

-- Managed policies (customer or AWS managed, by ARN) attached to users and groups.
CREATE TABLE iam_attachments (
    account_id  TEXT NOT NULL,
    owner_kind  TEXT NOT NULL,
    owner_key   TEXT NOT NULL,
    policy_arn  TEXT NOT NULL,
    PRIMARY KEY (account_id, owner_kind, owner_key, policy_arn)
);
CREATE INDEX iam_attachments_by_arn ON iam_attachments(policy_arn);

CREATE TABLE repository_policies (
    repo_id   INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    document  TEXT    NOT NULL
);

CREATE TABLE registry_policies (
    account_id  TEXT NOT NULL,
    region      TEXT NOT NULL,
    document    TEXT NOT NULL,
    PRIMARY KEY (account_id, region)
);

-- Bumped by every change that can alter an authorization decision; nodes drop cached decisions
-- inputs when it moves.
CREATE TABLE auth_epoch (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    epoch  INTEGER NOT NULL
);
INSERT INTO auth_epoch (id, epoch) VALUES (1, 0);

-- IAM roles, OIDC identity providers and STS sessions (issue 15).
-- Role names are unique per account without regard to case: name_key is the lower-cased name.
-- A role's inline and attached policies live in iam_inline_policies / iam_attachments with
-- owner_kind 'role'.
CREATE TABLE iam_roles (
    account_id            TEXT    NOT NULL REFERENCES accounts(account_id),
    name_key              TEXT    NOT NULL,
    role_name             TEXT    NOT NULL,
    role_id               TEXT    NOT NULL UNIQUE,
    path                  TEXT    NOT NULL,
    trust_policy          TEXT    NOT NULL,
    description           TEXT,
    max_session_duration  INTEGER NOT NULL,
    tags                  TEXT    NOT NULL,
    created_at            INTEGER NOT NULL,
    PRIMARY KEY (account_id, name_key)
);

-- OIDC identity providers: url_key is the URL without https:// (as the ARN names it).
CREATE TABLE iam_oidc_providers (
    account_id   TEXT    NOT NULL REFERENCES accounts(account_id),
    url_key      TEXT    NOT NULL,
    arn          TEXT    NOT NULL UNIQUE,
    url          TEXT    NOT NULL,
    client_ids   TEXT    NOT NULL,
    thumbprints  TEXT    NOT NULL,
    tags         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, url_key)
);

-- Temporary credentials issued by STS: the secret is sealed under the server key, the session
-- token is kept only as its SHA-256. kind 'role' (AssumeRole*, principal = role_name) or 'user'
-- (GetSessionToken, principal = user_name; NULL for the root). policy: the session policy
-- documents and ARNs (JSON), tags: the session tags (JSON object).
CREATE TABLE sts_sessions (
    access_key_id   TEXT    PRIMARY KEY,
    account_id      TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    principal_name  TEXT,
    principal_id    TEXT,
    session_name    TEXT    NOT NULL,
    secret_enc      TEXT    NOT NULL,
    token_sha256    TEXT    NOT NULL,
    policy          TEXT,
    tags            TEXT    NOT NULL,
    source_identity TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX sts_sessions_by_expiry ON sts_sessions(expires_at);

-- Lifecycle policies (one per repository, kept as the caller sent it) and the last preview of
-- each repository's policy. Both go with their repository.
CREATE TABLE lifecycle_policies (
    repo_id           INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    policy_text       TEXT    NOT NULL,
    updated_at        INTEGER NOT NULL,
    -- When a run last evaluated the policy (epoch ms); NULL until the first run.
    last_evaluated_at INTEGER
);

CREATE TABLE lifecycle_previews (
    repo_id      INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    policy_text  TEXT    NOT NULL,
    -- IN_PROGRESS, COMPLETE or FAILED.
    status       TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    -- COMPLETE: the JSON array of what a run would do; FAILED: the reason.
    result       TEXT
);

-- Vulnerability scanning (issue 12). Advisories are OSV records as imported (the body is the
-- parsed record as berth-vulndb's JSON), indexed by the packages they name: (base ecosystem,
-- normalized name).
CREATE TABLE vuln_advisories (
    id          TEXT    PRIMARY KEY,
    modified    TEXT,
    body        TEXT    NOT NULL,
    import_id   INTEGER NOT NULL
);
CREATE TABLE vuln_affected (
    ecosystem   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    advisory_id TEXT    NOT NULL,
    PRIMARY KEY (ecosystem, name, advisory_id)
);
CREATE INDEX vuln_affected_by_advisory ON vuln_affected(advisory_id);
-- Each import: what it read, when (vulnerabilitySourceUpdatedAt is the last one's time).
CREATE TABLE vuln_imports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT    NOT NULL,
    records     INTEGER NOT NULL,
    withdrawn   INTEGER NOT NULL,
    imported_at INTEGER NOT NULL
);
-- The last scan of each image: its status (ECR's ScanStatus), when it was asked for and when it
-- completed, the advisory data it used, and its findings (a JSON array) and counts (a JSON
-- object by severity). It goes with its manifest.
CREATE TABLE image_scans (
    repo_id       INTEGER NOT NULL,
    digest        TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    description   TEXT,
    requested_at  INTEGER NOT NULL,
    completed_at  INTEGER,
    source_updated_at INTEGER,
    counts        TEXT,
    findings      TEXT,
    PRIMARY KEY (repo_id, digest),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
-- A registry's scanning configuration (PutRegistryScanningConfiguration), as JSON.
CREATE TABLE registry_scanning (
    account_id  TEXT    NOT NULL,
    region      TEXT    NOT NULL,
    config      TEXT    NOT NULL,
    PRIMARY KEY (account_id, region)
);
-- A repository's pull gate (Berth's own): JSON {"severity": ..., "allowUnscanned": ...}, or NULL.
ALTER TABLE repositories ADD COLUMN pull_gate TEXT;

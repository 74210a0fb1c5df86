-- podero-onboard checkpoint, schema version 1 (PRAGMA user_version = 1).
-- Documented in docs/checkpoint.md; query it freely with sqlite3.

-- Which environment this checkpoint belongs to: org_id, base_url, created_at.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One line per run: what was read, when, how it ended.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    started_at    INTEGER NOT NULL,          -- unix seconds
    ended_at      INTEGER,                   -- NULL while running, or if the run was killed
    pid           INTEGER NOT NULL,
    command       TEXT NOT NULL,             -- run | dry-run
    input         TEXT NOT NULL,             -- file name, or <stdin>
    input_sha256  TEXT,                      -- of the file's bytes (NULL for stdin)
    input_rows    INTEGER,                   -- data rows read
    exit_code     INTEGER,
    summary       TEXT                       -- the --json summary of the run
);

-- One line per Podero user: the PUT body last applied successfully.
CREATE TABLE users (
    user_id     TEXT PRIMARY KEY,
    payload     TEXT NOT NULL,               -- JSON: external_user_id and other user fields
    applied_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- One line per (user_id, building_name): the row's identity across runs and files.
CREATE TABLE rows (
    user_id           TEXT NOT NULL,
    building_name     TEXT NOT NULL,
    line              INTEGER NOT NULL,      -- line in the input that last touched it
    external_user_id  TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending','posting','done','failed','unresolved')),
    building_id       TEXT,                  -- the Podero building, once known
    attempts          INTEGER NOT NULL DEFAULT 0,   -- runs that worked on the row
    http_status       INTEGER,               -- of the last failure
    error             TEXT,                  -- of the last failure, or why it is unresolved
    permanent         INTEGER NOT NULL DEFAULT 0,   -- 1: failure needs a data fix or --retry-failed
    fingerprint       INTEGER NOT NULL,      -- of the input payloads when last worked on
    updated_at        INTEGER NOT NULL,      -- unix seconds
    PRIMARY KEY (user_id, building_name)
) WITHOUT ROWID;

-- The last run's invalid and duplicate input rows (replaced at every run).
CREATE TABLE rejects (
    line         INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('invalid','duplicate','conflict')),
    user_id      TEXT,                   -- the row's cells as found (escaped), to find it
    building_name TEXT,
    external_user_id TEXT,
    column_name  TEXT,
    value        TEXT,
    reason       TEXT NOT NULL
);
CREATE INDEX rejects_by_key ON rejects (user_id, building_name);

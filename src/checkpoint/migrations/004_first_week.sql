-- Schema step 4: the rows a run's input no longer has ("vanished"), so they can be listed
-- after the run (`export --state vanished`), not only counted; and the input of failed rows,
-- so `export --state failed` can be fixed and fed back. A new table and a new nullable
-- column: it applies on top of any earlier step. Documented in docs/checkpoint.md.

-- The checkpoint's rows that the last run's input (a dry run's too) did not have, replaced
-- at every run. Nothing is deleted on the server: these rows are reported and left alone.
CREATE TABLE vanished (
    user_id   TEXT NOT NULL,
    row_key   TEXT NOT NULL,             -- rows.row_key
    run_id    INTEGER NOT NULL,          -- the run whose input did not have it
    PRIMARY KEY (user_id, row_key)
) WITHOUT ROWID;

-- The input a row that failed was last worked on with, so `export --state failed` prints
-- the row with every column it had (building fields included) and the fixed file can be
-- fed back: JSON {"user": the PUT body, "building": the POST body} as staged. Written at
-- the end of a run for its failed rows; NULL for other rows and for rows that failed
-- before this step (those are exported with their identity columns only).
ALTER TABLE rows ADD COLUMN failed_input TEXT;

-- Schema 2 (issue 11, nightly sync): a row's identity may be a CRM property id, a row may
-- be user-only, and the building body last applied is kept so a changed building is updated.
--
-- `rows` is rebuilt because its primary key changes from (user_id, building_name) to
-- (user_id, row_key); SQLite cannot alter a primary key. row_key is:
--   ''                         a user-only row (no building)
--   'name:' || building_name   a row of a file without property_id (schema 1's identity)
--   'property:' || property_id a row of a file with property_id (building_name is then a field)
-- Every schema-1 row keeps all its columns and gets the key 'name:' || building_name: the
-- identity it had. Nothing is lost; the copy and the swap commit with the version bump.
--
-- building_payload: the building body (canonical JSON, as staged) last applied by a POST or
-- a PUT; NULL when unknown. Schema-1 rows have no such record, and are deliberately NOT all
-- marked "changed" (that would cost every done row a GET and a PUT on the first night).
-- Instead the planner infers it (plan::decide): `fingerprint` is FNV(user payload, building
-- payload) of the input the row was last worked on, and `users.payload` is the user body
-- last applied. If the stored fingerprint equals FNV(applied user payload or this run's,
-- this run's building payload), the building input is the one last worked on, so it counts
-- as applied; otherwise the building changed and is updated (GET, overlay, PUT: safe even if
-- the inference is wrong, as it only writes the CSV's own fields). The inferred payload is
-- written as applied the next time the row is worked on. One case schema 1 could not record
-- stays unknowable: a night that changed a user AND its building re-stamped the fingerprint
-- without updating the building; such a building is updated only when its row next changes.
CREATE TABLE rows_v2 (
    user_id           TEXT NOT NULL,
    row_key           TEXT NOT NULL,         -- see above
    building_name     TEXT NOT NULL,         -- '' for a user-only row
    property_id       TEXT,                  -- the CRM's property id, when the file has one
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
    building_payload  TEXT,                  -- building body last applied; NULL: unknown
    PRIMARY KEY (user_id, row_key)
) WITHOUT ROWID;
INSERT INTO rows_v2 (user_id, row_key, building_name, property_id, line, external_user_id,
                     state, building_id, attempts, http_status, error, permanent, fingerprint,
                     updated_at, building_payload)
SELECT user_id, 'name:' || building_name, building_name, NULL, line, external_user_id,
       state, building_id, attempts, http_status, error, permanent, fingerprint,
       updated_at, NULL
FROM rows;
DROP TABLE rows;
ALTER TABLE rows_v2 RENAME TO rows;

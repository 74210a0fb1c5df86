-- Schema 5 (customers not in Podero yet): rows may be keyed by the CRM id, and
-- the job remembers which Podero user each CRM id is. Only a new table: every earlier row,
-- user and link stays as it was, and a checkpoint of schema 3 or 4 keeps working unchanged.
--
-- A row of a file without user_id is keyed by its CRM id until its customer is known.
-- Once the customer is known (found by CRM id, created, or adopted by e-mail), its rows
-- live under the real Podero user id, exactly like rows that named their user_id, so a
-- later file that does name the user_id continues them (and the reverse). A row whose
-- customer is not known yet (it failed before any building, e.g. "no Podero user has CRM
-- id ...") keeps the owner key 'ext:' || external_user_id in rows.user_id; such a row never
-- has a building (no building is created before its user is known). When the customer
-- becomes known, those rows move to the real user id.
--
-- customers: one line per CRM id the job has looked up or created a user for.
-- state: creating    the intent, committed before the POST .../users; a run that finds it
--                    (killed mid-POST) looks the CRM id up before anything is re-sent
--        unknown     the create's outcome was never learnt (timeout, dropped connection,
--                    5xx): the CRM id is looked up before anything is re-sent
--        known       user_id is the customer's Podero user (how: found, created, adopted)
--        unresolved  the lookup kept failing with a 5xx (several users with this CRM id?):
--                    nothing is created until a human has looked
--        failed      not found and not created (no --create-users, e-mail taken, ...)
-- Every state but `known` is looked up by CRM id first on the next run: no state leads to a
-- create without a lookup that answered "not found" just before it.
-- The user body last applied is kept in `users` (by user_id), as for any user.
CREATE TABLE customers (
    external_user_id  TEXT PRIMARY KEY,
    user_id           TEXT,                  -- the Podero user, once known
    state             TEXT NOT NULL CHECK (state IN ('creating','unknown','known','unresolved','failed')),
    how               TEXT CHECK (how IN ('found','created','adopted')),
    http_status       INTEGER,               -- of the last failure
    error             TEXT,                  -- of the last failure, or why it is unresolved
    updated_at        INTEGER NOT NULL       -- unix seconds
) WITHOUT ROWID;
CREATE INDEX customers_by_user ON customers (user_id);

-- Schema step for issue 12 (Connect links): only new tables and indexes, so it applies on
-- top of any earlier step. Documented in docs/connect-links.md.

-- One line per device onboarding session the job asked for (a Connect link).
-- state: creating  the intent, committed before the POST; a run that finds one (it was
--                  killed mid-POST) marks it unknown and creates a new session instead
--        live      the session exists; valid while expiration_date >= today (UTC)
--        replaced  a newer link was created for the building (this one had expired)
--        unknown   the POST's outcome was never learnt (an extra session expires by itself)
--        failed    the server refused it (http_status, error)
CREATE TABLE links (
    id               INTEGER PRIMARY KEY,
    user_id          TEXT NOT NULL,
    building_id      TEXT NOT NULL,
    building_name    TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('creating','live','replaced','unknown','failed')),
    session_id       TEXT,                  -- a capability: never logged
    link             TEXT,                  -- authentication_url, a capability: never logged
    expiration_date  TEXT,                  -- YYYY-MM-DD as the server sent it
    run_id           INTEGER NOT NULL,      -- the links run that created it
    created_at       INTEGER NOT NULL,      -- unix seconds
    updated_at       INTEGER NOT NULL,
    http_status      INTEGER,
    error            TEXT
);
CREATE INDEX links_by_building ON links (building_id, id);
-- At most one live link per building, whatever crashes.
CREATE UNIQUE INDEX links_one_live ON links (building_id) WHERE state = 'live';

-- Buildings with an authenticated heat pump: connected, never sent a link again.
CREATE TABLE connections (
    building_id   TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    heat_pump_id  TEXT NOT NULL,
    assigned      INTEGER NOT NULL DEFAULT 0,   -- 1: this job assigned the heat pump to the building
    connected_at  INTEGER NOT NULL              -- unix seconds, when the job first saw it
) WITHOUT ROWID;

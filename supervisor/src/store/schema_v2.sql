-- sgevents state database, schema version 2: the ShotGrid source's missing ids. Documented in
-- docs/STATE.md: keep both in step.

-- Ids the event log skipped, waited for until they appear or time out (see docs/STATE.md).
CREATE TABLE source_gaps (
    first_id   INTEGER PRIMARY KEY,                   -- the first missing id
    last_id    INTEGER NOT NULL,                      -- the last missing id (inclusive)
    first_seen TEXT    NOT NULL                       -- when it was first missed (UTC)
);

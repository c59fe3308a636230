-- sgevents state database, schema version 4: every fault kept in check. Documented in
-- docs/STATE.md: keep both in step.

-- == Processes and deliveries (the daemon's restart after a crash) ==

-- The plugin's process group and its leader's start time (clock ticks after boot, field 22 of
-- /proc/PID/stat), so that a daemon restarted after a crash kills a plugin that outlived it, and
-- never a process that merely reuses the pid.
ALTER TABLE plugins ADD COLUMN pgid INTEGER;
ALTER TABLE plugins ADD COLUMN pid_start_ticks INTEGER;

-- Deliveries sent and not yet finished, recorded in the same group commits as the answers: after
-- a crash, an event that was in flight is delivered again as attempt N + 1.
CREATE TABLE in_flight (
    plugin   TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    attempt  INTEGER NOT NULL,                        -- the delivery's attempt number
    sent_at  TEXT    NOT NULL,                        -- UTC
    PRIMARY KEY (plugin, seq)
) WITHOUT ROWID;


-- == The source (file identity, oversized events) ==



-- == Plugins' retries and errors ==

-- The last delivery error of each plugin (a nack's, a timeout's, a term's), with its event and
-- attempt: "event 42 (attempt 3): <error>". Kept when the event later succeeds, until another
-- delivery error replaces it.
ALTER TABLE plugins ADD COLUMN last_delivery_error TEXT;



-- == Secrets and isolation ==


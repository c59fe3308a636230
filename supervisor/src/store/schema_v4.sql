-- sgevents state database, schema version 4: every fault kept in check. Documented in
-- docs/STATE.md: keep both in step.

-- == Processes and deliveries (the daemon's restart after a crash) ==

-- The plugin's process group and its leader's start time (clock ticks after boot, field 22 of
-- /proc/PID/stat), so that a daemon restarted after a crash kills a plugin that outlived it, and
-- never a process that merely reuses the pid.
ALTER TABLE plugins ADD COLUMN pgid INTEGER;
ALTER TABLE plugins ADD COLUMN pid_start_ticks INTEGER;
-- The machine's boot (/proc/sys/kernel/random/boot_id) when the daemon last started: after a
-- reboot no process of before survives, and start times are counted from another boot.
ALTER TABLE daemon ADD COLUMN boot_id TEXT;

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

-- Events skipped because they exceed `[source] max_event_bytes` (both kinds), in all.
ALTER TABLE source_state ADD COLUMN oversized INTEGER NOT NULL DEFAULT 0;
-- The jsonl source's file as last read: its device and inode, and a hex FNV-1a 64 fingerprint of
-- its first line (at most its first 4 KiB), so that a replaced, rewritten or shrunk file is read
-- again from its start instead of from an offset that means nothing in it. NULL for ShotGrid.
ALTER TABLE source_state ADD COLUMN file_dev INTEGER;
ALTER TABLE source_state ADD COLUMN file_ino INTEGER;
ALTER TABLE source_state ADD COLUMN file_head TEXT;



-- == Plugins' retries and errors ==

-- The last delivery error of each plugin (a nack's, a timeout's, a term's), with its event and
-- attempt: "event 42 (attempt 3): <error>". Kept when the event later succeeds, until another
-- delivery error replaces it.
ALTER TABLE plugins ADD COLUMN last_delivery_error TEXT;
-- When each failed delivery of an event ended: a JSON array, oldest first, of
-- {"attempt": N, "at": "<UTC>"}, where `at` is when the daemon recorded that attempt's failure
-- (its nack, timeout or crash: when the retry was scheduled; its last one: when it failed for
-- good). Kept on the waiting retry, carried to the failed event, and extended when an operator's
-- retry of a failed event fails again. NULL on rows written before schema 4. `sgevents failed show`
-- prints it.
ALTER TABLE retries ADD COLUMN attempt_times TEXT;
ALTER TABLE failed_events ADD COLUMN attempt_times TEXT;



-- == Secrets and isolation ==



-- == The HTTP listener ==

-- The address the daemon's HTTP listener bound (`[http] listen`, with the port the system chose
-- for port 0): "127.0.0.1:9750". NULL while the listener is off and once the daemon stopped.
ALTER TABLE daemon ADD COLUMN http_listen TEXT;

-- sgevents state database, schema version 3: operator control, timings, migration from
-- shotgunEvents. Documented in docs/STATE.md: keep both in step.

-- `sgevents failed retry` sets this; the plugin gets the event again, then the row goes (ack) or
-- stays with the new error (term, or nack max_attempts times), this column cleared.
ALTER TABLE failed_events ADD COLUMN retry_requested_at TEXT;

-- A summary of the plugin's delivery durations since the daemon started, JSON:
-- {"count": n, "mean_ms": x, "p50_ms": x, "p95_ms": x, "max_ms": x}
ALTER TABLE plugins ADD COLUMN timings TEXT;

-- Where a plugin migrated from shotgunEvents resumes (`sgevents migrate --id-file`): events with an
-- id at or below `last_event_id` were processed by the incumbent and are skipped, except the ids in
-- `backlog` (JSON list), which it was still waiting for.
CREATE TABLE plugin_resume (
    plugin        TEXT    PRIMARY KEY,
    last_event_id INTEGER NOT NULL,
    backlog       TEXT    NOT NULL DEFAULT '[]',
    migrated_at   TEXT    NOT NULL
);

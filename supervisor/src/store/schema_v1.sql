-- sgevents state database, schema version 1. Documented in docs/STATE.md: keep both in step.

-- The journal: every event the source read, in the order it was journaled.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT, -- local order; never reused, even after pruning
    event_id       INTEGER NOT NULL UNIQUE,           -- the ShotGrid EventLogEntry id
    event_type     TEXT    NOT NULL,
    attribute_name TEXT,
    entity_type    TEXT,                              -- entity.type, or meta.entity_type when entity is null
    project_id     INTEGER,
    is_transient   INTEGER NOT NULL DEFAULT 0,        -- meta.is_transient
    created_at     TEXT,                              -- as the site wrote it
    journaled_at   TEXT    NOT NULL,                  -- when this daemon journaled it (UTC)
    body           TEXT    NOT NULL                   -- the whole event, one line of JSON
);

-- One row per plugin the daemon has ever run.
CREATE TABLE plugins (
    name            TEXT PRIMARY KEY,
    state           TEXT NOT NULL CHECK (state IN ('starting', 'running', 'backoff', 'disabled', 'stopped')),
    cursor          INTEGER NOT NULL DEFAULT 0,       -- every event with seq <= cursor is finished
    last_event_id   INTEGER,                          -- event_id of the event at the cursor
    restarts        INTEGER NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    last_error      TEXT,
    pid             INTEGER,
    subscriptions   TEXT,                             -- JSON, as registered
    fingerprint     TEXT,                             -- of its command, env, config and executable
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

-- Events a plugin gave up on: term, or nack max_attempts times.
CREATE TABLE failed_events (
    plugin     TEXT    NOT NULL,
    event_id   INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT    NOT NULL,
    failed_at  TEXT    NOT NULL,
    PRIMARY KEY (plugin, event_id)
);

-- Events waiting for a redelivery after a nack.
CREATE TABLE retries (
    plugin     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    event_id   INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,                      -- deliveries so far
    next_at    TEXT,                                  -- not before this time (UTC)
    last_error TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (plugin, seq)
);

-- Where the source is; one row.
CREATE TABLE source_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    kind          TEXT    NOT NULL,
    location      TEXT,
    position      INTEGER NOT NULL DEFAULT 0,         -- jsonl: byte offset of the next line
    line          INTEGER NOT NULL DEFAULT 0,         -- jsonl: lines read
    last_event_id INTEGER,                            -- newest event id journaled
    malformed     INTEGER NOT NULL DEFAULT 0,
    skipped       INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    updated_at    TEXT    NOT NULL
);

-- The daemon's last start and stop; one row.
CREATE TABLE daemon (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    pid        INTEGER,
    started_at TEXT,
    stopped_at TEXT,
    version    TEXT
);

-- How far behind is each plugin.
CREATE VIEW plugin_lag AS
SELECT p.name,
       p.state,
       p.cursor,
       p.last_event_id,
       (SELECT COALESCE(MAX(seq), 0) FROM events) AS head,
       (SELECT count(*) FROM events e WHERE e.seq > p.cursor) AS lag,
       (SELECT count(*) FROM retries r WHERE r.plugin = p.name) AS retries_pending,
       (SELECT count(*) FROM failed_events f WHERE f.plugin = p.name) AS failed
FROM plugins p;

-- What is pending for each plugin: the journaled events after its cursor (before filtering by its
-- subscriptions), with the retry state of those waiting for a redelivery.
CREATE VIEW pending_events AS
SELECT p.name AS plugin, e.seq, e.event_id, e.event_type, e.attribute_name, e.created_at,
       r.attempts, r.next_at, r.last_error
FROM plugins p
JOIN events e ON e.seq > p.cursor
LEFT JOIN retries r ON r.plugin = p.name AND r.seq = e.seq;

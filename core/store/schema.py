"""The SQLite schema of an event log, and the pragmas every connection uses.

Events are stored as their exact signed bytes, packed: the columns (plan,
device, seq, hlc, type) are read from those bytes on the way in, and `data`
holds only the rest (prev, body, signature); `core.store.rows` splices the
signed bytes back together on read, byte for byte. Plans, devices and type
tags get small integer numbers so the per-event overhead stays small (see
docs/performance.md, bytes per event).

There is no time index: a device's clock only moves forward, so within a
chain the HLC grows with seq and time travel finds "every event up to time
T" as a seq prefix of each chain, by binary search on the chain's own
(plan, device, seq) key (`core.store.time_travel`). A chain whose clock did
not grow (another implementation, a broken device) is listed in
`unordered_chains` and read whole instead.

`rx` (the rowid) is this replica's receive order: the cursor for "what came
in since". UPDATE and DELETE on `events` and `evidence` abort: the log is
append-only; only derived tables (checkpoints, meta) change.
"""

SCHEMA_VERSION = 2

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    plan_no INTEGER PRIMARY KEY,
    plan_id BLOB NOT NULL UNIQUE CHECK (length(plan_id) = 16)
);
CREATE TABLE IF NOT EXISTS devices (
    device_no  INTEGER PRIMARY KEY,
    device_key BLOB NOT NULL UNIQUE CHECK (length(device_key) = 32)
);
CREATE TABLE IF NOT EXISTS types (
    type_no INTEGER PRIMARY KEY,
    type    TEXT NOT NULL UNIQUE
);
-- type_no NULL: `data` is the whole signed event (see core.store.rows).
-- Per-plan receive order needs no index of its own: rx is the rowid.
CREATE TABLE IF NOT EXISTS events (
    rx        INTEGER PRIMARY KEY,
    plan_no   INTEGER NOT NULL REFERENCES plans(plan_no),
    device_no INTEGER NOT NULL REFERENCES devices(device_no),
    seq       INTEGER NOT NULL CHECK (seq >= 1),
    hlc       INTEGER NOT NULL,
    type_no   INTEGER REFERENCES types(type_no),
    data      BLOB NOT NULL,
    UNIQUE (plan_no, device_no, seq)
);
-- Chains whose HLC does not strictly grow with seq (see above).
CREATE TABLE IF NOT EXISTS unordered_chains (
    plan_no   INTEGER NOT NULL REFERENCES plans(plan_no),
    device_no INTEGER NOT NULL REFERENCES devices(device_no),
    PRIMARY KEY (plan_no, device_no)
);

-- Events kept as evidence but not applied: forks (a second, different event
-- for a (plan, device, seq) the log already has, or a broken prev link) and
-- events that arrived for a frozen chain.
CREATE TABLE IF NOT EXISTS evidence (
    id        INTEGER PRIMARY KEY,
    plan_no   INTEGER NOT NULL REFERENCES plans(plan_no),
    device_no INTEGER NOT NULL REFERENCES devices(device_no),
    seq       INTEGER NOT NULL,
    reason    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    raw       BLOB NOT NULL,
    received  INTEGER NOT NULL,
    UNIQUE (plan_no, device_no, seq, raw)
);
CREATE TABLE IF NOT EXISTS frozen_chains (
    plan_no   INTEGER NOT NULL REFERENCES plans(plan_no),
    device_no INTEGER NOT NULL REFERENCES devices(device_no),
    at_seq    INTEGER NOT NULL,
    reason    TEXT NOT NULL,
    since     INTEGER NOT NULL,
    PRIMARY KEY (plan_no, device_no)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    plan_no  INTEGER PRIMARY KEY REFERENCES plans(plan_no),
    fold     TEXT NOT NULL,
    upto_rx  INTEGER NOT NULL,
    events   INTEGER NOT NULL,
    vector   BLOB NOT NULL,
    state    BLOB NOT NULL
);

-- Time-travel checkpoints (a cache, derived): the pruned fold of the plan's
-- first `events` events in time-line order (hlc, author, seq), the last of
-- which is (hlc, author, seq). Deleted when an event older than them arrives.
CREATE TABLE IF NOT EXISTS timeline_checkpoints (
    plan_no  INTEGER NOT NULL REFERENCES plans(plan_no),
    events   INTEGER NOT NULL,
    hlc      INTEGER NOT NULL,
    author   BLOB NOT NULL,
    seq      INTEGER NOT NULL,
    fold     TEXT NOT NULL,
    state    BLOB NOT NULL,
    PRIMARY KEY (plan_no, events)
);
CREATE INDEX IF NOT EXISTS timeline_by_key
    ON timeline_checkpoints(plan_no, fold, hlc, author, seq);

-- A cache (derived, droppable; core.store.id_index): the first 8 bytes of
-- each event's id, for finding events by id prefix without hashing the log.
CREATE TABLE IF NOT EXISTS event_ids (
    prefix INTEGER NOT NULL,
    rx     INTEGER NOT NULL,
    PRIMARY KEY (prefix, rx)
) WITHOUT ROWID;

-- Sync bookkeeping of a client (core.replication.client): per server and plan, the
-- server's receive position this replica holds everything up to (valid
-- within one server epoch), and the server's acks of this device's events
-- (seq ranges, with the server's receive time).
CREATE TABLE IF NOT EXISTS sync_cursors (
    server_id BLOB NOT NULL,
    plan_id   BLOB NOT NULL,
    epoch     BLOB NOT NULL,
    cursor    INTEGER NOT NULL,
    PRIMARY KEY (server_id, plan_id)
);
CREATE TABLE IF NOT EXISTS sync_acks (
    server_id   BLOB NOT NULL,
    plan_id     BLOB NOT NULL,
    device_key  BLOB NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_acks_by_plan ON sync_acks (plan_id, device_key, last_seq);
-- A server's revocation cut-offs (core.replication.hub): the last seq of each of a
-- revoked device's chains the server held when the revocation arrived.
CREATE TABLE IF NOT EXISTS revocation_cutoffs (
    device_key BLOB NOT NULL,
    plan_id    BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (device_key, plan_id)
);

CREATE TRIGGER IF NOT EXISTS events_append_only_u BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_d BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS evidence_append_only_u BEFORE UPDATE ON evidence
BEGIN SELECT RAISE(ABORT, 'evidence is append-only'); END;
CREATE TRIGGER IF NOT EXISTS evidence_append_only_d BEFORE DELETE ON evidence
BEGIN SELECT RAISE(ABORT, 'evidence is append-only'); END;
"""

-- Alerting: rules, where each rule's evaluation stands, what it fired, and
-- whether the notifications arrived. Same rules as 0001: idempotent DDL, and
-- ReplacingMergeTree wherever a row is updated, so an update is an insert of a
-- newer version and readers use FINAL.
--
-- Versions are `version UInt64`: the writer's wall clock in nanoseconds, made
-- strictly increasing within a process (tokentrail.api.alerts.rules.next_version).
-- It is never the evaluation clock, which tests and back-fills set freely.

-- One row per rule; an edit inserts the whole rule again with a newer version.
-- `definition` is the rule as validated by the API (JSON), channel secrets
-- included because signing needs them in clear. `deleted` is the engine's
-- is_deleted column: FINAL hides a rule whose newest row is a deletion.
-- `enabled` is duplicated out of the definition so the evaluator filters on it.
CREATE TABLE IF NOT EXISTS alert_rules
(
    project_id LowCardinality(String),
    rule_id String,
    name String,
    enabled UInt8,
    definition String CODEC(ZSTD(1)),
    created_ns Int64,
    updated_ns Int64,
    version UInt64,
    deleted UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, deleted)
ORDER BY (project_id, rule_id);

-- Where each rule's state machine stands: ok or firing, since when, the firing
-- event it belongs to and when it last notified. Written only on a transition
-- or a reminder, one row per rule after merges. Keeping it in the store rather
-- than in memory is what stops a restarted evaluator from notifying again.
CREATE TABLE IF NOT EXISTS alert_state
(
    project_id LowCardinality(String),
    rule_id String,
    state LowCardinality(String),
    since_ns Int64,
    event_id String,
    notified_ns Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, rule_id);

-- Alert history: one row per notification-worthy event (fired, reminded,
-- resolved). Rows are never updated; ReplacingMergeTree with the event id in
-- the key only makes a re-sent insert collapse. Sorted by project and time, the
-- order of the list API; `payload` is the JSON body that was sent, with the
-- numbers that fired it and the link.
CREATE TABLE IF NOT EXISTS alert_events
(
    project_id LowCardinality(String),
    Timestamp DateTime64(9),
    event_id String,
    rule_id String,
    state LowCardinality(String),
    payload String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (project_id, Timestamp, event_id);

-- The outcome of delivering one event to one channel of its rule, after
-- retries: delivered or failed, attempts made, last HTTP status and error.
-- Keyed by event and channel index so a later re-delivery replaces the row.
-- `target` is the URL without path or query, which may hold tokens.
CREATE TABLE IF NOT EXISTS alert_deliveries
(
    project_id LowCardinality(String),
    event_id String,
    channel UInt16,
    channel_type LowCardinality(String),
    target String,
    status LowCardinality(String),
    attempts UInt16,
    http_status UInt16,
    error String,
    finished_ns Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, event_id, channel);

-- OTLP log records, and the LLM message content derived from them.
--
-- The official OTel GenAI instrumentations can send prompts and completions as
-- log records (events) instead of span attributes; those records carry the
-- trace and span id of their LLM call. Same rules as 0001: idempotent DDL,
-- ReplacingMergeTree so a re-sent batch never counts twice, readers use FINAL.

-- Every log record, lossless, in the OpenTelemetry Collector ClickHouse
-- exporter's `otel_logs` column layout (plus project_id, ObservedTimestamp and
-- ingested_at) so Grafana's log view reads it. Timestamp is the record's time,
-- else its observed time, as the exporter stores it.
--
-- A log record has no id of its own, so the sorting key must contain the whole
-- record for a re-sent one to collapse into the first: project, service and
-- time (the order of every log query, and the primary index), then a hash of
-- every other column. Two records equal in every field are indistinguishable
-- from a retry and are kept once; with nanosecond timestamps that takes two
-- identical records in the same nanosecond. Partitioned by day like `spans`;
-- the bloom filter serves the by-trace lookups.
CREATE TABLE IF NOT EXISTS logs
(
    project_id LowCardinality(String),
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    ObservedTimestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    ingested_at DateTime64(6) DEFAULT now64(6),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (project_id, ServiceName, TimestampTime)
ORDER BY (
    project_id, ServiceName, TimestampTime, Timestamp,
    sipHash64(
        ObservedTimestamp, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, Body,
        ResourceSchemaUrl, ResourceAttributes, ScopeSchemaUrl, ScopeName, ScopeVersion,
        ScopeAttributes, LogAttributes, EventName
    )
);

-- Prompt and completion of an LLM call, derived from its span's GenAI log
-- records; the trace detail shows them when the call's own row has none. One
-- row per span: `records` counts the distinct log records it was derived from
-- and is the version, so a row computed from more of the span's records always
-- wins over one computed from fewer, whatever order two collectors write them in.
CREATE TABLE IF NOT EXISTS llm_call_content
(
    project_id LowCardinality(String),
    trace_id String,
    span_id String,
    prompt String CODEC(ZSTD(3)),
    completion String CODEC(ZSTD(3)),
    records UInt32,
    ingested_at DateTime64(6) DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(records)
ORDER BY (project_id, trace_id, span_id);

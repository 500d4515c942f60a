-- tokentrail initial schema. One copy of the SQL for embedded chDB and for a
-- ClickHouse server. Statements are separated by lines holding only `;`-ended
-- statements; each must be idempotent (IF NOT EXISTS) so a re-run is harmless.
--
-- Retries must never double count. Every fact table is a ReplacingMergeTree
-- whose sorting key ends in the natural id of the row (trace + span, or score
-- id) and whose version is `ingested_at`: a re-sent span collapses into one row,
-- and a row re-written with late-resolved context (feature inherited from a
-- parent that arrived later) replaces the older version. Readers use FINAL.

-- Every span, lossless, in the OpenTelemetry Collector ClickHouse exporter's
-- `otel_traces` column layout (plus project_id) so Grafana's trace view reads it.
-- Partitioned by day: retention drops whole days and time-bounded queries prune
-- partitions. Sorted by project then time, the order of every list query; the
-- bloom filter serves the by-trace-id lookup of the trace detail view.
CREATE TABLE IF NOT EXISTS spans
(
    project_id LowCardinality(String),
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ingested_at DateTime64(6) DEFAULT now64(6),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(Timestamp)
ORDER BY (project_id, toDateTime(Timestamp), TraceId, SpanId);

-- One row per LLM operation, normalized from whichever convention sent it.
-- Monthly partitions: far fewer rows than spans. Sorted by project and time
-- (every report is a time range of one project), then the span's identity for
-- de-duplication; the bloom filter serves trace detail and context resolution. Feature/user/session are not in the key because they may be
-- re-resolved after a late parent span arrives, which re-inserts the row.
CREATE TABLE IF NOT EXISTS llm_calls
(
    project_id LowCardinality(String),
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    trace_id String,
    span_id String,
    parent_span_id String,
    service LowCardinality(String),
    environment LowCardinality(String),
    feature LowCardinality(String),
    user_id String,
    session_id String,
    provider LowCardinality(String),
    request_model LowCardinality(String),
    response_model LowCardinality(String),
    operation LowCardinality(String),
    input_tokens UInt64,
    output_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    -- Exact money: 12 decimals hold per-token prices of fractions of a cent per
    -- million tokens without rounding; sums widen to Decimal(38, 12).
    input_cost_usd Decimal(38, 12),
    output_cost_usd Decimal(38, 12),
    total_cost_usd Decimal(38, 12),
    price_status LowCardinality(String),
    duration_ns UInt64,
    time_to_first_token_s Nullable(Float64),
    status_code LowCardinality(String),
    error_type LowCardinality(String),
    finish_reasons Array(String),
    response_id String,
    prompt String CODEC(ZSTD(3)),
    completion String CODEC(ZSTD(3)),
    sample_weight Float64 DEFAULT 1,
    convention LowCardinality(String),
    ingested_at DateTime64(6) DEFAULT now64(6),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (project_id, toDateTime(Timestamp), trace_id, span_id);

-- Quality scores bound to a trace and optionally a span. Sorted by trace so a
-- trace's scores are one range read; score_id is deterministic for scores that
-- arrive inside spans, so a re-sent batch collapses.
CREATE TABLE IF NOT EXISTS scores
(
    project_id LowCardinality(String),
    Timestamp DateTime64(9),
    score_id String,
    trace_id String,
    span_id String,
    name LowCardinality(String),
    data_type LowCardinality(String),
    value Float64,
    string_value String,
    source LowCardinality(String),
    comment String,
    feature LowCardinality(String),
    ingested_at DateTime64(6) DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (project_id, trace_id, score_id);

-- Model prices in USD per million tokens. project_id '' holds the shipped table;
-- a project's own rows override it. Small: no partitioning.
CREATE TABLE IF NOT EXISTS model_prices
(
    project_id LowCardinality(String),
    provider LowCardinality(String),
    model String,
    effective_from Date,
    match_pattern String,
    input_per_mtok Decimal(38, 12),
    output_per_mtok Decimal(38, 12),
    cache_read_per_mtok Nullable(Decimal(38, 12)),
    cache_write_per_mtok Nullable(Decimal(38, 12)),
    reasoning_per_mtok Nullable(Decimal(38, 12)),
    source LowCardinality(String),
    updated_at DateTime64(6) DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (project_id, provider, model, effective_from);

-- API keys, stored only as SHA-256 hashes. Small: no partitioning.
CREATE TABLE IF NOT EXISTS api_keys
(
    key_sha256 String,
    project_id LowCardinality(String),
    name String,
    created_at DateTime64(6) DEFAULT now64(6),
    revoked UInt8 DEFAULT 0,
    updated_at DateTime64(6) DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY key_sha256;

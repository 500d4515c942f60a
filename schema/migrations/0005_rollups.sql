-- Rollups: per project, feature, service, environment, model and minute/hour,
-- so reports never scan raw rows for whole buckets. They must never count a
-- call twice, although `llm_calls` and `scores` receive every call again and
-- again: a retried batch re-inserts identical rows, and the collector re-writes
-- stored rows when a late parent resolves the feature, when a call turns out to
-- repeat another, and when prices are recomputed. A materialized view on
-- `llm_calls` would count each of those inserts, so nothing here reads inserts
-- into the raw tables. Instead:
--
-- * `llm_call_facts` / `score_facts` (views over FINAL) say what one stored row
--   contributes to the rollups: the one definition of every measure. The
--   writer settles from them, the backfill below reads them, and so do reports
--   asked to answer from raw rows only (tests, benchmarks).
-- * After writing raw rows, the writer (collector/rollup_feed.py) inserts into
--   `*_changes` (Null engine: nothing is stored) the difference between the
--   facts of the rows it wrote and the `*_ledger`: the facts the rollups
--   already hold. Identical facts cancel (a retry changes nothing); a re-written
--   row yields the old facts with sign -1 and the new with +1; a row that
--   became a duplicate has no facts any more and yields its old ones with -1.
-- * Materialized views fan each changes block out to the ledger and to the
--   rollups in one INSERT. Because the ledger and the rollups move together,
--   a batch that failed half-way (raw rows stored, rollups not) is settled by
--   its retry, and a later write or a reconcile heals any drift. Reports read
--   whole buckets from the rollups and a window's ragged edges from the ledger.
--
-- Sums carry the sign, so a correction subtracts exactly what was added:
-- SimpleAggregateFunction(sum) for numbers (Decimal for money), sumMap for
-- counts by key. Latency is a signed log-bucket histogram, not a quantile
-- state: a quantile state (t-digest, reservoir) cannot take a value back out,
-- a histogram can, and p50/p95 are read from it.

-- What a stored call contributes. Measures are weighted by sample_weight (a
-- sampled call stands for 1/rate calls); money is multiplied by a Decimal
-- weight so it stays exact. `stored_calls` counts rows unweighted: a bucket
-- whose calls were all retracted has 0 and is skipped by readers.
-- `latency` maps a bucket's representative duration in ns to a count: 16
-- buckets per doubling (4.4 % wide), represented by their geometric middle, so
-- a percentile read from it is within 2.2 % of the true value. Latency and
-- unpriced model counts are unweighted, as the raw report had them.
CREATE VIEW IF NOT EXISTS llm_call_facts AS
SELECT
    project_id,
    Timestamp,
    trace_id,
    span_id,
    service,
    environment,
    feature,
    user_id,
    request_model,
    response_model,
    toInt64(1) AS stored_calls,
    toFloat64(sample_weight) AS calls,
    sample_weight * (status_code = 'Error') AS errors,
    input_tokens * sample_weight AS tokens_in,
    output_tokens * sample_weight AS tokens_out,
    cache_read_tokens * sample_weight AS tokens_cache_read,
    cache_write_tokens * sample_weight AS tokens_cache_write,
    reasoning_tokens * sample_weight AS tokens_reasoning,
    total_cost_usd * toDecimal64(sample_weight, 6) AS cost,
    total_cost_usd * toDecimal64(sample_weight, 6) * (price_status IN ('priced', 'provided'))
        AS priced_cost,
    sample_weight * (price_status IN ('priced', 'provided')) AS priced_calls,
    sample_weight * (price_status = 'unpriced') AS unpriced_calls,
    -- Always one entry, counting 0 for priced calls: sumMap drops zero sums.
    -- CAST, not toInt64: a comparison on a LowCardinality column stays one.
    ([toString(if(response_model != '', response_model, request_model))],
     [CAST(price_status = 'unpriced' AS Int64)]) AS unpriced_models,
    ([if(duration_ns = 0, toUInt64(0),
         toUInt64(round(exp2((floor(log2(duration_ns) * 16) + 0.5) / 16))))],
     [toInt64(1)]) AS latency
FROM llm_calls FINAL
WHERE duplicate_of = '';

-- What a stored score contributes: numeric and boolean values sum to a mean,
-- categorical ones count by label.
CREATE VIEW IF NOT EXISTS score_facts AS
SELECT
    project_id,
    Timestamp,
    trace_id,
    score_id,
    feature,
    name,
    data_type,
    if(data_type = 'categorical', string_value, '') AS label,
    toInt64(1) AS scores,
    if(data_type = 'categorical', 0, value) AS value_sum
FROM scores FINAL;

-- Facts with a sign, on their way to the ledger and the rollups. Same columns
-- as the facts views (derived from them, so they cannot drift apart) plus sign.
CREATE TABLE IF NOT EXISTS llm_call_changes
ENGINE = Null
EMPTY AS SELECT *, toInt32(0) AS sign FROM llm_call_facts;

CREATE TABLE IF NOT EXISTS score_changes
ENGINE = Null
EMPTY AS SELECT *, toInt32(0) AS sign FROM score_facts;

-- The facts the rollups hold, per stored row: sign sums per identical facts
-- (facts_hash), and a pair that cancels to 0 is dropped on merge. Reports read
-- a window's ragged edges from here: sorted by time (raw scores are sorted by
-- trace), no FINAL needed. The bloom filters serve the writer's look-ups by id.
-- Kept as long as the raw rows: a row re-written after its ledger entry were
-- gone would be counted again.
CREATE TABLE IF NOT EXISTS llm_call_ledger
ENGINE = SummingMergeTree(sign)
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (project_id, toDateTime(Timestamp), trace_id, span_id, facts_hash)
EMPTY AS SELECT *, toInt32(0) AS sign, toUInt64(0) AS facts_hash FROM llm_call_facts;

ALTER TABLE llm_call_ledger
    ADD INDEX IF NOT EXISTS idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1;

CREATE TABLE IF NOT EXISTS score_ledger
ENGINE = SummingMergeTree(sign)
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (project_id, toDateTime(Timestamp), trace_id, score_id, facts_hash)
EMPTY AS SELECT *, toInt32(0) AS sign, toUInt64(0) AS facts_hash FROM score_facts;

ALTER TABLE score_ledger
    ADD INDEX IF NOT EXISTS idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1;

-- Call rollups. Both models are kept: a report's model filter matches either.
-- Minute buckets serve alerts and short windows and expire after 15 days
-- (api/rollup_plan.py reads them only well inside that); hour buckets are
-- kept as long as the table. Monthly partitions like the raw table, so a
-- backfill over years stays within the partitions-per-insert limit.
CREATE TABLE IF NOT EXISTS call_rollup_minute
(
    project_id LowCardinality(String),
    bucket DateTime,
    service LowCardinality(String),
    environment LowCardinality(String),
    feature LowCardinality(String),
    request_model LowCardinality(String),
    response_model LowCardinality(String),
    stored_calls SimpleAggregateFunction(sum, Int64),
    calls SimpleAggregateFunction(sum, Float64),
    errors SimpleAggregateFunction(sum, Float64),
    tokens_in SimpleAggregateFunction(sum, Float64),
    tokens_out SimpleAggregateFunction(sum, Float64),
    tokens_cache_read SimpleAggregateFunction(sum, Float64),
    tokens_cache_write SimpleAggregateFunction(sum, Float64),
    tokens_reasoning SimpleAggregateFunction(sum, Float64),
    cost SimpleAggregateFunction(sum, Decimal(38, 18)),
    priced_cost SimpleAggregateFunction(sum, Decimal(38, 18)),
    priced_calls SimpleAggregateFunction(sum, Float64),
    unpriced_calls SimpleAggregateFunction(sum, Float64),
    unpriced_models SimpleAggregateFunction(sumMap, Tuple(Array(String), Array(Int64))),
    latency SimpleAggregateFunction(sumMap, Tuple(Array(UInt64), Array(Int64)))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (project_id, feature, bucket, service, environment, request_model, response_model)
TTL bucket + INTERVAL 15 DAY;

CREATE TABLE IF NOT EXISTS call_rollup_hour AS call_rollup_minute
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (project_id, feature, bucket, service, environment, request_model, response_model);

-- Spend per user, for "top users": hourly, so a window's ragged edges read at
-- most an hour of raw rows each. At most as many rows as calls, usually far
-- fewer (a user calls a feature many times an hour).
CREATE TABLE IF NOT EXISTS user_rollup_hour
(
    project_id LowCardinality(String),
    bucket DateTime,
    feature LowCardinality(String),
    user_id String,
    stored_calls SimpleAggregateFunction(sum, Int64),
    calls SimpleAggregateFunction(sum, Float64),
    errors SimpleAggregateFunction(sum, Float64),
    tokens_in SimpleAggregateFunction(sum, Float64),
    tokens_out SimpleAggregateFunction(sum, Float64),
    cost SimpleAggregateFunction(sum, Decimal(38, 18))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (project_id, feature, bucket, user_id);

-- Score rollups, by feature, name, type and (categorical) label.
CREATE TABLE IF NOT EXISTS score_rollup_minute
(
    project_id LowCardinality(String),
    bucket DateTime,
    feature LowCardinality(String),
    name LowCardinality(String),
    data_type LowCardinality(String),
    label String,
    scores SimpleAggregateFunction(sum, Int64),
    value_sum SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (project_id, feature, name, bucket, data_type, label)
TTL bucket + INTERVAL 15 DAY;

CREATE TABLE IF NOT EXISTS score_rollup_hour AS score_rollup_minute
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (project_id, feature, name, bucket, data_type, label);

-- The fan-out. The hourly rollups take the minute rows as they are inserted
-- (an AggregatingMergeTree sums them on merge), so each sum is written once.
CREATE MATERIALIZED VIEW IF NOT EXISTS llm_call_ledger_mv TO llm_call_ledger AS
SELECT *, sipHash64(* EXCEPT sign) AS facts_hash FROM llm_call_changes;

CREATE MATERIALIZED VIEW IF NOT EXISTS call_rollup_minute_mv TO call_rollup_minute AS
SELECT
    project_id,
    toStartOfMinute(Timestamp) AS bucket,
    service,
    environment,
    feature,
    request_model,
    response_model,
    sum(sign * stored_calls) AS stored_calls,
    sum(sign * calls) AS calls,
    sum(sign * errors) AS errors,
    sum(sign * tokens_in) AS tokens_in,
    sum(sign * tokens_out) AS tokens_out,
    sum(sign * tokens_cache_read) AS tokens_cache_read,
    sum(sign * tokens_cache_write) AS tokens_cache_write,
    sum(sign * tokens_reasoning) AS tokens_reasoning,
    sum(cost * sign) AS cost,
    sum(priced_cost * sign) AS priced_cost,
    sum(sign * priced_calls) AS priced_calls,
    sum(sign * unpriced_calls) AS unpriced_calls,
    sumMap(unpriced_models.1, arrayMap(n -> n * sign, unpriced_models.2)) AS unpriced_models,
    sumMap(latency.1, arrayMap(n -> n * sign, latency.2)) AS latency
FROM llm_call_changes
GROUP BY project_id, bucket, service, environment, feature, request_model, response_model;

CREATE MATERIALIZED VIEW IF NOT EXISTS call_rollup_hour_mv TO call_rollup_hour AS
SELECT toStartOfHour(bucket) AS bucket, * EXCEPT bucket FROM call_rollup_minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS user_rollup_hour_mv TO user_rollup_hour AS
SELECT
    project_id,
    toStartOfHour(Timestamp) AS bucket,
    feature,
    user_id,
    sum(sign * stored_calls) AS stored_calls,
    sum(sign * calls) AS calls,
    sum(sign * errors) AS errors,
    sum(sign * tokens_in) AS tokens_in,
    sum(sign * tokens_out) AS tokens_out,
    sum(cost * sign) AS cost
FROM llm_call_changes
GROUP BY project_id, bucket, feature, user_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS score_ledger_mv TO score_ledger AS
SELECT *, sipHash64(* EXCEPT sign) AS facts_hash FROM score_changes;

CREATE MATERIALIZED VIEW IF NOT EXISTS score_rollup_minute_mv TO score_rollup_minute AS
SELECT
    project_id,
    toStartOfMinute(Timestamp) AS bucket,
    feature,
    name,
    data_type,
    label,
    sum(sign * scores) AS scores,
    sum(sign * value_sum) AS value_sum
FROM score_changes
GROUP BY project_id, bucket, feature, name, data_type, label;

CREATE MATERIALIZED VIEW IF NOT EXISTS score_rollup_hour_mv TO score_rollup_hour AS
SELECT toStartOfHour(bucket) AS bucket, * EXCEPT bucket FROM score_rollup_minute;

-- Backfill: rows stored before this migration enter the rollups (and the
-- ledger) once. Guarded by an empty ledger, so re-running a migration that
-- failed after this point cannot add them twice.
INSERT INTO llm_call_changes
SELECT *, toInt32(1) AS sign FROM llm_call_facts
WHERE (SELECT count() FROM llm_call_ledger) = 0;

INSERT INTO score_changes
SELECT *, toInt32(1) AS sign FROM score_facts
WHERE (SELECT count() FROM score_ledger) = 0;

"""The SQL of drift: one pass per table computes both windows' statistics per group.

Each statement reads ``[start_ns, end_ns)`` once and splits it with
``is_current`` (``Timestamp >= split_ns``): index 0 is the baseline, 1 the
current window, as ``welchTTest`` and ``mannWhitneyUTest`` take their sample
index. ``-If`` combinators give each side's counts and moments in the same pass,
grouped by feature (and model), so the cost does not grow with the number of
features or metrics.

Rules shared with :mod:`tokentrail.api.queries`: ``FINAL`` on every table,
``duplicate_of = ''`` on calls, project and time bounds on every read, and
values bound server-side only. Optional filters are bound as "no filter"
values; the statement text never depends on the request.

``do_not_merge_across_partitions_select_final`` is not set, on purpose:
measured on 10M calls it gains nothing on ``llm_calls`` (time-ordered parts
barely overlap), and it is unsafe on ``scores``, where an API score re-posted
under the same id a month later lands in another partition and would count
twice.

Continuous values are per stored call, unweighted: under head sampling every
call of a process carries the same weight, so the stored calls are a uniform
random sample and their mean estimates the per-call mean without weights; a
weight of 4 is one observation, not four, and counting it four times would
shrink every p-value. Spend rate is a total, so its hourly sums are weighted.
"""

from __future__ import annotations

HOUR_NS = 3_600 * 10**9

# The model a call is grouped under: the response model when known, as priced.
# Without `by_model` every call of a feature is one group, labelled with the
# model filter ('' when none).
_GROUP_MODEL = (
    "if({by_model:Bool}, if(response_model != '', response_model, request_model), {model:String})"
)
_MODEL_FILTER = (
    "({model:String} = '' OR request_model = {model:String} OR response_model = {model:String})"
)
_IS_CURRENT = "Timestamp >= fromUnixTimestamp64Nano({split_ns:Int64})"
_CALLS_IN_SCOPE = f"""
    FROM llm_calls FINAL
    WHERE project_id = {{project_id:String}}
        AND Timestamp >= fromUnixTimestamp64Nano({{start_ns:Int64}})
        AND Timestamp < fromUnixTimestamp64Nano({{end_ns:Int64}})
        AND duplicate_of = ''
        AND ({{any_feature:Bool}} OR feature = {{feature:String}})
        AND {_MODEL_FILTER}
"""

# Per group: each side's call count, cost per priced call, tokens per call,
# hourly spend, errors and latency p95, with ClickHouse's tests. Welch for the
# means (a bill is calls times mean cost, so the mean is what matters, and Welch
# lets the variance move with it); Mann-Whitney for latency (heavy-tailed: a few
# timeouts would swamp a t-test's variance, ranks are immune to them).
#
# mannWhitneyUTest throws on an empty side, which would fail the whole statement
# for one sparse group: its state is finalized only where both sides have
# `min_samples` calls, which short-circuit evaluation of `if` guarantees (set
# here explicitly, in case a server profile turned it off).
#
# Spend rate compares spend per hour: `sumResample` sums the weighted cost of
# each hour since start_ns into one array per group in the same pass, an hour
# without calls summing to $0 as it must, and `welchTTest` runs over that array
# (baseline hours, then current ones). Both windows are whole hours, so no hour
# straddles the split. Spend is a total, so unlike the per-call values it is
# weighted.
CALL_STATS = f"""
SELECT
    feature,
    group_model AS model,
    countIf(NOT is_current) AS calls_b,
    countIf(is_current) AS calls_c,
    countIf(NOT is_current AND priced) AS priced_b,
    countIf(is_current AND priced) AS priced_c,
    avgIf(cost, NOT is_current AND priced) AS cost_mean_b,
    avgIf(cost, is_current AND priced) AS cost_mean_c,
    stddevSampIf(cost, NOT is_current AND priced) AS cost_sd_b,
    stddevSampIf(cost, is_current AND priced) AS cost_sd_c,
    tupleElement(welchTTestIf(cost, is_current, priced), 2) AS cost_p,
    avgIf(tokens, NOT is_current) AS tokens_mean_b,
    avgIf(tokens, is_current) AS tokens_mean_c,
    stddevSampIf(tokens, NOT is_current) AS tokens_sd_b,
    stddevSampIf(tokens, is_current) AS tokens_sd_c,
    tupleElement(welchTTest(tokens, is_current), 2) AS tokens_p,
    countIf(NOT is_current AND failed) AS errors_b,
    countIf(is_current AND failed) AS errors_c,
    quantileIf(0.95)(latency_ms, NOT is_current) AS latency_p95_b,
    quantileIf(0.95)(latency_ms, is_current) AS latency_p95_c,
    if(calls_b >= {{min_samples:UInt32}} AND calls_c >= {{min_samples:UInt32}},
       finalizeAggregation(mannWhitneyUTestState(latency_ms, is_current)),
       (nan, nan)) AS latency_test,
    tupleElement(latency_test, 1) AS latency_u,
    tupleElement(latency_test, 2) AS latency_p,
    sumResample(0, {{hours:UInt32}}, 1)(cost * sample_weight, hour) AS hourly_spend,
    arraySlice(hourly_spend, 1, {{baseline_hours:UInt32}}) AS spend_b,
    arraySlice(hourly_spend, {{baseline_hours:UInt32}} + 1) AS spend_c,
    length(spend_b) AS hours_b,
    length(spend_c) AS hours_c,
    arrayAvg(spend_b) AS spend_mean_b,
    arrayAvg(spend_c) AS spend_mean_c,
    arrayReduce('stddevSamp', spend_b) AS spend_sd_b,
    arrayReduce('stddevSamp', spend_c) AS spend_sd_c,
    tupleElement(arrayReduce('welchTTest', hourly_spend,
        arrayMap(h -> toUInt8(h >= {{baseline_hours:UInt32}}), range({{hours:UInt32}}))), 2)
        AS spend_p
FROM (
    SELECT
        feature,
        {_GROUP_MODEL} AS group_model,
        toFloat64(total_cost_usd) AS cost,
        sample_weight,
        intDiv(toUnixTimestamp64Nano(Timestamp) - {{start_ns:Int64}}, {HOUR_NS}) AS hour,
        price_status IN ('priced', 'provided') AS priced,
        toFloat64(input_tokens + output_tokens) AS tokens,
        duration_ns / 1e6 AS latency_ms,
        status_code = 'Error' AS failed,
        {_IS_CURRENT} AS is_current
    {_CALLS_IN_SCOPE}
)
GROUP BY feature, model
SETTINGS short_circuit_function_evaluation = 'enable'
"""

# Numeric and boolean scores (stored 1/0); categorical labels have no mean.
# A name is tested as a proportion when all its scores in the group are boolean.
_SCORES_IN_SCOPE = """
    FROM scores FINAL
    WHERE project_id = {project_id:String}
        AND Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})
        AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})
        AND data_type IN ('numeric', 'boolean')
        AND ({any_feature:Bool} OR feature = {feature:String})
"""
_SCORE_STATS = """
    countIf(data_type = 'boolean') = count() AS boolean,
    countIf(NOT is_current) AS n_b,
    countIf(is_current) AS n_c,
    countIf(NOT is_current AND value != 0) AS hits_b,
    countIf(is_current AND value != 0) AS hits_c,
    avgIf(value, NOT is_current) AS mean_b,
    avgIf(value, is_current) AS mean_c,
    stddevSampIf(value, NOT is_current) AS sd_b,
    stddevSampIf(value, is_current) AS sd_c,
    tupleElement(welchTTest(value, is_current), 2) AS p
"""

SCORE_STATS = f"""
SELECT feature, {{model:String}} AS model, name, {_SCORE_STATS}
FROM (
    SELECT feature, name, data_type, value, {_IS_CURRENT} AS is_current
    {_SCORES_IN_SCOPE}
)
GROUP BY feature, name
"""

# With a model scope a score belongs to the models its trace called, looked up
# among calls from `calls_from_ns` (a score may come days after its call). A
# trace that called two models counts its score under each.
SCORE_STATS_BY_MODEL = f"""
WITH
    scored AS (
        SELECT trace_id, feature, name, data_type, value, {_IS_CURRENT} AS is_current
        {_SCORES_IN_SCOPE}
    ),
    trace_models AS (
        SELECT DISTINCT trace_id, {_GROUP_MODEL} AS group_model
        FROM llm_calls FINAL
        WHERE project_id = {{project_id:String}}
            AND Timestamp >= fromUnixTimestamp64Nano({{calls_from_ns:Int64}})
            AND Timestamp < fromUnixTimestamp64Nano({{end_ns:Int64}})
            AND duplicate_of = ''
            AND {_MODEL_FILTER}
            AND trace_id IN (SELECT trace_id FROM scored)
    )
SELECT s.feature AS feature, m.group_model AS model, s.name AS name, {_SCORE_STATS}
FROM scored AS s
INNER JOIN trace_models AS m ON s.trace_id = m.trace_id
GROUP BY feature, model, name
"""

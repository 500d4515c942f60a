"""Report metrics over time: the one place that turns stored calls and scores into numbers.

Timeseries, alerts and any other reader ask for a metric by name
(:data:`CALL_METRICS` or ``score:<name>``), a scope and a window; this module
owns the SQL. Reports weight sampled calls by their sample weight and skip rows
that repeat another call (``duplicate_of``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokentrail.schema.store import Store

SCORE_PREFIX = "score:"
CALL_METRICS = (
    "cost",
    "calls",
    "tokens",
    "input_tokens",
    "output_tokens",
    "cost_per_call",
    "latency_p95",
    "error_rate",
)

_SCOPE = """
    AND ({service:String} = '' OR service = {service:String})
    AND ({any_feature:UInt8} OR feature = {feature:String})
    AND ({model:String} = '' OR request_model = {model:String} OR response_model = {model:String})
"""

_CALL_BUCKETS = f"""
SELECT
    toUnixTimestamp64Nano(toStartOfInterval(Timestamp, toIntervalSecond({{step_s:UInt32}}),
        fromUnixTimestamp64Nano({{origin_ns:Int64}}))) AS bucket_ns,
    -- Aliases are prefixed: an alias named like a column would shadow it.
    sum(sample_weight) AS m_calls,
    sumIf(sample_weight, status_code = 'Error') AS m_errors,
    sum((input_tokens + output_tokens) * sample_weight) AS m_tokens,
    sum(input_tokens * sample_weight) AS m_input_tokens,
    sum(output_tokens * sample_weight) AS m_output_tokens,
    sum(total_cost_usd * toDecimal64(sample_weight, 6)) AS m_cost,
    sumIf(total_cost_usd * toDecimal64(sample_weight, 6),
          price_status IN ('priced', 'provided')) AS m_priced_cost,
    sumIf(sample_weight, price_status IN ('priced', 'provided')) AS m_priced_calls,
    quantile(0.95)(duration_ns) AS m_latency_p95_ns
FROM llm_calls FINAL
WHERE project_id = {{project_id:String}}
    AND Timestamp >= fromUnixTimestamp64Nano({{start_ns:Int64}})
    AND Timestamp < fromUnixTimestamp64Nano({{end_ns:Int64}})
    AND duplicate_of = ''
    {_SCOPE}
GROUP BY bucket_ns
ORDER BY bucket_ns
"""

# Numeric and boolean scores only; a score's scope is its trace's calls'.
_SCORE_BUCKETS = """
SELECT
    toUnixTimestamp64Nano(toStartOfInterval(Timestamp, toIntervalSecond({step_s:UInt32}),
        fromUnixTimestamp64Nano({origin_ns:Int64}))) AS bucket_ns,
    avg(value) AS mean,
    count() AS samples
FROM scores FINAL
WHERE project_id = {project_id:String}
    AND Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})
    AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})
    AND name = {score:String} AND data_type != 'categorical'
    AND ({any_feature:UInt8} OR feature = {feature:String})
    AND (({service:String} = '' AND {model:String} = '') OR trace_id IN (
        SELECT trace_id FROM llm_calls FINAL
        WHERE project_id = {project_id:String} AND duplicate_of = ''
            AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})
            AND ({service:String} = '' OR service = {service:String})
            AND ({model:String} = '' OR request_model = {model:String}
                 OR response_model = {model:String})
    ))
GROUP BY bucket_ns
ORDER BY bucket_ns
"""


class UnknownMetric(ValueError):
    """The metric name is not one this module computes."""


@dataclass(frozen=True)
class Scope:
    """Which calls a metric covers; ``None`` means any (``""`` is the no-feature bucket)."""

    service: str = ""
    feature: str | None = None
    model: str = ""


@dataclass(frozen=True)
class Point:
    start_ns: int
    value: float | None  # None: nothing to measure (no calls, no priced calls, no scores)
    samples: float  # calls (weighted) or scores behind the value


def check_metric(metric: str) -> str:
    """Return ``metric`` if known, else raise :class:`UnknownMetric` naming the choices."""
    if metric in CALL_METRICS or (metric.startswith(SCORE_PREFIX) and metric[len(SCORE_PREFIX) :]):
        return metric
    raise UnknownMetric(
        f"unknown metric {metric!r}: use one of {', '.join(CALL_METRICS)} or score:<name>"
    )


def _ratio(numerator: Any, denominator: Any) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _call_value(metric: str, row: dict[str, Any]) -> float | None:
    if metric == "cost_per_call":
        return _ratio(row["m_priced_cost"], row["m_priced_calls"])
    if metric == "error_rate":
        return _ratio(row["m_errors"], row["m_calls"])
    if metric == "latency_p95":
        return float(row["m_latency_p95_ns"]) / 1e6 if row["m_calls"] else None
    return float(row[f"m_{metric}"])


def series(
    store: Store,
    project_id: str,
    metric: str,
    start_ns: int,
    end_ns: int,
    step_s: int,
    scope: Scope = Scope(),
    origin_ns: int = 0,
) -> list[Point]:
    """One point per ``step_s`` bucket that has data; buckets start at ``origin_ns + k·step``."""
    check_metric(metric)
    params = {
        "project_id": project_id,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "step_s": step_s,
        "origin_ns": origin_ns,
        "service": scope.service,
        "any_feature": int(scope.feature is None),
        "feature": scope.feature or "",
        "model": scope.model,
    }
    if metric.startswith(SCORE_PREFIX):
        rows = store.query(_SCORE_BUCKETS, {**params, "score": metric[len(SCORE_PREFIX) :]})
        return [Point(r["bucket_ns"], float(r["mean"]), r["samples"]) for r in rows.dicts()]
    return [
        Point(r["bucket_ns"], _call_value(metric, r), float(r["m_calls"]))
        for r in store.query(_CALL_BUCKETS, params).dicts()
    ]


def value(
    store: Store, project_id: str, metric: str, start_ns: int, end_ns: int, scope: Scope = Scope()
) -> Point:
    """The metric over the whole window ``[start_ns, end_ns)``."""
    step_s = max(1, -(-(end_ns - start_ns) // 10**9))
    points = series(store, project_id, metric, start_ns, end_ns, step_s, scope, origin_ns=start_ns)
    return points[0] if points else Point(start_ns, None, 0.0)

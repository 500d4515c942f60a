"""Report metrics over time: the one place that turns stored calls and scores into numbers.

Timeseries, alerts and any other reader ask for a metric by name
(:data:`CALL_METRICS` or ``score:<name>``), a scope and a window; this module
owns the SQL. Numbers come from the rollups, with the window's ragged edges
from per-row facts (``rollup_plan``), so they are the numbers the raw rows give.
Reports weight sampled calls by their sample weight and skip rows that repeat
another call (``duplicate_of``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokentrail.api.call_totals import CallTotals
from tokentrail.api.rollup_read import BUCKET_NS, CALLS, SCORES
from tokentrail.schema.store import Store

NS = 10**9
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

_BUCKET = (f"{BUCKET_NS} AS bucket_ns",)
_FEATURE = "({any_feature:UInt8} OR feature = {feature:String})"
_SERVICE_MODEL = """({service:String} = '' OR service = {service:String})
    AND ({model:String} = '' OR request_model = {model:String}
         OR response_model = {model:String})"""
_CALL_SCOPE = f"{_FEATURE} AND {_SERVICE_MODEL}"
_NUMERIC_SCORE = "name = {score:String} AND data_type != 'categorical'"

_CALL_BUCKETS = CALLS.query((), _BUCKET, _CALL_SCOPE, order_by="bucket_ns")
_SCORE_BUCKETS = SCORES.query((), _BUCKET, f"{_NUMERIC_SCORE} AND {_FEATURE}", order_by="bucket_ns")

# A score has no service or model of its own: it takes its trace's calls'. The
# score rollups do not know traces, so a scope naming either reads raw rows.
# Calls are looked up without a lower time bound: a score may come long after.
SCORES_OF_SCOPED_CALLS = f"""trace_id IN (
    SELECT trace_id FROM llm_call_facts
    WHERE project_id = {{project_id:String}}
        AND Timestamp < fromUnixTimestamp64Nano({{end_ns:Int64}})
        AND {_SERVICE_MODEL}
)"""
_SCOPED_SCORE_BUCKETS = SCORES.query(
    (),
    _BUCKET,
    f"{_NUMERIC_SCORE} AND {_FEATURE} AND {SCORES_OF_SCOPED_CALLS}",
    order_by="bucket_ns",
    rows_only=True,
)


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


def _call_value(metric: str, totals: CallTotals) -> float | None:
    if metric == "cost_per_call":
        per_call = totals.cost_per_call()
        return None if per_call is None else float(per_call)
    if metric == "error_rate":
        return totals.error_rate()
    if metric == "latency_p95":
        return totals.latency_ms(0.95)
    if metric == "cost":
        return float(totals.cost)
    if metric == "tokens":
        return totals.input_tokens + totals.output_tokens
    return float(getattr(totals, metric))  # calls, input_tokens, output_tokens


def _points(
    store: Store,
    project_id: str,
    metric: str,
    start_ns: int,
    end_ns: int,
    step_ns: int,
    origin_ns: int,
    scope: Scope,
    rollups: bool,
) -> list[Point]:
    params: dict[str, Any] = {
        "project_id": project_id,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "service": scope.service,
        "any_feature": int(scope.feature is None),
        "feature": scope.feature or "",
        "model": scope.model,
    }
    window = (start_ns, end_ns, step_ns, origin_ns)
    if metric.startswith(SCORE_PREFIX):
        params["score"] = metric[len(SCORE_PREFIX) :]
        scoped = bool(scope.service or scope.model)
        sql = _SCOPED_SCORE_BUCKETS if scoped else _SCORE_BUCKETS
        rows = SCORES.run(store, sql, params, *window, rollups=rollups).dicts()
        return [
            Point(r["bucket_ns"], r["value_sum"] / r["scores"], float(r["scores"])) for r in rows
        ]
    rows = CALLS.run(store, _CALL_BUCKETS, params, *window, rollups=rollups).dicts()
    return [
        Point(r["bucket_ns"], _call_value(metric, CallTotals.from_row(r)), float(r["calls"]))
        for r in rows
    ]


def series(
    store: Store,
    project_id: str,
    metric: str,
    start_ns: int,
    end_ns: int,
    step_s: int,
    scope: Scope = Scope(),
    origin_ns: int = 0,
    *,
    rollups: bool = True,
) -> list[Point]:
    """One point per ``step_s`` bucket that has data; buckets start at ``origin_ns + k·step``.

    ``rollups=False`` computes the same from raw rows only (a benchmark's baseline).
    """
    check_metric(metric)
    return _points(
        store, project_id, metric, start_ns, end_ns, step_s * NS, origin_ns, scope, rollups
    )


def value(
    store: Store,
    project_id: str,
    metric: str,
    start_ns: int,
    end_ns: int,
    scope: Scope = Scope(),
    *,
    rollups: bool = True,
) -> Point:
    """The metric over the whole window ``[start_ns, end_ns)``."""
    check_metric(metric)
    window = (start_ns, end_ns, end_ns - start_ns, start_ns)
    points = _points(store, project_id, metric, *window, scope, rollups)
    return points[0] if points else Point(start_ns, None, 0.0)

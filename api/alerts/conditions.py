"""Whether a rule's condition holds now, and the numbers that say so.

Every number comes from :mod:`tokentrail.api.metrics` (``value`` for one
window, ``series`` for a window and its baseline), so alerts and reports can
never disagree about what a feature spent.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from statistics import fmean, stdev

from tokentrail.api.alerts.models import Budget, Number, RuleScope, RuleSpec, Spike, Threshold
from tokentrail.api.durations import seconds
from tokentrail.api.metrics import Point, Scope, series, value
from tokentrail.api.timewindow import rfc3339, to_ns
from tokentrail.schema.store import Store

NS = 10**9
DAY_S = 86_400
# Windows end on a whole minute: two passes in one minute see the same numbers,
# and minute rollups can answer every window exactly.
ALIGN_NS = 60 * NS
# Metrics that add up over calls: no calls in a window is a true 0, not a gap.
ADDITIVE_METRICS = frozenset({"cost", "calls", "tokens", "input_tokens", "output_tokens"})
# Relative slack for "equal": sums of the same calls can differ in the last bits.
_REL_EPSILON = 1e-9

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True)
class Finding:
    """A condition's verdict at one moment."""

    met: bool
    reason: str
    value: float | None
    numbers: dict[str, Number]
    start_ns: int  # the window ``value`` covers
    end_ns: int
    context_start_ns: int  # what the link shows: the window and what it was compared with
    step_s: int
    summary: str


def evaluation_end(now_ns: int) -> int:
    return now_ns // ALIGN_NS * ALIGN_NS


def describe(metric: str, number: float) -> str:
    """A metric value as a person reads it in a notification."""
    if metric == "cost":
        return f"${number:,.2f}" if abs(number) >= 1 else f"${number:.4g}"
    if metric == "cost_per_call":
        return f"${number:.4g}"
    if metric == "error_rate":
        return f"{number:.1%}"
    if metric == "latency_p95":
        return f"{number:,.0f} ms"
    if metric in ADDITIVE_METRICS:
        return f"{number:,.0f}"
    return f"{number:.3g}"


def describe_scope(scope: RuleScope) -> str:
    parts = [f"service {scope.service}"] if scope.service else []
    if scope.feature == "":
        parts.append("calls without a feature")
    elif scope.feature is not None:
        parts.append(f"feature {scope.feature}")
    if scope.model:
        parts.append(f"model {scope.model}")
    return ", ".join(parts) or "all calls"


def _measured(metric: str, point: Point) -> float | None:
    if point.value is None and metric in ADDITIVE_METRICS:
        return 0.0
    return point.value


@dataclass(frozen=True)
class MetricReader:
    """One project's metrics through :mod:`tokentrail.api.metrics`, windows anchored at start."""

    store: Store
    project_id: str

    def value(self, metric: str, start_ns: int, end_ns: int, scope: Scope) -> Point:
        return value(self.store, self.project_id, metric, start_ns, end_ns, scope)

    def series(
        self, metric: str, start_ns: int, end_ns: int, step_s: int, scope: Scope
    ) -> list[Point]:
        project = self.project_id
        return series(self.store, project, metric, start_ns, end_ns, step_s, scope, start_ns)


def check(reader: MetricReader, spec: RuleSpec, now_ns: int) -> Finding:
    """The rule's condition over windows ending at ``now_ns`` (minute-aligned)."""
    end = evaluation_end(now_ns)
    condition = spec.condition
    if isinstance(condition, Threshold):
        return _threshold(reader, spec, condition, end)
    if isinstance(condition, Budget):
        return _budget(reader, spec, condition, end)
    return _spike(reader, spec, condition, end)


# --- threshold ------------------------------------------------------------------------


def _threshold(reader: MetricReader, spec: RuleSpec, cond: Threshold, end: int) -> Finding:
    length_s = seconds(cond.window)
    start = end - length_s * NS
    point = reader.value(spec.metric, start, end, spec.scope.metric_scope())
    current = _measured(spec.metric, point)
    enough = current is not None and point.samples >= cond.min_samples
    met = enough and current is not None and _OPS[cond.op](current, cond.value)
    shown = "no data" if current is None else describe(spec.metric, current)
    return Finding(
        met=met,
        reason="threshold" if met else ("ok" if enough else "no_data"),
        value=current,
        numbers={"op": cond.op, "threshold": cond.value, "samples": point.samples},
        start_ns=start,
        end_ns=end,
        context_start_ns=end - 24 * length_s * NS,
        step_s=length_s,
        summary=f"{spec.metric} of {describe_scope(spec.scope)} over the last {cond.window}: "
        f"{shown} (fires when {cond.op} {describe(spec.metric, cond.value)})",
    )


# --- budget ---------------------------------------------------------------------------


def budget_period(end_ns: int, period: str) -> tuple[int, int]:
    """The UTC day or month holding the instant just before ``end_ns``."""
    moment = datetime.fromtimestamp((end_ns - 1) // NS, tz=timezone.utc)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return to_ns(start), to_ns(start + timedelta(days=1))
    start = start.replace(day=1)
    stop = (start + timedelta(days=32)).replace(day=1)
    return to_ns(start), to_ns(stop)


def _budget(reader: MetricReader, spec: RuleSpec, cond: Budget, end: int) -> Finding:
    start, stop = budget_period(end, cond.period)
    spent = _measured("cost", reader.value("cost", start, end, spec.scope.metric_scope())) or 0.0
    elapsed = (end - start) / (stop - start)
    # Linear run rate: what the period costs if the rest of it goes like so far.
    projected = spent / elapsed if elapsed > 0 else 0.0
    if spent > cond.amount_usd:
        reason = "budget_spent"
    elif elapsed >= cond.project_after and projected > cond.amount_usd:
        reason = "budget_projected"
    else:
        reason = "within_budget"
    this = "today" if cond.period == "day" else "this month"
    return Finding(
        met=reason != "within_budget",
        reason=reason,
        value=spent,
        numbers={
            "budget_usd": cond.amount_usd,
            "spent_usd": spent,
            "projected_usd": projected,
            "elapsed_fraction": elapsed,
            "period": cond.period,
            "period_start": rfc3339(start),
            "period_end": rfc3339(stop),
        },
        start_ns=start,
        end_ns=end,
        context_start_ns=start,
        step_s=3600 if cond.period == "day" else DAY_S,
        summary=f"spend of {describe_scope(spec.scope)} {this}: {describe('cost', spent)} so "
        f"far, {describe('cost', projected)} projected by its end; budget "
        f"{describe('cost', cond.amount_usd)}",
    )


# --- spike ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """The windows before the current one, as one mean and spread."""

    mean: float
    std: float
    windows_with_data: int
    samples: float


def baseline_of(metric: str, points: list[Point], windows: int) -> Baseline:
    counted = [(p.value, p.samples) for p in points if p.value is not None and p.samples > 0]
    values = [number for number, _ in counted]
    if metric in ADDITIVE_METRICS:
        values += [0.0] * (windows - len(values))  # a quiet window spent nothing
    return Baseline(
        mean=fmean(values) if values else 0.0,
        std=stdev(values) if len(values) >= 2 else 0.0,
        windows_with_data=len(counted),
        samples=sum(samples for _, samples in counted),
    )


def _ratio_beyond(ratio: float | None, current: float, mean: float, limit: float, up: bool) -> bool:
    if ratio is not None:
        return ratio >= limit if up else ratio <= 1 / limit
    # No ratio: from a zero baseline any rise is infinitely many times it; a
    # negative baseline (some score scales) has none that means anything.
    return up and mean == 0 and current > 0


def _z_beyond(z_score: float | None, current: float, mean: float, limit: float, up: bool) -> bool:
    if z_score is not None:
        return z_score >= limit if up else -z_score >= limit
    # No z: a flat baseline, and any move away from it is infinitely many deviations.
    moved = not math.isclose(current, mean, rel_tol=_REL_EPSILON, abs_tol=1e-12)
    return moved and (current > mean) == up


def _spike_verdict(
    cond: Spike, current: float | None, baseline: Baseline, ratio: float | None, z: float | None
) -> tuple[bool, str]:
    if (
        baseline.windows_with_data < cond.min_baseline_windows
        or baseline.samples < cond.min_baseline_samples
    ):
        return False, "insufficient_baseline"
    if current is None:
        return False, "no_data"
    up = cond.direction == "up"
    checks = []
    if cond.ratio is not None:
        checks.append(_ratio_beyond(ratio, current, baseline.mean, cond.ratio, up))
    if cond.z_score is not None:
        checks.append(_z_beyond(z, current, baseline.mean, cond.z_score, up))
    met = all(checks) if cond.combine == "and" else any(checks)
    return met, "spike" if met else "ok"


def _spike(reader: MetricReader, spec: RuleSpec, cond: Spike, end: int) -> Finding:
    step_s = seconds(cond.window)
    start = end - (cond.baseline_windows + 1) * step_s * NS
    current_start = end - step_s * NS
    points = reader.series(spec.metric, start, end, step_s, spec.scope.metric_scope())
    by_start = {point.start_ns: point for point in points}
    current_point = by_start.pop(current_start, Point(current_start, None, 0.0))
    current = _measured(spec.metric, current_point)
    baseline = baseline_of(spec.metric, list(by_start.values()), cond.baseline_windows)
    ratio = current / baseline.mean if current is not None and baseline.mean > 0 else None
    flat = baseline.std <= _REL_EPSILON * abs(baseline.mean)
    z_score = None if current is None or flat else (current - baseline.mean) / baseline.std
    met, reason = _spike_verdict(cond, current, baseline, ratio, z_score)
    numbers: dict[str, Number] = {
        "baseline_mean": baseline.mean,
        "baseline_std": baseline.std,
        "ratio": ratio,
        "z_score": z_score,
        "ratio_threshold": cond.ratio,
        "z_threshold": cond.z_score,
        "baseline_windows": cond.baseline_windows,
        "baseline_windows_with_data": baseline.windows_with_data,
        "baseline_samples": baseline.samples,
        "current_samples": current_point.samples,
    }
    shown = "no data" if current is None else describe(spec.metric, current)
    comparison = [f"baseline mean {describe(spec.metric, baseline.mean)} over the previous "
                  f"{cond.baseline_windows} windows"]  # fmt: skip
    if ratio is not None:
        comparison.append(f"{ratio:.2f}x the baseline")
    if z_score is not None:
        comparison.append(f"z {z_score:.1f}")
    return Finding(
        met=met,
        reason=reason,
        value=current,
        numbers=numbers,
        start_ns=current_start,
        end_ns=end,
        context_start_ns=start,
        step_s=step_s,
        summary=f"{spec.metric} of {describe_scope(spec.scope)} over the last {cond.window}: "
        f"{shown}; " + ", ".join(comparison),
    )

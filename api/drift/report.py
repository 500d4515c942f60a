"""Drift comparisons: run the statements, line rows up by group, judge, report.

A current window ``[end - window, end)`` is compared with the baseline just
before it, ``[end - window - baseline, end - window)``, per feature (and model),
metric by metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokentrail.api.drift import sql
from tokentrail.api.drift.models import DriftReport, DriftSide, FeatureDrift, MetricDrift, Period
from tokentrail.api.drift.stats import (
    Comparison,
    Judged,
    Side,
    enough,
    finite,
    judge,
    mean_test,
    proportion_test,
    rank_test,
)
from tokentrail.api.metrics import SCORE_PREFIX
from tokentrail.api.timewindow import rfc3339
from tokentrail.schema.store import Store

# Spend rate is tested on hourly sums: fewer hours than this leave a t-test with
# next to no degrees of freedom, however many calls made them.
SPEND_RATE_MIN_HOURS = 6
# How far before the baseline a scored call is looked up for its model: scores
# come after their calls. Only baseline scores given over a day after a call
# older than the baseline go unmatched; a longer reach costs a longer scan.
SCORE_CALL_LOOKBACK_NS = 24 * sql.HOUR_NS

UNITS = {
    "cost_per_call": "usd",
    "tokens_per_call": "tokens",
    "spend_rate": "usd_per_hour",
    "latency_p95": "ms",
    "error_rate": "ratio",
}


@dataclass(frozen=True)
class DriftQuery:
    """What to compare: the windows, the scope, and the test's knobs."""

    end_ns: int
    window_hours: int
    baseline_hours: int
    feature: str = ""  # "" = every feature
    model: str = ""  # "" = every model
    by_model: bool = False
    alpha: float = 0.01
    min_samples: int = 30

    @property
    def split_ns(self) -> int:
        return self.end_ns - self.window_hours * sql.HOUR_NS

    @property
    def start_ns(self) -> int:
        return self.split_ns - self.baseline_hours * sql.HOUR_NS

    def params(self, project_id: str) -> dict[str, Any]:
        return {
            "project_id": project_id,
            "start_ns": self.start_ns,
            "split_ns": self.split_ns,
            "end_ns": self.end_ns,
            "baseline_hours": self.baseline_hours,
            "hours": self.baseline_hours + self.window_hours,
            "any_feature": self.feature == "",
            "feature": self.feature,
            "model": self.model,
            "by_model": self.by_model,
            "min_samples": self.min_samples,
            "calls_from_ns": self.start_ns - SCORE_CALL_LOOKBACK_NS,
        }

    @property
    def model_scoped(self) -> bool:
        return self.by_model or self.model != ""


Group = tuple[str, str]  # (feature, model)


def _side(value: Any, samples: Any, stddev: Any = None) -> Side:
    return Side(finite(value), int(samples), finite(stddev))


def _call_comparisons(row: dict[str, Any], min_samples: int) -> list[Comparison]:
    calls_enough = enough(row["calls_b"], row["calls_c"], min_samples)
    return [
        mean_test(
            "cost_per_call",
            _side(row["cost_mean_b"], row["priced_b"], row["cost_sd_b"]),
            _side(row["cost_mean_c"], row["priced_c"], row["cost_sd_c"]),
            row["cost_p"],
            enough(row["priced_b"], row["priced_c"], min_samples),
        ),
        mean_test(
            "tokens_per_call",
            _side(row["tokens_mean_b"], row["calls_b"], row["tokens_sd_b"]),
            _side(row["tokens_mean_c"], row["calls_c"], row["tokens_sd_c"]),
            row["tokens_p"],
            calls_enough,
        ),
        mean_test(
            "spend_rate",
            _side(row["spend_mean_b"], row["hours_b"], row["spend_sd_b"]),
            _side(row["spend_mean_c"], row["hours_c"], row["spend_sd_c"]),
            row["spend_p"],
            # The hours are fixed by the windows; the calls make them worth testing.
            calls_enough and enough(row["hours_b"], row["hours_c"], SPEND_RATE_MIN_HOURS),
        ),
        rank_test(
            "latency_p95",
            _side(row["latency_p95_b"], row["calls_b"]),
            _side(row["latency_p95_c"], row["calls_c"]),
            row["latency_u"],
            row["latency_p"],
            calls_enough,
        ),
        proportion_test(
            "error_rate",
            row["errors_b"],
            row["calls_b"],
            row["errors_c"],
            row["calls_c"],
            calls_enough,
        ),
    ]


def _score_comparison(row: dict[str, Any], min_samples: int) -> Comparison:
    metric = SCORE_PREFIX + row["name"]
    sufficient = enough(row["n_b"], row["n_c"], min_samples)
    if row["boolean"]:
        return proportion_test(
            metric, row["hits_b"], row["n_b"], row["hits_c"], row["n_c"], sufficient
        )
    return mean_test(
        metric,
        _side(row["mean_b"], row["n_b"], row["sd_b"]),
        _side(row["mean_c"], row["n_c"], row["sd_c"]),
        row["p"],
        sufficient,
    )


def compare(store: Store, project_id: str, query: DriftQuery) -> dict[Group, list[Comparison]]:
    """Every metric's comparison, per group: one pass over calls, one over scores."""
    params = query.params(project_id)
    groups: dict[Group, list[Comparison]] = {
        (row["feature"], row["model"]): _call_comparisons(row, query.min_samples)
        for row in store.query(sql.CALL_STATS, params).dicts()
    }
    scores_sql = sql.SCORE_STATS_BY_MODEL if query.model_scoped else sql.SCORE_STATS
    score_rows = sorted(store.query(scores_sql, params).dicts(), key=lambda row: row["name"])
    for row in score_rows:
        comparison = _score_comparison(row, query.min_samples)
        groups.setdefault((row["feature"], row["model"]), []).append(comparison)
    return groups


def _metric(judged: Judged) -> MetricDrift:
    def side(value: Side) -> DriftSide:
        return DriftSide(value=value.value, samples=value.samples, stddev=value.stddev)

    comparison = judged.comparison
    return MetricDrift(
        metric=comparison.metric,
        unit=UNITS.get(comparison.metric, "score"),
        baseline=side(comparison.baseline),
        current=side(comparison.current),
        change_pct=comparison.change_pct,
        test=comparison.test,
        p_value=comparison.p_value,
        effect_size=finite(comparison.effect_size),
        effect_size_kind=comparison.effect,
        alpha=judged.alpha,
        verdict=judged.verdict,
        drifted=judged.verdict == "drifted",
    )


def drift_report(store: Store, project_id: str, query: DriftQuery) -> DriftReport:
    """The report: drifted groups first, then by feature and model."""
    features = []
    for (feature, model), comparisons in compare(store, project_id, query).items():
        metrics = [_metric(judged) for judged in judge(comparisons, query.alpha)]
        features.append(
            FeatureDrift(
                feature=feature,
                model=model if query.model_scoped else None,
                drifted=any(m.drifted for m in metrics),
                metrics=metrics,
            )
        )
    features.sort(key=lambda f: (not f.drifted, f.feature, f.model or ""))
    return DriftReport(
        baseline=Period(start=rfc3339(query.start_ns), end=rfc3339(query.split_ns)),
        current=Period(start=rfc3339(query.split_ns), end=rfc3339(query.end_ns)),
        alpha=query.alpha,
        min_samples=query.min_samples,
        features=features,
    )

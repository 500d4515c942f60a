"""Per-feature spend and quality: what each AI feature costs and how good it is."""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures, and they name `project_dependency`, a local of the router factory.
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from tokentrail.api import queries
from tokentrail.api.models import FeatureList, FeatureReport, Latency, ScoreMean
from tokentrail.api.timewindow import TimeWindow, ns_to_ms, rfc3339, time_window
from tokentrail.schema.store import Store


class _FeatureScores:
    """Score aggregates of one feature: means by name, label counts by name."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self.labels: dict[str, dict[str, int]] = defaultdict(dict)

    def add(self, row: dict[str, Any]) -> None:
        if row["data_type"] == "categorical":
            self.labels[row["name"]][row["label"]] = row["count"]
            return
        # Numeric and boolean rows of one name pool into one mean (booleans are 1/0).
        self._sums[row["name"]] += row["value_sum"]
        self._counts[row["name"]] += row["count"]

    def means(self) -> dict[str, ScoreMean]:
        return {
            name: ScoreMean(mean=self._sums[name] / count, count=count)
            for name, count in self._counts.items()
        }


def _weighted(value: float) -> int:
    # Weighted counts are estimates; 3 * (1 / 0.3) must read 10, not 9.
    return round(value)


# The call aggregates of a feature that was scored in the window but not called.
_NO_CALLS: dict[str, Any] = {
    "calls": 0.0,
    "errors": 0.0,
    "input_tokens": 0.0,
    "output_tokens": 0.0,
    "cost_usd": Decimal(0),
    "priced_cost_usd": Decimal(0),
    "priced_calls": 0.0,
    "unpriced_calls": 0.0,
    "unpriced_models": [],
    "latency_ns": [],
}


def _report(feature: str, calls: dict[str, Any], scores: _FeatureScores) -> FeatureReport:
    priced_calls = calls["priced_calls"]
    latency = calls["latency_ns"]
    return FeatureReport(
        feature=feature,
        calls=_weighted(calls["calls"]),
        errors=_weighted(calls["errors"]),
        input_tokens=_weighted(calls["input_tokens"]),
        output_tokens=_weighted(calls["output_tokens"]),
        cost_usd=calls["cost_usd"],
        cost_per_call_usd=(
            calls["priced_cost_usd"] / Decimal(repr(priced_calls)) if priced_calls else None
        ),
        unpriced_calls=_weighted(calls["unpriced_calls"]),
        unpriced_models=calls["unpriced_models"],
        latency_ms=Latency(
            p50=ns_to_ms(latency[0]) if latency else None,
            p95=ns_to_ms(latency[1]) if latency else None,
        ),
        scores=scores.means(),
        labels=dict(scores.labels),
    )


def feature_reports(
    store: Store, project_id: str, window: TimeWindow, service: str
) -> list[FeatureReport]:
    """Two queries, calls then scores, merged by feature; ordered by spend."""
    params = {**window.params(), "project_id": project_id, "service": service}
    calls = {row["feature"]: row for row in store.query(queries.FEATURE_CALLS, params).dicts()}
    scores: dict[str, _FeatureScores] = defaultdict(_FeatureScores)
    for row in store.query(queries.FEATURE_SCORES, params).dicts():
        scores[row["feature"]].add(row)
    # Features with calls come in the query's spend order; score-only ones after.
    names = list(calls) + sorted(set(scores) - set(calls))
    return [_report(name, calls.get(name, _NO_CALLS), scores[name]) for name in names]


def features_router(store: Store, project_dependency: Callable[..., str]) -> APIRouter:
    router = APIRouter(tags=["features"])

    @router.get(
        "/features",
        response_model=FeatureList,
        summary="Spend and quality per feature",
        description=(
            "For each feature with LLM calls or scores in [`start`, `end`): calls, errors, "
            "tokens and cost (sampled calls count by their sample weight), cost per priced "
            "call, unpriced calls and their models, latency percentiles and score means. "
            'Calls that carried no feature are reported under the feature `""`. Scores '
            "count in the window they were given in."
        ),
    )
    def get_features(
        project_id: Annotated[str, Depends(project_dependency)],
        window: Annotated[TimeWindow, Depends(time_window)],
        service: Annotated[str, Query(description="Only LLM calls from this service.")] = "",
    ) -> FeatureList:
        return FeatureList(
            start=rfc3339(window.start_ns),
            end=rfc3339(window.end_ns),
            features=feature_reports(store, project_id, window, service),
        )

    return router

"""Per-feature spend and quality: what each AI feature costs and how good it is.

Reports read the rollups, and per-row facts only for the ragged edges of a
window (``rollup_read``); the trace views stay the place for detail.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures, and they name `project_dependency`, a local of the router factory.
from collections import defaultdict
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from tokentrail.api.call_totals import CallTotals
from tokentrail.api.errors import invalid
from tokentrail.api.feature_breakdowns import model_reports, top_users
from tokentrail.api.intervals import BadInterval, check_bucket_count, interval_seconds
from tokentrail.api.metrics import SCORES_OF_SCOPED_CALLS, Scope, UnknownMetric, check_metric
from tokentrail.api.metrics import series as metric_series
from tokentrail.api.models import (
    FeatureList,
    FeatureReport,
    FeatureTimeseries,
    ModelList,
    ScoreMean,
    SeriesPoint,
    UserList,
)
from tokentrail.api.rollup_read import CALLS, SCORES
from tokentrail.api.timewindow import TimeWindow, rfc3339, time_window
from tokentrail.schema.store import Store

_FEATURE_CALLS = CALLS.query(
    ("feature",),
    ("feature",),
    "{service:String} = '' OR service = {service:String}",
    order_by="cost DESC, feature",
)
_SCORE_GROUPS = ("feature", "name", "data_type", "label")
_FEATURE_SCORES = SCORES.query(_SCORE_GROUPS, _SCORE_GROUPS)
# With a service, only scores of traces that made LLM calls from it: per-row data.
_SERVICE_FEATURE_SCORES = SCORES.query(
    _SCORE_GROUPS, _SCORE_GROUPS, SCORES_OF_SCOPED_CALLS, rows_only=True
)


class _FeatureScores:
    """Score aggregates of one feature: means by name, label counts by name."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self.labels: dict[str, dict[str, int]] = defaultdict(dict)

    def add(self, row: dict[str, Any]) -> None:
        if row["data_type"] == "categorical":
            self.labels[row["name"]][row["label"]] = row["scores"]
            return
        # Numeric and boolean rows of one name pool into one mean (booleans are 1/0).
        self._sums[row["name"]] += row["value_sum"]
        self._counts[row["name"]] += row["scores"]

    def means(self) -> dict[str, ScoreMean]:
        return {
            name: ScoreMean(mean=self._sums[name] / count, count=count)
            for name, count in self._counts.items()
            if count
        }


def _report(feature: str, calls: CallTotals, scores: _FeatureScores) -> FeatureReport:
    return FeatureReport(
        feature=feature,
        **calls.report_fields(),
        unpriced_models=calls.unpriced_models,
        scores=scores.means(),
        labels=dict(scores.labels),
    )


def feature_reports(
    store: Store, project_id: str, window: TimeWindow, service: str, *, rollups: bool = True
) -> list[FeatureReport]:
    """Two queries, calls then scores, merged by feature; ordered by spend.

    ``rollups=False`` computes the same from raw rows only (a benchmark's baseline).
    """
    params = {"project_id": project_id, "service": service, "model": "", **window.params()}
    bounds = (window.start_ns, window.end_ns)
    calls = {
        row["feature"]: CallTotals.from_row(row)
        for row in CALLS.run(store, _FEATURE_CALLS, params, *bounds, rollups=rollups).dicts()
    }
    score_sql = _SERVICE_FEATURE_SCORES if service else _FEATURE_SCORES
    score_rows = SCORES.run(store, score_sql, params, *bounds, rollups=rollups)
    scores: dict[str, _FeatureScores] = defaultdict(_FeatureScores)
    for row in score_rows.dicts():
        scores[row["feature"]].add(row)
    # Features with calls come in the query's spend order; score-only ones after.
    names = list(calls) + sorted(set(scores) - set(calls))
    return [_report(name, calls.get(name, CallTotals.empty()), scores[name]) for name in names]


def features_router(store: Store, project_dependency: Callable[..., str]) -> APIRouter:
    router = APIRouter(tags=["features"])
    Project = Annotated[str, Depends(project_dependency)]
    Window = Annotated[TimeWindow, Depends(time_window)]
    Feature = Annotated[str, Path(description="The feature, as the calls carry it.")]
    Service = Annotated[str, Query(description="Only LLM calls from this service.")]

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
    def get_features(project_id: Project, window: Window, service: Service = "") -> FeatureList:
        return FeatureList(
            start=rfc3339(window.start_ns),
            end=rfc3339(window.end_ns),
            features=feature_reports(store, project_id, window, service),
        )

    @router.get(
        "/features/{feature}/timeseries",
        response_model=FeatureTimeseries,
        summary="One metric of a feature over time",
        description=(
            "The metric per `interval` bucket of [`start`, `end`): cost, calls, tokens, "
            "input_tokens, output_tokens, cost_per_call, latency_p95 (ms), error_rate, or "
            "score:<name> (mean of a numeric or boolean score). Buckets start on multiples "
            "of the interval since the Unix epoch (UTC); the first and last may reach past "
            "the window and then count only its part."
        ),
    )
    def get_timeseries(
        project_id: Project,
        feature: Feature,
        window: Window,
        metric: Annotated[str, Query(description="What to plot, e.g. cost or score:helpful.")],
        interval: Annotated[str, Query(description="Bucket length: 1m, 5m, 1h, 1d …")] = "1h",
        service: Service = "",
    ) -> FeatureTimeseries:
        try:
            check_metric(metric)
        except UnknownMetric as error:
            invalid(("query", "metric"), str(error), metric)
        try:
            step_s = interval_seconds(interval)
            check_bucket_count(window.start_ns, window.end_ns, step_s, interval)
        except BadInterval as error:
            invalid(("query", "interval"), str(error), interval)
        scope = Scope(service=service, feature=feature)
        points = metric_series(
            store, project_id, metric, window.start_ns, window.end_ns, step_s, scope
        )
        return FeatureTimeseries(
            feature=feature,
            metric=metric,
            interval=interval,
            start=rfc3339(window.start_ns),
            end=rfc3339(window.end_ns),
            points=[
                SeriesPoint(start=rfc3339(p.start_ns), value=p.value, samples=p.samples)
                for p in points
            ],
        )

    @router.get(
        "/features/{feature}/models",
        response_model=ModelList,
        summary="A feature's spend by model",
        description=(
            "Per model (the response model, else the requested one) of the feature's calls "
            "in [`start`, `end`): calls, errors, tokens, cost, cost per priced call, "
            "unpriced calls and latency percentiles, highest spend first."
        ),
    )
    def get_models(
        project_id: Project, feature: Feature, window: Window, service: Service = ""
    ) -> ModelList:
        return ModelList(
            feature=feature,
            start=rfc3339(window.start_ns),
            end=rfc3339(window.end_ns),
            models=model_reports(store, project_id, window, feature, service),
        )

    @router.get(
        "/features/{feature}/users",
        response_model=UserList,
        summary="A feature's top users by spend",
        description=(
            "The users whose calls of the feature cost the most in [`start`, `end`), across "
            "services, with their calls, errors and tokens. Calls without a user are listed "
            'as `""`.'
        ),
    )
    def get_users(
        project_id: Project,
        feature: Feature,
        window: Window,
        limit: Annotated[int, Query(ge=1, le=1000, description="How many users.")] = 10,
    ) -> UserList:
        return UserList(
            feature=feature,
            start=rfc3339(window.start_ns),
            end=rfc3339(window.end_ns),
            users=top_users(store, project_id, window, feature, limit),
        )

    return router

"""``GET /api/v1/drift``: request parsing and the route."""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures, and they name `project_dependency`, a local of the router factory.
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from tokentrail.api.drift.models import DriftReport
from tokentrail.api.drift.report import DriftQuery, drift_report
from tokentrail.api.durations import seconds
from tokentrail.api.errors import invalid
from tokentrail.api.timewindow import to_ns
from tokentrail.schema.store import Store

HOUR_S = 3_600
# Per window. The rank test holds both windows' latencies in memory: at 10M
# calls a month, ~80 MB per 31 days.
MAX_HOURS = 31 * 24


def duration_hours(text: str, field: str) -> int:
    """Hours in ``24h`` or ``7d``; a 422 naming ``field`` for anything else.

    Whole hours only: spend rate compares hourly spend, and whole-hour windows
    keep every hour on one side of the split.
    """
    try:
        length = seconds(text)
    except ValueError:
        length = 0  # refused below, with the forms drift takes
    if length % HOUR_S or not HOUR_S <= length <= MAX_HOURS * HOUR_S:
        invalid(
            ("query", field), f"{field} must be whole hours from 1h to 31d, e.g. 24h or 7d", text
        )
    return length // HOUR_S


def drift_router(store: Store, project_dependency: Callable[..., str]) -> APIRouter:
    router = APIRouter(tags=["drift"])

    @router.get(
        "/drift",
        response_model=DriftReport,
        summary="Spend, latency, error and quality drift per feature",
        description=(
            "Compares the current window [`end` - `window`, `end`) with the baseline before "
            "it, per feature (per feature and model with `by=model`), for cost per call, "
            "tokens per call, spend rate, latency p95, error rate and every numeric or "
            "boolean score. Each metric carries both values, their sample sizes, the change, "
            "a p-value from ClickHouse's `welchTTest` / `mannWhitneyUTest` or a two-proportion "
            "z-test, an effect size and a verdict: `drifted` when p < `alpha` / (metrics "
            "tested for the feature) and the effect is at least small; `insufficient_data` "
            "below `min_samples` observations on either side."
        ),
    )
    def get_drift(
        project_id: Annotated[str, Depends(project_dependency)],
        window: Annotated[str, Query(description="Current window, whole hours: 24h, 7d.")] = "24h",
        baseline: Annotated[str, Query(description="Baseline just before it: 7d, 28d.")] = "7d",
        feature: Annotated[str, Query(max_length=200, description="Only this feature.")] = "",
        model: Annotated[
            str, Query(max_length=200, description="Only calls (and scored traces) of this model.")
        ] = "",
        by: Annotated[
            Literal["feature", "model"],
            Query(description="`model`: one result per feature and model."),
        ] = "feature",
        end: Annotated[
            AwareDatetime | None,
            Query(description="RFC 3339 with a UTC offset, exclusive. Default: now."),
        ] = None,
        alpha: Annotated[
            float, Query(gt=0, lt=0.5, description="Significance level per feature.")
        ] = 0.01,
        min_samples: Annotated[
            int, Query(ge=2, le=1_000_000, description="Observations needed on each side.")
        ] = 30,
    ) -> DriftReport:
        query = DriftQuery(
            end_ns=to_ns(end or datetime.now(timezone.utc)),
            window_hours=duration_hours(window, "window"),
            baseline_hours=duration_hours(baseline, "baseline"),
            feature=feature,
            model=model,
            by_model=by == "model",
            alpha=alpha,
            min_samples=min_samples,
        )
        return drift_report(store, project_id, query)

    return router

"""Score intake: quality scores posted by people and evaluators.

The API only shapes the record; storing it is the caller's ``record_scores``
(the ingest pipeline), so scores from the API and from spans share one path.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures, and they name `project_dependency`, a local of the router factory.
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from tokentrail.api import queries
from tokentrail.api.models import ScoreIn, ScoreOut
from tokentrail.api.timewindow import rfc3339
from tokentrail.collector.records import Score
from tokentrail.schema.store import Store

RecordScores = Callable[[str, list[Score]], None]


def typed_value(value: bool | float | str) -> tuple[str, float, str]:
    """``(data_type, value, string_value)`` of a posted value, by its JSON type."""
    # bool first: it is an int to Python, but `true` is a boolean score.
    if isinstance(value, bool):
        return "boolean", 1.0 if value else 0.0, "true" if value else "false"
    if isinstance(value, int | float):
        return "numeric", float(value), ""
    return "categorical", 0.0, value


def build_score(body: ScoreIn, feature: str, time_unix_nano: int) -> Score:
    data_type, value, string_value = typed_value(body.value)
    return Score(
        trace_id=body.trace_id,
        span_id=body.span_id or "",
        name=body.name,
        data_type=data_type,
        value=value,
        string_value=string_value,
        source=body.source,
        comment=body.comment,
        time_unix_nano=time_unix_nano,
        score_id=body.id or uuid.uuid4().hex,
        feature=feature,
    )


def score_out(score: Score) -> ScoreOut:
    """The public view of a stored score."""
    return ScoreOut(
        id=score.score_id,
        trace_id=score.trace_id,
        span_id=score.span_id or None,
        name=score.name,
        data_type=score.data_type,
        value=None if score.data_type == "categorical" else score.value,
        string_value=score.string_value,
        source=score.source,
        comment=score.comment,
        feature=score.feature,
        timestamp=rfc3339(score.time_unix_nano),
    )


def score_from_row(row: dict[str, Any]) -> Score:
    """A ``scores`` row as read by ``queries.TRACE_SCORES``."""
    return Score(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        name=row["name"],
        data_type=row["data_type"],
        value=row["value"],
        string_value=row["string_value"],
        source=row["source"],
        comment=row["comment"],
        time_unix_nano=row["timestamp_ns"],
        score_id=row["score_id"],
        feature=row["feature"],
    )


def resolve_feature(store: Store, project_id: str, trace_id: str, span_id: str) -> str:
    """The feature of the scored call or trace; "" if its calls are not stored yet."""
    rows = store.query(
        queries.SCORE_FEATURE,
        {"project_id": project_id, "trace_id": trace_id, "span_id": span_id},
    ).rows
    return str(rows[0][0]) if rows else ""


def scores_router(
    store: Store, project_dependency: Callable[..., str], record_scores: RecordScores
) -> APIRouter:
    router = APIRouter(tags=["scores"])

    @router.post(
        "/scores",
        status_code=201,
        response_model=ScoreOut,
        summary="Record a quality score",
        description=(
            "Scores a trace, or one span of it. The value's JSON type decides the kind: "
            "`true`/`false` → boolean (stored as 1/0), a number → numeric, a string → "
            "categorical label. The score joins the feature of the scored LLM call (else "
            "of the trace's first call); a score posted before its trace is stored has no "
            "feature. Send an `id` to make retries idempotent."
        ),
    )
    def post_score(
        body: ScoreIn, project_id: Annotated[str, Depends(project_dependency)]
    ) -> ScoreOut:
        feature = resolve_feature(store, project_id, body.trace_id, body.span_id or "")
        score = build_score(body, feature, time.time_ns())
        record_scores(project_id, [score])
        return score_out(score)

    return router

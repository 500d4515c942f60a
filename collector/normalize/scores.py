"""Quality results carried inside spans → :class:`Score`, whichever convention carried them."""

from __future__ import annotations

import hashlib
from typing import Any

from tokentrail.collector.normalize.base import Evaluation, number
from tokentrail.collector.normalize.registry import READERS
from tokentrail.collector.records import Score, Span

_SCORE_TYPES = frozenset({"numeric", "boolean", "categorical"})
_SCORE_SOURCES = frozenset({"sdk", "api", "evaluator", "human"})
_TRUE_LABELS = frozenset({"true", "yes", "pass", "passed", "1"})
_FALSE_LABELS = frozenset({"false", "no", "fail", "failed", "0"})


def _score_value(value: Any) -> float | None:
    return float(value) if isinstance(value, bool) else number(value)


def _as_flag(value: float | None, label: str) -> float | None:
    if value is not None:
        return 1.0 if value else 0.0
    lowered = label.lower()
    return 1.0 if lowered in _TRUE_LABELS else 0.0 if lowered in _FALSE_LABELS else None


def _score(span: Span, result: Evaluation) -> Score | None:
    value = _score_value(result.value)
    label = result.label
    data_type = result.data_type.lower()
    if data_type not in _SCORE_TYPES:
        data_type = "numeric" if value is not None else "categorical"
    if data_type == "boolean":
        value = _as_flag(value, label)
    # An unusable declared type degrades to the type the data supports.
    if data_type in ("numeric", "boolean") and value is None:
        data_type = "categorical"
    if data_type == "categorical" and not label:
        if value is None:
            return None
        data_type = "numeric"
    source = result.source.lower()
    identity = f"{span.trace_id}:{span.span_id}:{result.identity}"
    return Score(
        trace_id=span.trace_id,
        span_id=result.span_id,
        name=result.name,
        data_type=data_type,
        value=value if value is not None else 0.0,
        string_value=label,
        source=source if source in _SCORE_SOURCES else "sdk",
        comment=result.explanation,
        time_unix_nano=result.time_unix_nano,
        # Deterministic so a re-sent batch collapses into the same row.
        score_id=hashlib.sha1(identity.encode(), usedforsecurity=False).hexdigest(),
    )


def scores_from_span(span: Span) -> list[Score]:
    """The span's scores: ``gen_ai.evaluation.result`` events, OpenInference results."""
    return [
        score
        for reader in READERS
        for result in reader.evaluations(span)
        if (score := _score(span, result)) is not None
    ]

"""Feature, user and session for calls whose ancestors span several batches.

An exporter sends a child span before its parent ends, so the span naming the
feature often arrives in a later batch than the LLM call under it. Two cases,
each one indexed query against what is already stored:

* a call in this batch whose ancestor chain leaves the batch reads the stored
  ancestors of its trace;
* a stored call still missing context is re-resolved when this batch brings
  spans of its trace, and re-written (the newer version replaces the old one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tokentrail.collector.normalize import CONTEXT_KEYS, context_of, inherit_context
from tokentrail.collector.records import LlmCall, Score, Span
from tokentrail.schema.store import Store

Ancestry = dict[str, tuple[str, tuple[str, str, str]]]

# Children start inside their parents; an hour either side of a batch bounds the
# scan generously while keeping it off the rest of the project's history.
_WINDOW_NS = 3600 * 10**9

_STORED_SPANS = """
SELECT SpanId, ParentSpanId,
       mapFilter((k, v) -> k IN {keys:Array(String)}, SpanAttributes),
       mapFilter((k, v) -> k IN {keys:Array(String)}, ResourceAttributes)
FROM spans FINAL
WHERE project_id = {project_id:String}
  AND Timestamp BETWEEN fromUnixTimestamp64Nano({lo:Int64}) AND fromUnixTimestamp64Nano({hi:Int64})
  AND TraceId IN {trace_ids:Array(String)}
"""

_INCOMPLETE_CALLS = """
SELECT * EXCEPT (project_id, Timestamp, ingested_at),
       toUnixTimestamp64Nano(Timestamp) AS start_time_unix_nano
FROM llm_calls FINAL
WHERE project_id = {project_id:String}
  AND Timestamp BETWEEN fromUnixTimestamp64Nano({lo:Int64}) AND fromUnixTimestamp64Nano({hi:Int64})
  AND trace_id IN {trace_ids:Array(String)}
  AND (feature = '' OR user_id = '' OR session_id = '')
"""

_CALL_FEATURES = """
SELECT trace_id, span_id, feature
FROM llm_calls FINAL
WHERE project_id = {project_id:String}
  AND trace_id IN {trace_ids:Array(String)}
  AND feature != ''
"""


def batch_window(project_id: str, spans: Sequence[Span]) -> dict[str, object]:
    """Query parameters bounding stored reads to the batch's project and time, widened."""
    return {
        "project_id": project_id,
        "lo": min(s.start_time_unix_nano for s in spans) - _WINDOW_NS,
        "hi": max(s.end_time_unix_nano for s in spans) + _WINDOW_NS,
    }


def calls_from_rows(rows: Iterable[dict[str, Any]]) -> list[LlmCall]:
    """Stored ``llm_calls`` rows (every column but project, time and version) as LlmCalls."""
    return [LlmCall(**row) for row in rows]


def _incomplete(call: LlmCall) -> bool:
    return not (call.feature and call.user_id and call.session_id)


def _leaves_batch(call: LlmCall, ancestry: Ancestry) -> bool:
    """True when the call's ancestor chain reaches a parent this batch lacks."""
    parent, seen = call.parent_span_id, set()
    while parent and parent not in seen:
        if parent not in ancestry:
            return True
        seen.add(parent)
        parent = ancestry[parent][0]
    return False


class ContextResolver:
    def __init__(self, store: Store) -> None:
        self._store = store

    def resolve(
        self, project_id: str, spans: Sequence[Span], calls: list[LlmCall], batch: Ancestry
    ) -> list[LlmCall]:
        """Complete ``calls`` in place; return stored calls that this batch completed.

        ``batch``: the ancestry of ``spans`` (``normalize.ancestry_of``).
        """
        if not spans:
            return []
        bounds = batch_window(project_id, spans)
        waiting = [c for c in calls if _incomplete(c) and _leaves_batch(c, batch)]
        stored_calls: list[LlmCall] = []
        if any(any(context_of(s)) for s in spans):
            batch_ids = {(c.trace_id, c.span_id) for c in calls}
            rows = self._store.query(
                _INCOMPLETE_CALLS, {**bounds, "trace_ids": sorted({s.trace_id for s in spans})}
            ).dicts()
            stored_calls = calls_from_rows(
                row for row in rows if (row["trace_id"], row["span_id"]) not in batch_ids
            )
        if not waiting and not stored_calls:
            return []
        traces = sorted({c.trace_id for c in [*waiting, *stored_calls]})
        ancestry = {**self._stored_ancestry(bounds, traces), **batch}
        inherit_context(waiting, ancestry)
        before = [(c.feature, c.user_id, c.session_id) for c in stored_calls]
        inherit_context(stored_calls, ancestry)
        return [
            call
            for call, old in zip(stored_calls, before, strict=True)
            if (call.feature, call.user_id, call.session_id) != old
        ]

    def _stored_ancestry(self, bounds: dict[str, object], trace_ids: list[str]) -> Ancestry:
        rows = self._store.query(
            _STORED_SPANS, {**bounds, "keys": list(CONTEXT_KEYS), "trace_ids": trace_ids}
        ).rows
        ancestry: Ancestry = {}
        for span_id, parent_id, attributes, resource in rows:
            stub = Span(
                trace_id="", span_id=span_id, parent_span_id=parent_id, name="", kind="",
                start_time_unix_nano=0, end_time_unix_nano=0,
                attributes=dict(attributes), resource_attributes=dict(resource),
            )  # fmt: skip
            ancestry[span_id] = (parent_id, context_of(stub))
        return ancestry

    def assign_features(
        self, project_id: str, scores: Sequence[Score], calls: Sequence[LlmCall]
    ) -> None:
        """Give each score the feature of the call it judges, else of its trace."""
        pending = [s for s in scores if not s.feature]
        if not pending:
            return
        by_span = {(c.trace_id, c.span_id): c.feature for c in calls if c.feature}
        missing = sorted({s.trace_id for s in pending} - {t for t, _ in by_span})
        if missing:
            rows = self._store.query(
                _CALL_FEATURES, {"project_id": project_id, "trace_ids": missing}
            ).rows
            by_span.update({(trace, span): feature for trace, span, feature in rows})
        by_trace = {trace: feature for (trace, _), feature in sorted(by_span.items())}
        for score in pending:
            score.feature = by_span.get((score.trace_id, score.span_id)) or by_trace.get(
                score.trace_id, ""
            )

"""Feature, user and session for calls whose ancestors span several batches.

An exporter sends a child span before its parent ends, so the span naming the
feature often arrives in a later batch than the LLM call under it. Two cases,
each read with indexed queries against what is already stored:

* a call in this batch whose ancestor chain leaves the batch reads the stored
  ancestors of its trace;
* a stored call still missing context is re-resolved when this batch brings
  spans of its trace, and re-written (the newer version replaces the old one);
  its full row is read only once the identities show there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tokentrail.collector.normalize import CONTEXT_KEYS, Key, context_of, inherit_context
from tokentrail.collector.records import LlmCall, Score, Span
from tokentrail.schema.store import Store

Ancestry = dict[str, tuple[str, tuple[str, str, str]]]

# Children start inside their parents; an hour either side of a batch bounds the
# scan generously while keeping it off the rest of the project's history.
_WINDOW_NS = 3600 * 10**9

# ClickHouse moves no filter before the merge of FINAL by itself. Trace and
# span ids may go there (PREWHERE): they are part of the sorting key, so the
# same in every version of a row, and other traces' rows are then never merged.
_STORED_SPANS = """
SELECT SpanId, ParentSpanId,
       mapFilter((k, v) -> k IN {keys:Array(String)}, SpanAttributes),
       mapFilter((k, v) -> k IN {keys:Array(String)}, ResourceAttributes)
FROM spans FINAL
PREWHERE TraceId IN {trace_ids:Array(String)}
WHERE project_id = {project_id:String}
  AND Timestamp BETWEEN fromUnixTimestamp64Nano({lo:Int64}) AND fromUnixTimestamp64Nano({hi:Int64})
"""

# FINAL merges every column it reads, prompts and completions too: identities
# first (almost always none), then the full rows of those alone.
_INCOMPLETE_CALLS = """
SELECT trace_id, span_id
FROM llm_calls FINAL
PREWHERE trace_id IN {trace_ids:Array(String)}
WHERE project_id = {project_id:String}
  AND Timestamp BETWEEN fromUnixTimestamp64Nano({lo:Int64}) AND fromUnixTimestamp64Nano({hi:Int64})
  AND (feature = '' OR user_id = '' OR session_id = '')
"""

_FULL_CALLS = """
SELECT * EXCEPT (project_id, Timestamp, ingested_at),
       toUnixTimestamp64Nano(Timestamp) AS start_time_unix_nano
FROM llm_calls FINAL
PREWHERE trace_id IN {trace_ids:Array(String)} AND span_id IN {span_ids:Array(String)}
WHERE project_id = {project_id:String}
  AND Timestamp BETWEEN fromUnixTimestamp64Nano({lo:Int64}) AND fromUnixTimestamp64Nano({hi:Int64})
"""

_CALL_FEATURES = """
SELECT trace_id, span_id, feature
FROM llm_calls FINAL
PREWHERE trace_id IN {trace_ids:Array(String)}
WHERE project_id = {project_id:String}
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


def stored_calls(store: Store, bounds: dict[str, object], keys: Iterable[Key]) -> list[LlmCall]:
    """The full stored rows of the calls ``keys`` names, within ``bounds`` (``batch_window``)."""
    wanted = set(keys)
    params = {
        **bounds,
        "trace_ids": sorted({trace for trace, _ in wanted}),
        "span_ids": sorted({span for _, span in wanted}),
    }
    rows = store.query(_FULL_CALLS, params).dicts()
    return [call for call in calls_from_rows(rows) if (call.trace_id, call.span_id) in wanted]


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
        completable: list[LlmCall] = []
        if any(any(context_of(s)) for s in spans):
            rows = self._store.query(
                _INCOMPLETE_CALLS, {**bounds, "trace_ids": sorted({s.trace_id for s in spans})}
            ).rows
            if rows:
                keys = set(rows) - {(c.trace_id, c.span_id) for c in calls}
                completable = stored_calls(self._store, bounds, keys) if keys else []
        if not waiting and not completable:
            return []
        traces = sorted({c.trace_id for c in [*waiting, *completable]})
        ancestry = {**self._stored_ancestry(bounds, traces), **batch}
        inherit_context(waiting, ancestry)
        before = [(c.feature, c.user_id, c.session_id) for c in completable]
        inherit_context(completable, ancestry)
        return [
            call
            for call, old in zip(completable, before, strict=True)
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

"""One API call counted once when its spans arrive in different batches.

``normalize`` marks repeated calls within a batch; the two spans of one call
often arrive apart, though (an exporter sends the inner span as soon as it
ends, the outer one later), so each batch with LLM calls re-decides the groups
of its traces over its calls and the stored ones (rule in
``normalize/repeats.py``) and re-writes stored calls whose ``duplicate_of``
changed: the newer row replaces the old one (ReplacingMergeTree on
``ingested_at``), as context resolution does. Reads are indexed (trace id bloom
filter) and bounded to the batch's traces and time, widened by an hour:

* the stored calls of the batch's traces, identity columns only;
* only when a call may repeat an enclosing call through spans this batch lacks,
  the stored spans of those traces (ids, parents, kind keys);
* only for stored calls to re-write that the context step is not already
  re-writing, their full rows.

A batch bringing only spans that are not calls re-decides nothing: calls
joined only through such spans (not the nested instrumentations this is
for, which are parent and child) stay counted apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from tokentrail.collector.context import batch_window, calls_from_rows, stored_calls
from tokentrail.collector.normalize import KIND_KEYS, Repeats, find_repeats, links_of
from tokentrail.collector.normalize.repeats import Key, Link
from tokentrail.collector.records import LlmCall, Span
from tokentrail.schema.store import Store

_IN_BATCH_TRACES = """
WHERE project_id = {project_id:String}
  AND Timestamp BETWEEN fromUnixTimestamp64Nano({lo:Int64}) AND fromUnixTimestamp64Nano({hi:Int64})
"""

# Trace ids filter before the merge of FINAL: why in context.py.
_STORED_CALLS = f"""
SELECT trace_id, span_id, parent_span_id,
       toUnixTimestamp64Nano(Timestamp) AS start_time_unix_nano, duration_ns,
       provider, request_model, response_model, input_tokens, output_tokens,
       response_id, duplicate_of
FROM llm_calls FINAL
PREWHERE trace_id IN {{trace_ids:Array(String)}}
{_IN_BATCH_TRACES}
"""

_STORED_SPANS = f"""
SELECT TraceId, SpanId, ParentSpanId,
       mapFilter((k, v) -> k IN {{keys:Array(String)}}, SpanAttributes)
FROM spans FINAL
PREWHERE TraceId IN {{trace_ids:Array(String)}}
{_IN_BATCH_TRACES}
"""


Bounds = dict[str, object]


def _key(call: LlmCall) -> Key:
    return call.trace_id, call.span_id


def _stub(trace_id: str, span_id: str, parent_id: str, attributes: dict[str, str]) -> Span:
    """A stored span as far as the rule needs it: its place in the tree and its kind keys."""
    return Span(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent_id, name="", kind="",
        start_time_unix_nano=0, end_time_unix_nano=0, attributes=dict(attributes),
    )  # fmt: skip


class DuplicateResolver:
    def __init__(self, store: Store) -> None:
        self._store = store

    def resolve(
        self,
        project_id: str,
        spans: Sequence[Span],
        calls: list[LlmCall],
        links: dict[Key, Link],
        rewriting: Sequence[LlmCall] = (),
    ) -> list[LlmCall]:
        """Set ``duplicate_of`` on ``calls`` against stored calls too.

        ``links``: those of ``spans`` (``normalize.links_of``).

        Stored calls whose ``duplicate_of`` changes are updated in place when
        already in ``rewriting`` (stored calls this batch re-writes anyway);
        the others are returned, to be re-written.
        """
        if not calls:
            return []
        bounds = batch_window(project_id, spans)
        traces = sorted({call.trace_id for call in calls})
        in_batch = {_key(call) for call in calls}
        stored = [c for c in self._stored_calls(bounds, traces) if _key(c) not in in_batch]
        # Every rule compares calls of one trace, so a call alone in its trace
        # repeats nothing; most traces hold one call.
        per_trace = Counter(call.trace_id for call in [*stored, *calls])
        repeats = self._repeats(
            bounds, links, [c for c in [*stored, *calls] if per_trace[c.trace_id] > 1]
        )
        for call in calls:
            call.duplicate_of = repeats.duplicate_of.get(_key(call), "")
        changed = {
            _key(call): now
            for call in stored
            if (now := repeats.duplicate_of.get(_key(call), "")) != call.duplicate_of
        }
        updated = [call for call in rewriting if _key(call) in changed]
        missing = changed.keys() - {_key(call) for call in updated}
        fetched = stored_calls(self._store, bounds, missing) if missing else []
        for call in [*updated, *fetched]:
            call.duplicate_of = changed[_key(call)]
        return fetched

    def _repeats(self, bounds: Bounds, links: dict[Key, Link], calls: list[LlmCall]) -> Repeats:
        repeats = find_repeats(calls, links)
        if repeats.needs_links:
            traces = sorted({call.trace_id for call in calls})
            repeats = find_repeats(calls, {**self._stored_links(bounds, traces), **links})
        return repeats

    def _stored_calls(self, bounds: Bounds, traces: list[str]) -> list[LlmCall]:
        rows = self._store.query(_STORED_CALLS, {**bounds, "trace_ids": traces}).dicts()
        return calls_from_rows(rows)

    def _stored_links(self, bounds: Bounds, traces: list[str]) -> dict[Key, Link]:
        rows = self._store.query(
            _STORED_SPANS, {**bounds, "keys": list(KIND_KEYS), "trace_ids": traces}
        ).rows
        return links_of(_stub(*row) for row in rows)

"""Message content that GenAI instrumentations send as log records, joined to its LLM call.

With ``event_only`` capture the official OTel GenAI instrumentations leave the
prompt and completion off the span and emit them as log records carrying the
span's trace and span id: one ``gen_ai.client.inference.operation.details``
record per call, or, in older releases, a ``gen_ai.*.message`` record per input
message and a ``gen_ai.choice`` per output. The records are turned back into the
span events the normalizer already reads, so content reads the same whichever
way it was sent.

One call's records may span several batches (the choice is emitted after the
request, and a batch processor cuts anywhere), so content is always derived
from every record stored for the span, never from one batch alone. The rows
are versioned by how many records they came from: deriving again from more
records replaces the old row, and a re-sent batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from tokentrail.collector.normalize import otel_genai_content
from tokentrail.collector.records import Attributes, LlmContent, LogRecord, Span, SpanEvent
from tokentrail.collector.writer import flatten_attributes, flatten_value
from tokentrail.schema.store import Store
from tokentrail.semconv import GENAI_CONTENT_EVENTS

# Span events have no body, so their senders put it in this attribute, and the
# normalizer looks for it there; a log record's body goes to the same place.
_BODY_ATTRIBUTE = "gen_ai.event.content"

# A call's records are emitted while it runs: an hour either side of the batch
# bounds the read generously, as context resolution does for spans.
_WINDOW_S = 3600
# A call's content is a handful of records; this only keeps a pathological
# sender from turning one batch into an unbounded read.
MAX_STORED_RECORDS = 10_000

# The bloom filter on TraceId finds the granules; the time bound prunes
# partitions. No FINAL: duplicates are dropped below anyway, where this
# batch's own records must be matched against stored ones.
_STORED_RECORDS = """
SELECT
    TraceId, SpanId,
    toUnixTimestamp64Nano(Timestamp), toUnixTimestamp64Nano(ObservedTimestamp),
    if(EventName != '', EventName, LogAttributes['event.name']) AS event,
    Body, LogAttributes
FROM logs
WHERE project_id = {project_id:String}
  AND TimestampTime BETWEEN toDateTime({lo:Int64}) AND toDateTime({hi:Int64})
  AND TraceId IN {trace_ids:Array(String)}
  AND SpanId IN {span_ids:Array(String)}
  AND event IN {events:Array(String)}
ORDER BY Timestamp, ObservedTimestamp
LIMIT {limit:UInt32}
"""


class _Record(NamedTuple):
    """A content record as the logs table holds it, so stored and new ones compare equal."""

    trace_id: str
    span_id: str
    time_ns: int
    observed_ns: int
    event: str
    body: str
    attributes: tuple[tuple[str, str], ...]  # sorted: map order is not identity


def event_name(record: LogRecord) -> str:
    """The OTLP ``event_name`` field, else the ``event.name`` attribute older SDKs set."""
    if record.event_name:
        return record.event_name
    return flatten_value(record.attributes.get("event.name"))


def _content_record(record: LogRecord) -> _Record | None:
    """The record in stored form if it is GenAI content of a span, else None."""
    event = event_name(record)
    if event not in GENAI_CONTENT_EVENTS or not (record.trace_id and record.span_id):
        return None
    return _Record(
        record.trace_id,
        record.span_id,
        record.timestamp_unix_nano,
        record.observed_time_unix_nano,
        event,
        flatten_value(record.body),
        tuple(sorted(flatten_attributes(record.attributes).items())),
    )


def _as_event(record: _Record) -> SpanEvent:
    attributes: Attributes = dict(record.attributes)
    if record.body:
        attributes[_BODY_ATTRIBUTE] = record.body
    return SpanEvent(record.time_ns, record.event, attributes)


def _derive(trace_id: str, span_id: str, records: list[_Record]) -> LlmContent:
    # Emission order is message order (system, user, ..., then choices).
    ordered = sorted(records, key=lambda r: (r.time_ns, r.observed_ns))
    stub = Span(trace_id, span_id, "", "", "Unspecified", 0, 0)
    stub.events = [_as_event(record) for record in ordered]
    prompt, completion = otel_genai_content(stub)
    return LlmContent(trace_id, span_id, prompt, completion, records=len(records))


class LogContent:
    """Derives LLM call content from log records; the caller stores the result."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def derive(self, project_id: str, records: Sequence[LogRecord]) -> list[LlmContent]:
        """Content of every span this batch has GenAI records for, from all its records."""
        batch = [content for record in records if (content := _content_record(record))]
        if not batch:
            return []
        spans: dict[tuple[str, str], list[_Record]] = {(r.trace_id, r.span_id): [] for r in batch}
        # dict.fromkeys drops duplicates: the store may already hold this batch
        # (written just before, or by an earlier attempt of a retried export).
        for record in dict.fromkeys([*self._stored(project_id, batch), *batch]):
            same_span = spans.get((record.trace_id, record.span_id))
            if same_span is not None:  # the read also matches other trace/span pairings
                same_span.append(record)
        derived = (_derive(trace, span, found) for (trace, span), found in spans.items())
        return [content for content in derived if content.prompt or content.completion]

    def _stored(self, project_id: str, batch: list[_Record]) -> list[_Record]:
        times = [r.time_ns // 10**9 for r in batch]
        params = {
            "project_id": project_id,
            "lo": max(0, min(times) - _WINDOW_S),
            "hi": max(times) + _WINDOW_S,
            "trace_ids": sorted({r.trace_id for r in batch}),
            "span_ids": sorted({r.span_id for r in batch}),
            "events": sorted(GENAI_CONTENT_EVENTS),
            "limit": MAX_STORED_RECORDS,
        }
        rows = self._store.query(_STORED_RECORDS, params).rows
        return [
            _Record(trace, span, time_ns, observed_ns, event, body, tuple(sorted(attrs.items())))
            for trace, span, time_ns, observed_ns, event, body, attrs in rows
        ]

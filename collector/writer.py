"""The last stage: records → columnar blocks → the store.

Attribute values are flattened the way the OpenTelemetry Collector ClickHouse
exporter does (strings as-is, everything else JSON), so Grafana and ad-hoc SQL
read our ``spans`` table like any ``otel_traces`` table.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from operator import attrgetter
from typing import Any, TypeVar

from tokentrail.collector.records import (
    Attributes,
    AttributeValue,
    LlmCall,
    LlmContent,
    LogRecord,
    Score,
    Span,
    SpanEvent,
    SpanLink,
)
from tokentrail.collector.rollup_feed import settle_calls, settle_scores
from tokentrail.schema.store import Store

T = TypeVar("T")


def flatten_value(value: AttributeValue) -> str:
    # What json.dumps writes for a plain int or finite float, without its
    # machinery; tested first as the commonest values that are not strings.
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return _to_json(_jsonable(value))


# What json.dumps(ensure_ascii=False, separators=(",", ":")) does, without a new
# encoder per call (json.dumps builds one whenever it is given options).
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _jsonable(value: AttributeValue) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def flatten_attributes(attributes: Attributes) -> dict[str, str]:
    # Most values are strings already: skip the call for them.
    return {
        key: value if type(value) is str else flatten_value(value)
        for key, value in attributes.items()
    }


def _flatten_runs(maps: Iterable[Attributes]) -> list[dict[str, str]]:
    """``flatten_attributes`` of each map, flattening a run of equal maps once.

    For resource attributes: one resource's, usually a whole batch's. A map
    equal to the previous flattened one holds only strings already, so it
    would flatten to that same map.
    """
    flat: list[dict[str, str]] = []
    previous: dict[str, str] = {}
    for attributes in maps:
        if attributes != previous:
            previous = flatten_attributes(attributes)
        flat.append(previous)
    return flat


def _nested(groups: Iterable[Sequence[T]], field: Callable[[T], Any]) -> list[list[Any]]:
    """One column of a Nested field: ``field`` of each item, per group."""
    # Most spans have no events or links: no comprehension for them (a call each).
    return [[field(item) for item in group] if group else [] for group in groups]


def _flat_attributes(item: SpanEvent | SpanLink) -> dict[str, str]:
    return flatten_attributes(item.attributes)


def span_columns(project_id: str, spans: Sequence[Span]) -> dict[str, list[Any]]:
    events = [s.events for s in spans]
    links = [s.links for s in spans]
    return {
        "project_id": [project_id] * len(spans),
        "Timestamp": [s.start_time_unix_nano for s in spans],
        "TraceId": [s.trace_id for s in spans],
        "SpanId": [s.span_id for s in spans],
        "ParentSpanId": [s.parent_span_id for s in spans],
        "TraceState": [s.trace_state for s in spans],
        "SpanName": [s.name for s in spans],
        "SpanKind": [s.kind for s in spans],
        "ServiceName": [s.service_name for s in spans],
        "ResourceAttributes": _flatten_runs(s.resource_attributes for s in spans),
        "ScopeName": [s.scope_name for s in spans],
        "ScopeVersion": [s.scope_version for s in spans],
        "SpanAttributes": [flatten_attributes(s.attributes) for s in spans],
        "Duration": [s.duration_ns for s in spans],
        "StatusCode": [s.status_code for s in spans],
        "StatusMessage": [s.status_message for s in spans],
        "Events.Timestamp": _nested(events, attrgetter("time_unix_nano")),
        "Events.Name": _nested(events, attrgetter("name")),
        "Events.Attributes": _nested(events, _flat_attributes),
        "Links.TraceId": _nested(links, attrgetter("trace_id")),
        "Links.SpanId": _nested(links, attrgetter("span_id")),
        "Links.TraceState": _nested(links, attrgetter("trace_state")),
        "Links.Attributes": _nested(links, _flat_attributes),
    }


# llm_calls columns that map one-to-one onto LlmCall fields of the same name.
_CALL_FIELDS = (
    "trace_id", "span_id", "parent_span_id", "service", "environment", "feature", "user_id",
    "session_id", "provider", "request_model", "response_model", "operation", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
    "input_cost_usd", "output_cost_usd", "total_cost_usd", "price_status", "duration_ns",
    "time_to_first_token_s", "status_code", "error_type", "finish_reasons", "response_id",
    "prompt", "completion", "sample_weight", "convention", "streaming", "unknown_keys",
    "duplicate_of",
)  # fmt: skip


def llm_call_columns(project_id: str, calls: Sequence[LlmCall]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {
        "project_id": [project_id] * len(calls),
        "Timestamp": [c.start_time_unix_nano for c in calls],
    }
    for name in _CALL_FIELDS:
        columns[name] = [getattr(c, name) for c in calls]
    return columns


_SCORE_FIELDS = (
    "score_id", "trace_id", "span_id", "name", "data_type", "value", "string_value", "source",
    "comment", "feature",
)  # fmt: skip


def score_columns(project_id: str, scores: Sequence[Score]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {
        "project_id": [project_id] * len(scores),
        "Timestamp": [s.time_unix_nano for s in scores],
    }
    for name in _SCORE_FIELDS:
        columns[name] = [getattr(s, name) for s in scores]
    return columns


def log_columns(project_id: str, records: Sequence[LogRecord]) -> dict[str, list[Any]]:
    return {
        "project_id": [project_id] * len(records),
        "Timestamp": [r.timestamp_unix_nano for r in records],
        "ObservedTimestamp": [r.observed_time_unix_nano for r in records],
        "TraceId": [r.trace_id for r in records],
        "SpanId": [r.span_id for r in records],
        "TraceFlags": [r.trace_flags for r in records],
        "SeverityText": [r.severity_text for r in records],
        "SeverityNumber": [r.severity_number for r in records],
        "ServiceName": [r.service_name for r in records],
        "Body": [flatten_value(r.body) for r in records],
        "ResourceSchemaUrl": [r.resource_schema_url for r in records],
        "ResourceAttributes": _flatten_runs(r.resource_attributes for r in records),
        "ScopeSchemaUrl": [r.scope_schema_url for r in records],
        "ScopeName": [r.scope_name for r in records],
        "ScopeVersion": [r.scope_version for r in records],
        "ScopeAttributes": [flatten_attributes(r.scope_attributes) for r in records],
        "LogAttributes": [flatten_attributes(r.attributes) for r in records],
        "EventName": [r.event_name for r in records],
    }


def content_columns(project_id: str, contents: Sequence[LlmContent]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {"project_id": [project_id] * len(contents)}
    for name in ("trace_id", "span_id", "prompt", "completion", "records"):
        columns[name] = [getattr(c, name) for c in contents]
    return columns


def last_per_key(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """One item per key, the last one given, where the first stood.

    The raw tables keep one row per key, and two rows of one key in one insert
    share a version, so which one survives would be up to the engine; the
    rollups must count the one that does.
    """
    return list({key(item): item for item in items}.values())


def _call_key(call: LlmCall) -> Hashable:
    # The identity llm_calls de-duplicates on (its sorting key, per project).
    return call.start_time_unix_nano // 1_000_000_000, call.trace_id, call.span_id


def _score_key(score: Score) -> Hashable:
    return score.trace_id, score.score_id


class Writer:
    """Writes one ingest batch synchronously; returning means it is stored.

    Spans go first: if a later block fails, the batch is answered with an error
    and re-sent, and the re-sent spans collapse into the ones already stored.
    Calls and scores are settled into the rollups right after they are stored
    (``rollup_feed``); a re-sent batch settles whatever a failed one left undone.
    Every writer of ``llm_calls`` and ``scores`` must come through here, or run
    ``rollup_feed.reconcile`` over what it wrote.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def write(
        self,
        project_id: str,
        spans: Iterable[Span] = (),
        calls: Iterable[LlmCall] = (),
        scores: Iterable[Score] = (),
    ) -> None:
        unique_calls = last_per_key(calls, _call_key)
        unique_scores = last_per_key(scores, _score_key)
        self._store.insert_columns("spans", span_columns(project_id, list(spans)))
        self._store.insert_columns("llm_calls", llm_call_columns(project_id, unique_calls))
        settle_calls(self._store, project_id, unique_calls)
        self._store.insert_columns("scores", score_columns(project_id, unique_scores))
        settle_scores(self._store, project_id, unique_scores)

    def write_logs(self, project_id: str, records: Iterable[LogRecord]) -> None:
        self._store.insert_columns("logs", log_columns(project_id, list(records)))

    def write_content(self, project_id: str, contents: Iterable[LlmContent]) -> None:
        self._store.insert_columns("llm_call_content", content_columns(project_id, list(contents)))

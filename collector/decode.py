"""Decode OTLP trace exports into :class:`~tokentrail.collector.records.Span` records.

Two steps, so that transports share them: :func:`parse_traces_request` turns an
OTLP/HTTP body (binary protobuf or OTLP/JSON) into the protobuf request, and
:func:`flatten` turns any request (also one from gRPC) into spans. A span with
bad ids is rejected on its own, with a message, so one broken span never costs
the client the rest of its batch.

The body parsing (:func:`parse_request`, with the OTLP/JSON hex-id fix-up) and
the value helpers are shared by every signal; ``decode_logs`` builds on them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from tokentrail.collector import telemetry
from tokentrail.collector.limits import (
    DROPPED_ATTRIBUTES,
    DROPPED_EVENTS,
    DROPPED_LINKS,
    Limits,
    configured_limits,
    truncate_value,
)
from tokentrail.collector.records import Attributes, AttributeValue, Span, SpanEvent, SpanLink

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8
MAX_TIME_UNIX_NANO = 2**63 - 1  # DateTime64(9) is an Int64 of nanoseconds

# Indexed by the OTLP enum numbers; the names are those the ClickHouse
# exporter writes to otel_traces, so Grafana's trace view reads our rows.
_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS_CODES = ("Unset", "Ok", "Error")

# The AnyValue members with nothing in them to truncate.
_UNCUT_VALUES = frozenset({"bool_value", "int_value", "double_value"})
_SCALAR_VALUES = _UNCUT_VALUES | {"string_value", "bytes_value"}

# OTLP/JSON spells ids as hex; protobuf's JSON mapping expects base64 for bytes.
_JSON_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
# Prefixes, in place of the id, what a client sent as a non-hex OTLP/JSON id.
# Longer than any valid id, so a marked id can never pass as one.
_NOT_HEX = b"\xfftokentrail:not-hex\xff"

IdPath = tuple[tuple[tuple[str, ...], bool], ...]
"""Where a signal's OTLP/JSON carries ids: per nesting level, the keys of its list
(camelCase first, as the spec spells it, then the snake_case protobuf also
accepts) and whether the objects in it hold ids."""

_TRACE_ID_PATH: IdPath = (
    (("resourceSpans", "resource_spans"), False),
    (("scopeSpans", "scope_spans"), False),
    (("spans",), True),
    (("links",), True),
)

Request = TypeVar("Request", bound=Message)


class DecodeError(ValueError):
    """The body is not a decodable OTLP export (answered with HTTP 400)."""


def media_type(content_type: str) -> str:
    """The bare media type of a Content-Type header, without parameters such as charset."""
    return content_type.split(";", 1)[0].strip().lower()


def parse_traces_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Parse an OTLP/HTTP trace export body in the encoding its Content-Type names."""
    return parse_request(body, content_type, ExportTraceServiceRequest, _TRACE_ID_PATH)


def parse_request(
    body: bytes, content_type: str, request_type: type[Request], id_path: IdPath
) -> Request:
    """Parse any signal's OTLP/HTTP export body in the encoding its Content-Type names."""
    kind = media_type(content_type)
    if kind == PROTOBUF:
        return _parse_protobuf(body, request_type)
    if kind == JSON:
        return _parse_json(body, request_type, id_path)
    raise DecodeError(f"unsupported content type {content_type!r}; use {PROTOBUF} or {JSON}")


def _parse_protobuf(body: bytes, request_type: type[Request]) -> Request:
    request = request_type()
    try:
        request.ParseFromString(body)
    except (ProtobufDecodeError, RecursionError) as exc:
        raise DecodeError(f"invalid protobuf {request_type.__name__}: {exc}") from exc
    return request


def _parse_json(body: bytes, request_type: type[Request], id_path: IdPath) -> Request:
    try:
        text = body.decode("utf-8-sig")  # JSON is UTF-8 (RFC 8259); tolerate a BOM
    except UnicodeDecodeError as exc:
        raise DecodeError(f"JSON body is not valid UTF-8: {exc}") from exc
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from exc
    name = request_type.__name__
    if not isinstance(document, dict):
        raise DecodeError(f"JSON body must be an object (an {name})")
    _hex_ids_to_base64(document, id_path)
    try:
        # Unknown fields must be ignored, so newer clients keep working (OTLP spec).
        return json_format.ParseDict(document, request_type(), ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as exc:
        raise DecodeError(f"invalid OTLP/JSON {name}: {exc}") from exc


def _hex_ids_to_base64(node: dict[str, Any], id_path: IdPath) -> None:
    """Rewrite the ids along ``id_path`` from OTLP/JSON hex to the base64 ParseDict expects.

    Done before parsing because afterwards a hex id has already been read as
    base64 into garbage bytes of a plausible-looking length.
    """
    if not id_path:
        return
    (keys, holds_ids), deeper = id_path[0], id_path[1:]
    for _, child in _objects(node, *keys):
        if holds_ids:
            _convert_ids(child)
        _hex_ids_to_base64(child, deeper)


def _objects(parent: dict[str, Any], *keys: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The (index, object) items of the first list found under ``keys``.

    Anything of the wrong shape is skipped here and reported by ParseDict,
    which names the offending field better than we could.
    """
    for key in keys:
        items = parent.get(key)
        if isinstance(items, list):
            yield from ((i, item) for i, item in enumerate(items) if isinstance(item, dict))
            return


def _convert_ids(obj: dict[str, Any]) -> None:
    for key in _JSON_ID_KEYS:
        value = obj.get(key)
        if not isinstance(value, str):
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) * 2 != len(value):  # not hex, or hex with whitespace fromhex skipped
            # Rejected with its span or record, not the whole request: flatten
            # reports the marked id, which no id length can be (see length_problem).
            raw = _NOT_HEX + value[:48].encode("utf-8", "backslashreplace")
        obj[key] = base64.b64encode(raw).decode("ascii")


def flatten(
    request: ExportTraceServiceRequest, limits: Limits | None = None
) -> tuple[list[Span], list[str]]:
    """Every valid span of ``request`` as a record, and one message per rejected span.

    ``len(errors)`` is the number of rejected spans, ready for OTLP's
    ``partial_success.rejected_spans``. Spans are cut to ``limits`` (the
    configured ones by default), never rejected for size. Counted in the
    collector's metrics here, so every transport is.
    """
    limits = limits or configured_limits()
    spans: list[Span] = []
    errors: list[str] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = decode_attributes(resource_spans.resource.attributes)
        for c, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope
            scope_name, scope_version = scope.name, scope.version  # read once, not per span
            for s, span in enumerate(scope_spans.spans):
                problem = _id_problem(span) or _time_problem(span)
                if problem:
                    errors.append(f"span {s} of scope {c} of resource {r}: {problem}")
                else:
                    spans.append(_span(span, resource, scope_name, scope_version, limits))
    telemetry.SPANS_RECEIVED.inc(len(spans) + len(errors))
    telemetry.SPANS_ACCEPTED.inc(len(spans))
    if errors:
        telemetry.SPANS_REJECTED.inc(len(errors), reason="invalid")
    return spans, errors


def _id_problem(span: ProtoSpan) -> str | None:
    """Why the span's ids are unusable, or None: a bad id would corrupt trace trees."""
    problem = (
        length_problem("trace_id", span.trace_id, TRACE_ID_BYTES, optional=False)
        or length_problem("span_id", span.span_id, SPAN_ID_BYTES, optional=False)
        or length_problem("parent_span_id", span.parent_span_id, SPAN_ID_BYTES, optional=True)
    )
    if problem:
        return problem
    if not any(span.trace_id):
        return "trace_id must not be all zeros"
    if not any(span.span_id):
        return "span_id must not be all zeros"
    for k, link in enumerate(span.links):
        # A link may carry an invalid (empty or zero) context when it has
        # attributes (OTel spec), so only the length is checked.
        problem = length_problem(
            "trace_id", link.trace_id, TRACE_ID_BYTES, optional=True
        ) or length_problem("span_id", link.span_id, SPAN_ID_BYTES, optional=True)
        if problem:
            return f"link {k}: {problem}"
    return None


def _time_problem(span: ProtoSpan) -> str | None:
    """Why a span's times cannot be stored, or None."""
    if problem := time_problem("start_time_unix_nano", span.start_time_unix_nano):
        return problem
    if problem := time_problem("end_time_unix_nano", span.end_time_unix_nano):
        return problem
    # A loop, not a generator: most spans have no events to build one for.
    for k, event in enumerate(span.events):
        if problem := time_problem("time_unix_nano", event.time_unix_nano):
            return f"event {k}: {problem}"
    return None


def time_problem(name: str, value: int) -> str | None:
    """Why a fixed64 time is unstorable, or None.

    OTLP allows up to 2**64 - 1, but DateTime64(9) holds a signed 64-bit count
    (to the year 2262): beyond it the insert fails, and since a failed insert is
    answered as retryable, the exporter would resend the batch forever.
    """
    if value <= MAX_TIME_UNIX_NANO:
        return None
    return f"{name} {value} is past the latest storable time ({MAX_TIME_UNIX_NANO})"


def length_problem(name: str, value: bytes, size: int, *, optional: bool) -> str | None:
    """Why an id has the wrong length or was not hex in OTLP/JSON, or None.

    ``optional`` ids may also be empty.
    """
    if len(value) == size or (optional and not value):
        return None
    if value.startswith(_NOT_HEX):  # bounded: protobuf clients can send these bytes too
        sent = value[len(_NOT_HEX) : len(_NOT_HEX) + 300].decode("utf-8", "replace")
        return f"{name} must be a hex string (OTLP/JSON ids are hex, not base64), got {sent!r}"
    return f"{name} must be {size} bytes, got {len(value)}"


def _span(
    span: ProtoSpan, resource: Attributes, scope_name: str, scope_version: str, limits: Limits
) -> Span:
    attributes = _limited_attributes(span.attributes, limits)
    # Each upb field read builds a new wrapper: read the lists once, and skip
    # them when empty, as they mostly are.
    events: list[SpanEvent] = []
    if proto_events := span.events:
        events = [
            SpanEvent(
                event.time_unix_nano, event.name, _limited_attributes(event.attributes, limits)
            )
            for event in proto_events[: limits.events_per_span]
        ]
        _record_dropped(attributes, DROPPED_EVENTS, "events", len(proto_events) - len(events))
    links: list[SpanLink] = []
    if proto_links := span.links:
        links = [
            SpanLink(
                hex_or_empty(link.trace_id),
                hex_or_empty(link.span_id),
                link.trace_state,
                _limited_attributes(link.attributes, limits),
            )
            for link in proto_links[: limits.links_per_span]
        ]
        _record_dropped(attributes, DROPPED_LINKS, "links", len(proto_links) - len(links))
    status = span.status
    return Span(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=hex_or_empty(span.parent_span_id),
        name=span.name,
        kind=_KINDS[span.kind] if 0 <= span.kind < len(_KINDS) else "Unspecified",
        start_time_unix_nano=span.start_time_unix_nano,
        end_time_unix_nano=span.end_time_unix_nano,
        attributes=attributes,
        # A copy each, so a later stage editing one span cannot touch its siblings.
        resource_attributes=dict(resource),
        scope_name=scope_name,
        scope_version=scope_version,
        trace_state=span.trace_state,
        status_code=_status_code(status.code),
        status_message=status.message,
        events=events,
        links=links,
    )


def _limited_attributes(pairs: Sequence[KeyValue], limits: Limits) -> Attributes:
    """The first ``attributes_per_span`` pairs, their values truncated to the length limit.

    Used for a span's, an event's and a link's attributes alike, as the OTel SDK
    limits all three.
    """
    attributes: Attributes = {}
    max_length = limits.attribute_value_length
    truncated = 0
    for pair in pairs[: limits.attributes_per_span]:
        value = pair.value
        # The common cases without a call per attribute: a string within the
        # limit (a non-empty string_value can only be the oneof's member that
        # is set), or a number or bool.
        text = value.string_value
        if text and len(text) <= max_length:
            attributes[pair.key] = text
            continue
        which = value.WhichOneof("value")
        if which in _UNCUT_VALUES:
            attributes[pair.key] = getattr(value, which)
            continue
        decoded = decode_value(value)
        limited = truncate_value(decoded, max_length)
        truncated += limited is not decoded
        attributes[pair.key] = limited
    if truncated:
        telemetry.SPAN_LIMITED.inc(truncated, what="truncated_values")
    _record_dropped(attributes, DROPPED_ATTRIBUTES, "attributes", len(pairs) - len(attributes))
    return attributes


def _record_dropped(attributes: Attributes, key: str, what: str, dropped: int) -> None:
    """Note ``dropped`` items on the span itself (past the attribute limit) and in the metrics.

    Never silently: a reader of a trimmed span must see that it was trimmed.
    """
    if dropped > 0:
        attributes[key] = dropped
        telemetry.SPAN_LIMITED.inc(dropped, what=what)


def _status_code(code: int) -> str:
    return _STATUS_CODES[code] if 0 <= code < len(_STATUS_CODES) else "Unset"


def hex_or_empty(value: bytes) -> str:
    """Hex of an optional id; an all-zero id means "none", as the OTel Collector renders it."""
    return value.hex() if any(value) else ""


def decode_attributes(pairs: Iterable[KeyValue]) -> Attributes:
    return {pair.key: decode_value(pair.value) for pair in pairs}


def decode_value(value: AnyValue) -> AttributeValue:
    """An OTLP AnyValue as the matching Python value; unset becomes None."""
    which = value.WhichOneof("value")
    if which in _SCALAR_VALUES:
        return getattr(value, which)
    if which == "array_value":
        return [decode_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    # Unset, or string_value_strindex: an index into the profiles signal's
    # string table, meaningless in traces and logs (the proto says to treat it as absent).
    return None

"""Decode OTLP trace exports into :class:`~tokentrail.collector.records.Span` records.

Two steps, so that transports share them: :func:`parse_traces_request` turns an
OTLP/HTTP body (binary protobuf or OTLP/JSON) into the protobuf request, and
:func:`flatten` turns any request (also one from gRPC) into spans. A span with
bad ids is rejected on its own, with a message, so one broken span never costs
the client the rest of its batch.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from tokentrail.collector.records import Attributes, AttributeValue, Span, SpanEvent, SpanLink

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

# Indexed by the OTLP enum numbers; the names are those the ClickHouse
# exporter writes to otel_traces, so Grafana's trace view reads our rows.
_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS_CODES = ("Unset", "Ok", "Error")

_SCALAR_VALUES = frozenset(
    {"string_value", "bool_value", "int_value", "double_value", "bytes_value"}
)

# OTLP/JSON spells ids as hex; protobuf's JSON mapping expects base64 for bytes.
_JSON_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


class DecodeError(ValueError):
    """The body is not a decodable OTLP trace export (answered with HTTP 400)."""


def media_type(content_type: str) -> str:
    """The bare media type of a Content-Type header, without parameters such as charset."""
    return content_type.split(";", 1)[0].strip().lower()


def parse_traces_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Parse an OTLP/HTTP trace export body in the encoding its Content-Type names."""
    kind = media_type(content_type)
    if kind == PROTOBUF:
        return _parse_protobuf(body)
    if kind == JSON:
        return _parse_json(body)
    raise DecodeError(f"unsupported content type {content_type!r}; use {PROTOBUF} or {JSON}")


def _parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (ProtobufDecodeError, RecursionError) as exc:
        raise DecodeError(f"invalid protobuf ExportTraceServiceRequest: {exc}") from exc
    return request


def _parse_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        text = body.decode("utf-8-sig")  # JSON is UTF-8 (RFC 8259); tolerate a BOM
    except UnicodeDecodeError as exc:
        raise DecodeError(f"JSON body is not valid UTF-8: {exc}") from exc
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise DecodeError("JSON body must be an object (an ExportTraceServiceRequest)")
    _hex_ids_to_base64(document)
    try:
        # Unknown fields must be ignored, so newer clients keep working (OTLP spec).
        return json_format.ParseDict(
            document, ExportTraceServiceRequest(), ignore_unknown_fields=True
        )
    except (json_format.ParseError, RecursionError) as exc:
        raise DecodeError(f"invalid OTLP/JSON ExportTraceServiceRequest: {exc}") from exc


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """Rewrite span and link ids from OTLP/JSON hex to the base64 ParseDict expects.

    Done before parsing because afterwards a hex id has already been read as
    base64 into garbage bytes of a plausible-looking length.
    """
    for r, resource_spans in _objects(document, "resourceSpans", "resource_spans"):
        for c, scope_spans in _objects(resource_spans, "scopeSpans", "scope_spans"):
            for s, span in _objects(scope_spans, "spans"):
                where = f"resourceSpans[{r}].scopeSpans[{c}].spans[{s}]"
                _convert_ids(span, where)
                for k, link in _objects(span, "links"):
                    _convert_ids(link, f"{where}.links[{k}]")


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


def _convert_ids(obj: dict[str, Any], where: str) -> None:
    for key in _JSON_ID_KEYS:
        value = obj.get(key)
        if not isinstance(value, str):
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise DecodeError(
                f"{where}.{key} must be a hex string (OTLP/JSON ids are hex, not base64),"
                f" got {value[:48]!r}"
            ) from None
        obj[key] = base64.b64encode(raw).decode("ascii")


def flatten(request: ExportTraceServiceRequest) -> tuple[list[Span], list[str]]:
    """Every valid span of ``request`` as a record, and one message per rejected span.

    ``len(errors)`` is the number of rejected spans, ready for OTLP's
    ``partial_success.rejected_spans``.
    """
    spans: list[Span] = []
    errors: list[str] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _attributes(resource_spans.resource.attributes)
        for c, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope
            for s, span in enumerate(scope_spans.spans):
                problem = _id_problem(span)
                if problem:
                    errors.append(f"span {s} of scope {c} of resource {r}: {problem}")
                else:
                    spans.append(_span(span, resource, scope.name, scope.version))
    return spans, errors


def _id_problem(span: ProtoSpan) -> str | None:
    """Why the span's ids are unusable, or None: a bad id would corrupt trace trees."""
    problem = (
        _length_problem("trace_id", span.trace_id, TRACE_ID_BYTES, optional=False)
        or _length_problem("span_id", span.span_id, SPAN_ID_BYTES, optional=False)
        or _length_problem("parent_span_id", span.parent_span_id, SPAN_ID_BYTES, optional=True)
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
        problem = _length_problem(
            "trace_id", link.trace_id, TRACE_ID_BYTES, optional=True
        ) or _length_problem("span_id", link.span_id, SPAN_ID_BYTES, optional=True)
        if problem:
            return f"link {k}: {problem}"
    return None


def _length_problem(name: str, value: bytes, size: int, *, optional: bool) -> str | None:
    if len(value) == size or (optional and not value):
        return None
    return f"{name} must be {size} bytes, got {len(value)}"


def _span(span: ProtoSpan, resource: Attributes, scope_name: str, scope_version: str) -> Span:
    return Span(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=_hex_or_empty(span.parent_span_id),
        name=span.name,
        kind=_KINDS[span.kind] if 0 <= span.kind < len(_KINDS) else "Unspecified",
        start_time_unix_nano=span.start_time_unix_nano,
        end_time_unix_nano=span.end_time_unix_nano,
        attributes=_attributes(span.attributes),
        # A copy each, so a later stage editing one span cannot touch its siblings.
        resource_attributes=dict(resource),
        scope_name=scope_name,
        scope_version=scope_version,
        trace_state=span.trace_state,
        status_code=_status_code(span.status.code),
        status_message=span.status.message,
        events=[
            SpanEvent(event.time_unix_nano, event.name, _attributes(event.attributes))
            for event in span.events
        ],
        links=[
            SpanLink(
                _hex_or_empty(link.trace_id),
                _hex_or_empty(link.span_id),
                link.trace_state,
                _attributes(link.attributes),
            )
            for link in span.links
        ],
    )


def _status_code(code: int) -> str:
    return _STATUS_CODES[code] if 0 <= code < len(_STATUS_CODES) else "Unset"


def _hex_or_empty(value: bytes) -> str:
    """Hex of an optional id; an all-zero id means "none", as the OTel Collector renders it."""
    return value.hex() if any(value) else ""


def _attributes(pairs: Iterable[KeyValue]) -> Attributes:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> AttributeValue:
    """An OTLP AnyValue as the matching Python value; unset becomes None."""
    which = value.WhichOneof("value")
    if which in _SCALAR_VALUES:
        return getattr(value, which)
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    # Unset, or string_value_strindex: an index into the profiles signal's
    # string table, meaningless in traces (the proto says to treat it as absent).
    return None

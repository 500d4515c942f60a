"""OTLP decoding: real OTel SDK output, OTLP/JSON with hex ids, and every rejection path."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from tokentrail.collector.decode import DecodeError, flatten, parse_traces_request
from tokentrail.collector.records import Span

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_HEX = "eee19b7ec3c1b174"
PARENT_HEX = "1234567890abcdef"
LINKED_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
LINKED_SPAN = 0xB7AD6B7169203331


def record_sdk_spans() -> list[ReadableSpan]:
    """Spans as the OpenTelemetry SDK really produces them: a CLIENT LLM span under an agent."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "checkout", "deployment.environment.name": "prod"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tokentrail.tests", "1.2.3")
    linked = SpanContext(LINKED_TRACE, LINKED_SPAN, is_remote=True, trace_flags=TraceFlags(1))
    with (
        tracer.start_as_current_span("invoke_agent shopper"),
        tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            links=[Link(linked, {"link.reason": "retry of"})],
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.stream": True,
                "gen_ai.response.finish_reasons": ["stop", "length"],
                "llm.token_counts": [1, 2],
            },
        ) as span,
    ):
        span.add_event(
            "gen_ai.evaluation.result",
            {"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.9},
            timestamp=1_700_000_000_123_456_789,
        )
        span.set_status(Status(StatusCode.ERROR, "rate limited"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def sdk_protobuf_body(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def otlp_json_body(request: ExportTraceServiceRequest) -> bytes:
    """The OTLP/JSON form of ``request``: proto3 JSON, except ids in hex as OTLP requires."""
    document = json_format.MessageToDict(request)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for obj in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in obj:
                            obj[key] = base64.b64decode(obj[key]).hex()
    return json.dumps(document).encode()


def proto_span(
    trace_id: bytes = bytes.fromhex(TRACE_HEX),
    span_id: bytes = bytes.fromhex(SPAN_HEX),
    parent_span_id: bytes = b"",
    name: str = "span",
    **fields: Any,
) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent_span_id, name=name, **fields
    )


def proto_request(*spans: trace_pb2.Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request


def json_body(*spans: dict[str, Any], **resource_spans: Any) -> bytes:
    return json.dumps(
        {"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}], **resource_spans}]}
    ).encode()


def decode(body: bytes, content_type: str) -> tuple[list[Span], list[str]]:
    return flatten(parse_traces_request(body, content_type))


# --- real SDK output ------------------------------------------------------------


def test_protobuf_from_the_otel_sdk_decodes_losslessly() -> None:
    sdk_spans = record_sdk_spans()
    spans, errors = decode(sdk_protobuf_body(sdk_spans), PROTOBUF)

    assert errors == []
    by_name = {span.name: span for span in spans}
    agent, chat = by_name["invoke_agent shopper"], by_name["chat gpt-4o-mini"]
    sdk_chat = next(s for s in sdk_spans if s.name == "chat gpt-4o-mini")
    assert sdk_chat.context is not None
    assert chat.trace_id == format(sdk_chat.context.trace_id, "032x")
    assert chat.span_id == format(sdk_chat.context.span_id, "016x")
    assert chat.parent_span_id == agent.span_id
    assert agent.parent_span_id == ""
    assert chat.kind == "Client"
    assert agent.kind == "Internal"
    assert chat.start_time_unix_nano == sdk_chat.start_time
    assert chat.end_time_unix_nano == sdk_chat.end_time
    assert chat.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.stream": True,
        "gen_ai.response.finish_reasons": ["stop", "length"],
        "llm.token_counts": [1, 2],
    }
    assert chat.service_name == "checkout"
    assert chat.resource_attributes["deployment.environment.name"] == "prod"
    assert (chat.scope_name, chat.scope_version) == ("tokentrail.tests", "1.2.3")
    assert (chat.status_code, chat.status_message) == ("Error", "rate limited")
    assert agent.status_code == "Unset"


def test_sdk_events_and_links_are_converted() -> None:
    spans, _ = decode(sdk_protobuf_body(record_sdk_spans()), PROTOBUF)
    chat = next(span for span in spans if span.name == "chat gpt-4o-mini")

    [event] = chat.events
    assert event.name == "gen_ai.evaluation.result"
    assert event.time_unix_nano == 1_700_000_000_123_456_789
    assert event.attributes == {
        "gen_ai.evaluation.name": "relevance",
        "gen_ai.evaluation.score.value": 0.9,
    }
    [link] = chat.links
    assert link.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert link.span_id == "b7ad6b7169203331"
    assert link.attributes == {"link.reason": "retry of"}


def test_otlp_json_and_protobuf_of_the_same_export_decode_identically() -> None:
    request = encode_spans(record_sdk_spans())

    from_protobuf = decode(request.SerializeToString(), PROTOBUF)
    from_json = decode(otlp_json_body(request), JSON)

    assert from_json == from_protobuf


def test_each_span_gets_its_own_resource_attributes() -> None:
    spans, _ = decode(sdk_protobuf_body(record_sdk_spans()), PROTOBUF)
    spans[0].resource_attributes["edited"] = True
    assert "edited" not in spans[1].resource_attributes


# --- OTLP/JSON -------------------------------------------------------------------


def test_json_hex_ids_come_out_as_the_same_lowercase_hex() -> None:
    body = json_body(
        {
            "traceId": TRACE_HEX.upper(),  # hex is case-insensitive in OTLP/JSON
            "spanId": SPAN_HEX,
            "parentSpanId": PARENT_HEX,
            "name": "chat",
            "links": [
                {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}
            ],
        }
    )
    [span], errors = decode(body, JSON)

    assert errors == []
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE_HEX, SPAN_HEX, PARENT_HEX)
    assert (span.links[0].trace_id, span.links[0].span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )


def test_json_12_byte_trace_id_is_rejected_and_the_good_span_kept() -> None:
    body = json_body(
        {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "name": "good"},
        {"traceId": "5b8efff798038103d269b633", "spanId": SPAN_HEX, "name": "short"},
    )
    spans, errors = decode(body, JSON)

    assert [span.name for span in spans] == ["good"]
    assert errors == ["span 1 of scope 0 of resource 0: trace_id must be 16 bytes, got 12"]


def test_json_accepts_snake_case_keys_enum_names_and_64_bit_ints_as_numbers() -> None:
    body = json.dumps(
        {
            "resource_spans": [
                {
                    "scope_spans": [
                        {
                            "scope": {"name": "lib", "version": "2"},
                            "spans": [
                                {
                                    "trace_id": TRACE_HEX,
                                    "span_id": SPAN_HEX,
                                    "parent_span_id": PARENT_HEX,
                                    "name": "n",
                                    "kind": "SPAN_KIND_PRODUCER",
                                    "start_time_unix_nano": 1_700_000_000_000_000_000,
                                    "end_time_unix_nano": "1700000000500000000",
                                    "status": {"code": "STATUS_CODE_OK"},
                                }
                            ],
                        }
                    ]
                }
            ]
        }
    ).encode()
    [span], errors = decode(body, JSON)

    assert errors == []
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE_HEX, SPAN_HEX, PARENT_HEX)
    assert span.kind == "Producer"
    assert span.status_code == "Ok"
    assert span.duration_ns == 500_000_000
    assert (span.scope_name, span.scope_version) == ("lib", "2")


def test_json_enums_as_integers_and_unknown_fields_are_ignored() -> None:
    body = json_body(
        {
            "traceId": TRACE_HEX,
            "spanId": SPAN_HEX,
            "kind": 5,
            "status": {"code": 2, "message": "boom"},
            "someFieldFromTheFuture": {"x": 1},
        },
        futureResourceField=True,
    )
    [span], errors = decode(body, JSON)

    assert errors == []
    assert (span.kind, span.status_code, span.status_message) == ("Consumer", "Error", "boom")


def test_json_with_charset_parameter_is_accepted() -> None:
    body = json_body({"traceId": TRACE_HEX, "spanId": SPAN_HEX})
    spans, _ = decode(body, "application/json; charset=utf-8")
    assert len(spans) == 1


NOT_HEX = "must be a hex string (OTLP/JSON ids are hex, not base64), got"


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        (
            {"traceId": "W47/95gDgQPSabYzgT/GDA=="},  # base64, as protobuf's JSON mapping has it
            f"trace_id {NOT_HEX} 'W47/95gDgQPSabYzgT/GDA=='",
        ),
        ({"traceId": "zz" * 16}, f"trace_id {NOT_HEX} '{'zz' * 16}'"),
        ({"spanId": "eee19b7ec3c1b17g"}, f"span_id {NOT_HEX} 'eee19b7ec3c1b17g'"),
        ({"spanId": "eee19b7ec3c1b17"}, f"span_id {NOT_HEX} 'eee19b7ec3c1b17'"),  # odd length
        ({"parentSpanId": "ee e1 9b 7e c3 c1 b1 74"}, f"parent_span_id {NOT_HEX}"),
        ({"parent_span_id": "not hex"}, f"parent_span_id {NOT_HEX} 'not hex'"),
        (
            {"links": [{"traceId": TRACE_HEX, "spanId": "ÿ" * 8}]},
            f"link 0: span_id {NOT_HEX} '{'ÿ' * 8}'",
        ),
        ({"traceId": "x" * 1000}, f"trace_id {NOT_HEX} '{'x' * 48}'"),  # quoted, not all of it
    ],
)
def test_json_non_hex_id_rejects_its_span_alone_naming_the_field(
    ids: dict[str, Any], problem: str
) -> None:
    body = json_body(
        {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "name": "good"},
        {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "name": "bad", **ids},
        {"traceId": TRACE_HEX, "spanId": PARENT_HEX, "name": "also good"},
    )
    spans, errors = decode(body, JSON)

    assert [span.name for span in spans] == ["good", "also good"]
    [error] = errors
    assert error.startswith(f"span 1 of scope 0 of resource 0: {problem}")


def test_protobuf_bytes_mimicking_a_non_hex_json_id_are_rejected_with_a_short_message() -> None:
    request = parse_traces_request(json_body({"traceId": "zz", "spanId": SPAN_HEX}), JSON)
    marked = request.resource_spans[0].scope_spans[0].spans[0].trace_id  # how flatten sees "zz"
    mimic = proto_span(trace_id=marked + b"z" * 100_000)

    spans, [error] = decode(
        proto_request(proto_span(name="good"), mimic).SerializeToString(), PROTOBUF
    )

    assert [span.name for span in spans] == ["good"]
    assert error.startswith("span 1 of scope 0 of resource 0: trace_id must be a hex string")
    assert len(error) < 500


def test_json_non_hex_id_message_is_valid_text_whatever_was_sent() -> None:
    """A lone surrogate (legal as a JSON escape) must not reach the UTF-8 error message."""
    body = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"\\ud800","spanId":"01"}]}]}]}'
    spans, [error] = decode(body, JSON)

    assert spans == []
    assert "trace_id must be a hex string" in error
    error.encode("utf-8")  # would raise on a surrogate


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"resourceSpans": [', "invalid JSON"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xff"}]}]}]}', "UTF-8"),
        (b"[]", "must be an object"),
        (b'{"resourceSpans": "nope"}', "invalid OTLP/JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "x"}]}]}]}',
            "startTimeUnixNano",
        ),
        (b"", "invalid JSON"),
    ],
)
def test_malformed_json_is_a_decode_error(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_traces_request(body, JSON)


def test_deeply_nested_json_is_a_decode_error_not_a_crash() -> None:
    # Far deeper than Python's recursion limit: must be refused, not crash the worker.
    nested = '{"arrayValue": {"values": [' * 5000 + "{}" + "]}}" * 5000
    attribute = '{"key": "a", "value": ' + nested + "}"
    body = ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [' + attribute).encode()
    body += b"]}]}]}]}"

    with pytest.raises(DecodeError):
        parse_traces_request(body, JSON)


# --- protobuf and validation -----------------------------------------------------


def test_malformed_protobuf_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="invalid protobuf"):
        parse_traces_request(b"\x0a\x05\x12\x03\x12\x01\xff", PROTOBUF)


def test_unsupported_content_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="unsupported content type"):
        parse_traces_request(b"{}", "text/plain")


def test_empty_protobuf_body_is_an_empty_export() -> None:
    assert decode(b"", PROTOBUF) == ([], [])


@pytest.mark.parametrize(
    ("span", "problem"),
    [
        (proto_span(trace_id=b"\x01" * 12), "trace_id must be 16 bytes, got 12"),
        (proto_span(trace_id=b""), "trace_id must be 16 bytes, got 0"),
        (proto_span(trace_id=bytes(16)), "trace_id must not be all zeros"),
        (proto_span(span_id=b"\x01" * 16), "span_id must be 8 bytes, got 16"),
        (proto_span(span_id=b""), "span_id must be 8 bytes, got 0"),
        (proto_span(span_id=bytes(8)), "span_id must not be all zeros"),
        (proto_span(parent_span_id=b"\x01" * 4), "parent_span_id must be 8 bytes, got 4"),
        (
            proto_span(links=[trace_pb2.Span.Link(trace_id=b"\x01" * 5, span_id=b"\x01" * 8)]),
            "link 0: trace_id must be 16 bytes, got 5",
        ),
        (
            proto_span(links=[trace_pb2.Span.Link(trace_id=b"\x01" * 16, span_id=b"\x01" * 3)]),
            "link 0: span_id must be 8 bytes, got 3",
        ),
    ],
)
def test_spans_with_bad_ids_are_rejected_with_a_message(span: trace_pb2.Span, problem: str) -> None:
    good = proto_span(name="good", span_id=bytes.fromhex(PARENT_HEX))
    spans, errors = decode(proto_request(good, span).SerializeToString(), PROTOBUF)

    assert [s.name for s in spans] == ["good"]
    assert errors == [f"span 1 of scope 0 of resource 0: {problem}"]


def test_error_messages_locate_the_span_across_resources_and_scopes() -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(proto_span())
    scopes = request.resource_spans.add().scope_spans
    scopes.add().spans.append(proto_span())
    scopes.add().spans.extend([proto_span(), proto_span(span_id=b"")])

    spans, errors = flatten(request)

    assert len(spans) == 3
    assert errors == ["span 1 of scope 1 of resource 1: span_id must be 8 bytes, got 0"]


def test_zero_parent_and_invalid_link_contexts_mean_none() -> None:
    span = proto_span(
        parent_span_id=bytes(8),
        links=[
            trace_pb2.Span.Link(trace_id=bytes(16), span_id=bytes(8)),
            trace_pb2.Span.Link(trace_state="k=v"),
        ],
    )
    [decoded], errors = flatten(proto_request(span))

    assert errors == []
    assert decoded.parent_span_id == ""
    assert [(link.trace_id, link.span_id) for link in decoded.links] == [("", ""), ("", "")]
    assert decoded.links[1].trace_state == "k=v"


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (0, "Unspecified"),
        (1, "Internal"),
        (2, "Server"),
        (3, "Client"),
        (4, "Producer"),
        (5, "Consumer"),
        (42, "Unspecified"),
    ],
)
def test_span_kinds_use_the_otel_traces_names(kind: int, name: str) -> None:
    [span], _ = flatten(proto_request(proto_span(kind=kind)))
    assert span.kind == name


# --- attribute values --------------------------------------------------------------


def test_every_any_value_kind_becomes_the_matching_python_value() -> None:
    nested = KeyValueList(
        values=[
            KeyValue(key="inner", value=AnyValue(string_value="x")),
            KeyValue(
                key="list", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))
            ),
        ]
    )
    attributes = [
        KeyValue(key="str", value=AnyValue(string_value="héllo")),
        KeyValue(key="empty_str", value=AnyValue(string_value="")),
        KeyValue(key="bool", value=AnyValue(bool_value=False)),
        KeyValue(key="int", value=AnyValue(int_value=-(2**63))),
        KeyValue(key="zero", value=AnyValue(int_value=0)),
        KeyValue(key="double", value=AnyValue(double_value=0.5)),
        KeyValue(key="bytes", value=AnyValue(bytes_value=b"\x00\xff")),
        KeyValue(
            key="array",
            value=AnyValue(
                array_value=ArrayValue(
                    values=[AnyValue(string_value="a"), AnyValue(bool_value=True), AnyValue()]
                )
            ),
        ),
        KeyValue(key="kvlist", value=AnyValue(kvlist_value=nested)),
        KeyValue(key="unset", value=AnyValue()),
        KeyValue(key="profiles_only", value=AnyValue(string_value_strindex=3)),
    ]
    [span], _ = flatten(proto_request(proto_span(attributes=attributes)))

    assert span.attributes == {
        "str": "héllo",
        "empty_str": "",
        "bool": False,
        "int": -(2**63),
        "zero": 0,
        "double": 0.5,
        "bytes": b"\x00\xff",
        "array": ["a", True, None],
        "kvlist": {"inner": "x", "list": [1]},
        "unset": None,
        "profiles_only": None,
    }
    assert type(span.attributes["zero"]) is int
    assert type(span.attributes["double"]) is float


def test_any_values_in_otlp_json() -> None:
    body = json_body(
        {
            "traceId": TRACE_HEX,
            "spanId": SPAN_HEX,
            "attributes": [
                {"key": "int_as_string", "value": {"intValue": "9007199254740993"}},
                {"key": "int_as_number", "value": {"intValue": 7}},
                {"key": "bytes", "value": {"bytesValue": base64.b64encode(b"\x01\x02").decode()}},
                {"key": "nan", "value": {"doubleValue": "NaN"}},
                {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "a", "value": {}}]}}},
                {"key": "arr", "value": {"arrayValue": {"values": [{"doubleValue": 1}]}}},
                {"key": "empty", "value": {}},
            ],
            "events": [
                {
                    "timeUnixNano": "5",
                    "name": "e",
                    "attributes": [{"key": "k", "value": {"boolValue": True}}],
                }
            ],
        }
    )
    [span], _ = decode(body, JSON)

    attributes = dict(span.attributes)
    nan = attributes.pop("nan")
    assert nan != nan
    assert attributes == {
        "int_as_string": 9007199254740993,
        "int_as_number": 7,
        "bytes": b"\x01\x02",
        "kv": {"a": None},
        "arr": [1.0],
        "empty": None,
    }
    assert span.events[0].time_unix_nano == 5
    assert span.events[0].attributes == {"k": True}


def test_resource_attributes_are_copied_to_every_span() -> None:
    body = json_body(
        {"traceId": TRACE_HEX, "spanId": SPAN_HEX},
        {"traceId": TRACE_HEX, "spanId": PARENT_HEX},
        resource={"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
    )
    spans, _ = decode(body, JSON)
    assert [span.service_name for span in spans] == ["api", "api"]

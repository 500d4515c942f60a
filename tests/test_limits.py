"""Per-span limits end to end: oversized spans are trimmed with visible markers, never rejected."""

from __future__ import annotations

import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from tokentrail.collector import telemetry
from tokentrail.collector.decode import flatten
from tokentrail.collector.limits import (
    DROPPED_ATTRIBUTES,
    DROPPED_EVENTS,
    DROPPED_LINKS,
    Limits,
    truncate_value,
)
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.schema import Store

NOW = time.time_ns()
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
MB = 1024 * 1024


def _attribute(key: str, text: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=text))


def _request(span: trace_pb2.Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_attribute("service.name", "svc"))
    resource_spans.scope_spans.add().spans.append(span)
    return request


def _span(**fields: object) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=TRACE_ID,
        span_id=b"\x01" * 8,
        name="chat",
        start_time_unix_nano=NOW,
        end_time_unix_nano=NOW + 1_000,
        **fields,  # type: ignore[arg-type]
    )


def _stored(store: Store, project_id: str) -> dict[str, object]:
    (row,) = store.query(
        "SELECT SpanAttributes AS attributes, length(Events.Name) AS events,"
        " Events.Attributes AS event_attributes, length(Links.SpanId) AS links"
        " FROM spans WHERE project_id = {p:String}",
        {"p": project_id},
    ).dicts()
    return row


def test_oversized_span_is_stored_trimmed_with_markers(store: Store, project_id: str) -> None:
    prompt = "p" * MB  # a 1 MB prompt in one attribute
    span = _span(
        attributes=[_attribute("gen_ai.prompt", prompt)]
        + [_attribute(f"a{i:04}", "x") for i in range(999)],
        events=[
            trace_pb2.Span.Event(
                time_unix_nano=NOW, name=f"e{i}", attributes=[_attribute("k", "v")]
            )
            for i in range(1000)
        ],
        links=[trace_pb2.Span.Link(trace_id=TRACE_ID, span_id=b"\x02" * 8) for _ in range(200)],
    )
    limited = telemetry.SPAN_LIMITED.value(what="attributes")

    spans, errors = flatten(_request(span))
    IngestPipeline(store).ingest(project_id, spans)

    assert errors == []  # trimmed, not rejected
    row = _stored(store, project_id)
    attributes = row["attributes"]
    assert isinstance(attributes, dict)
    value = attributes["gen_ai.prompt"]
    assert value == "p" * 64 * 1024 + f"…[truncated {MB - 64 * 1024} chars]"
    assert len([key for key in attributes if not key.startswith("tokentrail.")]) == 128
    assert attributes[DROPPED_ATTRIBUTES] == str(1000 - 128)
    assert attributes[DROPPED_EVENTS] == str(1000 - 128)
    assert attributes[DROPPED_LINKS] == str(200 - 128)
    assert (row["events"], row["links"]) == (128, 128)
    assert row["event_attributes"][0] == {"k": "v"}  # type: ignore[index]
    assert telemetry.SPAN_LIMITED.value(what="attributes") - limited == 1000 - 128


def test_small_span_is_untouched() -> None:
    span = _span(attributes=[_attribute("gen_ai.request.model", "gpt-4o")])
    (decoded,), _ = flatten(_request(span))
    assert decoded.attributes == {"gen_ai.request.model": "gpt-4o"}


def test_event_and_link_attributes_are_limited_too() -> None:
    many = [_attribute(f"k{i}", "v" * 10) for i in range(5)]
    span = _span(
        events=[trace_pb2.Span.Event(time_unix_nano=NOW, name="e", attributes=many)],
        links=[trace_pb2.Span.Link(trace_id=TRACE_ID, span_id=b"\x02" * 8, attributes=many)],
    )
    limits = Limits(attributes_per_span=2, attribute_value_length=4)
    (decoded,), _ = flatten(_request(span), limits)
    for attributes in (decoded.events[0].attributes, decoded.links[0].attributes):
        assert attributes == {
            "k0": "vvvv…[truncated 6 chars]",
            "k1": "vvvv…[truncated 6 chars]",
            DROPPED_ATTRIBUTES: 3,
        }


def test_nested_values_are_truncated_and_short_ones_kept_as_is() -> None:
    nested = ["short", {"deep": "y" * 10}, b"z" * 10, 7]
    assert truncate_value(nested, 5) == [
        "short",
        {"deep": "yyyyy…[truncated 5 chars]"},
        b"zzzzz" + "…[truncated 5 bytes]".encode(),
        7,
    ]
    unchanged = ["short", {"ok": "y"}]
    assert truncate_value(unchanged, 5) is unchanged


def test_limits_come_from_the_environment() -> None:
    limits = Limits.from_env(
        {"TOKENTRAIL_MAX_ATTRIBUTES_PER_SPAN": "10", "TOKENTRAIL_MAX_REQUEST_BYTES": " 1024 "}
    )
    assert limits == Limits(attributes_per_span=10, request_bytes=1024)
    assert Limits.from_env({}) == Limits()


@pytest.mark.parametrize("raw", ["ten", "-1"])
def test_a_bad_limit_in_the_environment_is_an_error(raw: str) -> None:
    with pytest.raises(ValueError, match="TOKENTRAIL_MAX_EVENTS_PER_SPAN"):
        Limits.from_env({"TOKENTRAIL_MAX_EVENTS_PER_SPAN": raw})

"""POST /v1/traces as an OTLP exporter sees it: status codes, bodies and what reaches ingest."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from serving import serving_app

from tokentrail.collector.ingest_queue import Export
from tokentrail.collector.receiver import otlp_http_router
from tokentrail.collector.records import Span

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
API_KEY = "Bearer tt-key-1"
PROJECT = "project-1"
LIMIT = 64 * 1024
TRACE_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_HEX = "eee19b7ec3c1b174"


def record_sdk_spans() -> list[ReadableSpan]:
    """Two spans (an LLM call under an agent) as the OpenTelemetry SDK records them."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tokentrail.tests")
    with (
        tracer.start_as_current_span("invoke_agent shopper"),
        tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as span,
    ):
        span.set_attribute("gen_ai.usage.input_tokens", 12)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def proto_span(
    name: str = "span", trace_id: bytes = bytes.fromhex(TRACE_HEX), span_id: bytes = b"\x01" * 8
) -> trace_pb2.Span:
    return trace_pb2.Span(name=name, trace_id=trace_id, span_id=span_id)


def proto_request(*spans: trace_pb2.Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request


def json_body(*spans: dict[str, str]) -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}).encode()


class RecordingIngest:
    """Stands in for the store: records every call, or fails like a full disk."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Span]]] = []
        self.error: Exception | None = None

    def __call__(self, export: Export) -> None:
        if self.error is not None:
            raise self.error
        assert export.signal == "traces"
        self.calls.append((export.project_id, export.items))

    @property
    def spans(self) -> list[Span]:
        return [span for _, batch in self.calls for span in batch]


def project_from_key(authorization: Annotated[str | None, Header()] = None) -> str:
    if authorization != API_KEY:
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return PROJECT


def make_app(ingest: RecordingIngest, max_body_bytes: int = LIMIT) -> FastAPI:
    app = FastAPI()
    app.include_router(otlp_http_router(ingest, project_from_key, max_body_bytes=max_body_bytes))
    return app


@pytest.fixture
def ingest() -> RecordingIngest:
    return RecordingIngest()


@pytest.fixture
def client(ingest: RecordingIngest) -> TestClient:
    return TestClient(make_app(ingest))


def post(
    client: TestClient,
    body: bytes,
    content_type: str = PROTOBUF,
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    sent = {"Authorization": API_KEY, "Content-Type": content_type}
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    response = client.post("/v1/traces", content=body, headers=sent)
    return response.status_code, dict(response.headers), response.content


def protobuf_status(content: bytes) -> status_pb2.Status:
    status = status_pb2.Status()
    status.ParseFromString(content)
    return status


def one_good_one_short_json() -> bytes:
    return json_body(
        {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "name": "good"},
        {"traceId": TRACE_HEX[:24], "spanId": SPAN_HEX, "name": "short"},
    )


# --- success ---------------------------------------------------------------------


def test_protobuf_export_is_stored_and_acknowledged(
    client: TestClient, ingest: RecordingIngest
) -> None:
    sdk_spans = record_sdk_spans()
    status, headers, content = post(client, encode_spans(sdk_spans).SerializeToString())

    assert status == 200
    assert headers["content-type"] == PROTOBUF
    response = ExportTraceServiceResponse()
    response.ParseFromString(content)
    assert not response.HasField("partial_success")
    [(project_id, spans)] = ingest.calls
    assert project_id == PROJECT
    assert sorted(span.name for span in spans) == sorted(span.name for span in sdk_spans)


def test_json_export_is_answered_in_json(client: TestClient, ingest: RecordingIngest) -> None:
    body = json_body({"traceId": TRACE_HEX, "spanId": SPAN_HEX, "name": "chat"})
    status, headers, content = post(client, body, "application/json; charset=utf-8")

    assert status == 200
    assert headers["content-type"] == JSON
    assert json.loads(content) == {}
    assert [(span.trace_id, span.span_id) for span in ingest.spans] == [(TRACE_HEX, SPAN_HEX)]


def test_gzip_export_is_inflated(client: TestClient, ingest: RecordingIngest) -> None:
    body = gzip.compress(encode_spans(record_sdk_spans()).SerializeToString())
    status, _, _ = post(client, body, content_encoding="gzip")

    assert status == 200
    assert len(ingest.spans) == 2


def test_concatenated_gzip_members_are_all_read(
    client: TestClient, ingest: RecordingIngest
) -> None:
    raw = encode_spans(record_sdk_spans()).SerializeToString()
    body = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    status, _, _ = post(client, body, content_encoding="gzip")

    assert status == 200
    assert len(ingest.spans) == 2


def test_empty_export_succeeds_without_calling_ingest(
    client: TestClient, ingest: RecordingIngest
) -> None:
    status, _, content = post(client, b"")

    assert status == 200
    assert content == b""  # an empty ExportTraceServiceResponse: full success
    assert ingest.calls == []


# --- partial success ---------------------------------------------------------------


def test_rejected_spans_are_reported_as_partial_success_in_json(
    client: TestClient, ingest: RecordingIngest
) -> None:
    status, _, content = post(client, one_good_one_short_json(), JSON)

    assert status == 200
    assert json.loads(content) == {
        "partialSuccess": {
            "rejectedSpans": "1",  # int64 is a string in proto3 JSON
            "errorMessage": "span 1 of scope 0 of resource 0: trace_id must be 16 bytes, got 12",
        }
    }
    assert [span.name for span in ingest.spans] == ["good"]


def test_rejected_spans_are_reported_as_partial_success_in_protobuf(
    client: TestClient, ingest: RecordingIngest
) -> None:
    body = proto_request(
        proto_span(name="good"), proto_span(span_id=b"\x01" * 4)
    ).SerializeToString()
    status, _, content = post(client, body)

    response = ExportTraceServiceResponse()
    response.ParseFromString(content)
    assert status == 200
    assert response.partial_success.rejected_spans == 1
    assert "span_id must be 8 bytes, got 4" in response.partial_success.error_message
    assert [span.name for span in ingest.spans] == ["good"]


@pytest.mark.parametrize("bad_id", ["zz" * 16, "W47/95gDgQPSabYzgT/GDA==", TRACE_HEX[:-1]])
def test_a_non_hex_json_id_rejects_only_its_span(
    client: TestClient, ingest: RecordingIngest, bad_id: str
) -> None:
    body = json_body(
        {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "name": "good"},
        {"traceId": bad_id, "spanId": SPAN_HEX, "name": "not hex"},
        {"traceId": TRACE_HEX, "spanId": "00000000000000aa", "name": "also good"},
    )
    status, _, content = post(client, body, JSON)

    assert status == 200
    assert json.loads(content) == {
        "partialSuccess": {
            "rejectedSpans": "1",
            "errorMessage": "span 1 of scope 0 of resource 0: trace_id must be a hex string"
            f" (OTLP/JSON ids are hex, not base64), got {bad_id!r}",
        }
    }
    assert [span.name for span in ingest.spans] == ["good", "also good"]


def test_many_rejections_are_counted_fully_but_listed_briefly(
    client: TestClient, ingest: RecordingIngest
) -> None:
    bad = [proto_span(trace_id=b"\x01") for _ in range(25)]
    status, _, content = post(client, proto_request(*bad).SerializeToString())

    response = ExportTraceServiceResponse()
    response.ParseFromString(content)
    assert status == 200
    assert response.partial_success.rejected_spans == 25
    assert response.partial_success.error_message.count("trace_id must be 16 bytes") == 20
    assert response.partial_success.error_message.endswith("; and 5 more")
    assert ingest.calls == []


# --- failures ----------------------------------------------------------------------


def test_malformed_protobuf_is_400_with_a_protobuf_status(
    client: TestClient, ingest: RecordingIngest
) -> None:
    status, headers, content = post(client, b"\x0a\x05\x12\x03\x12\x01\xff")

    assert status == 400
    assert headers["content-type"] == PROTOBUF
    assert "invalid protobuf" in protobuf_status(content).message
    assert ingest.calls == []


def test_malformed_json_is_400_with_a_json_status(
    client: TestClient, ingest: RecordingIngest
) -> None:
    status, headers, content = post(client, b'{"resourceSpans": [', JSON)

    assert status == 400
    assert headers["content-type"] == JSON
    body = json.loads(content)
    assert body["code"] == 3  # INVALID_ARGUMENT
    assert body["message"].startswith("invalid JSON")
    assert ingest.calls == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"this is not gzip", "invalid gzip body"),
        (gzip.compress(b"\x00" * 100)[:-4], "truncated"),
        (b"", "empty or truncated"),
    ],
)
def test_broken_gzip_is_400(client: TestClient, body: bytes, message: str) -> None:
    status, _, content = post(client, body, content_encoding="gzip")

    assert status == 400
    assert message in protobuf_status(content).message


def test_body_over_the_limit_is_413(client: TestClient, ingest: RecordingIngest) -> None:
    status, headers, content = post(client, b"\x00" * (LIMIT + 1))

    assert status == 413
    assert headers["content-type"] == PROTOBUF
    assert f"exceeds the {LIMIT}-byte limit" in protobuf_status(content).message
    assert ingest.calls == []


def test_streamed_body_over_the_limit_is_413_without_content_length(
    client: TestClient,
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"\x00" * 1024

    response = client.post(
        "/v1/traces",
        content=chunks(),
        headers={"Authorization": API_KEY, "Content-Type": PROTOBUF},
    )
    assert response.status_code == 413


def test_gzip_bomb_is_413_without_inflating_it(ingest: RecordingIngest) -> None:
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024), compresslevel=9)
    client = TestClient(make_app(ingest, max_body_bytes=1024 * 1024))
    assert len(bomb) < 1024 * 1024

    tracemalloc.start()
    try:
        status, _, content = post(client, bomb, content_encoding="gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert status == 413
    assert "decompressed request body exceeds" in protobuf_status(content).message
    assert peak < 16 * 1024 * 1024  # the 64 MiB were never materialized
    assert ingest.calls == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/protobuf", ""])
def test_unsupported_content_type_is_415(client: TestClient, content_type: str) -> None:
    status, headers, content = post(client, b"{}", content_type)

    assert status == 415
    assert headers["content-type"] == JSON  # the client's encoding is unknown: JSON is readable
    assert (
        "Content-Type must be application/x-protobuf or application/json"
        in json.loads(content)["message"]
    )


def test_unsupported_content_encoding_is_415(client: TestClient) -> None:
    status, _, content = post(client, b"", content_encoding="br")

    assert status == 415
    assert protobuf_status(content).message == "Content-Encoding must be gzip or identity, got 'br'"


def test_identity_encoding_is_accepted(client: TestClient) -> None:
    status, _, _ = post(client, b"", content_encoding="identity")
    assert status == 200


def test_bad_api_key_is_401_as_a_status_message(
    client: TestClient, ingest: RecordingIngest
) -> None:
    status, headers, content = post(client, b"", Authorization="Bearer wrong")

    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert protobuf_status(content).message == "invalid API key"
    assert ingest.calls == []


def test_failed_ingest_is_503_with_retry_after_and_logged(
    client: TestClient, ingest: RecordingIngest, caplog: pytest.LogCaptureFixture
) -> None:
    ingest.error = OSError("disk full")
    body = json_body({"traceId": TRACE_HEX, "spanId": SPAN_HEX})

    with caplog.at_level(logging.ERROR, logger="tokentrail.collector.receiver"):
        status, headers, content = post(client, body, JSON)

    assert status == 503
    assert headers["retry-after"] == "5"
    assert json.loads(content) == {
        "code": 14,  # UNAVAILABLE
        "message": "the spans could not be stored right now; retry later",
    }
    [record] = caplog.records
    assert "storing 1 spans failed" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], OSError)


def test_openapi_documents_both_encodings(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/traces"]["post"]
    assert set(operation["requestBody"]["content"]) == {PROTOBUF, JSON}


# --- the real OTLP/HTTP exporter -----------------------------------------------------


@pytest.fixture
def served_url(ingest: RecordingIngest) -> Iterator[str]:
    """The receiver on a real socket, so the OTel SDK's own exporter can talk to it."""
    with serving_app(make_app(ingest)) as base:
        yield base + "/v1/traces"


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_otel_sdk_exporter_delivers_spans(
    served_url: str, ingest: RecordingIngest, compression: Compression
) -> None:
    exporter = OTLPSpanExporter(
        endpoint=served_url, headers={"Authorization": API_KEY}, compression=compression
    )
    sdk_spans = record_sdk_spans()

    assert exporter.export(sdk_spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert sorted(span.name for span in ingest.spans) == sorted(s.name for s in sdk_spans)


def test_past_the_in_flight_bound_an_export_is_429_at_once(ingest: RecordingIngest) -> None:
    """Exports in progress hold memory: past the bound the next is refused, not buffered."""
    entered, release = threading.Event(), threading.Event()

    def slow(export: Export) -> None:
        entered.set()
        assert release.wait(10)
        ingest(export)

    app = FastAPI()
    app.include_router(otlp_http_router(slow, project_from_key, max_in_flight=1))
    headers = {"Authorization": API_KEY, "Content-Type": PROTOBUF}
    body = proto_request(proto_span()).SerializeToString()
    with serving_app(app) as base, httpx.Client(base_url=base, headers=headers) as http:
        first = threading.Thread(target=http.post, args=("/v1/traces",), kwargs={"content": body})
        first.start()
        assert entered.wait(10)
        refused = http.post("/v1/traces", content=body)
        release.set()
        first.join(10)

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert "exports are in progress" in protobuf_status(refused.content).message
    assert len(ingest.calls) == 1

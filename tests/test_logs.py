"""POST /v1/logs: GenAI message content sent as OTLP log records, shown with its LLM call.

Telemetry comes from the real OpenTelemetry SDK and the official GenAI util
(``opentelemetry-util-genai``, which the genai-openai/anthropic instrumentations
use) in ``event_only`` mode, and reaches the collector through the real OTLP/HTTP
exporters over loopback; storage is the real embedded ClickHouse.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any, NamedTuple

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util.genai.handler import TelemetryHandler
from opentelemetry.util.genai.types import InputMessage, OutputMessage, Text
from serving import QueueFor, serving_app

from tokentrail.api.app import create_app
from tokentrail.api.auth import KeyRing, hash_key
from tokentrail.api.traces import get_trace
from tokentrail.collector.decode_logs import flatten_logs, parse_logs_request
from tokentrail.collector.ingest_queue import Export
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.receiver import otlp_http_router
from tokentrail.collector.records import LogRecord, Span
from tokentrail.schema.store import Store

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
KEY = "tt-logs-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TRACE_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_HEX = "eee19b7ec3c1b174"
LIMIT = 64 * 1024

SYSTEM, QUESTION, ANSWER = "Be brief.", "What is OTLP?", "A protocol for telemetry."
# The content every recorded call carries, as (role, text) per message part.
PROMPT = [("system", SYSTEM), ("user", QUESTION)]
COMPLETION = [("assistant", ANSWER)]


# --- recording real telemetry ----------------------------------------------------------


class Recorded(NamedTuple):
    spans: list[ReadableSpan]
    logs: list[ReadableLogRecord]

    @property
    def trace_id(self) -> str:
        context = self.spans[0].context
        assert context is not None
        return format(context.trace_id, "032x")


class _Sdk:
    """A tracer and a logger provider recording into memory, as an app's SDK setup would."""

    def __init__(self) -> None:
        resource = Resource.create({"service.name": "chat-app"})
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.log_exporter = InMemoryLogRecordExporter()
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))

    def recorded(self) -> Recorded:
        return Recorded(
            list(self.span_exporter.get_finished_spans()),
            list(self.log_exporter.get_finished_logs()),
        )


def record_event_only_call(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """One chat call through the official GenAI util with ``event_only`` capture.

    The span carries model and usage but no content; one
    ``gen_ai.client.inference.operation.details`` log record carries it all.
    """
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "event_only")
    sdk = _Sdk()
    handler = TelemetryHandler(
        tracer_provider=sdk.tracer_provider, logger_provider=sdk.logger_provider
    )
    with handler.inference("openai", request_model="gpt-4o-mini") as call:
        call.system_instruction = [Text(content=SYSTEM)]
        call.input_messages = [InputMessage(role="user", parts=[Text(content=QUESTION)])]
        call.output_messages = [
            OutputMessage(role="assistant", parts=[Text(content=ANSWER)], finish_reason="stop")
        ]
        call.input_tokens, call.output_tokens = 12, 5
    recorded = sdk.recorded()
    assert len(recorded.spans) == 1 and len(recorded.logs) == 1
    return recorded


def record_per_message_events() -> Recorded:
    """One chat call as the older openai-v2 releases reported it.

    One log record per input message (``gen_ai.{role}.message``, body
    ``{content}``) and one ``gen_ai.choice`` (body ``{index, finish_reason,
    message}``); the choice names its event with the ``event.name`` attribute,
    as SDKs did before LogRecord had an event_name field.
    """
    sdk = _Sdk()
    tracer = sdk.tracer_provider.get_tracer("opentelemetry.instrumentation.openai_v2", "2.1b0")
    logger = sdk.logger_provider.get_logger("opentelemetry.instrumentation.openai_v2", "2.1b0")
    system = {"gen_ai.system": "openai"}
    with tracer.start_as_current_span(
        "chat gpt-4o-mini",
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 5,
        },
    ):
        logger.emit(event_name="gen_ai.system.message", attributes=system, body={"content": SYSTEM})
        logger.emit(event_name="gen_ai.user.message", attributes=system, body={"content": QUESTION})
        logger.emit(
            attributes={**system, "event.name": "gen_ai.choice"},
            body={
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": ANSWER},
            },
        )
    recorded = sdk.recorded()
    assert len(recorded.logs) == 3
    return recorded


def message(role: str, text: str) -> dict[str, Any]:
    """One message in the OTel GenAI shape."""
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def texts(messages: str) -> list[tuple[str, str]]:
    """(role, text) of every text part of a stored prompt or completion."""
    return [
        (message["role"], part["content"])
        for message in json.loads(messages)
        for part in message["parts"]
        if part.get("type") == "text"
    ]


def protobuf(logs: list[ReadableLogRecord]) -> bytes:
    return encode_logs(logs).SerializeToString()


# --- decoding ----------------------------------------------------------------------------


def test_sdk_log_records_decode_with_the_ids_of_their_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded = record_event_only_call(monkeypatch)
    span = recorded.spans[0]

    records, errors = flatten_logs(parse_logs_request(protobuf(recorded.logs), PROTOBUF))

    assert errors == []
    [record] = records
    assert span.context is not None
    assert record.trace_id == recorded.trace_id
    assert record.span_id == format(span.context.span_id, "016x")
    assert record.trace_flags & 0x01  # sampled
    assert record.event_name == "gen_ai.client.inference.operation.details"
    # The util sets no time of its own, only the observed time.
    assert record.time_unix_nano == 0
    assert record.timestamp_unix_nano == record.observed_time_unix_nano > 0
    assert record.service_name == "chat-app"
    assert record.scope_name == "opentelemetry.util.genai.handler"
    assert record.scope_schema_url.startswith("https://opentelemetry.io/schemas/")
    [message] = record.attributes["gen_ai.input.messages"]
    assert message["role"] == "user"
    assert message["parts"] == [{"content": QUESTION, "type": "text"}]


def logs_json(*records: dict[str, Any]) -> bytes:
    scope = {"scope": {"name": "app"}, "logRecords": list(records)}
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]}
    return json.dumps({"resourceLogs": [{"resource": resource, "scopeLogs": [scope]}]}).encode()


def test_json_ids_are_hex_and_a_bad_record_is_rejected_alone() -> None:
    body = logs_json(
        {
            "timeUnixNano": "1700000000123456789",  # 64-bit integers arrive as strings
            "traceId": TRACE_HEX.upper(),  # hex is case-insensitive
            "spanId": SPAN_HEX,
            "severityNumber": "SEVERITY_NUMBER_INFO",
            "severityText": "INFO",
            "eventName": "gen_ai.user.message",
            "body": {
                "kvlistValue": {"values": [{"key": "content", "value": {"stringValue": "hi"}}]}
            },
        },
        {"observedTimeUnixNano": 5, "severityNumber": 17, "body": {"stringValue": "no context"}},
        {"traceId": TRACE_HEX[:24], "spanId": SPAN_HEX},
    )

    records, errors = flatten_logs(parse_logs_request(body, JSON))

    assert [(r.trace_id, r.span_id) for r in records] == [(TRACE_HEX, SPAN_HEX), ("", "")]
    first, second = records
    assert (first.time_unix_nano, first.severity_number, first.severity_text) == (
        1_700_000_000_123_456_789,
        9,
        "INFO",
    )
    assert first.body == {"content": "hi"}
    assert (second.timestamp_unix_nano, second.severity_number) == (5, 17)
    assert errors == ["log record 2 of scope 0 of resource 0: trace_id must be 16 bytes, got 12"]


def test_json_non_hex_ids_reject_their_record_alone_rather_than_being_misread() -> None:
    body = logs_json(
        {"traceId": "W47/95gDgQPSabYzgT/GDA==", "spanId": SPAN_HEX},  # base64, not hex
        {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "severityText": "kept"},
        {"spanId": "zz" * 8},
    )

    records, errors = flatten_logs(parse_logs_request(body, JSON))

    assert [record.severity_text for record in records] == ["kept"]
    assert errors == [
        "log record 0 of scope 0 of resource 0: trace_id must be a hex string"
        " (OTLP/JSON ids are hex, not base64), got 'W47/95gDgQPSabYzgT/GDA=='",
        "log record 2 of scope 0 of resource 0: span_id must be a hex string"
        " (OTLP/JSON ids are hex, not base64), got 'zzzzzzzzzzzzzzzz'",
    ]


# --- the receiver ----------------------------------------------------------------------


class RecordingIngest:
    """Stands in for the pipeline: records every batch, or fails like a full disk."""

    def __init__(self) -> None:
        self.batches: list[list[LogRecord]] = []
        self.error: Exception | None = None

    def __call__(self, export: Export) -> None:
        if self.error is not None:
            raise self.error
        assert (export.signal, export.project_id) == ("logs", "p1")
        self.batches.append(export.items)


def api_key(request: Request) -> str:
    if request.headers.get("authorization") != AUTH["Authorization"]:
        raise HTTPException(401, "invalid API key")
    return "p1"


@pytest.fixture
def ingest() -> RecordingIngest:
    return RecordingIngest()


@pytest.fixture
def receiver(ingest: RecordingIngest) -> TestClient:
    app = FastAPI()
    app.include_router(otlp_http_router(ingest, api_key, max_body_bytes=LIMIT))
    return TestClient(app)


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    content: bytes


def post_logs(client: TestClient, body: bytes, content_type: str, **headers: str) -> Answer:
    sent = {**AUTH, "Content-Type": content_type}
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    response = client.post("/v1/logs", content=body, headers=sent)
    return Answer(response.status_code, dict(response.headers), response.content)


def test_protobuf_and_gzip_exports_are_stored_and_acknowledged(
    receiver: TestClient, ingest: RecordingIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = protobuf(record_event_only_call(monkeypatch).logs)

    plain = post_logs(receiver, body, PROTOBUF)
    zipped = post_logs(receiver, gzip.compress(body), PROTOBUF, content_encoding="gzip")

    for response in (plain, zipped):
        assert response.status == 200
        assert response.headers["content-type"] == PROTOBUF
        assert response.content == b""  # an empty ExportLogsServiceResponse: full success
    assert [len(batch) for batch in ingest.batches] == [1, 1]


def test_rejected_records_are_partial_success_in_the_client_encoding(
    receiver: TestClient, ingest: RecordingIngest
) -> None:
    body = logs_json({"traceId": TRACE_HEX, "spanId": SPAN_HEX}, {"spanId": SPAN_HEX[:4]})

    as_json = post_logs(receiver, body, JSON)
    request = parse_logs_request(body, JSON)
    as_protobuf = post_logs(receiver, request.SerializeToString(), PROTOBUF)

    message = "log record 1 of scope 0 of resource 0: span_id must be 8 bytes, got 2"
    assert as_json.status == 200
    assert json.loads(as_json.content) == {
        "partialSuccess": {"rejectedLogRecords": "1", "errorMessage": message}
    }
    response = ExportLogsServiceResponse()
    response.ParseFromString(as_protobuf.content)
    assert response.partial_success.rejected_log_records == 1
    assert [len(batch) for batch in ingest.batches] == [1, 1]


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status"),
    [
        pytest.param(b"\x0a\xff", PROTOBUF, {}, 400, id="bad-protobuf"),
        pytest.param(b"[1]", JSON, {}, 400, id="bad-json"),
        pytest.param(
            b"\x1f\x8b\x08bad", PROTOBUF, {"content_encoding": "gzip"}, 400, id="bad-gzip"
        ),
        pytest.param(b"\0" * (LIMIT + 1), PROTOBUF, {}, 413, id="too-large"),
        pytest.param(
            gzip.compress(b"\0" * (LIMIT + 1)),
            PROTOBUF,
            {"content_encoding": "gzip"},
            413,
            id="inflates-too-large",
        ),
        pytest.param(b"{}", "text/plain", {}, 415, id="wrong-type"),
        pytest.param(b"{}", JSON, {"content_encoding": "br"}, 415, id="wrong-encoding"),
    ],
)
def test_unacceptable_exports_get_the_otlp_status(
    receiver: TestClient,
    ingest: RecordingIngest,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    status: int,
) -> None:
    response = post_logs(receiver, body, content_type, **headers)

    assert response.status == status
    assert ingest.batches == []


def test_failed_storage_is_503_so_the_exporter_retries(
    receiver: TestClient, ingest: RecordingIngest
) -> None:
    ingest.error = OSError("disk full")

    response = post_logs(receiver, logs_json({"body": {"stringValue": "x"}}), JSON)

    assert response.status == 503
    assert response.headers["retry-after"] == "5"
    assert (
        json.loads(response.content)["message"]
        == "the log records could not be stored right now; retry later"
    )


# --- against the store -----------------------------------------------------------------


@pytest.fixture
def app(store: Store, project_id: str, queue_for: QueueFor) -> FastAPI:
    """The real composition root, with a key for this test's project."""
    keyring = KeyRing(store, env_keys={hash_key(KEY): project_id})
    pipeline = IngestPipeline(store)
    return create_app(store, keyring, pipeline, queue_for(pipeline))


@pytest.fixture
def served_url(app: FastAPI) -> Iterator[str]:
    """The app on a real socket, so the SDK's own OTLP exporters can talk to it."""
    with serving_app(app) as base:
        yield base


def send_logs(url: str, logs: list[ReadableLogRecord]) -> None:
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", headers=AUTH)
    assert exporter.export(logs) == LogRecordExportResult.SUCCESS
    exporter.shutdown()


def send_spans(url: str, spans: list[ReadableSpan]) -> None:
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=AUTH)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()


def llm_of(detail: dict[str, Any]) -> dict[str, Any]:
    """The one LLM call of a trace detail."""
    stack, found = list(detail["spans"]), []
    while stack:
        node = stack.pop()
        found += [node["llm"]] if node["llm"] else []
        stack += node["children"]
    [llm] = found
    return llm


def trace_detail(url: str, trace_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/api/v1/traces/{trace_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_event_only_content_shows_on_the_call_whichever_arrives_first(
    served_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs_first, spans_first = (
        record_event_only_call(monkeypatch),
        record_event_only_call(monkeypatch),
    )

    send_logs(served_url, logs_first.logs)
    send_spans(served_url, logs_first.spans)
    send_spans(served_url, spans_first.spans)
    send_logs(served_url, spans_first.logs)

    calls = [llm_of(trace_detail(served_url, r.trace_id)) for r in (logs_first, spans_first)]
    for llm in calls:
        assert texts(llm["prompt"]) == PROMPT
        assert texts(llm["completion"]) == COMPLETION
        assert json.loads(llm["completion"])[0]["finish_reason"] == "stop"
        assert (llm["request_model"], llm["input_tokens"], llm["output_tokens"]) == (
            "gpt-4o-mini", 12, 5,
        )  # fmt: skip
    assert calls[0]["prompt"] == calls[1]["prompt"]
    assert calls[0]["completion"] == calls[1]["completion"]


def test_per_message_events_split_across_batches_make_one_prompt(served_url: str) -> None:
    recorded = record_per_message_events()
    messages, choice = recorded.logs[:2], recorded.logs[2:]

    send_logs(served_url, messages)
    before_choice = llm_of_when_stored(served_url, recorded)
    send_spans(served_url, recorded.spans)
    send_logs(served_url, choice)

    llm = llm_of(trace_detail(served_url, recorded.trace_id))
    assert before_choice is None  # no span yet: nothing to show it on
    assert texts(llm["prompt"]) == PROMPT
    assert texts(llm["completion"]) == COMPLETION
    assert json.loads(llm["completion"])[0]["finish_reason"] == "stop"


def llm_of_when_stored(url: str, recorded: Recorded) -> dict[str, Any] | None:
    response = httpx.get(f"{url}/api/v1/traces/{recorded.trace_id}", headers=AUTH)
    return llm_of(response.json()) if response.status_code == 200 else None


def test_a_resent_logs_batch_is_stored_once(app: FastAPI, store: Store, project_id: str) -> None:
    recorded = record_per_message_events()
    client = TestClient(app)
    body = protobuf(recorded.logs)

    for _ in range(2):  # the exporter retrying after a lost acknowledgement
        assert post_logs(client, body, PROTOBUF).status == 200

    params = {"project_id": project_id}
    [(stored,)] = store.query(
        "SELECT count() FROM logs FINAL WHERE project_id = {project_id:String}", params
    ).rows
    contents = store.query(
        "SELECT records, prompt, completion FROM llm_call_content FINAL"
        " WHERE project_id = {project_id:String}",
        params,
    ).rows
    assert stored == 3
    [(records, prompt, completion)] = contents
    assert records == 3
    assert (texts(prompt), texts(completion)) == (PROMPT, COMPLETION)


def test_every_record_is_stored_as_sent_and_only_genai_ones_become_content(
    app: FastAPI, store: Store, project_id: str
) -> None:
    body = logs_json(
        {
            "timeUnixNano": "1700000000123456789",
            "observedTimeUnixNano": "1700000000223456789",
            "traceId": TRACE_HEX,
            "spanId": SPAN_HEX,
            "flags": 1,
            "severityNumber": 9,
            "severityText": "INFO",
            "body": {"stringValue": "cache miss"},
            "attributes": [{"key": "retries", "value": {"intValue": "2"}}],
        },
        {"eventName": "gen_ai.user.message", "body": {"stringValue": "no span to join"}},
    )

    assert post_logs(TestClient(app), body, JSON).status == 200

    rows = store.query(
        "SELECT toUnixTimestamp64Nano(Timestamp), toUnixTimestamp64Nano(ObservedTimestamp),"
        " TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName, Body,"
        " ScopeName, LogAttributes, EventName"
        " FROM logs FINAL WHERE project_id = {project_id:String} ORDER BY EventName",
        {"project_id": project_id},
    ).rows
    assert rows[0] == (
        1_700_000_000_123_456_789, 1_700_000_000_223_456_789, TRACE_HEX, SPAN_HEX, 1, "INFO",
        9, "web", "cache miss", "app", {"retries": "2"}, "",
    )  # fmt: skip
    assert rows[1][2:4] == ("", "") and rows[1][-1] == "gen_ai.user.message"
    [(contents,)] = store.query(
        "SELECT count() FROM llm_call_content WHERE project_id = {project_id:String}",
        {"project_id": project_id},
    ).rows
    assert contents == 0


def test_content_on_the_span_itself_wins_over_logged_content(store: Store, project_id: str) -> None:
    pipeline = IngestPipeline(store)
    span = Span(
        TRACE_HEX, SPAN_HEX, "", "chat gpt-4o-mini", "Client", 1, 2,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.input.messages": json.dumps([message("user", "A")]),
        },
    )  # fmt: skip
    logged = LogRecord(
        time_unix_nano=1,
        observed_time_unix_nano=1,
        trace_id=TRACE_HEX,
        span_id=SPAN_HEX,
        event_name="gen_ai.client.inference.operation.details",
        attributes={
            "gen_ai.input.messages": [message("user", "B")],
            "gen_ai.output.messages": [message("assistant", "C")],
        },
    )

    pipeline.ingest(project_id, [span])
    pipeline.ingest_logs(project_id, [logged])

    detail = get_trace(store, project_id, TRACE_HEX)
    assert detail is not None
    [node] = detail.spans
    assert node.llm is not None
    assert texts(node.llm.prompt) == [("user", "A")]  # the span's own
    assert texts(node.llm.completion) == [("assistant", "C")]  # the span had none

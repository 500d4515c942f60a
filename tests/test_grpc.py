"""OTLP/gRPC as the official OTel gRPC exporters see it, on the real pipeline and store."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace.export import SpanExportResult
from serving import QueueFor, free_port, serve_process, serving
from test_logs import COMPLETION, PROMPT, record_per_message_events, texts

from tokentrail.api.auth import KeyRing, hash_key
from tokentrail.collector.grpc_receiver import MAX_CONCURRENT_CALLS, grpc_server
from tokentrail.collector.ingest_queue import (
    QUEUE_FULL_RETRY_AFTER_SECONDS,
    RETRY_AFTER_SECONDS,
    Export,
    QueueFull,
    StorageUnavailable,
)
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.receiver import Accept
from tokentrail.schema import Store
from tokentrail.schema.prices import seed_shipped_prices

KEY = "tt-grpc-test-key"
# Every call has a deadline, so a test fails rather than hangs.
TIMEOUT = 10
METADATA = (("authorization", f"Bearer {KEY}"),)
LIMIT = 64 * 1024
TRACE_HEX = "5b8efff798038103d269b633813fc60c"
# 12 input tokens at $0.15/M + 5 output tokens at $0.60/M (shipped gpt-4o-mini price)
CALL_COST = Decimal("0.0000048")


@contextmanager
def receiver(
    accept: Accept, keyring: KeyRing, max_in_flight: int = MAX_CONCURRENT_CALLS
) -> Iterator[str]:
    """A gRPC receiver on a free loopback port; yields its ``host:port``."""
    server, port = grpc_server(
        accept, keyring, "127.0.0.1:0", max_message_bytes=LIMIT, max_in_flight=max_in_flight
    )
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        assert server.stop(grace=None).wait(timeout=TIMEOUT)


@pytest.fixture
def keyring(store: Store, project_id: str) -> KeyRing:
    return KeyRing(store, env_keys={hash_key(KEY): project_id})


@pytest.fixture
def target(store: Store, keyring: KeyRing, queue_for: QueueFor) -> Iterator[str]:
    """The receiver on the real ingest queue and pipeline, with the shipped prices."""
    seed_shipped_prices(store)
    with receiver(queue_for(IngestPipeline(store)).submit, keyring) as address:
        yield address


def count(store: Store, sql: str, project_id: str) -> Any:
    [(value,)] = store.query(sql + " WHERE project_id = {p:String}", {"p": project_id}).rows
    return value


def proto_request(*trace_ids: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for number, trace_id in enumerate(trace_ids, 1):
        spans.add(name=f"span {number}", trace_id=trace_id, span_id=number.to_bytes(8, "big"))
    return request


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_the_otel_grpc_exporters_store_spans_and_logs_once(
    target: str, store: Store, project_id: str, compression: grpc.Compression | None
) -> None:
    recorded = record_per_message_events()
    options: dict[str, Any] = {
        "endpoint": target, "insecure": True, "headers": dict(METADATA), "compression": compression,
    }  # fmt: skip
    spans, logs = OTLPSpanExporter(**options), OTLPLogExporter(**options)

    for _ in range(2):  # the exporter re-sending after a lost acknowledgement
        assert spans.export(recorded.spans) == SpanExportResult.SUCCESS
        assert logs.export(recorded.logs) == LogRecordExportResult.SUCCESS
    spans.shutdown()
    logs.shutdown()

    assert count(store, "SELECT count() FROM spans FINAL", project_id) == 1
    assert count(store, "SELECT count() FROM logs FINAL", project_id) == 3
    [call] = store.query(
        "SELECT trace_id, price_status, total_cost_usd FROM llm_calls FINAL"
        " WHERE project_id = {p:String}",
        {"p": project_id},
    ).rows
    assert call == (recorded.trace_id, "priced", CALL_COST)
    [(prompt, completion)] = store.query(
        "SELECT prompt, completion FROM llm_call_content FINAL WHERE project_id = {p:String}",
        {"p": project_id},
    ).rows
    assert (texts(prompt), texts(completion)) == (PROMPT, COMPLETION)


def test_a_bad_span_is_partial_success_and_the_good_one_is_kept(
    target: str, store: Store, project_id: str
) -> None:
    request = proto_request(bytes.fromhex(TRACE_HEX), b"\x01" * 12)

    with grpc.insecure_channel(target) as channel:
        response = trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            request, metadata=METADATA, timeout=TIMEOUT
        )

    assert response.partial_success.rejected_spans == 1
    assert "trace_id" in response.partial_success.error_message
    assert "12" in response.partial_success.error_message
    assert count(store, "SELECT count() FROM spans FINAL", project_id) == 1


def test_rejected_log_records_are_partial_success_too(target: str) -> None:
    request = logs_service_pb2.ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add(trace_id=b"\x01" * 12, time_unix_nano=1)

    with grpc.insecure_channel(target) as channel:
        response = logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            request, metadata=METADATA, timeout=TIMEOUT
        )

    assert response.partial_success.rejected_log_records == 1
    assert response.partial_success.error_message


@pytest.mark.parametrize(
    "metadata", [(("authorization", "Bearer not-a-key"),), ()], ids=["unknown", "missing"]
)
@pytest.mark.parametrize("signal", ["traces", "logs"])
def test_a_bad_or_missing_key_is_unauthenticated(
    target: str, signal: str, metadata: tuple[tuple[str, str], ...]
) -> None:
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as raised:
        if signal == "traces":
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(
                proto_request(bytes.fromhex(TRACE_HEX)), metadata=metadata, timeout=TIMEOUT
            )
        else:
            logs_service_pb2_grpc.LogsServiceStub(channel).Export(
                logs_service_pb2.ExportLogsServiceRequest(), metadata=metadata, timeout=TIMEOUT
            )

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("refusal", "code", "delay"),
    [
        (OSError("disk full"), grpc.StatusCode.UNAVAILABLE, RETRY_AFTER_SECONDS),
        (StorageUnavailable("spool full"), grpc.StatusCode.UNAVAILABLE, RETRY_AFTER_SECONDS),
        (QueueFull("busy"), grpc.StatusCode.RESOURCE_EXHAUSTED, QUEUE_FULL_RETRY_AFTER_SECONDS),
    ],
    ids=["failure", "unavailable", "queue-full"],
)
def test_a_refused_export_is_retryable_with_a_retry_delay(
    keyring: KeyRing, refusal: Exception, code: grpc.StatusCode, delay: int
) -> None:
    def refuse(export: Export) -> None:
        raise refusal

    with (
        receiver(refuse, keyring) as address,
        grpc.insecure_channel(address) as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            proto_request(bytes.fromhex(TRACE_HEX)), metadata=METADATA, timeout=TIMEOUT
        )

    assert raised.value.code() == code
    retry = RetryInfo.FromString(dict(raised.value.trailing_metadata())["google.rpc.retryinfo-bin"])
    assert retry.retry_delay.seconds == delay


class HoldFirst:
    """An ``accept`` that holds the first export until released, then hands exports on."""

    def __init__(self, accept: Accept | None = None) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.accept = accept

    def __call__(self, export: Export) -> None:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(timeout=TIMEOUT)
        if self.accept is not None:
            self.accept(export)

    @contextmanager
    def holding_one(self, channel: grpc.Channel) -> Iterator[Future[Any]]:
        """Send one export from a thread and hold it; on leaving, release it and see it succeed."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(
                trace_service_pb2_grpc.TraceServiceStub(channel).Export,
                proto_request(bytes.fromhex(TRACE_HEX)),
                metadata=METADATA,
                timeout=TIMEOUT,
            )
            try:
                assert self.entered.wait(timeout=TIMEOUT)
                yield first
            finally:
                self.release.set()
            first.result(timeout=TIMEOUT)


def test_an_export_past_the_in_flight_limit_is_refused_with_a_retry_delay(
    keyring: KeyRing,
) -> None:
    hold = HoldFirst()
    request = proto_request(bytes.fromhex(TRACE_HEX))
    with (
        receiver(hold, keyring, max_in_flight=1) as address,
        grpc.insecure_channel(address) as channel,
    ):
        export = trace_service_pb2_grpc.TraceServiceStub(channel).Export
        with hold.holding_one(channel), pytest.raises(grpc.RpcError) as raised:
            export(request, metadata=METADATA, timeout=TIMEOUT)
        export(request, metadata=METADATA, timeout=TIMEOUT)  # room again

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 1 exports in progress" in (raised.value.details() or "")
    retry = RetryInfo.FromString(dict(raised.value.trailing_metadata())["google.rpc.retryinfo-bin"])
    assert retry.retry_delay.seconds == QUEUE_FULL_RETRY_AFTER_SECONDS == 1


class _OnRecord(logging.Handler):
    """Runs ``action`` on each record logged, from the thread that logs it."""

    def __init__(self, action: Any) -> None:
        super().__init__()
        self.action = action

    def emit(self, record: logging.LogRecord) -> None:
        self.action()


def test_the_otel_exporter_retries_an_export_refused_past_the_limit_and_it_is_stored_once(
    store: Store,
    keyring: KeyRing,
    queue_for: QueueFor,
    project_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hold = HoldFirst(queue_for(IngestPipeline(store)).submit)
    recorded = record_per_message_events()
    exporter_log = logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter")
    # Free the slot once the exporter has been refused and is backing off.
    release_on_retry = _OnRecord(hold.release.set)
    release_on_retry.setLevel(logging.WARNING)
    exporter_log.addHandler(release_on_retry)
    with (
        receiver(hold, keyring, max_in_flight=1) as address,
        grpc.insecure_channel(address) as channel,
        caplog.at_level(logging.WARNING, logger=exporter_log.name),
    ):
        try:
            with hold.holding_one(channel):
                spans = OTLPSpanExporter(
                    endpoint=address, insecure=True, headers=dict(METADATA), timeout=TIMEOUT
                )
                assert spans.export(recorded.spans) == SpanExportResult.SUCCESS
                spans.shutdown()
        finally:
            exporter_log.removeHandler(release_on_retry)

    # Backed off by the RetryInfo delay (its own backoff has +-20% jitter).
    assert "RESOURCE_EXHAUSTED" in caplog.text
    assert "retrying in 1.00s" in caplog.text
    stored = store.query(
        "SELECT TraceId FROM spans FINAL WHERE project_id = {p:String}", {"p": project_id}
    ).rows
    assert sorted(stored) == sorted([(TRACE_HEX,), (recorded.trace_id,)])


def receiver_threads(before: set[threading.Thread]) -> list[str]:
    """The receiver's loop and worker threads started since ``before`` and still alive."""
    started = set(threading.enumerate()) - before
    return [thread.name for thread in started if thread.name.startswith("tokentrail-grpc")]


def test_stop_lets_an_export_in_progress_finish_then_ends_the_receiver_threads(
    keyring: KeyRing,
) -> None:
    hold = HoldFirst()
    before = set(threading.enumerate())
    server, port = grpc_server(hold, keyring, "127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with hold.holding_one(channel) as first:
            stopped = server.stop(grace=TIMEOUT)
        response = first.result(timeout=TIMEOUT)

    assert not response.HasField("partial_success")
    assert stopped.wait(timeout=TIMEOUT)
    assert receiver_threads(before) == []


def test_an_address_in_use_is_a_runtime_error_and_leaves_no_thread(keyring: KeyRing) -> None:
    before = set(threading.enumerate())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="bind"):
            grpc_server(HoldFirst(), keyring, f"127.0.0.1:{port}")

    assert receiver_threads(before) == []


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_a_message_over_the_limit_is_resource_exhausted(
    target: str, compression: grpc.Compression | None
) -> None:
    # Highly compressible: gzipped it is far under the limit, so this also
    # shows the limit applies to the inflated message, as for HTTP bodies.
    request = proto_request(bytes.fromhex(TRACE_HEX))
    request.resource_spans[0].scope_spans[0].spans[0].name = "x" * (LIMIT + 1)

    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as raised:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            request, metadata=METADATA, compression=compression, timeout=TIMEOUT
        )

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_malformed_protobuf_is_invalid_argument(target: str) -> None:
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as raised:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        export(b"\xff\xff\xff", metadata=METADATA, timeout=TIMEOUT)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_serve_accepts_otlp_grpc(tmp_path: Path) -> None:
    grpc_port = free_port()
    recorded = record_per_message_events()
    with serving(tmp_path / "data", keys=f"{KEY}=grpc-e2e", grpc_port=grpc_port) as base:
        exporter = OTLPSpanExporter(
            endpoint=f"127.0.0.1:{grpc_port}",
            insecure=True,
            headers=dict(METADATA),
            compression=grpc.Compression.Gzip,
        )
        assert exporter.export(recorded.spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
        response = httpx.get(
            f"{base}/api/v1/traces/{recorded.trace_id}",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )

    assert response.status_code == 200, response.text
    assert [span["name"] for span in response.json()["spans"]] == ["chat gpt-4o-mini"]


def test_the_standalone_collector_takes_grpc_and_http_and_serves_no_query_api(
    tmp_path: Path,
) -> None:
    grpc_port = free_port()
    recorded = record_per_message_events()
    keys = f"{KEY}=collector-e2e"
    with serve_process(tmp_path / "data", keys=keys, grpc_port=grpc_port, command="collector") as (
        _,
        base,
    ):
        spans = OTLPSpanExporter(
            endpoint=f"127.0.0.1:{grpc_port}", insecure=True, headers=dict(METADATA)
        )
        assert spans.export(recorded.spans) == SpanExportResult.SUCCESS
        spans.shutdown()
        logs = HttpLogExporter(endpoint=f"{base}/v1/logs", headers=dict(METADATA))
        assert logs.export(recorded.logs) == LogRecordExportResult.SUCCESS
        logs.shutdown()
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        query = httpx.get(f"{base}/api/v1/features", headers=dict(METADATA), timeout=10)

    assert "tokentrail_spans_written_total 1\n" in metrics
    assert "tokentrail_log_records_written_total 3\n" in metrics
    assert query.status_code == 404  # the query API runs in `serve`, not here
    # What the collector wrote is what `serve` then reports from the same store.
    with serving(tmp_path / "data", keys=keys) as base:
        trace = httpx.get(
            f"{base}/api/v1/traces/{recorded.trace_id}", headers=dict(METADATA), timeout=10
        )
    assert trace.status_code == 200, trace.text
    [span] = trace.json()["spans"]
    assert texts(span["llm"]["prompt"]) == PROMPT

"""GET /metrics: Prometheus text that moves exactly with what the receivers saw."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2
from serving import QueueFor

from tokentrail.api.app import create_app
from tokentrail.api.auth import KeyRing, hash_key
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.telemetry import Registry
from tokentrail.schema import Store

KEY = "tt-metrics-key"
PROTOBUF = "application/x-protobuf"
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
NOW = time.time_ns()

Sample = tuple[str, frozenset[tuple[str, str]]]

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\]|\\.)*\""
    r"(?:,[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\]|\\.)*\")*)\})?"
    r" (?P<value>[-+]?(?:[0-9.e+-]+|Inf|NaN))$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_COMMENT = re.compile(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$")


def parse(text: str) -> dict[Sample, float]:
    """Every sample of a text exposition, failing on any line that is not valid format."""
    assert text.endswith("\n")
    samples: dict[Sample, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        comment = _COMMENT.match(line)
        if comment:
            if comment[1] == "TYPE":
                assert comment[3] in ("counter", "gauge", "histogram", "summary", "untyped")
                typed.add(comment[2])
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match["name"]
        assert name in typed or re.sub(r"_(bucket|sum|count)$", "", name) in typed, name
        labels = frozenset(_LABEL.findall(match["labels"] or ""))
        samples[(name, labels)] = float(match["value"])
    return samples


@pytest.fixture
def client(store: Store, project_id: str, queue_for: QueueFor) -> Iterator[TestClient]:
    keyring = KeyRing(store, env_keys={hash_key(KEY): project_id})
    pipeline = IngestPipeline(store)
    with TestClient(create_app(store, keyring, pipeline, queue_for(pipeline))) as test_client:
        yield test_client


def _scrape(client: TestClient) -> dict[Sample, float]:
    response = client.get("/metrics")  # no key: open, like /healthz
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def _delta(before: dict[Sample, float], after: dict[Sample, float]) -> dict[Sample, float]:
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if value != before.get(key, 0.0)
    }


def _post(client: TestClient, path: str, body: bytes, key: str = KEY) -> int:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": PROTOBUF}
    return client.post(path, content=body, headers=headers).status_code


def _spans(*span_ids: bytes) -> bytes:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for span_id in span_ids:
        spans.add(trace_id=TRACE_ID, span_id=span_id, name="s", start_time_unix_nano=NOW)
    return request.SerializeToString()


def _logs(*span_ids: bytes) -> bytes:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for span_id in span_ids:
        records.append(logs_pb2.LogRecord(time_unix_nano=NOW, span_id=span_id))
    return request.SerializeToString()


def _name(name: str, **labels: str) -> Sample:
    return name, frozenset(labels.items())


def test_counters_move_exactly_with_good_partial_and_malformed_requests(
    client: TestClient,
) -> None:
    before = _scrape(client)
    assert _post(client, "/v1/traces", _spans(b"\x01" * 8, b"\x02" * 8)) == 200  # good
    assert _post(client, "/v1/traces", _spans(b"\x03" * 8, b"\x04" * 3)) == 200  # partial
    assert _post(client, "/v1/traces", b"\xff\xff not protobuf") == 400  # malformed
    assert _post(client, "/v1/traces", _spans(b"\x05" * 8), key="wrong") == 401
    assert _post(client, "/v1/logs", _logs(b"\x01" * 8, b"\x02" * 5)) == 200  # partial
    after = _scrape(client)

    delta = _delta(before, after)
    write_count = delta.pop(_name("tokentrail_span_write_duration_seconds_count"))
    assert write_count == 2  # one per stored batch
    write_seconds = delta.pop(_name("tokentrail_span_write_duration_seconds_sum"))
    assert write_seconds > 0
    # Which buckets moved depends on the machine's speed; +Inf holds every batch.
    buckets = {key: v for key, v in delta.items() if key[0].endswith("_bucket")}
    assert buckets[_name("tokentrail_span_write_duration_seconds_bucket", le="+Inf")] == 2
    for key in buckets:
        delta.pop(key)
    assert delta == {
        _name("tokentrail_spans_received_total"): 4,
        _name("tokentrail_spans_accepted_total"): 3,
        _name("tokentrail_spans_rejected_total", reason="invalid"): 1,
        _name("tokentrail_spans_written_total"): 3,
        _name("tokentrail_log_records_received_total"): 2,
        _name("tokentrail_log_records_accepted_total"): 1,
        _name("tokentrail_log_records_rejected_total", reason="invalid"): 1,
        _name("tokentrail_log_records_written_total"): 1,
        _name("tokentrail_otlp_http_requests_total", signal="traces", code="200"): 2,
        _name("tokentrail_otlp_http_requests_total", signal="traces", code="400"): 1,
        _name("tokentrail_otlp_http_requests_total", signal="traces", code="401"): 1,
        _name("tokentrail_otlp_http_requests_total", signal="logs", code="200"): 1,
    }
    # Nothing waits once every answer is in; counters are process-wide, so
    # "dropped" is checked as this test's delta (not in `delta` above).
    for gauge in ("tokentrail_spans_queued", "tokentrail_spool_bytes"):
        assert after[_name(gauge)] == 0


def test_exports_wait_in_the_spool_while_writes_fail_and_drain_when_they_succeed(
    store: Store, project_id: str, queue_for: QueueFor
) -> None:
    """A real store fault: the spans table is detached, so every write fails until re-attached."""
    pipeline = IngestPipeline(store)
    keyring = KeyRing(store, env_keys={hash_key(KEY): project_id})
    queue = queue_for(pipeline)
    client = TestClient(create_app(store, keyring, pipeline, queue))
    before = _scrape(client)
    store.command("DETACH TABLE spans")
    try:
        # Accepted: the export is fsync'd in the spool, so the 200 is honest.
        assert _post(client, "/v1/traces", _spans(b"\x01" * 8)) == 200
        assert _post(client, "/v1/traces", _spans(b"\x02" * 8)) == 200
        ready = client.get("/readyz")
        during = _delta(before, _scrape(client))
    finally:
        store.command("ATTACH TABLE spans")

    assert ready.status_code == 503
    assert "writes are failing" in ready.json()["reason"]
    assert during[_name("tokentrail_write_failures_total")] >= 1
    assert during[_name("tokentrail_spans_queued")] == 2
    assert during[_name("tokentrail_spool_bytes")] > 0
    assert _name("tokentrail_spans_written_total") not in during
    assert during[_name("tokentrail_otlp_http_requests_total", signal="traces", code="200")] == 2

    assert queue.drain(timeout_s=30)
    after = _delta(before, _scrape(client))
    assert after[_name("tokentrail_spans_written_total")] == 2
    assert _name("tokentrail_spans_queued") not in after  # back to where it was
    assert _name("tokentrail_spool_bytes") not in after
    assert _name("tokentrail_spans_dropped_total") not in after
    assert client.get("/readyz").status_code == 200
    stored = store.query(
        "SELECT count() FROM spans FINAL WHERE project_id = {p:String}", {"p": project_id}
    ).rows
    assert stored == [(2,)]


def test_rendering_escapes_label_values_and_keeps_histograms_cumulative() -> None:
    registry = Registry()
    counter = registry.counter("t_total", "a\nhelp", ("reason",))
    counter.inc(2, reason='say "hi"\\')
    histogram = registry.histogram("t_seconds", "latency", (0.1, 1.0))
    histogram.observe(0.05)
    histogram.observe(0.5)
    histogram.observe(5)
    text = registry.render()
    assert "# HELP t_total a\\nhelp" in text
    samples = parse(text)
    assert samples[_name("t_total", reason='say \\"hi\\"\\\\')] == 2
    assert samples[_name("t_seconds_bucket", le="0.1")] == 1
    assert samples[_name("t_seconds_bucket", le="1")] == 2
    assert samples[_name("t_seconds_bucket", le="+Inf")] == 3
    assert samples[_name("t_seconds_count")] == 3
    assert samples[_name("t_seconds_sum")] == pytest.approx(5.55)
    with pytest.raises(ValueError, match="labels"):
        counter.inc(reason="x", extra="y")

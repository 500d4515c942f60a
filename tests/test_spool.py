"""The write-ahead spool and the ingest queue: durable before the ack, bounded, never stuck.

The queue is driven here through plain ``Route`` callables, because what is
under test is its contract (order, bounds, retries, replay), not the store;
``test_collector_metrics.py`` and ``test_durability.py`` run it on the real one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from serving import serving_app

from tokentrail.collector import ingest_queue as ingest_queue_module
from tokentrail.collector import spool as spool_module
from tokentrail.collector import telemetry
from tokentrail.collector.ingest_queue import (
    Export,
    IngestQueue,
    QueueFull,
    QueueLimits,
    Route,
    StorageUnavailable,
)
from tokentrail.collector.receiver import otlp_http_router
from tokentrail.collector.service import configured_queue
from tokentrail.collector.spool import Spool, SpoolFull, SpoolRecord
from tokentrail.schema import Store

BIG = 1024**3


def record(body: bytes, project: str = "p1") -> SpoolRecord:
    return SpoolRecord("traces", project, "application/x-protobuf", body)


# --- the spool ---------------------------------------------------------------------------


def test_uncommitted_records_come_back_after_a_restart_and_committed_ones_do_not(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, BIG)
    refs = [spool.append(record(f"export {n}".encode())) for n in range(3)]
    spool.commit([refs[0].seq])
    spool.close()

    reopened = Spool(tmp_path, BIG)
    assert [reopened.read(ref).body for ref in reopened.unwritten()] == [b"export 1", b"export 2"]
    assert reopened.pending_bytes == refs[1].size + refs[2].size
    # New records continue the sequence, so none is mistaken for a committed one.
    assert reopened.append(record(b"export 3")).seq == refs[2].seq + 1


def test_the_checkpoint_never_passes_a_record_still_unwritten(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    first, second, third = (spool.append(record(bytes([n]))) for n in range(3))
    spool.commit([second.seq, third.seq])  # written out of order: first is still pending
    spool.close()

    reopened = Spool(tmp_path, BIG)
    assert [ref.seq for ref in reopened.unwritten()] == [first.seq, second.seq, third.seq]
    reopened.commit([first.seq, second.seq, third.seq])
    assert reopened.unwritten() == []
    assert reopened.pending_bytes == 0


def test_a_record_torn_by_a_crash_is_cut_off_not_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    kept = spool.append(record(b"whole"))
    torn = spool.append(record(b"torn in half by the crash"))
    spool.close()
    with torn.segment.open("r+b") as segment:
        segment.truncate(torn.offset + torn.size - 5)

    reopened = Spool(tmp_path, BIG)
    assert [reopened.read(ref).body for ref in reopened.unwritten()] == [b"whole"]
    assert kept.segment.stat().st_size == kept.size


def test_past_its_byte_bound_the_spool_refuses_and_frees_room_on_commit(tmp_path: Path) -> None:
    probe = Spool(tmp_path / "probe", BIG).append(record(b"x" * 100))
    spool = Spool(tmp_path / "bounded", max_bytes=2 * probe.size)
    first = spool.append(record(b"x" * 100))
    spool.append(record(b"x" * 100))

    with pytest.raises(SpoolFull, match="byte bound"):
        spool.append(record(b"x" * 100))
    spool.commit([first.seq])
    spool.append(record(b"x" * 100))


def test_segments_wholly_written_are_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 350)
    spool = Spool(tmp_path, BIG)
    refs = [spool.append(record(b"y" * 100)) for _ in range(6)]
    segments = sorted({ref.segment for ref in refs})
    assert len(segments) == 3  # two records of 156 bytes per 350-byte segment

    spool.commit([ref.seq for ref in refs[:4]])
    assert sorted(tmp_path.glob("*.seg")) == segments[2:]


# --- the queue ---------------------------------------------------------------------------


class Sink:
    """Records what the writer stores; can be made to block or fail."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, list[Any]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.failing: set[Any] = set()  # items whose write fails
        self.down = False
        self.repaired: list[list[Any]] = []

    def store(self, project_id: str, items: list[Any]) -> None:
        assert self.gate.wait(10), "the test never opened the gate"
        if self.down or (self.failing and self.failing & set(items)):
            raise ConnectionError("store down")
        self.stored.append((project_id, items))

    def repair(self, project_id: str, items: list[Any]) -> None:
        self.repaired.append(items)

    @property
    def items(self) -> list[Any]:
        return [item for _, items in self.stored for item in items]


def decode(body: bytes, content_type: str) -> tuple[list[Any], list[str]]:
    return body.decode().split(","), []


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def open_queue(tmp_path: Path, sink: Sink) -> Iterator[Any]:
    opened: list[IngestQueue] = []

    def open_(limits: QueueLimits | None = None, spool_bytes: int = BIG) -> IngestQueue:
        routes = {"traces": Route(decode, sink.store, sink.repair)}
        queue = IngestQueue(Spool(tmp_path / "spool", spool_bytes), routes, limits)
        queue.start()
        opened.append(queue)
        return queue

    yield open_
    sink.gate.set()
    sink.down = False
    for queue in opened:
        queue.close(timeout_s=5)


def export(*items: str, project: str = "p1") -> Export:
    return Export("traces", project, list(items), ",".join(items).encode(), "text/plain")


def submit_in_background(queue: IngestQueue, *exports: Export) -> threading.Thread:
    thread = threading.Thread(target=lambda: [queue.submit(e) for e in exports], daemon=True)
    thread.start()
    return thread


def test_queued_exports_are_merged_into_one_write_per_project(open_queue: Any, sink: Sink) -> None:
    sink.gate.clear()  # hold the writer so the next exports queue up behind the first
    queue = open_queue(QueueLimits(ack_wait_s=0.01))
    queue.submit(export("a"))
    for exp in (export("b"), export("c"), export("x", project="p2"), export("d")):
        queue.submit(exp)
    sink.gate.set()
    assert queue.drain(timeout_s=10)

    assert sink.stored[0] == ("p1", ["a"])
    assert sorted(sink.stored[1:]) == [("p1", ["b", "c", "d"]), ("p2", ["x"])]


def test_a_lone_client_is_never_kept_waiting_for_a_fuller_write(
    open_queue: Any, sink: Sink
) -> None:
    queue = open_queue()
    started = time.monotonic()
    for n in range(20):
        queue.submit(export(f"item{n}"))  # answered once written
    # Waiting each time for a fuller write (0.15 s at most) would take 2.85 s or more.
    assert time.monotonic() - started < 2.0
    assert len(sink.stored) == 20


def test_under_load_the_writer_waits_for_the_clients_it_just_answered(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_queue_module, "_LINGER_S", 5.0)  # the test's timing, not a race
    entered = threading.Event()

    def store(project_id: str, items: list[Any]) -> None:
        entered.set()
        sink.store(project_id, items)

    sink.gate.clear()
    queue = IngestQueue(Spool(tmp_path / "spool", BIG), {"traces": Route(decode, store)})
    queue.start()
    try:
        # Each client sends its next export as soon as the last one is answered.
        clients = [submit_in_background(queue, export("a1"), export("a2"), export("a3"))]
        assert entered.wait(10)  # a1 is being written, held by the gate
        one = queue.spooled_bytes
        clients += [submit_in_background(queue, export(f"{c}1"), export(f"{c}2")) for c in "bc"]
        deadline = time.monotonic() + 10
        while queue.spooled_bytes < 3 * one and time.monotonic() < deadline:
            time.sleep(0.01)
        sink.gate.set()
        for client in clients:
            client.join(10)
        assert queue.drain(timeout_s=10)
    finally:
        queue.close()
    # Not b1 and c1 alone while a2 is on its way: three clients, three exports a write.
    writes = [sorted(items) for _, items in sink.stored]
    assert writes == [["a1"], ["a2", "b1", "c1"], ["a3", "b2", "c2"]]


def test_a_full_queue_refuses_with_queue_full_while_the_store_is_slow(
    open_queue: Any, sink: Sink
) -> None:
    sink.gate.clear()
    queue = open_queue(QueueLimits(max_items=3, ack_wait_s=0.01))
    queue.submit(export("a", "b"))  # being written, held by the gate
    queue.submit(export("c"))

    with pytest.raises(QueueFull) as refused:
        queue.submit(export("d"))
    assert refused.value.retry_after == 1
    sink.gate.set()
    assert queue.drain(timeout_s=10)
    queue.submit(export("d"))  # room again
    assert sink.items == ["a", "b", "c", "d"]


def test_an_export_bigger_than_the_whole_bound_is_taken_when_the_queue_is_empty(
    open_queue: Any, sink: Sink
) -> None:
    queue = open_queue(QueueLimits(max_items=2))
    queue.submit(export("a", "b", "c", "d"))
    assert sink.items == ["a", "b", "c", "d"]


def test_the_spool_lets_go_of_a_write_only_once_the_store_has_made_it_durable(
    tmp_path: Path, sink: Sink
) -> None:
    spool = Spool(tmp_path / "spool", BIG)
    unwritten_when_persisting: list[int] = []

    def persist() -> None:
        unwritten_when_persisting.append(len(spool.unwritten()))
        if len(unwritten_when_persisting) == 1:
            raise OSError("the disk did not flush")

    queue = IngestQueue(spool, {"traces": Route(decode, sink.store)}, persist=persist)
    queue.start()
    try:
        queue.submit(export("a"))
        assert queue.drain(timeout_s=10)
    finally:
        queue.close()
    # Still in the spool both times; the flush that failed failed the write, so it was retried.
    assert unwritten_when_persisting == [1, 1]
    assert sink.stored == [("p1", ["a"]), ("p1", ["a"])]
    assert Spool(tmp_path / "spool", BIG).unwritten() == []


def test_freed_memory_is_released_when_idle_and_at_most_every_ten_seconds_when_busy(
    tmp_path: Path, sink: Sink
) -> None:
    releases: list[int] = []
    routes = {"traces": Route(decode, sink.store)}
    queue = IngestQueue(
        Spool(tmp_path / "spool", BIG), routes, QueueLimits(ack_wait_s=0.01),
        lambda: releases.append(len(sink.items)),
    )  # fmt: skip
    queue.start()
    try:
        sink.gate.clear()
        queue.submit(export("first"))  # held, so the next three queue behind it
        for n in range(3):
            queue.submit(export(f"item{n}", project=f"p{n}"))  # three writes, not one
        sink.gate.set()
        assert queue.drain(timeout_s=10)
        deadline = time.monotonic() + 10
        while len(releases) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        queue.close()
    assert len(sink.stored) == 4
    # After "first" (queue busy, none yet these ten seconds), then once idle
    # again: not after each of the three writes in between.
    assert releases == [1, 4]


def test_the_embedded_engine_gives_freed_memory_back(store: Store) -> None:
    store.release_memory()  # raises if the engine refuses the purge
    assert store.ping()


def test_the_answer_waits_for_the_write_so_a_200_means_queryable(
    open_queue: Any, sink: Sink
) -> None:
    queue = open_queue()
    queue.submit(export("a"))
    assert sink.items == ["a"]  # written before submit returned
    assert sink.repaired == []  # a first, clean write needs no repair


def test_while_the_store_is_down_exports_go_to_disk_only_and_drain_when_it_returns(
    open_queue: Any, sink: Sink
) -> None:
    sink.down = True
    queue = open_queue(QueueLimits(max_items=2, ack_wait_s=5))
    for n in range(6):  # three times what memory may hold: the rest waits on disk
        queue.submit(export(f"item{n}"))
    reason = queue.readiness()
    assert reason is not None and "writes are failing (ConnectionError: store down)" in reason

    sink.down = False
    assert queue.drain(timeout_s=20)
    assert sorted(sink.items) == [f"item{n}" for n in range(6)]
    assert sink.repaired[0] == ["item0"]  # the export whose writes failed is repaired after
    assert queue.readiness() is None


def test_past_the_spool_bound_a_down_store_means_storage_unavailable(
    open_queue: Any, sink: Sink
) -> None:
    sink.down = True
    queue = open_queue(spool_bytes=200)
    queue.submit(export("a" * 60))
    with pytest.raises(StorageUnavailable, match="byte bound"):
        queue.submit(export("b" * 60))
    assert queue.readiness() is not None


def test_one_export_that_cannot_be_written_is_set_aside_not_retried_for_ever(
    open_queue: Any, sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tokentrail.collector.ingest_queue._BACKOFF_START_S", 0.01)
    sink.failing = {"poison"}
    queue = open_queue(QueueLimits(ack_wait_s=0.01))
    queue.submit(export("poison"))
    queue.submit(export("fine"))
    assert queue.drain(timeout_s=20)

    assert sink.items == ["fine"]
    (kept,) = (tmp_path / "spool" / "rejected").iterdir()
    assert kept.read_bytes() == b"poison"  # kept for the operator, not lost
    assert queue.readiness() is None


def test_a_replayed_export_set_aside_is_counted_as_dropped_span_by_span(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tokentrail.collector.ingest_queue._BACKOFF_START_S", 0.01)
    spool = Spool(tmp_path / "spool", BIG)
    spool.append(SpoolRecord("traces", "p1", "application/json", b"poison,pill"))
    spool.close()  # left unwritten by a crashed process
    sink.failing = {"poison"}
    before = telemetry.SPANS_DROPPED.value()
    routes = {"traces": Route(decode, sink.store)}
    queue = IngestQueue(Spool(tmp_path / "spool", BIG), routes, QueueLimits(ack_wait_s=0.01))
    queue.start()
    try:
        queue.submit(export("fine"))  # written while the replayed one fails: it is judged bad
        assert queue.drain(timeout_s=20)
    finally:
        queue.close()

    assert sink.items == ["fine"]
    assert telemetry.SPANS_DROPPED.value() - before == 2
    (kept,) = (tmp_path / "spool" / "rejected").iterdir()
    assert (kept.name.endswith(".traces.json"), kept.read_bytes()) == (True, b"poison,pill")


def test_what_a_crashed_process_left_unwritten_is_written_at_the_next_start(
    tmp_path: Path, sink: Sink
) -> None:
    spool = Spool(tmp_path / "spool", BIG)
    spool.append(SpoolRecord("traces", "p1", "text/plain", b"left,over"))
    spool.close()  # as if the process died before its writer ran

    routes = {"traces": Route(decode, sink.store, sink.repair)}
    queue = IngestQueue(Spool(tmp_path / "spool", BIG), routes)
    queue.start()
    try:
        assert queue.drain(timeout_s=10)
    finally:
        queue.close()
    assert sink.stored == [("p1", ["left", "over"])]
    assert sink.repaired == [["left", "over"]]  # it may have been half-written before the crash
    assert Spool(tmp_path / "spool", BIG).unwritten() == []


# --- through OTLP/HTTP, with the real exporter ------------------------------------------


def test_the_otel_exporter_retries_after_a_429_and_its_spans_are_stored_once(
    open_queue: Any, sink: Sink
) -> None:
    sink.gate.clear()
    queue = open_queue(QueueLimits(max_items=1, ack_wait_s=0.01))
    app = FastAPI()
    app.include_router(otlp_http_router(queue.submit, lambda: "p1"))
    first = _finished_spans("first")
    second = _finished_spans("second")
    before = telemetry.HTTP_REQUESTS.value(signal="traces", code="429")
    with serving_app(app) as base:
        exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=10)
        assert exporter.export(first) == SpanExportResult.SUCCESS  # held by the gate
        threading.Timer(0.5, sink.gate.set).start()
        # The queue is full: 429, Retry-After 1; the exporter waits and sends again.
        assert exporter.export(second) == SpanExportResult.SUCCESS
        exporter.shutdown()
        assert queue.drain(timeout_s=10)

    assert telemetry.HTTP_REQUESTS.value(signal="traces", code="429") - before >= 1
    assert [span.name for span in sink.items] == ["first", "second"]


def _finished_spans(name: str) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("test").start_span(name).end()
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOKENTRAIL_QUEUE_MAX_ITEMS": "lots"}, "TOKENTRAIL_QUEUE_MAX_ITEMS must be a number"),
        ({"TOKENTRAIL_QUEUE_BATCH_ITEMS": "0"}, "TOKENTRAIL_QUEUE_BATCH_ITEMS must be positive"),
        ({"TOKENTRAIL_QUEUE_ACK_WAIT_SECONDS": "-1"}, "ACK_WAIT_SECONDS must be positive"),
    ],
)
def test_a_bad_queue_setting_is_refused_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        configured_queue(env)


def test_queue_settings_come_from_the_environment() -> None:
    limits = configured_queue(
        {"TOKENTRAIL_QUEUE_MAX_ITEMS": "100", "TOKENTRAIL_QUEUE_ACK_WAIT_SECONDS": "0.5"}
    )
    assert limits == QueueLimits(max_items=100, batch_items=8_192, ack_wait_s=0.5)

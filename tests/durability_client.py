"""An app exporting LLM traces under load, in a process of its own, for tests/test_durability.py.

Run as ``python durability_client.py COLLECTOR_URL API_KEY WORK_DIR BATCHES WORKERS``.
It makes BATCHES distinct batches of real SDK spans (each batch: two complete
traces, a root span and two OTel GenAI chat spans) and writes them to
``WORK_DIR/plan.jsonl`` before sending anything. WORKERS threads then call the
real OTLP/HTTP exporter's ``export()`` on one batch after another. Just before a
batch is sent its number goes to ``started.jsonl``; after each SUCCESS (a 200) its
span ids go to ``acked.jsonl``, flushed and fsync'd, so that file is the truth of
what the collector acknowledged even if this process is killed too.

At the first failed export (the collector was killed) every worker stops and the
process prints ``{"phase": "stopped", ...}``. It then reads one line from stdin:
the URL of the restarted collector, or nothing to exit. Given a URL it exports
every batch it had started again, acknowledged or not, in the same ReadableSpan
objects, as an exporter retrying after lost answers would, and prints
``{"phase": "resent", ...}``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer

FEATURE = "durability-chat"
EXPORT_TIMEOUT_SECONDS = 2.0
TRACES_PER_BATCH = 2
CALLS_PER_TRACE = 2


def _hex_span(span: ReadableSpan) -> str:
    return format(span.context.span_id, "016x")


def _hex_trace(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


def _one_trace(tracer: Tracer, number: int, feature: str) -> None:
    """A feature's root span with two chat calls under it; usage differs per call."""
    with tracer.start_as_current_span(
        "answer question", attributes={"tokentrail.feature": feature, "user.id": f"u-{number % 5}"}
    ):
        for call in range(CALLS_PER_TRACE):
            index = number * CALLS_PER_TRACE + call
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.id": f"chatcmpl-{feature}-{index}",
                "gen_ai.usage.input_tokens": 100 + index % 97,
                "gen_ai.usage.output_tokens": 20 + index % 13,
                "tokentrail.feature": feature,
            }
            with tracer.start_as_current_span(
                "chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes=attributes
            ):
                pass


def make_batches(count: int, feature: str = FEATURE) -> list[list[ReadableSpan]]:
    """``count`` batches of finished spans from the real SDK, each holding whole traces."""
    recorded = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "durability-app"}))
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    tracer = provider.get_tracer("durability")
    batches = []
    for batch in range(count):
        for trace in range(TRACES_PER_BATCH):
            _one_trace(tracer, batch * TRACES_PER_BATCH + trace, feature)
        batches.append(list(recorded.get_finished_spans()))
        recorded.clear()
    provider.shutdown()
    return batches


def describe(number: int, batch: Sequence[ReadableSpan]) -> dict[str, Any]:
    calls = [
        {
            "trace_id": _hex_trace(span),
            "span_id": _hex_span(span),
            "input_tokens": (span.attributes or {})["gen_ai.usage.input_tokens"],
            "output_tokens": (span.attributes or {})["gen_ai.usage.output_tokens"],
        }
        for span in batch
        if (span.attributes or {}).get("gen_ai.operation.name") == "chat"
    ]
    return {
        "batch": number,
        "trace_ids": sorted({_hex_trace(span) for span in batch}),
        "span_ids": [_hex_span(span) for span in batch],
        "calls": calls,
    }


class Journal:
    """Append-only JSON lines, each flushed and fsync'd before ``append`` returns."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("a")
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())


def _exporter(base: str, key: str) -> OTLPSpanExporter:
    return OTLPSpanExporter(
        endpoint=f"{base}/v1/traces",
        headers={"Authorization": f"Bearer {key}"},
        timeout=EXPORT_TIMEOUT_SECONDS,
    )


def load(
    base: str, key: str, batches: list[list[ReadableSpan]], work: Path, workers: int
) -> tuple[list[int], int]:
    """Export from ``workers`` threads until done or the first failure: batches started, acks."""
    started, acked = Journal(work / "started.jsonl"), Journal(work / "acked.jsonl")
    queue = iter(enumerate(batches))
    queue_lock, stop = threading.Lock(), threading.Event()
    acks, begun = [0] * workers, []

    def work_loop(worker: int) -> None:
        exporter = _exporter(base, key)
        try:
            while not stop.is_set():
                with queue_lock:
                    number, batch = next(queue, (-1, []))
                    begun.append(number)
                if number < 0:
                    return
                started.append({"batch": number})
                if exporter.export(batch) != SpanExportResult.SUCCESS:
                    stop.set()
                    return
                acked.append({"batch": number, "span_ids": [_hex_span(s) for s in batch]})
                acks[worker] += 1
        finally:
            exporter.shutdown()

    threads = [threading.Thread(target=work_loop, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(n for n in begun if n >= 0), sum(acks)


def resend(base: str, key: str, batches: list[list[ReadableSpan]]) -> list[int]:
    """Export the batches once more, in order; the positions of those not acknowledged."""
    exporter = _exporter(base, key)
    results = [exporter.export(batch) for batch in batches]
    exporter.shutdown()
    return [n for n, result in enumerate(results) if result != SpanExportResult.SUCCESS]


def main(base: str, key: str, work_dir: str, count: str, workers: str) -> None:
    work = Path(work_dir)
    batches = make_batches(int(count))
    with (work / "plan.jsonl").open("w") as plan:
        for number, batch in enumerate(batches):
            plan.write(json.dumps(describe(number, batch)) + "\n")
    started, acked = load(base, key, batches, work, int(workers))
    print(json.dumps({"phase": "stopped", "started": started, "acked": acked}), flush=True)
    restarted = sys.stdin.readline().strip()
    if restarted:
        failed = resend(restarted, key, [batches[n] for n in started])
        print(json.dumps({"phase": "resent", "failed": [started[n] for n in failed]}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])

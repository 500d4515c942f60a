"""In-process cost of ``IngestPipeline.ingest`` per span, against decoding the same spans.

Builds the traffic of ``bench/ingest.py`` (a root span naming the feature, an
OTel GenAI chat span under it; every id distinct), decodes it, merges the spans
into ``--batch``-span writes (what the ingest queue hands the pipeline under
load) and ingests them one after another into the embedded store in a temporary
directory. The first write warms the engine and is not counted.

It prints µs per span for decoding (``parse_traces_request`` + ``flatten``, the
baseline, measured in the same run), for the whole pipeline, and for each stage
(wrapped in timers here, so the stages do not add up to quite the whole), and
the pipeline / decode ratio. It also prints the floor of any ingest path on
this stack: decoding plus storing the raw spans alone (``span_columns`` and
one insert into ``spans``, no LLM calls, no rollups, no HTTP), in wall and
process CPU time (the engine's insert threads included), against the CPU one
span may cost for issue 5's goal: 30,000 spans/s on 2 cores is 66.7 µs.
``--gc`` runs everything timed under the garbage collector settings of the
server (``tune_gc``), not the interpreter's default; compare runs with and
without it taken in turn, several times.

Run: python bench/pipeline.py [--spans 65536] [--batch 8192] [--gc]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ingest import build_traffic

from tokentrail.collector import context, duplicates, pipeline, writer
from tokentrail.collector.decode import PROTOBUF, flatten, parse_traces_request
from tokentrail.collector.records import Span
from tokentrail.collector.service import tune_gc
from tokentrail.collector.writer import span_columns
from tokentrail.schema import apply_migrations, open_store
from tokentrail.schema.store import Store, embedded_dsn

PROJECT = "bench"
# CPU per span that 30,000 spans/s on this 2-core machine allows (issue 5).
GOAL_SPANS_PER_S = 30_000
CORES = 2

_spent: dict[str, float] = defaultdict(float)


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _spent[name] += time.perf_counter() - started

    return timed


def _instrument() -> None:
    """Stage timers around the names the pipeline and writer call through."""
    pipeline.normalize = _timed("normalize", pipeline.normalize)  # type: ignore[attr-defined]
    context.ContextResolver.resolve = _timed("context", context.ContextResolver.resolve)  # type: ignore[method-assign]
    duplicates.DuplicateResolver.resolve = _timed(  # type: ignore[method-assign]
        "duplicates", duplicates.DuplicateResolver.resolve
    )
    writer.span_columns = _timed("span columns", writer.span_columns)
    writer.llm_call_columns = _timed("call columns", writer.llm_call_columns)
    Store.insert_columns = _timed("store inserts", Store.insert_columns)  # type: ignore[method-assign]
    writer.settle_calls = _timed("settle calls", writer.settle_calls)
    writer.settle_scores = _timed("settle scores", writer.settle_scores)


def decoded(batches: list[bytes]) -> tuple[list[Span], float]:
    """Every span of ``batches``, and the seconds decoding took."""
    started = time.perf_counter()
    spans = [s for body in batches for s in flatten(parse_traces_request(body, PROTOBUF))[0]]
    return spans, time.perf_counter() - started


def raw_storage(writes: list[list[Span]]) -> tuple[float, float]:
    """Wall and process-CPU seconds to store ``writes[1:]`` as raw spans and nothing else."""
    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-") as scratch:
        store = open_store(embedded_dsn(scratch))
        apply_migrations(store)
        store.insert_columns("spans", span_columns(PROJECT, writes[0]))
        started, cpu_started = time.perf_counter(), time.process_time()
        for batch in writes[1:]:
            store.insert_columns("spans", span_columns(PROJECT, batch))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        store.close()
    return seconds, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=65_536)
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--gc", action="store_true", help="the server's GC settings")
    args = parser.parse_args()

    traffic = build_traffic(args.spans + args.batch)  # one more write, to warm up
    spans, decode_s = decoded(traffic.batches)
    decode_us = decode_s / len(spans) * 1e6
    writes = [spans[i : i + args.batch] for i in range(0, len(spans), args.batch)]
    if args.gc:
        tune_gc()
    raw_s, raw_cpu = raw_storage(writes)  # before the stage timers wrap the store

    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-") as scratch:
        store = open_store(embedded_dsn(scratch))
        apply_migrations(store)
        ingest = pipeline.IngestPipeline(store)
        ingest.ingest(PROJECT, writes[0])
        _instrument()
        started = time.perf_counter()
        for batch in writes[1:]:
            ingest.ingest(PROJECT, batch)
        seconds = time.perf_counter() - started
        store.close()

    total = len(spans) - len(writes[0])
    us = seconds / total * 1e6
    gc_mode = "server GC settings" if args.gc else "default GC"
    print(f"{total:,} spans in writes of {args.batch} (after one warm-up write), {gc_mode}")
    print(f"  decode (baseline)     {decode_us:8.1f} µs/span")
    print(f"  pipeline              {us:8.1f} µs/span   pipeline / decode = {us / decode_us:.2f}")
    for name, spent in _spent.items():
        print(f"    {name:<19} {spent / total * 1e6:8.1f} µs/span")
    budget_us = CORES / GOAL_SPANS_PER_S * 1e6
    raw_us, raw_cpu_us = raw_s / total * 1e6, raw_cpu / total * 1e6
    floor_us = decode_us + raw_cpu_us
    print(f"  raw spans stored only  {raw_us:8.1f} µs/span wall, {raw_cpu_us:.1f} µs/span CPU")
    print(
        f"  floor: decode + raw spans {floor_us:6.1f} µs/span CPU = {floor_us / budget_us:.2f} x "
        f"the {budget_us:.1f} µs budget of {GOAL_SPANS_PER_S:,} spans/s on {CORES} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

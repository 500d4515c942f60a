"""The collector assembled: spool and ingest queue over the pipeline, and its HTTP app.

``tokentrail serve`` mounts the same pieces beside the query API; ``tokentrail
collector`` runs them alone (OTLP/HTTP, health and metrics; gRPC beside it), so
collectors can scale apart from the API in front of one ClickHouse server.
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from tokentrail import __version__
from tokentrail.api.auth import KeyRing
from tokentrail.collector.health import Readiness, health_router
from tokentrail.collector.ingest_queue import IngestQueue, QueueLimits, Route
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.receiver import LOGS, TRACES, otlp_http_router
from tokentrail.collector.spool import Spool
from tokentrail.collector.telemetry import metrics_router
from tokentrail.schema.store import Store


def tune_gc() -> None:
    """Garbage collection for a long-lived server; call once everything is loaded.

    ``gc.freeze`` moves what is loaded so far (modules, the app, the price
    table) out of the collector's reach: every full collection would otherwise
    walk it again, and ingest's big batches trigger them often. (A larger young
    generation on top showed no measurable gain and a higher peak RSS.)
    """
    gc.freeze()


def release_memory(store: Store) -> None:
    """Give memory freed by Python's allocator (glibc) and the embedded engine back to the OS."""
    if _malloc_trim is not None:
        _malloc_trim(0)
    store.release_memory()


def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None where the C library has none (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_malloc_trim = _libc_malloc_trim()


def configured_queue(env: Mapping[str, str] = os.environ) -> QueueLimits:
    """Queue bounds from ``TOKENTRAIL_QUEUE_MAX_ITEMS``, ``_BATCH_ITEMS`` and ``_ACK_WAIT_SECONDS``.

    Raises ValueError naming the variable when one is not a positive number.
    """
    defaults = QueueLimits()
    return QueueLimits(
        max_items=int(_positive(env, "TOKENTRAIL_QUEUE_MAX_ITEMS", defaults.max_items)),
        batch_items=int(_positive(env, "TOKENTRAIL_QUEUE_BATCH_ITEMS", defaults.batch_items)),
        ack_wait_s=_positive(env, "TOKENTRAIL_QUEUE_ACK_WAIT_SECONDS", defaults.ack_wait_s),
    )


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {text!r}")
    return value


def open_ingest_queue(
    store: Store,
    pipeline: IngestPipeline,
    spool_dir: Path,
    spool_max_bytes: int,
    limits: QueueLimits | None = None,
) -> IngestQueue:
    """A started queue writing through ``pipeline``, first replaying what the spool still holds.

    A write leaves the spool only once ``store`` has persisted it.
    """
    routes = {
        TRACES.name: Route(TRACES.decode, pipeline.ingest, pipeline.repair),
        LOGS.name: Route(LOGS.decode, pipeline.ingest_logs),
    }
    queue = IngestQueue(
        Spool(spool_dir, spool_max_bytes),
        routes,
        limits,
        release_memory=partial(release_memory, store),
        persist=store.persist,
    )
    queue.start()
    return queue


def readiness(store: Store, queue: IngestQueue) -> Readiness:
    """Ready when the store answers and exports are written as they arrive."""

    def check() -> str | None:
        if not store.ping():
            return (
                f"ClickHouse store did not answer; {queue.spooled_bytes} bytes of accepted "
                "exports wait in the spool"
            )
        return queue.readiness()

    return check


def collector_app(store: Store, keyring: KeyRing, queue: IngestQueue) -> FastAPI:
    """The standalone collector: OTLP/HTTP receivers, probes and ``/metrics``, no query API."""
    app = FastAPI(
        title="tokentrail collector",
        version=__version__,
        description="Receives OTLP traces and logs and writes them to ClickHouse.",
    )
    app.include_router(health_router(readiness(store, queue)))
    app.include_router(metrics_router())
    app.include_router(otlp_http_router(queue.submit, keyring.dependency()))
    return app

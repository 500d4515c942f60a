"""The collector's own metrics, rendered in the Prometheus text exposition format.

A tiny registry of our own rather than prometheus_client: a handful of
counters and one histogram do not justify a dependency. Metrics are counted
where every transport passes (``decode``/``decode_logs`` flatten, the ingest
pipeline), so OTLP/HTTP and OTLP/gRPC show up in the same series. All are
process-global: one collector process is one scrape target.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

LabelValues = tuple[str, ...]

# Batch write times span sub-millisecond (embedded, small batch) to seconds
# (a remote ClickHouse under load).
WRITE_SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class _Metric:
    """Name, help, label names and a lock: what every metric kind shares."""

    kind = ""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labels = labels
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return tuple(labels[name] for name in self.labels)

    def _label_text(self, values: LabelValues) -> str:
        pairs = [f'{n}="{_escape(v)}"' for n, v in zip(self.labels, values, strict=True)]
        return "{" + ",".join(pairs) + "}" if pairs else ""

    def header(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"

    def samples(self) -> Iterator[str]:
        raise NotImplementedError


class _Valued(_Metric):
    """A metric holding one number per label set: counters and gauges."""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {} if labels else {(): 0.0}

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterator[str]:
        with self._lock:
            items = sorted(self._values.items())
        for values, number in items:
            yield f"{self.name}{self._label_text(values)} {_number(number)}"


class Counter(_Valued):
    kind = "counter"

    def inc(self, amount: float = 1, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Valued):
    kind = "gauge"

    def set(self, amount: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = amount


class Histogram(_Metric):
    """Cumulative buckets, sum and count, unlabelled (all we need so far)."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        super().__init__(name, help_text)
        self._bounds = (*sorted(buckets), math.inf)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        with self._lock:
            self._sum += amount
            for i, bound in enumerate(self._bounds):
                if amount <= bound:
                    self._counts[i] += 1
                    break

    @contextmanager
    def time(self) -> Iterator[None]:
        """Observe how long the block took, also when it raises (a slow failure is slow too)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - start)

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    def samples(self) -> Iterator[str]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative = 0
        for bound, count in zip(self._bounds, counts, strict=True):
            cumulative += count
            le = "+Inf" if math.isinf(bound) else _number(bound)
            yield f'{self.name}_bucket{{le="{le}"}} {cumulative}'
        yield f"{self.name}_sum {_number(total)}"
        yield f"{self.name}_count {cumulative}"


M = TypeVar("M", bound=_Metric)


class Registry:
    """The metrics of one process, in registration order."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def counter(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels))

    def gauge(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labels))

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...]) -> Histogram:
        return self._add(Histogram(name, help_text, buckets))

    def _add(self, metric: M) -> M:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        """The text exposition format, version 0.0.4."""
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.header())
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


REGISTRY = Registry()

SPANS_RECEIVED = REGISTRY.counter(
    "tokentrail_spans_received_total",
    "Spans in decodable export requests (any transport); a request that cannot be decoded"
    " at all is counted in tokentrail_otlp_http_requests_total only.",
)
SPANS_ACCEPTED = REGISTRY.counter(
    "tokentrail_spans_accepted_total", "Spans that passed validation and went on to ingest."
)
SPANS_REJECTED = REGISTRY.counter(
    "tokentrail_spans_rejected_total",
    "Spans refused, by reason: invalid (bad ids or times; reported in partial success,"
    " never retried), queue_full and unavailable (back-pressure: the client was told to retry).",
    ("reason",),
)
SPANS_QUEUED = REGISTRY.gauge(
    "tokentrail_spans_queued",
    "Spans accepted (spooled) and not yet written to the store.",
)
SPANS_WRITTEN = REGISTRY.counter("tokentrail_spans_written_total", "Spans written to the store.")
SPANS_DROPPED = REGISTRY.counter(
    "tokentrail_spans_dropped_total",
    "Spans acknowledged to a client but not stored: set aside in the spool's rejected/"
    " folder after their writes kept failing. Must stay 0; anything else is a bug.",
)
WRITE_SECONDS = REGISTRY.histogram(
    "tokentrail_span_write_duration_seconds",
    "Time to write one ingest batch of spans (and the calls and scores from it) to the store.",
    WRITE_SECONDS_BUCKETS,
)
SPOOL_BYTES = REGISTRY.gauge(
    "tokentrail_spool_bytes",
    "Bytes of accepted exports in the on-disk spool not yet written to the store.",
)
WRITE_FAILURES = REGISTRY.counter(
    "tokentrail_write_failures_total",
    "Failed attempts to write queued exports to the store; each is retried, nothing is lost.",
)
SPAN_LIMITED = REGISTRY.counter(
    "tokentrail_span_limit_applied_total",
    "Parts of spans cut by the per-span limits, by what: attributes, events, links dropped;"
    " values truncated. The span still gets stored.",
    ("what",),
)
LOGS_RECEIVED = REGISTRY.counter(
    "tokentrail_log_records_received_total", "Log records in decodable export requests."
)
LOGS_ACCEPTED = REGISTRY.counter(
    "tokentrail_log_records_accepted_total", "Log records that passed validation."
)
LOGS_REJECTED = REGISTRY.counter(
    "tokentrail_log_records_rejected_total",
    "Log records refused, by reason: invalid (bad ids), queue_full, unavailable.",
    ("reason",),
)
LOGS_WRITTEN = REGISTRY.counter(
    "tokentrail_log_records_written_total", "Log records stored; acknowledged after this."
)
HTTP_REQUESTS = REGISTRY.counter(
    "tokentrail_otlp_http_requests_total",
    "OTLP/HTTP export requests answered, by signal and HTTP status code.",
    ("signal", "code"),
)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_router(registry: Registry = REGISTRY) -> APIRouter:
    """``GET /metrics`` for Prometheus; open like ``/healthz``.

    Without an API key because scrapers rarely carry one and the page holds
    only process-wide counts: no project, no content. Keep the port off the
    internet, as for the probes, if even those counts are private.
    """
    router = APIRouter(tags=["health"])

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Collector metrics",
        description="Spans and log records received, accepted, rejected, written; write"
        " latency; OTLP/HTTP answers by status. Prometheus text format 0.0.4.",
    )
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(registry.render(), media_type=CONTENT_TYPE)

    return router

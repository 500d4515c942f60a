"""tokentrail initialised in-process against a private provider and an in-memory exporter.

The OTel global provider can be set once per process, so in-process tests hand
`init()` their own provider; whatever needs init() to create the provider
(sampling) runs in a subprocess instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail


class Traced:
    def __init__(self, exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
        self.exporter = exporter
        self.provider = provider

    def spans(self) -> list[ReadableSpan]:
        assert tokentrail.flush(timeout_ms=5000)
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        matches = [s for s in self.spans() if s.name == name]
        assert len(matches) == 1, [s.name for s in self.spans()]
        return matches[0]

    def attrs(self, name: str) -> dict[str, Any]:
        return dict(self.span(name).attributes or {})


@contextmanager
def traced(**init_options: Any) -> Iterator[Traced]:
    """`tokentrail.init(**init_options)` with capture on and no auto-instrumentation."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    options = {"capture_content": True, "instrument": False, **init_options}
    tokentrail.init(tracer_provider=provider, exporter=exporter, **options)
    try:
        yield Traced(exporter, provider)
    finally:
        tokentrail.shutdown()

"""The export path: OTLP exporter, quiet failure handling, bounded flush/shutdown.

The contract here is that a missing or slow collector costs the application
nothing: spans are dropped with one warning, and flush/shutdown return within
their timeout even though the OTel batch processor does not honour one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.util.types import AttributeValue

from tokentrail._content_guard import ContentGuard
from tokentrail._runtime import logger
from tokentrail.context import ContextSpanProcessor

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
TRACES_PATH = "/v1/traces"
DEFAULT_TIMEOUT_MS = 5000

# Loggers the OTLP/HTTP exporter reports failures on (it logs every failed
# batch at ERROR and every retry at WARNING).
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
)


class _ExportLogState(threading.local):
    active = False
    first_message: str | None = None  # the root cause; later ones are retries


_export_log = _ExportLogState()


class _SilenceOurExports(logging.Filter):
    """Drops exporter log records emitted while *our* exporter is exporting.

    Keyed on a thread-local flag rather than on the logger alone, so an
    application's own OTLP exporter keeps its normal logging.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _export_log.active:
            return True
        if _export_log.first_message is None:
            _export_log.first_message = record.getMessage()
        return False


_silencer = _SilenceOurExports()
for _name in _EXPORTER_LOGGERS:
    logging.getLogger(_name).addFilter(_silencer)


def traces_url(endpoint: str) -> str:
    """`http://host:4318` -> `http://host:4318/v1/traces` (left alone if already there)."""
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


class QuietExporter(SpanExporter):
    """Wraps an exporter so failures produce one warning per outage, never a raise."""

    def __init__(self, inner: SpanExporter, target: str | None = None) -> None:
        self._inner = inner
        self._target = target or type(inner).__name__
        self._failing = False
        self.failures = 0  # failed export calls, so a flush can tell if it delivered
        self._lock = threading.Lock()
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        _export_log.active, _export_log.first_message = True, None
        try:
            result = self._inner.export(spans)
        except Exception as exc:
            _export_log.first_message = repr(exc)
            result = SpanExportResult.FAILURE
        finally:
            _export_log.active = False
        if result is SpanExportResult.FAILURE:
            self.failures += 1
            if not self._failing:
                self._failing = True
                logger.warning(
                    "tokentrail: cannot export spans to %s (%s); dropping them until it is "
                    "reachable, without logging each failure",
                    self._target,
                    _export_log.first_message or "export failed",
                )
        elif self._failing:
            self._failing = False
            logger.warning("tokentrail: exporting to %s works again", self._target)
        return result

    def shutdown(self) -> None:
        # Called both by our bounded shutdown (to abort retries) and by the
        # batch processor; the OTLP exporter complains when closed twice.
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._inner.shutdown()
        except Exception:
            logger.debug("tokentrail: exporter shutdown failed", exc_info=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def otlp_exporter(
    url: str, api_key: str | None = None, headers: Mapping[str, str] | None = None
) -> QuietExporter:
    """OTLP/HTTP protobuf exporter posting to `url` (the full traces URL).

    OTEL_EXPORTER_OTLP_(TRACES_)HEADERS are merged in by the exporter itself;
    `api_key` and then `headers` override them.
    """
    merged = {"authorization": f"Bearer {api_key}"} if api_key else {}
    merged.update({key.lower(): value for key, value in (headers or {}).items()})
    return QuietExporter(OTLPSpanExporter(endpoint=url, headers=merged), url)


class _Bounded:
    """Runs a call on a daemon thread so the caller can stop waiting for it."""

    def __init__(self, call: Callable[[], Any], name: str) -> None:
        self.result: Any = None
        self._call = call
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except Exception:
            logger.debug("tokentrail: %s failed", self._thread.name, exc_info=True)
            self.result = False

    def wait(self, timeout_ms: float) -> bool:
        """True when the call finished in time (its result is then in `result`)."""
        self._thread.join(max(timeout_ms, 0) / 1000)
        return not self._thread.is_alive()


class Pipeline(SpanProcessor):
    """Everything tokentrail adds to a TracerProvider, as one span processor.

    Stamps attribution on span start, batches ended spans to the exporter, and
    applies the content policy to spans from other instrumentations.
    Being a single processor means the provider's own force_flush / shutdown
    (including its atexit hook) also go through the bounded versions here.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        static_attributes: Mapping[str, AttributeValue] | None = None,
        **batch_options: Any,
    ) -> None:
        self._stamp = ContextSpanProcessor(static_attributes)
        quiet = exporter if isinstance(exporter, QuietExporter) else QuietExporter(exporter)
        self._exporter = quiet
        # Content other instrumentations recorded is cleaned on the export thread.
        self._batch = BatchSpanProcessor(ContentGuard(quiet), **batch_options)
        self._lock = threading.Lock()
        self._flushing: _Bounded | None = None
        self._closed = False

    def on_start(self, span: SdkSpan, parent_context: otel_context.Context | None = None) -> None:
        self._stamp.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        # After shutdown the batch processor would log every span it refuses.
        if not self._closed:
            self._batch.on_end(span)

    def force_flush(self, timeout_millis: int = DEFAULT_TIMEOUT_MS) -> bool:
        """Export what is queued; False if it was not delivered within the timeout."""
        failures_before = self._exporter.failures
        with self._lock:
            if self._closed:
                return False
            # Join a flush still running from an earlier, timed-out call rather
            # than piling up threads that all wait on the same export lock.
            if self._flushing is None or self._flushing.wait(0):
                self._flushing = _Bounded(self._batch.force_flush, "tokentrail-flush")
            flushing = self._flushing
        finished = flushing.wait(timeout_millis) and bool(flushing.result)
        return finished and self._exporter.failures == failures_before

    def shutdown(self, timeout_millis: int = DEFAULT_TIMEOUT_MS) -> None:
        """Flush and stop, giving up after the timeout (remaining spans are lost)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        closing = _Bounded(self._batch.shutdown, "tokentrail-shutdown")
        if not closing.wait(timeout_millis):
            # Closing the exporter aborts its retry back-off, so the batch
            # worker thread ends soon instead of retrying for its full timeout.
            self._exporter.shutdown()
            logger.warning(
                "tokentrail: shutdown timed out after %d ms; unsent spans dropped", timeout_millis
            )

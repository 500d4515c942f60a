"""`init()`, `flush()`, `shutdown()`: wiring the SDK into OpenTelemetry once."""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterable, Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.util.types import AttributeValue

from tokentrail import _runtime, _threads, content, context, instrumentation, sampling, semconv
from tokentrail._export import (
    DEFAULT_ENDPOINT,
    DEFAULT_TIMEOUT_MS,
    Pipeline,
    otlp_exporter,
    traces_url,
)
from tokentrail._runtime import logger

SERVICE_NAME = "service.name"
ENVIRONMENT = "deployment.environment.name"

_lock = threading.Lock()
# The processor init() added and the provider it went to; None when not initialised.
_active: tuple[Pipeline, TracerProvider] | None = None
_atexit_registered = False


def init(
    service_name: str | None = None,
    endpoint: str | None = None,
    api_key: str | None = None,
    capture_content: bool | None = None,
    environment: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    resource_attributes: Mapping[str, AttributeValue] | None = None,
    exporter: SpanExporter | None = None,
    tracer_provider: TracerProvider | None = None,
    instrument: bool | Iterable[str] = True,
    max_content_chars: int | None = None,
    redact: content.RedactSetting = None,
    sample_rate: float | None = None,
    propagate_threads: bool = True,
    propagate_baggage: bool = True,
) -> TracerProvider:
    """Send this process's traces to a tokentrail collector; call once at startup.

    Explicit arguments win over the environment:

    - endpoint: collector base URL; else TOKENTRAIL_ENDPOINT, then
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (a full URL, used as is), then
      OTEL_EXPORTER_OTLP_ENDPOINT, then http://127.0.0.1:4318. Spans go to
      `{endpoint}/v1/traces` as OTLP/HTTP protobuf.
    - api_key: else TOKENTRAIL_API_KEY; sent as `Authorization: Bearer`.
      OTEL_EXPORTER_OTLP_HEADERS are sent too; `headers` override both.
    - service_name / environment / resource_attributes: resource attributes on
      top of OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    - capture_content: record prompts and completions. Default on (a
      development setup wants to see them) unless TOKENTRAIL_CAPTURE_CONTENT is
      false; turn it off where content must not leave the process.
    - exporter: replaces the OTLP exporter (console, in-memory in tests).
    - tracer_provider: attach to this provider instead of the global one.
    - instrument: trace the installed `openai` and `anthropic` clients (True);
      False for neither, or a subset such as `("openai",)`. openai calls are
      wrapped; anthropic's own tracing is configured (it traces through the
      global provider, see `tokentrail.instrument_anthropic`). `shutdown()`
      removes tokentrail's instrumentation again.
    - max_content_chars: size limit of each recorded content attribute's JSON
      text; else TOKENTRAIL_MAX_CONTENT_CHARS, else 16384; 0 for none. Longer
      strings inside are cut and end in "…[truncated N chars]", so the JSON
      stays valid (see `tokentrail._truncate`).
    - redact: hide personal data and secrets in content before it is recorded:
      None/True for the built-in patterns (or TOKENTRAIL_REDACT=builtin|off),
      False for none, a list of `str -> str` callables to run after the
      built-ins, or a `tokentrail.redaction.Redactor`. Content a callable
      fails on is dropped, never sent (see `tokentrail.redaction`).
    - sample_rate: keep this fraction of traces, whole, each span weighted
      1/rate so reported totals stay unbiased; else TOKENTRAIL_SAMPLE_RATE
      (see `tokentrail.sampling`). Needs a provider tokentrail creates.
    - propagate_threads: run threads and ThreadPoolExecutor tasks in a copy of
      the context that started them, so attribution and the parent span
      follow (see `tokentrail._threads` for what is and is not carried).
    - propagate_baggage: put feature/user/session into W3C baggage so they
      reach downstream services on instrumented outgoing requests.

    If the global tracer provider is already an SDK one (the app or another
    vendor configured OpenTelemetry), tokentrail adds its processor to it and
    leaves its resource alone, stamping `environment` on spans instead.
    Otherwise it creates a provider and makes it global. A second call warns
    and returns the provider from the first. Returns the provider in use.
    """
    global _active, _atexit_registered
    with _lock:
        if _active is not None:
            logger.warning("tokentrail.init() already ran; keeping the first configuration")
            return _active[1]
        existing = tracer_provider or _global_sdk_provider()
        static: dict[str, AttributeValue] = {}
        sampled = sampling.resolve(sample_rate)
        if existing is None:
            provider = TracerProvider(
                resource=_resource(service_name, environment, resource_attributes),
                sampler=sampled.sampler if sampled else None,
                # Our own atexit hook shuts down within a bound instead.
                shutdown_on_exit=False,
            )
            if sampled is not None:
                static[semconv.SAMPLE_WEIGHT] = sampled.weight
        else:
            if sampled is not None:
                logger.warning(
                    "tokentrail: an existing TracerProvider is in use and its sampler cannot "
                    "be changed; sample_rate=%s is ignored and spans carry weight 1",
                    sampled.rate,
                )
            provider = existing
            if environment is not None:
                static[ENVIRONMENT] = environment
            if service_name is not None or resource_attributes:
                logger.warning(
                    "tokentrail: an existing TracerProvider is in use; its resource is kept "
                    "and service_name/resource_attributes are ignored"
                )
        if exporter is None:
            exporter = otlp_exporter(
                _resolve_traces_url(endpoint),
                api_key or os.environ.get("TOKENTRAIL_API_KEY") or None,
                headers,
            )
        pipeline = Pipeline(exporter, static)
        provider.add_span_processor(pipeline)
        if existing is None:
            _install_global(provider)
        _active = (pipeline, provider)
        capture = _runtime.capture_content_default() if capture_content is None else capture_content
        _runtime.configure(provider, capture)
        content.configure(content.content_policy(max_content_chars, redact))
        context.configure(propagate_baggage)
        if propagate_threads:
            _threads.install()
        instrumentation.instrument(instrument, capture_content=capture)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        return provider


def flush(timeout_ms: int = DEFAULT_TIMEOUT_MS) -> bool:
    """Export queued spans now (before a short-lived process exits).

    Returns False if they could not be sent within `timeout_ms`; never raises
    and never waits longer. True when there is nothing to send.
    """
    active = _active
    return True if active is None else active[0].force_flush(timeout_ms)


def shutdown(timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
    """Flush and stop exporting, within `timeout_ms`; `init()` may be called again.

    Only tokentrail's own processor is stopped: a provider the application
    owns keeps working for its other processors.
    """
    global _active
    with _lock:
        active, _active = _active, None
        _runtime.configure(None, None)
        if active is not None:
            instrumentation.uninstrument()
            content.configure(None)
            context.configure(True)
            _threads.uninstall()
    if active is not None:
        active[0].shutdown(timeout_ms)


def _global_sdk_provider() -> TracerProvider | None:
    """The global provider if it is an SDK one we can add a processor to."""
    current = trace.get_tracer_provider()
    return current if isinstance(current, TracerProvider) else None


def _install_global(provider: TracerProvider) -> None:
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        # Someone installed a non-SDK provider we cannot add to. Our helpers
        # still use ours (via _runtime), but other instrumentations will not.
        logger.warning(
            "tokentrail: the global tracer provider is not an OpenTelemetry SDK one; "
            "only tokentrail's own spans will be exported"
        )


def _resource(
    service_name: str | None,
    environment: str | None,
    extra: Mapping[str, AttributeValue] | None,
) -> Resource:
    attributes: dict[str, AttributeValue] = dict(extra or {})
    if service_name is not None:
        attributes[SERVICE_NAME] = service_name
    if environment is not None:
        attributes[ENVIRONMENT] = environment
    # Resource.create layers these over OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME.
    return Resource.create(attributes)


def _resolve_traces_url(endpoint: str | None) -> str:
    """The traces URL, by the precedence documented on init()."""
    if endpoint:
        return traces_url(endpoint)
    if ours := os.environ.get("TOKENTRAIL_ENDPOINT"):
        return traces_url(ours)
    if full := os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return full  # the OTel spec says the signal URL is used verbatim
    return traces_url(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT)

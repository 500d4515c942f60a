"""An app instrumented by one third-party OpenTelemetry library, in a process of its own.

Run by tests/test_thirdparty.py as
``python thirdparty_app.py CASE COLLECTOR_URL API_KEY FAKE_PROVIDER_URL FEATURE``. It
sends its spans (and log records) over OTLP/HTTP to the collector, calls the fake
provider through the real client library, and prints the trace id and the usage
the provider reported, which is the truth the test compares tokentrail's answer with.
Each case runs alone because instrumentors patch the client classes process-wide.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import _logs, trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

QUESTION = "What is the capital of France?"
CONTENT_MODE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def _official_openai(mode: str) -> Callable[[], None]:
    def instrument() -> None:
        from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

        os.environ[CONTENT_MODE] = mode
        OpenAIInstrumentor().instrument()

    return instrument


def _official_anthropic(mode: str) -> Callable[[], None]:
    def instrument() -> None:
        from opentelemetry.instrumentation.genai.anthropic import AnthropicInstrumentor

        os.environ[CONTENT_MODE] = mode
        AnthropicInstrumentor().instrument()

    return instrument


def _openinference() -> None:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument()


def _traceloop() -> None:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    os.environ["TRACELOOP_TRACE_CONTENT"] = "true"
    OpenAIInstrumentor().instrument()


def _anthropic_own_tracing() -> None:
    """The anthropic SDK traces itself once a global tracer provider exists."""
    os.environ["ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE"] = "content"


def _both_anthropic(mode: str) -> Callable[[], None]:
    official = _official_anthropic(mode)

    def instrument() -> None:
        _anthropic_own_tracing()
        official()

    return instrument


INSTRUMENT: dict[str, Callable[[], None]] = {
    "genai-openai-span": _official_openai("span_only"),
    "genai-openai-event": _official_openai("event_only"),
    "openinference-openai": _openinference,
    "traceloop-openai": _traceloop,
    "anthropic-own": _anthropic_own_tracing,
    "anthropic-own+genai-span": _both_anthropic("span_only"),
    "anthropic-own+genai-event": _both_anthropic("event_only"),
}


def call_openai(fake: str) -> dict[str, Any]:
    import openai

    client = openai.OpenAI(base_url=f"{fake}/v1", api_key="test")
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": QUESTION},
        ],
        prompt_cache_key="geo",
        temperature=0.2,
    )
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    return {
        "provider": "openai",
        "model": reply.model,
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "cache_read_tokens": usage.prompt_tokens_details.cached_tokens or 0,
        "cache_write_tokens": 0,
    }


def call_anthropic(fake: str) -> dict[str, Any]:
    import anthropic

    client = anthropic.Anthropic(base_url=fake, api_key="test")
    reply = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=200,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": QUESTION}],
    )
    usage = reply.usage
    read, written = usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0
    return {
        "provider": "anthropic",
        "model": reply.model,
        # Anthropic counts cached input apart; OTel GenAI (and tokentrail) include it.
        "input_tokens": usage.input_tokens + read + written,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": read,
        "cache_write_tokens": written,
    }


@contextlib.contextmanager
def otel_to(collector: str, key: str, service: str) -> Iterator[None]:
    headers = {"Authorization": f"Bearer {key}"}
    resource = Resource.create({"service.name": service})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{collector}/v1/traces", headers=headers))
    )
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{collector}/v1/logs", headers=headers))
    )
    _logs.set_logger_provider(logger_provider)
    try:
        yield
    finally:
        tracer_provider.shutdown()
        logger_provider.shutdown()


def main() -> None:
    case, collector, key, fake, feature = sys.argv[1:6]
    with otel_to(collector, key, f"thirdparty-{case}"):
        INSTRUMENT[case]()
        call = call_anthropic if case.startswith("anthropic") else call_openai
        root_attributes = {"tokentrail.feature": feature}
        carried: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if case.startswith("openinference"):
            # OpenInference carries user and session itself, on the LLM span.
            from openinference.instrumentation import using_attributes

            carried = using_attributes(user_id=f"user-{case}", session_id=f"session-{case}")
        else:
            root_attributes |= {"user.id": f"user-{case}", "session.id": f"session-{case}"}
        tracer = trace.get_tracer("thirdparty-app")
        with (
            tracer.start_as_current_span("handle request", attributes=root_attributes) as root,
            carried,
        ):
            usage = call(fake)
        trace_id = format(root.get_span_context().trace_id, "032x")
    print(json.dumps({"trace_id": trace_id, "usage": usage}))


if __name__ == "__main__":
    main()

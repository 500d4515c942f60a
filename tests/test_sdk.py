"""The light SDK users see: init, feature, llm_call, score, flush/shutdown, demo.

In-process tests hand `init()` their own TracerProvider, because the OTel
global provider can be set only once per process; what depends on the global
(attaching to an existing provider, OTEL_* variables) runs in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sdk_harness import Traced, traced
from serving import serving_handler

import tokentrail
from tokentrail import semconv
from tokentrail._export import QuietExporter
from tokentrail.context import current_attribution
from tokentrail.demo import run_demo

# --- fixtures and helpers -------------------------------------------------------------


@pytest.fixture
def sdk() -> Iterator[Traced]:
    with traced(instrument=True) as initialised:
        yield initialised


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Receiver:
    """A minimal OTLP/HTTP endpoint that records what it is sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.handler = Handler
        self.url = ""  # set while served (the `receiver` fixture)

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out: list[tuple[dict[str, Any], Any]] = []
        for _, _, body in self.requests:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = {
                    kv.key: kv.value.string_value for kv in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    out.extend((resource, span) for span in scope_spans.spans)
        return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    with serving_handler(server.handler) as server.url:
        yield server


def _run_python(code: str, env: dict[str, str] | None = None) -> Any:
    """Run a script in a fresh interpreter (fresh OTel globals); it prints JSON last."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENTRAIL_"))}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- feature ---------------------------------------------------------------------------


def test_feature_stamps_llm_span_and_opens_a_parent_span(sdk: Traced) -> None:
    with (
        tokentrail.feature("support-chat", user_id="u1", session_id="s1"),
        tokentrail.llm_call(provider="openai", model="gpt-4o-mini"),
    ):
        pass
    llm = sdk.span("chat gpt-4o-mini")
    root = sdk.span("support-chat")
    expected = {semconv.FEATURE: "support-chat", semconv.USER_ID: "u1", semconv.SESSION_ID: "s1"}
    assert expected.items() <= _attrs(llm).items()
    assert expected.items() <= _attrs(root).items()
    assert llm.parent is not None and llm.parent.span_id == root.context.span_id
    assert root.kind is SpanKind.INTERNAL and root.parent is None


def test_feature_stamps_spans_from_other_instrumentations(sdk: Traced) -> None:
    tracer = sdk.provider.get_tracer("some.http.client")
    with tokentrail.feature("summarize", user_id="u1", span=False):
        with tracer.start_as_current_span("GET /doc"):
            pass
        with tracer.start_as_current_span("explicit", attributes={semconv.USER_ID: "given"}):
            pass
    assert _attrs(sdk.span("GET /doc"))[semconv.FEATURE] == "summarize"
    assert _attrs(sdk.span("explicit"))[semconv.USER_ID] == "given"  # explicit wins
    assert "summarize" not in [s.name for s in sdk.spans()]  # span=False opened none


def test_feature_nesting_overrides_only_what_it_sets(sdk: Traced) -> None:
    with tokentrail.feature("outer", user_id="u1", session_id="s1"):
        with tokentrail.feature("inner", user_id="u2"):
            assert current_attribution() == tokentrail.context.Attribution("inner", "u2", "s1")
            with tokentrail.llm_call(provider="openai", model="inner-model"):
                pass
        assert current_attribution().user_id == "u1"
        with tokentrail.llm_call(provider="openai", model="outer-model"):
            pass
    assert current_attribution() == tokentrail.context.Attribution()
    inner = _attrs(sdk.span("chat inner-model"))
    assert (inner[semconv.FEATURE], inner[semconv.USER_ID], inner[semconv.SESSION_ID]) == (
        "inner",
        "u2",
        "s1",
    )
    assert _attrs(sdk.span("chat outer-model"))[semconv.USER_ID] == "u1"


def test_feature_decorator_sync_applies_per_call(sdk: Traced) -> None:
    @tokentrail.feature("code-review", user_id="u9")
    def review(n: int) -> tuple[str | None, int]:
        with tokentrail.llm_call(provider="anthropic", model=f"m{n}"):
            pass
        return current_attribution().feature, n

    assert current_attribution().feature is None
    assert review(1) == ("code-review", 1)
    assert review(2) == ("code-review", 2)
    assert review.__name__ == "review"
    assert len([s for s in sdk.spans() if s.name == "code-review"]) == 2
    assert _attrs(sdk.span("chat m2"))[semconv.USER_ID] == "u9"


def test_feature_decorator_async_applies_when_awaited(sdk: Traced) -> None:
    @tokentrail.feature("summarize", session_id="s7")
    async def summarize() -> str | None:
        await asyncio.sleep(0)
        async with tokentrail.llm_call(provider="gcp.gemini", model="gemini-2.5-flash"):
            pass
        return current_attribution().session_id

    coroutine = summarize()
    # Creating the coroutine must not have entered the scope.
    assert current_attribution().session_id is None
    assert asyncio.run(coroutine) == "s7"
    assert _attrs(sdk.span("chat gemini-2.5-flash"))[semconv.FEATURE] == "summarize"


def test_feature_follows_asyncio_tasks(sdk: Traced) -> None:
    async def one_user(user: str) -> None:
        async with tokentrail.feature("search-rerank", user_id=user):
            await asyncio.sleep(0)  # interleave the tasks
            with tokentrail.llm_call(provider="openai", model=f"model-{user}"):
                await asyncio.sleep(0)

    async def inherited() -> str | None:
        await asyncio.sleep(0)
        return current_attribution().feature

    async def main() -> list[str | None]:
        await asyncio.gather(*(one_user(f"u{i}") for i in range(5)))
        with tokentrail.feature("parent-scope", span=False):
            return list(await asyncio.gather(inherited(), inherited()))

    assert asyncio.run(main()) == ["parent-scope", "parent-scope"]
    for i in range(5):
        attrs = _attrs(sdk.span(f"chat model-u{i}"))
        assert attrs[semconv.USER_ID] == f"u{i}"
        assert attrs[semconv.FEATURE] == "search-rerank"


def test_feature_refuses_generators() -> None:
    with pytest.raises(TypeError):

        @tokentrail.feature("x")
        def gen() -> Iterator[int]:
            yield 1


def test_feature_span_records_errors(sdk: Traced) -> None:
    with pytest.raises(KeyError), tokentrail.feature("broken"):
        raise KeyError("nope")
    assert sdk.span("broken").status.status_code is StatusCode.ERROR


# --- llm_call --------------------------------------------------------------------------


def test_llm_call_span_name_kind_and_attributes(sdk: Traced) -> None:
    with tokentrail.llm_call(
        provider="anthropic",
        model="claude-sonnet-4-5",
        attributes={"gen_ai.request.temperature": 0.2},
    ) as call:
        call.record(
            input_tokens=2000,
            output_tokens=500,
            cache_read_tokens=1000,
            cache_write_tokens=500,
            reasoning_tokens=100,
            response_model="claude-sonnet-4-5-20250929",
            response_id="msg_1",
            finish_reasons=["end_turn"],
            cost_usd=0.0123,
        )
    span = sdk.span("chat claude-sonnet-4-5")
    assert span.kind is SpanKind.CLIENT
    assert _attrs(span) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.output_tokens": 500,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.cache_creation.input_tokens": 500,
        "gen_ai.usage.reasoning.output_tokens": 100,
        "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.response.id": "msg_1",
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.usage.cost": 0.0123,
    }
    assert call.trace_id == format(span.context.trace_id, "032x")
    assert call.span_id == format(span.context.span_id, "016x")
    assert call.span.get_span_context() == span.context


def test_llm_call_operation_and_backfilled_times(sdk: Traced) -> None:
    start = time.time_ns() - 120 * 10**9
    with tokentrail.llm_call(
        provider="openai", model="text-embedding-3-small", operation="embeddings",
        start_time=start, end_time=start + 250_000_000,
    ):  # fmt: skip
        pass
    span = sdk.span("embeddings text-embedding-3-small")
    assert (span.start_time, span.end_time) == (start, start + 250_000_000)
    assert _attrs(span)["gen_ai.operation.name"] == "embeddings"


def test_llm_call_exception_propagates_unchanged(sdk: Traced) -> None:
    class RateLimitError(Exception):
        pass

    error = RateLimitError("slow down")
    with pytest.raises(RateLimitError) as raised, tokentrail.llm_call(provider="openai", model="m"):
        raise error
    assert raised.value is error
    span = sdk.span("chat m")
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)["error.type"] == "RateLimitError"
    assert [e.name for e in span.events] == ["exception"]
    assert trace.get_current_span() is trace.INVALID_SPAN  # context restored


def test_llm_call_content_as_otel_messages(sdk: Traced) -> None:
    with tokentrail.llm_call(provider="openai", model="m") as call:
        call.record(
            finish_reasons="stop",
            prompt=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "user", "parts": [{"type": "text", "content": "already otel"}]},
            ],
            completion="Hello!",
        )
    attrs = _attrs(sdk.span("chat m"))
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]},
        {"role": "user", "parts": [{"type": "text", "content": "already otel"}]},
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello!"}],
            "finish_reason": "stop",
        }
    ]


def test_llm_call_string_prompt_is_one_user_message(sdk: Traced) -> None:
    with tokentrail.llm_call(provider="openai", model="m") as call:
        call.record(prompt="What is 2+2?")
    assert json.loads(_attrs(sdk.span("chat m"))["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"}]}
    ]


def test_capture_off_records_no_content() -> None:
    exporter = InMemorySpanExporter()
    tokentrail.init(tracer_provider=TracerProvider(), exporter=exporter, capture_content=False)
    try:
        with tokentrail.llm_call(provider="openai", model="off") as call:
            call.record(input_tokens=5, prompt="secret", completion="also secret")
        with tokentrail.llm_call(provider="openai", model="forced", capture_content=True) as call:
            call.record(prompt="shown")
        assert tokentrail.flush()
    finally:
        tokentrail.shutdown()
    spans = {s.name: _attrs(s) for s in exporter.get_finished_spans()}
    assert spans["chat off"]["gen_ai.usage.input_tokens"] == 5
    assert "gen_ai.input.messages" not in spans["chat off"]
    assert "gen_ai.output.messages" not in spans["chat off"]
    assert "gen_ai.input.messages" in spans["chat forced"]


def test_capture_default_follows_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokentrail import _runtime

    assert _runtime.capture_content() is True  # not initialised: default on
    monkeypatch.setenv("TOKENTRAIL_CAPTURE_CONTENT", "false")
    assert _runtime.capture_content() is False
    assert _runtime.capture_content(True) is True


# --- score -----------------------------------------------------------------------------


def _evaluations(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == semconv.EVALUATION_EVENT]


def test_score_on_current_span(sdk: Traced) -> None:
    with tokentrail.llm_call(provider="openai", model="m"):
        tokentrail.score("helpfulness", 0.75, comment="clear answer")
        tokentrail.score("thumbs_up", False, source="human")
        tokentrail.score("tone", "friendly")
    assert _evaluations(sdk.span("chat m")) == [
        {
            semconv.EVALUATION_NAME: "helpfulness",
            semconv.EVALUATION_SCORE_VALUE: 0.75,
            semconv.EVALUATION_EXPLANATION: "clear answer",
            semconv.SCORE_DATA_TYPE: "numeric",
            semconv.SCORE_SOURCE: "sdk",
        },
        {
            semconv.EVALUATION_NAME: "thumbs_up",
            semconv.EVALUATION_SCORE_VALUE: 0.0,
            semconv.EVALUATION_SCORE_LABEL: "false",
            semconv.SCORE_DATA_TYPE: "boolean",
            semconv.SCORE_SOURCE: "human",
        },
        {
            semconv.EVALUATION_NAME: "tone",
            semconv.EVALUATION_SCORE_LABEL: "friendly",
            semconv.SCORE_DATA_TYPE: "categorical",
            semconv.SCORE_SOURCE: "sdk",
        },
    ]


def test_score_with_explicit_ids_after_span_ended(sdk: Traced) -> None:
    with tokentrail.feature("support-chat"), tokentrail.llm_call(provider="openai", model="m") as c:
        pass
    tokentrail.score("thumbs_up", True, trace_id=c.trace_id, span_id=c.span_id)
    judged = sdk.span("chat m")
    tokentrail.score(
        "accuracy", 1, trace_id=judged.context.trace_id, span_id=judged.context.span_id
    )
    tokentrail.score("session_rating", "good", trace_id=c.trace_id)  # trace-level
    by_name = {s.name: s for s in sdk.spans()}
    for name in ("evaluation thumbs_up", "evaluation accuracy"):
        span = by_name[name]
        assert span.context.trace_id == judged.context.trace_id
        assert span.parent is not None and span.parent.span_id == judged.context.span_id
        assert _attrs(span)[semconv.SCORE_TARGET_SPAN_ID] == c.span_id
        (event,) = _evaluations(span)
        assert event[semconv.SCORE_TARGET_SPAN_ID] == c.span_id
    (thumbs,) = _evaluations(by_name["evaluation thumbs_up"])
    assert thumbs[semconv.EVALUATION_SCORE_VALUE] == 1.0
    assert thumbs[semconv.EVALUATION_SCORE_LABEL] == "true"
    trace_level = by_name["evaluation session_rating"]
    assert trace_level.context.trace_id == judged.context.trace_id
    assert semconv.SCORE_TARGET_SPAN_ID not in _attrs(trace_level)


def test_score_never_raises(sdk: Traced, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokentrail")
    tokentrail.score("orphan", 1.0)  # no current span
    tokentrail.score("bad-id", 1.0, trace_id="not-hex", span_id="00f067aa0ba902b7")
    tokentrail.score("zero-id", 1.0, trace_id=0)
    tokentrail.score("nan", float("nan"), trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    weird: Any = [1, 2]
    tokentrail.score("weird", weird, trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 5
    assert sdk.spans() == []


# --- init, flush, shutdown -------------------------------------------------------------


def test_init_is_idempotent(sdk: Traced, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokentrail")
    again = tokentrail.init(tracer_provider=TracerProvider(), exporter=InMemorySpanExporter())
    assert again is sdk.provider
    assert any("already ran" in r.getMessage() for r in caplog.records)
    with tokentrail.llm_call(provider="openai", model="once"):
        pass
    assert len(sdk.spans()) == 1


def test_flush_without_init_is_harmless() -> None:
    assert tokentrail.flush(timeout_ms=100) is True
    tokentrail.shutdown(timeout_ms=100)


def test_flush_and_shutdown_with_collector_down_are_bounded() -> None:
    tokentrail.init(tracer_provider=TracerProvider(), endpoint=f"http://127.0.0.1:{_closed_port()}")
    try:
        for _ in range(3):
            with tokentrail.llm_call(provider="openai", model="m"):
                pass
        started = time.monotonic()
        assert tokentrail.flush(timeout_ms=300) is False
        assert tokentrail.flush(timeout_ms=300) is False  # joins the stuck flush, no pile-up
        assert time.monotonic() - started < 3
    finally:
        started = time.monotonic()
        tokentrail.shutdown(timeout_ms=300)
        assert time.monotonic() - started < 3


def test_export_failures_log_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    otel_logger = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")

    class Failing(InMemorySpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            otel_logger.error("Failed to export spans batch code: 401, reason: Unauthorized")
            return SpanExportResult.FAILURE

    caplog.set_level(logging.INFO)
    quiet = QuietExporter(Failing(), "http://collector/v1/traces")
    for _ in range(3):
        assert quiet.export([]) is SpanExportResult.FAILURE
    ours = [r for r in caplog.records if r.name == "tokentrail"]
    assert len(ours) == 1 and "401" in ours[0].getMessage()
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]
    otel_logger.error("someone else's exporter")  # outside our export: not silenced
    assert caplog.records[-1].getMessage() == "someone else's exporter"


def test_init_sends_otlp_with_api_key(receiver: Receiver) -> None:
    result = _run_python(
        f"""
        import json, tokentrail
        tokentrail.init(service_name="svc", endpoint="{receiver.url}", api_key="tt-key",
                        environment="staging")
        with tokentrail.feature("summarize", user_id="alice"):
            with tokentrail.llm_call(provider="openai", model="gpt-4o-mini") as call:
                call.record(input_tokens=10, output_tokens=2)
        print(json.dumps({{"flushed": tokentrail.flush()}}))
        """
    )
    assert result == {"flushed": True}
    path, headers, _ = receiver.requests[0]
    assert path == "/v1/traces"
    assert headers["authorization"] == "Bearer tt-key"
    assert headers["content-type"] == "application/x-protobuf"
    resource, llm = next((r, s) for r, s in receiver.spans() if s.name == "chat gpt-4o-mini")
    assert resource["service.name"] == "svc"
    assert resource["deployment.environment.name"] == "staging"
    attrs = {kv.key: kv.value for kv in llm.attributes}
    assert attrs[semconv.FEATURE].string_value == "summarize"
    assert attrs["gen_ai.usage.input_tokens"].int_value == 10


def test_init_honours_otel_environment(receiver: Receiver) -> None:
    env = {
        "OTEL_SERVICE_NAME": "from-env",
        "OTEL_RESOURCE_ATTRIBUTES": "team=growth,deployment.environment.name=prod",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=t1",
        "TOKENTRAIL_API_KEY": "env-key",
    }
    result = _run_python(
        """
        import json, tokentrail
        from opentelemetry import trace
        provider = tokentrail.init()
        with tokentrail.llm_call(provider="openai", model="m"):
            pass
        print(json.dumps({"global": trace.get_tracer_provider() is provider,
                          "flushed": tokentrail.flush()}))
        """,
        env,
    )
    assert result == {"global": True, "flushed": True}
    _, headers, _ = receiver.requests[0]
    assert headers["authorization"] == "Bearer env-key"
    assert headers["x-tenant"] == "t1"
    resource, _ = receiver.spans()[0]
    assert resource["service.name"] == "from-env"
    assert resource["team"] == "growth" and resource["deployment.environment.name"] == "prod"


def test_explicit_arguments_beat_the_environment(receiver: Receiver) -> None:
    env = {
        "OTEL_SERVICE_NAME": "from-env",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{_closed_port()}/v1/traces",
        "TOKENTRAIL_API_KEY": "env-key",
    }
    result = _run_python(
        f"""
        import json, tokentrail
        tokentrail.init(service_name="from-arg", endpoint="{receiver.url}", api_key="arg-key")
        with tokentrail.llm_call(provider="openai", model="m"):
            pass
        print(json.dumps(tokentrail.flush()))
        """,
        env,
    )
    assert result is True
    _, headers, _ = receiver.requests[0]
    assert headers["authorization"] == "Bearer arg-key"
    assert receiver.spans()[0][0]["service.name"] == "from-arg"


def test_init_adds_to_an_existing_global_provider() -> None:
    result = _run_python(
        f"""
        import json, logging, tokentrail
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        logging.disable(logging.WARNING)
        theirs = InMemorySpanExporter()
        app_provider = TracerProvider(resource=Resource.create({{"service.name": "app"}}))
        app_provider.add_span_processor(SimpleSpanProcessor(theirs))
        trace.set_tracer_provider(app_provider)

        ours = InMemorySpanExporter()
        got = tokentrail.init(service_name="ignored", environment="dev", exporter=ours)
        again = tokentrail.init(exporter=InMemorySpanExporter())
        with tokentrail.feature("summarize", span=False):
            with trace.get_tracer("app").start_as_current_span("app-span"):
                with tokentrail.llm_call(provider="openai", model="m"):
                    pass
        tokentrail.flush()
        spans = theirs.get_finished_spans()
        print(json.dumps({{
            "same": got is app_provider and again is app_provider,
            "processors": len(app_provider._active_span_processor._span_processors),
            "resource": app_provider.resource.attributes["service.name"],
            "theirs": sorted(s.name for s in spans),
            "stamped": [dict(s.attributes).get("{semconv.FEATURE}") for s in spans],
            "env": [dict(s.attributes).get("deployment.environment.name") for s in spans],
            "ours": len(ours.get_finished_spans()),
        }}))
        """
    )
    assert result == {
        "same": True,
        "processors": 2,  # the app's own plus exactly one of ours
        "resource": "app",
        "theirs": ["app-span", "chat m"],
        "stamped": ["summarize", "summarize"],
        "env": ["dev", "dev"],
        "ours": 2,
    }


# --- demo ------------------------------------------------------------------------------


def test_run_demo_traffic_shape() -> None:
    exporter = InMemorySpanExporter()
    before = time.time_ns()
    assert run_demo("http://unused", calls=120, seed=3, exporter=exporter) == 120
    spans = exporter.get_finished_spans()
    llm = [s for s in spans if _attrs(s).get("gen_ai.operation.name") == "chat"]
    assert len(llm) == 120
    assert all(s.resource.attributes["service.name"] == "tokentrail-demo" for s in spans)
    # Every span, roots and evaluation spans included, is attributed.
    assert all(
        {semconv.FEATURE, semconv.USER_ID, semconv.SESSION_ID} <= _attrs(s).keys() for s in spans
    )
    assert len({_attrs(s)[semconv.FEATURE] for s in llm}) == 4
    models = {_attrs(s)["gen_ai.request.model"] for s in llm}
    assert {"gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "support-llama-ft-v3"} <= models
    errors = [s for s in llm if s.status.status_code is StatusCode.ERROR]
    assert 1 <= len(errors) <= 20 and all("error.type" in _attrs(s) for s in errors)
    assert any("gen_ai.usage.cache_read.input_tokens" in _attrs(s) for s in llm)
    assert any("gen_ai.usage.reasoning.output_tokens" in _attrs(s) for s in llm)
    assert any("gen_ai.output.messages" in _attrs(s) for s in llm)
    for s in llm:  # each LLM call sits under a request span
        assert s.parent is not None and s.start_time is not None and s.end_time is not None
        assert before - 301 * 10**9 <= s.start_time <= s.end_time <= before + 10**9
    scores = {e[semconv.EVALUATION_NAME] for s in spans for e in _evaluations(s)}
    assert {"helpfulness", "thumbs_up"} <= scores


def test_run_demo_is_deterministic() -> None:
    def models(seed: int) -> list[Any]:
        exporter = InMemorySpanExporter()
        run_demo("http://unused", calls=30, seed=seed, exporter=exporter)
        return [_attrs(s).get("gen_ai.request.model") for s in exporter.get_finished_spans()]

    assert models(11) == models(11)


def test_run_demo_with_collector_down_returns_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")  # give up retrying sooner
    started = time.monotonic()
    assert run_demo(f"http://127.0.0.1:{_closed_port()}", calls=250) == 0
    assert time.monotonic() - started < 15


def test_run_demo_over_otlp(receiver: Receiver) -> None:
    assert run_demo(receiver.url, api_key="demo-key", calls=25) == 25
    assert {headers["authorization"] for _, headers, _ in receiver.requests} == {"Bearer demo-key"}
    names = [span.name for _, span in receiver.spans()]
    assert len([n for n in names if n.startswith("chat ")]) == 25

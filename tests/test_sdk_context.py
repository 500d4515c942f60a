"""Attribution across threads, thread pools and services (W3C baggage over real HTTP)."""

from __future__ import annotations

import asyncio
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sdk_harness import Traced, traced
from serving import serving_handler

import tokentrail
from tokentrail import _threads, semconv
from tokentrail.context import ContextSpanProcessor, current_attribution


@pytest.fixture
def sdk() -> Iterator[Traced]:
    with traced() as initialised:
        yield initialised


def _in_thread(work: Callable[[], Any]) -> Any:
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(work()))
    thread.start()
    thread.join()
    return box[0]


def _llm_in(model: str) -> Callable[[], str | None]:
    def work() -> str | None:
        with tokentrail.llm_call(provider="openai", model=model):
            pass
        return current_attribution().feature

    return work


# --- threads ---------------------------------------------------------------------------


def test_thread_started_inside_a_scope_carries_attribution_and_parent(sdk: Traced) -> None:
    with tokentrail.feature("summarize", user_id="u1"):
        assert _in_thread(_llm_in("threaded")) == "summarize"
    llm, root = sdk.span("chat threaded"), sdk.span("summarize")
    assert sdk.attrs("chat threaded")[semconv.USER_ID] == "u1"
    assert llm.parent is not None and llm.parent.span_id == root.context.span_id


def test_thread_subclasses_and_timers_are_carried(sdk: Traced) -> None:
    seen: list[str | None] = []

    class Worker(threading.Thread):
        def run(self) -> None:  # overrides Thread.run: the instance wrapper still applies
            seen.append(current_attribution().feature)

    with tokentrail.feature("batch", span=False):
        worker = Worker()
        timer = threading.Timer(0, lambda: seen.append(current_attribution().feature))
        worker.start()
        timer.start()
    worker.join()
    timer.join()
    assert seen == ["batch", "batch"]


def test_a_thread_gets_the_context_of_start_not_of_construction(sdk: Traced) -> None:
    box: list[str | None] = []
    created_outside = threading.Thread(target=lambda: box.append(current_attribution().feature))
    with tokentrail.feature("late-start", span=False):
        created_outside.start()
    created_outside.join()

    started_before = threading.Event()
    release = threading.Event()

    def long_lived() -> None:
        started_before.set()
        release.wait()
        box.append(current_attribution().feature)

    worker = threading.Thread(target=long_lived)
    worker.start()
    started_before.wait()
    with tokentrail.feature("too-late", span=False):
        release.set()
        worker.join()
    assert box == ["late-start", None]  # a thread started before the scope is not in it


def test_pool_tasks_run_in_the_submitters_context_not_the_workers(sdk: Traced) -> None:
    def feature_now() -> str | None:
        return current_attribution().feature

    # One worker, created by the first submit inside scope A: later tasks must
    # not inherit A from the thread they happen to run on.
    with ThreadPoolExecutor(max_workers=1) as pool:
        with tokentrail.feature("A", span=False):
            assert pool.submit(feature_now).result() == "A"
        assert pool.submit(feature_now).result() is None
        with tokentrail.feature("B", span=False):
            assert pool.submit(feature_now).result() == "B"
            assert list(pool.map(lambda _: feature_now(), range(3))) == ["B"] * 3
        with tokentrail.feature("C"):
            pool.submit(_llm_in("pooled")).result()
    pooled = sdk.span("chat pooled")
    assert pooled.parent is not None and pooled.parent.span_id == sdk.span("C").context.span_id


def test_run_in_executor_carries_the_task_context(sdk: Traced) -> None:
    async def main() -> str | None:
        async with tokentrail.feature("async-offload", span=False):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, lambda: current_attribution().feature)

    assert asyncio.run(main()) == "async-offload"


def test_opting_out_leaves_threads_alone_and_shutdown_restores_them() -> None:
    original = threading.Thread.start
    with traced(propagate_threads=False):
        assert threading.Thread.start is original
        with tokentrail.feature("kept-here", span=False):
            assert _in_thread(lambda: current_attribution().feature) is None
    with traced():
        assert threading.Thread.start is not original
    assert threading.Thread.start is original
    assert ThreadPoolExecutor.submit is _threads._original_submit


def test_a_fault_in_the_thread_hook_never_stops_the_thread(
    sdk: Traced, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tokentrail")

    def broken() -> None:
        raise RuntimeError("copy failed")

    monkeypatch.setattr(_threads.contextvars, "copy_context", broken)
    monkeypatch.setattr(_threads, "_reported", False)
    with tokentrail.feature("x", span=False):
        assert _in_thread(lambda: "ran") == "ran"
        assert _in_thread(lambda: "ran again") == "ran again"
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(lambda: 42).result() == 42
    assert len([r for r in caplog.records if "could not carry context" in r.getMessage()]) == 1


# --- baggage ----------------------------------------------------------------------------


def test_feature_puts_attribution_into_outgoing_baggage(sdk: Traced) -> None:
    carrier: dict[str, str] = {}
    with (
        tokentrail.feature("support chat", user_id="u@1", session_id="s1"),
        tokentrail.feature("inner", span=False),
    ):
        propagate.inject(carrier)
    assert "traceparent" in carrier
    extracted = propagate.extract(carrier)
    assert baggage.get_all(extracted) == {
        semconv.FEATURE: "inner",
        semconv.USER_ID: "u@1",
        semconv.SESSION_ID: "s1",
    }
    outside: dict[str, str] = {}
    propagate.inject(outside)
    assert "baggage" not in outside  # scope exit removed it


def test_baggage_can_be_kept_in_the_process() -> None:
    with traced(propagate_baggage=False), tokentrail.feature("private", user_id="u1"):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    assert "baggage" not in carrier and "traceparent" in carrier


class _Downstream:
    """Another service: extracts the incoming context, works under it with its own provider."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(ContextSpanProcessor())
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        tracer = provider.get_tracer("downstream")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                # What server instrumentations (WSGI, ASGI) do: attach the
                # extracted context, then start the server span in it.
                headers = {name.lower(): value for name, value in self.headers.items()}
                token = otel_context.attach(propagate.extract(headers))
                try:
                    with tracer.start_as_current_span(
                        f"GET {self.path}", kind=trace.SpanKind.SERVER
                    ):
                        with tracer.start_as_current_span(f"chat {self.path}"):
                            pass
                        if self.path == "/local":
                            # The downstream service's own scope wins over baggage.
                            with (
                                tokentrail.feature("downstream-own", span=False),
                                tracer.start_as_current_span("own"),
                            ):
                                pass
                finally:
                    otel_context.detach(token)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.handler = Handler
        self.url = ""  # set while served (the `downstream` fixture)

    def attrs(self, name: str) -> dict[str, Any]:
        (span,) = [s for s in self.exporter.get_finished_spans() if s.name == name]
        return dict(span.attributes or {})


@pytest.fixture
def downstream() -> Iterator[_Downstream]:
    service = _Downstream()
    with serving_handler(service.handler) as service.url:
        yield service


def _get(url: str) -> None:
    headers: dict[str, str] = {}
    propagate.inject(headers)  # what an HTTP client instrumentation does
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5):
        pass


def test_downstream_service_spans_are_tagged_from_baggage(
    sdk: Traced, downstream: _Downstream
) -> None:
    with tokentrail.feature("checkout", user_id="user 42", session_id="s-9"):
        _get(downstream.url + "/answer")
        _get(downstream.url + "/local")
    expected = {semconv.FEATURE: "checkout", semconv.USER_ID: "user 42", semconv.SESSION_ID: "s-9"}
    for name in ("GET /answer", "chat /answer", "GET /local"):
        assert expected.items() <= downstream.attrs(name).items()
    own = downstream.attrs("own")
    assert own[semconv.FEATURE] == "downstream-own"
    assert own[semconv.USER_ID] == "user 42"  # fields the local scope leaves unset still come
    server_span = [s for s in downstream.exporter.get_finished_spans() if s.name == "GET /answer"]
    upstream = sdk.span("checkout")
    assert server_span[0].context.trace_id == upstream.context.trace_id


def test_processor_can_ignore_incoming_baggage() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(ContextSpanProcessor(read_baggage=False))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    incoming = propagate.extract({"baggage": "tokentrail.feature=forged"})
    with provider.get_tracer("t").start_as_current_span("edge", context=incoming):
        pass
    (span,) = exporter.get_finished_spans()
    assert semconv.FEATURE not in (span.attributes or {})

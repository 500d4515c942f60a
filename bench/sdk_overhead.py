"""Per-call overhead of tokentrail's openai instrumentation, against two baselines.

Variants, all calling `client.chat.completions.create` on the fake provider
(tests/fake_provider.py, run as a separate process so it does not compete for
this one's GIL) over a kept-alive local HTTP connection:

- plain:        an uninstrumented client;
- bare span:    the plain client inside a hand-written OTel span that sets the same
                attributes tokentrail sets (what a careful user would write; with
                content capture on, its content goes through the same redaction
                and size policy, `tokentrail.content.encode_messages`);
- instrumented: a client passed through `tokentrail.instrument_openai`.

All spans go through the same TracerProvider and tokentrail pipeline (attribution
stamping, batch processor) into an exporter that drops them, so only the
per-call work differs. The variants take turns call by call, in a rotating
order, so machine drift (this box is shared) hits all of them alike; each
overhead is the median of the per-turn differences from `plain`. The goal
(issue 3): instrumented overhead <= 1.3x the bare span's.

Run: python bench/sdk_overhead.py [--turns 4000]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import tokentrail
from tokentrail import semconv
from tokentrail.content import encode_messages, to_messages

FAKE_PROVIDER = Path(__file__).resolve().parent.parent / "tests" / "fake_provider.py"

MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You answer questions about the weather."},
    {"role": "user", "content": "Will it rain in Paris tomorrow afternoon?"},
]
REQUEST: dict[str, Any] = {
    "model": MODEL,
    "messages": MESSAGES,
    "temperature": 0.2,
    "max_tokens": 64,
}
GOAL = 1.3


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def bare_span_call(
    client: openai.OpenAI, tracer: trace.Tracer, capture: bool
) -> Callable[[], object]:
    """The hand-written baseline: one span, the same attributes, set directly."""
    url = client.base_url

    def call() -> object:
        attributes: dict[str, Any] = {
            semconv.PROVIDER_NAME: "openai",
            semconv.SERVER_ADDRESS: url.host,
            semconv.SERVER_PORT: url.port,
            semconv.OPERATION_NAME: "chat",
            semconv.REQUEST_MODEL: MODEL,
            semconv.REQUEST_TEMPERATURE: 0.2,
            semconv.REQUEST_MAX_TOKENS: 64,
        }
        with tracer.start_as_current_span(
            f"chat {MODEL}", kind=trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            if capture:
                prompt = encode_messages(to_messages(MESSAGES, "user"))
                span.set_attribute(semconv.INPUT_MESSAGES, prompt)
            result = client.chat.completions.create(**REQUEST)
            usage = result.usage
            assert usage is not None
            done: dict[str, Any] = {
                semconv.RESPONSE_ID: result.id,
                semconv.RESPONSE_MODEL: result.model,
                semconv.RESPONSE_FINISH_REASONS: [c.finish_reason for c in result.choices],
                semconv.INPUT_TOKENS: usage.prompt_tokens,
                semconv.OUTPUT_TOKENS: usage.completion_tokens,
                semconv.OPENAI_RESPONSE_SYSTEM_FINGERPRINT: result.system_fingerprint,
                semconv.OPENAI_RESPONSE_SERVICE_TIER: result.service_tier,
            }
            if usage.prompt_tokens_details is not None:
                done[semconv.CACHE_READ_TOKENS] = usage.prompt_tokens_details.cached_tokens
            if usage.completion_tokens_details is not None:
                done[semconv.REASONING_TOKENS] = usage.completion_tokens_details.reasoning_tokens
            if capture:
                message = result.choices[0].message
                part = {"type": "text", "content": message.content}
                reply = [{"role": "assistant", "parts": [part], "finish_reason": "stop"}]
                done[semconv.OUTPUT_MESSAGES] = encode_messages(reply)
            span.set_attributes(done)
        return result

    return call


def measure(variants: dict[str, Callable[[], object]], turns: int) -> dict[str, list[float]]:
    """Microseconds of each call; index i of every list is the same turn."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for variant in variants.values():  # warm up connections, caches, lazy imports
        for _ in range(200):
            variant()
    clock = time.perf_counter
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection landing in one variant's call would be noise
    try:
        for turn in range(turns):
            shift = turn % len(names)
            for name in names[shift:] + names[:shift]:
                variant = variants[name]
                started = clock()
                variant()
                samples[name].append((clock() - started) * 1e6)
            if turn % 200 == 199:
                gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def run(capture: bool, turns: int, base_url: str) -> float:
    provider = TracerProvider()
    tokentrail.init(
        tracer_provider=provider, exporter=Discard(), capture_content=capture, instrument=False
    )
    try:
        plain = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
        for_bare = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
        instrumented = tokentrail.instrument_openai(
            openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
        )
        assert instrumented is not None
        tracer = provider.get_tracer("bench")
        variants: dict[str, Callable[[], object]] = {
            "plain": lambda: plain.chat.completions.create(**REQUEST),
            "bare span": bare_span_call(for_bare, tracer, capture),
            "instrumented": lambda: instrumented.chat.completions.create(**REQUEST),
        }
        samples = measure(variants, turns)
    finally:
        tokentrail.shutdown()

    plain_samples = samples["plain"]

    def overhead(name: str) -> float:
        # Paired per turn: both calls ran back to back, on the same machine state.
        return statistics.median(s - p for s, p in zip(samples[name], plain_samples, strict=True))

    bare, ours = overhead("bare span"), overhead("instrumented")
    label = "content capture on" if capture else "content capture off"
    print(f"\n{label}: {turns} turns of one call per variant, medians")
    print(f"  {'variant':<13}{'us/call':>10}{'overhead us':>14}")
    for name in variants:
        extra = "" if name == "plain" else f"{overhead(name):>14.1f}"
        print(f"  {name:<13}{statistics.median(samples[name]):>10.1f}{extra}")
    ratio = ours / bare if bare > 0 else float("inf")
    per_call = statistics.median(samples["instrumented"]) / statistics.median(plain_samples)
    print(f"  instrumented / plain     = {per_call:.3f}x per call")
    print(f"  instrumented / bare span = {ratio:.2f}x overhead (goal <= {GOAL}x)")
    return ratio


@contextmanager
def fake_provider() -> Iterator[str]:
    """The fake provider in a child process; yields its base URL."""
    server = subprocess.Popen(
        [sys.executable, str(FAKE_PROVIDER)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=4000)
    args = parser.parse_args()
    with fake_provider() as url:
        base_url = url + "/v1"
        ratios = [run(capture, args.turns, base_url) for capture in (False, True)]
    met = all(r <= GOAL for r in ratios)
    print(f"\ngoal {'met' if met else 'MISSED'}: " + ", ".join(f"{r:.2f}x" for r in ratios))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

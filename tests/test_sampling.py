"""Sampling: whole traces kept at the rate, weighted so that reported totals stay unbiased."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.sampling import ParentBased
from sdk_harness import traced

import tokentrail
from tokentrail import sampling, semconv
from tokentrail.api.routes import api_router
from tokentrail.collector.decode import flatten, parse_traces_request
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.schema import Store
from tokentrail.schema.prices import seed_shipped_prices

# --- choosing the sampler ----------------------------------------------------------------


def test_rate_resolution(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("TOKENTRAIL_SAMPLE_RATE", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(name, raising=False)
    assert sampling.resolve(None) is None
    assert sampling.resolve(1.0) is None  # everything kept: no weight needed
    chosen = sampling.resolve(0.25)
    assert chosen is not None and chosen.weight == 4.0
    assert isinstance(chosen.sampler, ParentBased)
    caplog.set_level(logging.WARNING, logger="tokentrail")
    for bad in (0.0, -1.0, 1.5, float("nan")):
        assert sampling.resolve(bad) is None
    assert caplog.text.count("ignoring sample_rate") == 4
    monkeypatch.setenv("TOKENTRAIL_SAMPLE_RATE", "0.5")
    from_env = sampling.resolve(None)
    assert from_env is not None and from_env.rate == 0.5
    monkeypatch.delenv("TOKENTRAIL_SAMPLE_RATE")
    # OTel's own ratio sampler variables sample all the same: weight them, keep the sampler.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.2")
    assert sampling.resolve(None) == sampling.Sampling(0.2, None)


def test_an_existing_provider_keeps_its_sampler_and_weight_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tokentrail")
    with traced(sample_rate=0.1) as sdk:
        for _ in range(20):
            with tokentrail.llm_call(provider="openai", model="m"):
                pass
        spans = sdk.spans()
    assert "sampler cannot be changed" in caplog.text
    assert len(spans) == 20  # nothing dropped: the app's provider samples, not us
    assert all(semconv.SAMPLE_WEIGHT not in (s.attributes or {}) for s in spans)


# --- a large sampled run, end to end -----------------------------------------------------

CALLS = 20_000
RATE = 0.1
# gpt-4o-mini in the shipped price table, USD per million tokens.
INPUT_PRICE, OUTPUT_PRICE = Decimal("0.15"), Decimal("0.60")

# Runs in a fresh interpreter, where init() may create (and sample with) the
# global provider. Every trace is a feature span with one LLM call under it.
_SAMPLED_APP = """
import json, random, sys
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import tokentrail

random.seed(20261)  # the SDK's RandomIdGenerator draws trace ids from `random`
usage = random.Random(7)  # token counts come from their own stream
exporter = InMemorySpanExporter()
tokentrail.init(service_name="sampled", exporter=exporter, sample_rate={rate}, instrument=False)
calls = []
for i in range({calls}):
    # Varied and heavy-tailed, as real prompts are.
    tokens = (int(usage.lognormvariate(6.5, 1.0)) + 1, int(usage.lognormvariate(5.0, 0.8)) + 1)
    calls.append(tokens)
    with tokentrail.feature("sampled"):
        with tokentrail.llm_call(provider="openai", model="gpt-4o-mini") as call:
            call.record(input_tokens=tokens[0], output_tokens=tokens[1])
    if i % 500 == 499:
        tokentrail.flush()  # keep the batch queue (2048 spans) from overflowing
assert tokentrail.flush()
with open(sys.argv[1], "wb") as out:
    out.write(encode_spans(exporter.get_finished_spans()).SerializeToString())
print(json.dumps(calls))
"""


def _run_sampled_app(path: Path) -> list[tuple[int, int]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENTRAIL_"))}
    code = textwrap.dedent(_SAMPLED_APP).format(rate=RATE, calls=CALLS)
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean,
    )
    assert done.returncode == 0, done.stderr
    return [tuple(pair) for pair in json.loads(done.stdout)]


def _within(name: str, estimate: float, values: list[float]) -> None:
    """|estimate - truth| <= 4 sigma of the Horvitz-Thompson estimator over ``values``.

    Each trace is kept independently with probability p (its random trace id
    against the ratio), and a kept one counts value/p, so the estimate is
    unbiased with variance (1 - p) / p * sum(value^2). Four sigma leaves a
    false failure chance near 6e-5 (the seeds make the run reproducible anyway).
    """
    truth = sum(values)
    sigma = math.sqrt((1 - RATE) / RATE * sum(v * v for v in values))
    error = estimate - truth
    assert abs(error) <= 4 * sigma, (
        f"{name}: estimate {estimate:.6g}, truth {truth:.6g}, error {error / sigma:+.2f} sigma "
        f"({error / truth:+.2%}), 4 sigma = {4 * sigma / truth:.2%} of the truth"
    )


def test_sampled_totals_estimate_the_truth(store: Store, project_id: str, tmp_path: Path) -> None:
    exported = tmp_path / "spans.pb"
    calls = _run_sampled_app(exported)
    assert len(calls) == CALLS

    request = parse_traces_request(exported.read_bytes(), "application/x-protobuf")
    spans, errors = flatten(request)
    assert errors == []
    traces: dict[str, list[str]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span.name)
        assert span.attributes[semconv.SAMPLE_WEIGHT] == 1 / RATE
    kept = len(traces)
    assert abs(kept - CALLS * RATE) <= 4 * math.sqrt(CALLS * RATE * (1 - RATE))
    # Whole traces: the sampler decided at the root and the child followed.
    assert all(sorted(names) == ["chat gpt-4o-mini", "sampled"] for names in traces.values())

    seed_shipped_prices(store)
    pipeline = IngestPipeline(store)
    for start in range(0, len(spans), 1000):
        pipeline.ingest(project_id, spans[start : start + 1000])

    app = FastAPI()
    app.include_router(api_router(store, lambda: project_id, record_scores=lambda *_: None))
    with TestClient(app) as client:
        (report,) = client.get("/api/v1/features").json()["features"]
    assert report["feature"] == "sampled"
    inputs = [float(i) for i, _ in calls]
    outputs = [float(o) for _, o in calls]
    costs = [float((i * INPUT_PRICE + o * OUTPUT_PRICE) / 10**6) for i, o in calls]
    _within("calls", report["calls"], [1.0] * CALLS)
    _within("input tokens", report["input_tokens"], inputs)
    _within("output tokens", report["output_tokens"], outputs)
    _within("cost", float(report["cost_usd"]), costs)

"""Real third-party instrumentations, real client libraries, one running collector.

Each case is an app instrumented by someone else's OpenTelemetry library
(tests/thirdparty_app.py) calling the fake provider; tokentrail must report the
model, tokens, cost, feature/user/session and content that the provider and
the app really had, and count every API call once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from serving import get, serving

pytestmark = pytest.mark.e2e

KEY = "thirdparty-key"
APP = Path(__file__).with_name("thirdparty_app.py")
MILLION = Decimal(1_000_000)

# case → the convention tokentrail should say it read the LLM span with.
CASES = {
    "genai-openai-span": "otel_genai",
    "genai-openai-event": "otel_genai",
    "openinference-openai": "openinference",
    "traceloop-openai": "openllmetry",
    "anthropic-own": "otel_genai",
    "anthropic-own+genai-span": "otel_genai",
    "anthropic-own+genai-event": "otel_genai",
}
PRICED_AS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5"}


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("thirdparty") / "data", keys=f"{KEY}=tp") as base:
        yield base


def _price(model: str) -> dict[str, Decimal]:
    text = resources.files("tokentrail.schema").joinpath("model_prices.json").read_text()
    table = json.loads(text, parse_float=Decimal)["models"]
    return next(entry for entry in table if entry["model"] == model)


def _expected_cost(usage: dict[str, Any]) -> Decimal:
    price = _price(PRICED_AS[usage["provider"]])
    read, written = usage["cache_read_tokens"], usage["cache_write_tokens"]
    cost = (usage["input_tokens"] - read - written) * price["input"] + usage["output_tokens"] * (
        price["output"]
    )
    cost += read * price["cache_read"] + written * (price["cache_write"] or price["input"])
    return cost / MILLION


def _llm_spans(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        if node.get("llm"):
            yield node
        yield from _llm_spans(node["children"])


def _run_app(case: str, collector: str, fake_provider: str, feature: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(APP), case, collector, KEY, fake_provider, feature],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _feature_report(collector: str, feature: str) -> dict[str, Any]:
    # Span and log batches are acknowledged once stored, but a process's two
    # exporters finish independently: allow a moment for the second one.
    deadline = time.monotonic() + 10
    while True:
        features = get(collector, "/api/v1/features", KEY).json()["features"]
        report = next((f for f in features if f["feature"] == feature), None)
        if report or time.monotonic() > deadline:
            assert report, f"no report for {feature}: {features}"
            return report
        time.sleep(0.2)


@pytest.mark.parametrize("case", list(CASES))
def test_third_party_instrumentation_lands_right(
    case: str, collector: str, fake_provider: str
) -> None:
    feature = f"feature-{case}"
    ran = _run_app(case, collector, fake_provider, feature)
    usage = ran["usage"]

    report = _feature_report(collector, feature)
    assert report["calls"] == 1, "one API call is counted once"
    assert (report["input_tokens"], report["output_tokens"]) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert report["unpriced_calls"] == 0
    assert Decimal(str(report["cost_usd"])) == _expected_cost(usage)

    detail = get(collector, f"/api/v1/traces/{ran['trace_id']}", KEY).json()
    counted = [s["llm"] for s in _llm_spans(detail["spans"]) if not s["llm"]["duplicate_of"]]
    assert len(counted) == 1, counted
    (llm,) = counted
    assert llm["convention"] == CASES[case]
    assert llm["cache_read_tokens"] == usage["cache_read_tokens"]
    assert llm["cache_write_tokens"] == usage["cache_write_tokens"]
    assert usage["model"] in (llm["response_model"], llm["request_model"])
    assert (llm["feature"], llm["user_id"], llm["session_id"]) == (
        feature,
        f"user-{case}",
        f"session-{case}",
    )
    assert "capital of France" in llm["prompt"]
    assert "Hello from the fake provider" in llm["completion"]

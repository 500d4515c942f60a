"""End to end: `tokentrail serve` as a subprocess, the real SDK and the plain OTel SDK
sending OTLP over loopback, and the answers read back through the HTTP API."""

from __future__ import annotations

import inspect
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from decimal import Decimal
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from serving import cli_env, free_port, get, serve_process, serving

from tokentrail.demo import run_demo

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "key-of-project-a", "key-of-project-b"
DEMO_CALLS = inspect.signature(run_demo).parameters["calls"].default
MILLION = Decimal(1_000_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(
        tmp_path_factory.mktemp("e2e") / "data", keys=f"{KEY_A}=project-a,{KEY_B}=project-b"
    ) as base:
        yield base


def _get(base: str, path: str, key: str | None = KEY_A, **params: str) -> httpx.Response:
    return get(base, path, key, **params)


def _price(model: str) -> dict[str, Decimal]:
    text = resources.files("tokentrail.schema").joinpath("model_prices.json").read_text()
    table = json.loads(text, parse_float=Decimal)["models"]
    return next(entry for entry in table if entry["model"] == model)


APP = textwrap.dedent(
    """
    import json, sys
    import tokentrail

    tokentrail.init(service_name="e2e-app", endpoint=sys.argv[1], api_key=sys.argv[2],
                    capture_content=True)
    ids = {}
    with tokentrail.feature("summarize", user_id="alice", session_id="s-1"):
        with tokentrail.llm_call(provider="openai", model="gpt-4o-mini") as call:
            call.record(input_tokens=1200, output_tokens=300, cache_read_tokens=200,
                        prompt="Summarize the quarterly report", completion="Revenue grew 12%.")
            tokentrail.score("helpfulness", 0.75)
        ids["summarize"] = call.trace_id
    with tokentrail.feature("support-chat", user_id="bob", session_id="s-2"):
        with tokentrail.llm_call(provider="anthropic", model="claude-sonnet-4-5") as call:
            call.record(input_tokens=2000, output_tokens=500, cache_read_tokens=1000,
                        cache_write_tokens=500, reasoning_tokens=100)
        with tokentrail.llm_call(provider="acme", model="acme-llm-1") as call:
            call.record(input_tokens=10, output_tokens=5)
        ids["support-chat"] = call.trace_id
    ok = tokentrail.flush()
    tokentrail.shutdown()
    print(json.dumps({"flushed": ok, **ids}))
    """
)


def _run_sdk_app(base: str, tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    done = subprocess.run(
        [sys.executable, str(script), base, KEY_A],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result.pop("flushed") is True
    return result


def _send_plain_otel(base: str) -> str:
    """An app instrumented by someone else: plain OTel SDK, only gen_ai.* attributes."""
    provider = TracerProvider(resource=Resource.create({"service.name": "plain-otel"}))
    exporter = OTLPSpanExporter(
        endpoint=f"{base}/v1/traces", headers={"Authorization": f"Bearer {KEY_A}"}
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("plain")
    usage = {"gen_ai.usage.input_tokens": 400, "gen_ai.usage.output_tokens": 80}
    agent_attributes = {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "plain-agent", **usage
    }  # fmt: skip
    with (
        tracer.start_as_current_span("invoke_agent plain-agent", attributes=agent_attributes),
        tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span,
    ):
        span.set_attributes(
            {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
             "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
             **usage}
        )  # fmt: skip
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


def test_sdk_and_plain_otel_spans_land_priced_per_feature(server: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    ids = _run_sdk_app(server, tmp_path)
    plain_trace = _send_plain_otel(server)
    sent_to_visible = time.perf_counter() - started
    features = {f["feature"]: f for f in _get(server, "/api/v1/features").json()["features"]}
    print(f"e2e: SDK app run + plain OTel export + visible in API: {sent_to_visible:.2f} s")

    mini = _price("gpt-4o-mini")
    summarize = features["summarize"]
    assert (summarize["calls"], summarize["errors"]) == (1, 0)
    assert (summarize["input_tokens"], summarize["output_tokens"]) == (1200, 300)
    expected = (1000 * mini["input"] + 200 * mini["cache_read"] + 300 * mini["output"]) / MILLION
    assert Decimal(str(summarize["cost_usd"])) == expected
    assert summarize["scores"]["helpfulness"] == {"mean": 0.75, "count": 1}

    sonnet = _price("claude-sonnet-4-5")
    chat = features["support-chat"]
    assert (chat["calls"], chat["unpriced_calls"]) == (2, 1)
    assert chat["unpriced_models"] == ["acme-llm-1"]
    expected = (
        500 * sonnet["input"] + 1000 * sonnet["cache_read"] + 500 * sonnet["cache_write"]
        + 500 * sonnet["output"]
    ) / MILLION  # fmt: skip
    assert Decimal(str(chat["cost_usd"])) == expected
    assert Decimal(str(chat["cost_per_call_usd"])) == expected

    # The agent span repeats its child's usage; only the chat span is a call.
    agent = features["plain-agent"]
    gpt4o = _price("gpt-4o")
    assert (agent["calls"], agent["input_tokens"], agent["output_tokens"]) == (1, 400, 80)
    expected = (400 * gpt4o["input"] + 80 * gpt4o["output"]) / MILLION
    assert Decimal(str(agent["cost_usd"])) == expected

    detail = _get(server, f"/api/v1/traces/{ids['summarize']}").json()
    (root,) = detail["spans"]
    llm = root["llm"] or next(child["llm"] for child in root["children"] if child["llm"])
    assert llm["price_status"] == "priced"
    assert "quarterly report" in llm["prompt"] and "Revenue grew" in llm["completion"]
    assert (llm["feature"], llm["user_id"], llm["session_id"]) == ("summarize", "alice", "s-1")
    assert [s["name"] for s in detail["scores"]] == ["helpfulness"]

    listed = _get(server, "/api/v1/traces", feature="support-chat").json()["items"]
    assert [t["trace_id"] for t in listed] == [ids["support-chat"]]
    assert listed[0]["llm_calls"] == 2 and listed[0]["user_id"] == "bob"
    assert _get(server, f"/api/v1/traces/{plain_trace}").status_code == 200


def test_keys_isolate_projects(server: str, tmp_path: Path) -> None:
    ids = _run_sdk_app(server, tmp_path)
    assert _get(server, "/api/v1/features", key=KEY_B).json()["features"] == []
    assert _get(server, f"/api/v1/traces/{ids['summarize']}", key=KEY_B).status_code == 404
    assert _get(server, f"/api/v1/traces/{ids['summarize']}").status_code == 200
    assert _get(server, "/api/v1/features", key=None).status_code == 401
    assert _get(server, "/api/v1/features", key="not-a-key").status_code == 401


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tokentrail.cli", "serve", "--host", "0.0.0.0",
         "--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env=cli_env(),
    )  # fmt: skip
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in done.stderr


def test_sigterm_stops_serve_cleanly_and_what_it_took_is_there_after_a_restart(
    tmp_path: Path,
) -> None:
    data, keys = tmp_path / "data", f"{KEY_A}=project-a"
    with serve_process(data, keys=keys, grpc_port=free_port()) as (process, base):
        trace_id = _send_plain_otel(base)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    log = (tmp_path / f"serve-{urlsplit(base).port}.log").read_text()
    assert "tokentrail stopped: queue drained, store closed" in log
    with serving(data, keys=keys) as base:
        assert _get(base, f"/api/v1/traces/{trace_id}").status_code == 200


def test_demo_shows_features_at_once(tmp_path: Path) -> None:
    with serving(tmp_path / "data", "--demo") as base:
        deadline, features = time.monotonic() + 60, []
        while time.monotonic() < deadline and sum(f["calls"] for f in features) < DEMO_CALLS:
            features = _get(base, "/api/v1/features", key=None).json()["features"]
            time.sleep(0.5)
    assert len(features) >= 4, features
    assert sum(f["calls"] for f in features) == DEMO_CALLS
    assert any(f["unpriced_calls"] for f in features)
    assert any(f["errors"] for f in features)
    assert any(f["scores"] for f in features)
    assert all(Decimal(str(f["cost_usd"])) > 0 for f in features)


def test_a_key_made_by_the_cli_opens_its_project_only(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "tokentrail.cli", "keys", "create", "--project", "checkout",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env=cli_env(), check=True,
    )  # fmt: skip
    key = made.stdout.strip().splitlines()[-1]
    with serving(tmp_path) as base:
        assert _get(base, "/api/v1/features", key=key).status_code == 200
        assert _get(base, "/api/v1/features", key=None).status_code == 401
        assert _get(base, "/api/v1/features", key=key + "x").status_code == 401

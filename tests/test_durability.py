"""Durability of ingest through `tokentrail serve`: what got a 200 survives a SIGKILL, and
nothing is ever counted twice, whether the collector replays a batch or an exporter re-sends it.

Everything is read back through the HTTP API, polling with a deadline: an export's
200 means the batch is durable, and its rows may become queryable a moment later.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import pytest
from durability_client import FEATURE, make_batches
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from serving import free_port, get, serve_process, serving

pytestmark = pytest.mark.e2e

KEY = "durability-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
CLIENT = Path(__file__).with_name("durability_client.py")
MILLION = Decimal(1_000_000)
# The load: more batches than can be sent before the kill, so it lands mid-load.
BATCHES, WORKERS, KILL_AFTER_ACKS = 200, 4, 12
SETTLE_SECONDS = 20

T = TypeVar("T")


def _price(model: str) -> dict[str, Decimal]:
    text = resources.files("tokentrail.schema").joinpath("model_prices.json").read_text()
    table = json.loads(text, parse_float=Decimal)["models"]
    return next(entry for entry in table if entry["model"] == model)


MINI = _price("gpt-4o-mini")


def _cost(input_tokens: int, output_tokens: int) -> Decimal:
    return (input_tokens * MINI["input"] + output_tokens * MINI["output"]) / MILLION


def _api(base: str, path: str, **params: str) -> Any:
    response = get(base, path, KEY, **params)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def _window() -> dict[str, str]:
    """A window around now, wide enough for every span these tests make."""
    now = time.time()
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "start": time.strftime(iso, time.gmtime(now - 3600)),
        "end": time.strftime(iso, time.gmtime(now + 3600)),
    }


def _feature(base: str, feature: str) -> dict[str, Any] | None:
    features = _api(base, "/api/v1/features", **_window())["features"]
    return next((f for f in features if f["feature"] == feature), None)


def _totals(report: dict[str, Any] | None) -> tuple[int, int, int, Decimal]:
    """calls, input tokens, output tokens and cost of a report (zeros for no report)."""
    if report is None:
        return (0, 0, 0, Decimal(0))
    cost = Decimal(str(report["cost_usd"]))
    return (report["calls"], report["input_tokens"], report["output_tokens"], cost)


def _expected(calls: list[dict[str, Any]]) -> tuple[int, int, int, Decimal]:
    """What ``calls`` (each with input_tokens, output_tokens) add up to, priced exactly."""
    tokens_in = sum(call["input_tokens"] for call in calls)
    tokens_out = sum(call["output_tokens"] for call in calls)
    return (len(calls), tokens_in, tokens_out, _cost(tokens_in, tokens_out))


def _until(deadline_s: float, probe: Callable[[], tuple[bool, T]]) -> T:
    """Call ``probe`` until it says done or the deadline passes; its last answer."""
    deadline = time.monotonic() + deadline_s
    while True:
        done, answer = probe()
        if done or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def _barrier(base: str, exporter: SpanExporter) -> None:
    """Export a batch of a feature of its own and wait until the API shows it.

    An export's rows may become queryable a little after its 200; batches are
    written in the order they were accepted, so once this later one shows, whatever
    ``exporter`` sent before it has been written too.
    """
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    [batch] = make_batches(1, feature=marker)
    assert exporter.export(batch) == SpanExportResult.SUCCESS
    shown = _until(SETTLE_SECONDS, lambda: ((r := _feature(base, marker)) is not None, r))
    assert shown is not None, f"the marker batch {marker} never showed"


def _walk(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        yield node
        yield from _walk(node["children"])


def _stored(base: str, trace_ids: list[str]) -> tuple[Counter[str], list[dict[str, Any]]]:
    """Each span id as many times as the trace details show it, and the LLM calls among them."""
    seen: Counter[str] = Counter()
    calls = []
    for trace_id in trace_ids:
        response = get(base, f"/api/v1/traces/{trace_id}", KEY)
        if response.status_code == 404:
            continue
        assert response.status_code == 200, response.text
        for node in _walk(response.json()["spans"]):
            seen[node["span_id"]] += 1
            if node["llm"]:
                calls.append({"span_id": node["span_id"], **node["llm"]})
    return seen, calls


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # A line cut short by a kill is not a record yet; the client fsyncs whole lines.
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


class Client:
    """tests/durability_client.py as a subprocess, its stdout lines readable with a timeout."""

    def __init__(self, base: str, work: Path) -> None:
        self.work = work
        self.stderr = (work / "client.stderr").open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(CLIENT), base, KEY, str(work), str(BATCHES), str(WORKERS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
        )  # fmt: skip
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def acked(self) -> list[dict[str, Any]]:
        return _lines(self.work / "acked.jsonl")

    def line(self, timeout: float) -> dict[str, Any]:
        try:
            result: dict[str, Any] = json.loads(self._lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"client said nothing within {timeout} s:\n{self.log()}") from None
        return result

    def say(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def log(self) -> str:
        self.stderr.flush()
        return (self.work / "client.stderr").read_text()[-4000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.stderr.close()


@dataclass
class Crash:
    """What the client had done when the collector was killed, and the restarted server."""

    base: str
    client: Client
    plan: dict[int, dict[str, Any]]  # batch number → its trace ids, span ids and calls
    started: list[int]  # batches the client began exporting
    acked: list[dict[str, Any]]  # batches that got a 200, with their span ids

    def trace_ids(self) -> list[str]:
        return [t for n in self.started for t in self.plan[n]["trace_ids"]]

    def acked_spans(self) -> set[str]:
        return {span for record in self.acked for span in record["span_ids"]}

    def unacked_stored(self, seen: Counter[str]) -> str:
        """How many batches without a 200 were stored anyway, whole or in part."""
        done = {record["batch"] for record in self.acked}
        unacked = [self.plan[n]["span_ids"] for n in self.started if n not in done]
        whole = sum(all(span in seen for span in spans) for spans in unacked)
        part = sum(any(span in seen for span in spans) for spans in unacked) - whole
        return f"of {len(unacked)} batches without a 200, {whole} stored whole, {part} in part"


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crash]:
    """Load from the client, SIGKILL of the collector mid-load, the collector restarted.

    Loopback only; every process started here is gone when the module is done.
    """
    root = tmp_path_factory.mktemp("sigkill")
    data, work = root / "data", root / "client"
    work.mkdir()
    keys = f"{KEY}=durability"
    client: Client | None = None
    began = time.monotonic()
    try:
        with serve_process(data, keys=keys) as (server, base):
            client = Client(base, work)
            deadline = time.monotonic() + 30
            while len(client.acked()) < KILL_AFTER_ACKS and time.monotonic() < deadline:
                if client.process.poll() is not None:
                    break
                time.sleep(0.02)
            assert client.process.poll() is None, f"client ended before the kill:\n{client.log()}"
            assert len(client.acked()) >= KILL_AFTER_ACKS, client.log()
            # Not right after an answer: anywhere in the handling of the next batches.
            time.sleep(random.uniform(0, 0.3))
            os.kill(server.pid, signal.SIGKILL)  # the whole process, mid-load
            assert server.wait(timeout=10) == -signal.SIGKILL
            stopped = client.line(timeout=30)
        assert stopped["phase"] == "stopped", stopped
        started, acked = stopped["started"], client.acked()
        assert len(acked) == stopped["acked"] and len(started) < BATCHES, stopped
        assert {record["batch"] for record in acked} <= set(started)
        plan = {record["batch"]: record for record in _lines(work / "plan.jsonl")}
        print(f"\ndurability: {len(acked)} batches acknowledged, {len(started)} begun at the kill")
        with serving(data, keys=keys) as base:
            print(f"durability: killed and restarted in {time.monotonic() - began:.1f} s")
            yield Crash(base, client, plan, started, acked)
    finally:
        if client is not None:
            client.close()


def test_every_span_acknowledged_before_a_sigkill_is_stored_exactly_once(crashed: Crash) -> None:
    # Batches begun but never acknowledged may be stored or not (the kill came
    # before or after they became durable), but never more than once.
    wanted = crashed.acked_spans()
    seen, calls = _until(
        SETTLE_SECONDS,
        lambda: (wanted <= set((got := _stored(crashed.base, crashed.trace_ids()))[0]), got),
    )
    missing = wanted - set(seen)
    assert not missing, f"{len(missing)} acknowledged spans lost, e.g. {sorted(missing)[:3]}"
    twice = {span: n for span, n in seen.items() if n > 1}
    assert not twice, f"spans stored more than once: {twice}"
    # Each stored call is one the client made, with the usage it sent, priced exactly.
    sent = {call["span_id"]: call for n in crashed.started for call in crashed.plan[n]["calls"]}
    for call in calls:
        want = sent[call["span_id"]]
        usage = (call["input_tokens"], call["output_tokens"])
        assert usage == (want["input_tokens"], want["output_tokens"])
        assert Decimal(str(call["total_cost_usd"])) == _cost(*usage)
        assert (call["feature"], call["duplicate_of"]) == (FEATURE, "")
    print(f"durability: {crashed.unacked_stored(seen)}")


def test_reports_after_a_sigkill_add_up_to_the_stored_calls(crashed: Crash) -> None:
    """A batch cut short by the kill must not leave the reports apart from the stored calls."""

    def probe() -> tuple[bool, tuple[Counter[str], list[dict[str, Any]], Any]]:
        seen, calls = _stored(crashed.base, crashed.trace_ids())
        report = _feature(crashed.base, FEATURE)
        return _totals(report) == _expected(calls), (seen, calls, report)

    seen, calls, report = _until(SETTLE_SECONDS, probe)
    if _totals(report) != _expected(calls):
        minutes = _api(
            crashed.base,
            f"/api/v1/features/{FEATURE}/timeseries",
            metric="calls",
            interval="1m",
            **_window(),
        )["points"]
        raise AssertionError(
            f"/features says (calls, in, out, cost) {_totals(report)}, the stored calls add up "
            f"to {_expected(calls)}, the per-minute series to "
            f"{sum(p['value'] for p in minutes)} calls; {crashed.unacked_stored(seen)}"
        )


def test_re_sending_every_batch_after_the_restart_stores_and_counts_each_once(
    crashed: Crash,
) -> None:
    """The exporter's retry of every batch it had begun, acknowledged or not."""
    crashed.client.say(crashed.base)
    resent = crashed.client.line(timeout=60)
    assert resent == {"phase": "resent", "failed": []}, crashed.client.log()

    base, plan, started = crashed.base, crashed.plan, crashed.started
    calls = [call for n in started for call in plan[n]["calls"]]
    want = _expected(calls)
    report = _until(SETTLE_SECONDS, lambda: (_totals(r := _feature(base, FEATURE)) == want, r))
    assert _totals(report) == want
    exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=HEADERS, timeout=5)
    try:
        _barrier(base, exporter)
    finally:
        exporter.shutdown()
    assert _totals(_feature(base, FEATURE)) == want, "a re-sent batch was counted again"

    listed = _api(base, "/api/v1/traces", feature=FEATURE, limit="1000", **_window())["items"]
    per_trace = Counter(call["trace_id"] for call in calls)
    assert {item["trace_id"]: item["llm_calls"] for item in listed} == dict(per_trace)
    seen, _ = _stored(base, crashed.trace_ids())
    assert seen == Counter({span: 1 for n in started for span in plan[n]["span_ids"]})


# --- an exporter re-sending a batch it already delivered ------------------------------


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One server for the re-send tests, OTLP/HTTP and OTLP/gRPC on; (base URL, gRPC port)."""
    grpc_port = free_port()
    data = tmp_path_factory.mktemp("resend") / "data"
    with serving(data, keys=f"{KEY}=resend", grpc_port=grpc_port) as base:
        yield base, grpc_port


def _exporter(transport: str, base: str, grpc_port: int) -> SpanExporter:
    if transport == "http":
        return OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=HEADERS, timeout=5)
    # gRPC metadata keys must be lowercase.
    return GrpcSpanExporter(
        endpoint=f"127.0.0.1:{grpc_port}",
        insecure=True,
        headers={"authorization": f"Bearer {KEY}"},
        timeout=5,
    )


def _reports(base: str, feature: str) -> dict[str, Any]:
    """Every per-feature total a user reads: the feature, its models and its users."""
    window = _window()
    return {
        "feature": _totals(_feature(base, feature)),
        "models": _api(base, f"/api/v1/features/{feature}/models", **window)["models"],
        "users": _api(base, f"/api/v1/features/{feature}/users", **window)["users"],
    }


def _calls(batch: list[ReadableSpan]) -> list[dict[str, Any]]:
    return [
        {
            "input_tokens": (span.attributes or {})["gen_ai.usage.input_tokens"],
            "output_tokens": (span.attributes or {})["gen_ai.usage.output_tokens"],
        }
        for span in batch
        if (span.attributes or {}).get("gen_ai.operation.name") == "chat"
    ]


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_a_batch_exported_twice_is_counted_once(collector: tuple[str, int], transport: str) -> None:
    base, grpc_port = collector
    feature = f"resend-{transport}"
    [batch] = make_batches(1, feature=feature)
    want = _expected(_calls(batch))
    exporter = _exporter(transport, base, grpc_port)
    try:
        assert exporter.export(batch) == SpanExportResult.SUCCESS
        first = _until(
            SETTLE_SECONDS,
            lambda: (
                (r := _reports(base, feature))["feature"] == want and len(r["users"]) == 2,
                r,
            ),
        )
        assert first["feature"] == want
        (model,) = first["models"]
        assert (model["model"], model["calls"]) == ("gpt-4o-mini-2024-07-18", want[0])

        # The same spans again, as an exporter whose first answer was lost would send them.
        assert exporter.export(batch) == SpanExportResult.SUCCESS
        _barrier(base, exporter)
    finally:
        exporter.shutdown()
    assert _reports(base, feature) == first

"""Alerts on the real embedded ClickHouse: rules through the API, the evaluator at
synthetic times, and deliveries to a real webhook receiver on 127.0.0.1.

Each ``evaluate`` call is a fresh pass that reads rule state from the store, as a
restarted server or a cron run would; nothing in a test waits for a clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from serving import cli_env, free_port, serving_handler
from test_api import build_app

from tokentrail.api.alerts.conditions import budget_period, check
from tokentrail.api.alerts.deliver import Deliverer, HttpReply, slack_text
from tokentrail.api.alerts.evaluate import PassReport, evaluate, transition
from tokentrail.api.alerts.links import query_link
from tokentrail.api.alerts.models import AlertPayload, EvaluatedWindow, RuleSpec
from tokentrail.api.alerts.rules import StoredRule, create_rule
from tokentrail.api.alerts.scheduler import AlertScheduler, start_alerts
from tokentrail.api.alerts.signature import sign, verify
from tokentrail.api.alerts.state import AlertState
from tokentrail.api.metrics import Point, Scope
from tokentrail.api.timewindow import to_ns
from tokentrail.collector.records import LlmCall
from tokentrail.collector.writer import Writer
from tokentrail.schema.store import Store

NS = 10**9
MINUTE = 60 * NS
HOUR = 60 * MINUTE
DAY0 = 1_789_948_800 * NS  # 2026-09-21T00:00:00Z
T0 = DAY0 + 2 * 24 * HOUR  # the spike scenario's first baseline hour
SECRET = "test-secret-0123456789"


# --- a real webhook receiver ----------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; answers each path from its script of statuses, then 200."""

    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    base: str = ""

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def at(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    record = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            with lock:
                record.received.append(Received(self.path, headers, body))
                script = record.scripts.get(self.path)
                status = script.pop(0) if script else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving_handler(Handler) as record.base:
        yield record


def signature_ok(request: Received, secret: str = SECRET) -> bool:
    """The documented scheme, recomputed here rather than with the module under test."""
    timestamp = request.headers["x-tokentrail-timestamp"]
    signed = timestamp.encode() + b"." + request.body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) < 300
    return fresh and hmac.compare_digest(request.headers["x-tokentrail-signature"], expected)


# --- data and rules -------------------------------------------------------------------


def call(feature: str, at: int, cost: str, *, status: str = "Unset", n: int = 0) -> LlmCall:
    return LlmCall(
        trace_id=f"{at:016x}{n:016x}", span_id=f"{n:016x}", parent_span_id="",
        start_time_unix_nano=at, duration_ns=100_000_000, service="web", feature=feature,
        request_model="gpt-4o-mini", input_tokens=100, output_tokens=10,
        total_cost_usd=Decimal(cost), price_status="priced", status_code=status,
    )  # fmt: skip


def normal_cost(hour: int) -> str:
    """A steady feature's cost per call: a little noise, so the baseline has a spread."""
    return "0.010" if hour % 2 == 0 else "0.012"


def write_spike_scenario(store: Store, project_id: str) -> None:
    """30 hours of 10 calls an hour for chat and search; chat costs 5x in hours 24 and 25."""
    calls = []
    for hour in range(30):
        for i in range(10):
            at = T0 + hour * HOUR + i * 6 * MINUTE + NS
            spiking = hour in (24, 25)
            calls.append(call("chat", at, "0.05" if spiking else normal_cost(hour), n=i))
            calls.append(call("search", at, normal_cost(hour), n=100 + i))
    Writer(store).write(project_id, calls=calls)


def webhook(url: str, secret: str = SECRET) -> dict[str, str]:
    return {"type": "webhook", "url": url, "secret": secret}


def spike_rule(name: str, feature: str, channels: list[dict[str, str]], **extra: Any) -> dict:
    return {
        "name": name,
        "scope": {"feature": feature},
        "metric": "spend",
        "condition": {
            "type": "spike", "window": "1h", "baseline_windows": 24, "ratio": 2,
            "z_score": 3, "min_baseline_windows": 12,
        },
        "channels": channels,
        **extra,
    }  # fmt: skip


def threshold_rule(name: str, channels: list[dict[str, str]], **condition: Any) -> dict:
    return {
        "name": name,
        "scope": {"feature": "chat"},
        "metric": condition.pop("metric", "calls"),
        "condition": {"type": "threshold", "op": ">", "value": 0, "window": "1h", **condition},
        "channels": channels,
    }


def add_rule(store: Store, project_id: str, body: dict) -> StoredRule:
    return create_rule(store, project_id, RuleSpec.model_validate(body))


@dataclass
class Sleeps:
    """The backoff sleeper: records instead of sleeping."""

    seconds: list[float] = field(default_factory=list)

    def __call__(self, delay: float) -> None:
        self.seconds.append(delay)


def run(store: Store, project_id: str, at: int, sleeps: Sleeps | None = None) -> PassReport:
    deliverer = Deliverer(sleep=sleeps or Sleeps())
    return evaluate(store, at, project_id=project_id, deliverer=deliverer)


@pytest.fixture
def client(store: Store, project_id: str) -> Iterator[TestClient]:
    with TestClient(build_app(store, project_id)) as test_client:
        yield test_client


# --- spike: one signed alert, quiet while firing, then a resolve ---------------------


def test_cost_spike_alerts_once_signed_and_resolves(
    store: Store, project_id: str, receiver: Receiver, client: TestClient
) -> None:
    write_spike_scenario(store, project_id)
    chat = client.post(
        "/api/v1/alert-rules",
        json=spike_rule("chat spend spike", "chat", [webhook(receiver.url("/chat"))]),
    ).json()
    client.post(
        "/api/v1/alert-rules",
        json=spike_rule("search steady", "search", [webhook(receiver.url("/search"))]),
    )

    # The spike hour (24) ends at 25 h; the pass 30 s later sees the same whole-minute window.
    run(store, project_id, T0 + 25 * HOUR + 30 * NS)
    # Still spiking (the spike lasts two hours): firing, so nothing is sent again.
    run(store, project_id, T0 + 25 * HOUR + 20 * MINUTE)
    run(store, project_id, T0 + 26 * HOUR)

    (alert,) = receiver.received
    assert alert.path == "/chat" and signature_ok(alert)
    assert alert.headers["x-tokentrail-event"] == alert.json()["event_id"]
    fired = alert.json()
    assert (fired["state"], fired["repeat"], fired["reason"]) == ("firing", False, "spike")
    assert (fired["rule_id"], fired["rule_name"], fired["metric"]) == (
        chat["id"],
        "chat spend spike",
        "cost",
    )
    assert fired["value"] == pytest.approx(0.5)
    numbers = fired["numbers"]
    assert numbers["baseline_mean"] == pytest.approx(0.11)
    assert numbers["ratio"] == pytest.approx(0.5 / 0.11)
    assert numbers["z_score"] > 30
    assert (numbers["baseline_windows_with_data"], numbers["current_samples"]) == (24, 10)
    assert fired["window"] == {
        "start": "2026-09-24T00:00:00.000000000Z",
        "end": "2026-09-24T01:00:00.000000000Z",
    }
    assert fired["fired_at"] == "2026-09-24T01:00:30.000000000Z"
    assert fired["link"] == (
        "/api/v1/features/chat/timeseries?start=2026-09-23T00%3A00%3A00.000000000Z"
        "&end=2026-09-24T01%3A00%3A00.000000000Z&metric=cost&interval=1h"
    )
    assert client.get(f"/api/v1/alert-rules/{chat['id']}").json()["status"]["state"] == "firing"
    # The link is a working query, and it shows the spike.
    points = client.get(fired["link"]).json()["points"]
    by_hour = {point["start"]: point["value"] for point in points}
    assert by_hour["2026-09-24T00:00:00.000000000Z"] == pytest.approx(0.5)

    run(store, project_id, T0 + 27 * HOUR)  # hour 26 is back to normal
    run(store, project_id, T0 + 28 * HOUR)

    assert [r.path for r in receiver.received] == ["/chat", "/chat"]
    resolved = receiver.received[1].json()
    assert signature_ok(receiver.received[1])
    assert (resolved["state"], resolved["reason"]) == ("resolved", "ok")
    assert resolved["fired_at"] == fired["fired_at"]
    assert resolved["resolved_at"] == "2026-09-24T03:00:00.000000000Z"
    assert resolved["value"] == pytest.approx(0.10)

    history = client.get("/api/v1/alerts").json()
    assert [(e["state"], e["event_id"]) for e in history["items"]] == [
        ("resolved", resolved["event_id"]),
        ("firing", fired["event_id"]),
    ]
    assert history["items"][1]["numbers"] == fired["numbers"]
    delivery = history["items"][1]["deliveries"]
    assert delivery == [{
        "channel": 0, "type": "webhook", "target": receiver.url(""), "status": "delivered",
        "attempts": 1, "http_status": 200, "error": "", "finished_at": delivery[0]["finished_at"],
    }]  # fmt: skip
    assert client.get(f"/api/v1/alert-rules/{chat['id']}").json()["status"]["state"] == "ok"


def test_renotify_reminds_while_firing_after_the_interval(
    store: Store, project_id: str, receiver: Receiver
) -> None:
    write_spike_scenario(store, project_id)
    rule = add_rule(
        store,
        project_id,
        spike_rule("chat", "chat", [webhook(receiver.url("/chat"))], renotify="45m"),
    )

    first = run(store, project_id, T0 + 25 * HOUR)
    run(store, project_id, T0 + 25 * HOUR + 30 * MINUTE)  # before the interval
    reminder = run(store, project_id, T0 + 26 * HOUR)

    assert len(receiver.received) == 2
    sent = [request.json() for request in receiver.received]
    assert [(p["state"], p["repeat"]) for p in sent] == [("firing", False), ("firing", True)]
    assert sent[1]["fired_at"] == sent[0]["fired_at"]
    assert first.summary() == "1 rules evaluated: 1 fired, 0 reminded, 0 resolved, 0 failed"
    assert [e.rule_id for e in reminder.events] == [rule.rule_id]


# --- budget ---------------------------------------------------------------------------


def budget_rule(name: str, amount: float, url: str, **condition: Any) -> dict:
    return {
        "name": name,
        "scope": {"feature": "chat"},
        "metric": "cost",
        "condition": {"type": "budget", "amount_usd": amount, "period": "day", **condition},
        "channels": [webhook(url)],
    }


def test_daily_budget_fires_on_spend_so_far_or_on_its_projection(
    store: Store, project_id: str, receiver: Receiver
) -> None:
    yesterday = [call("chat", DAY0 - HOUR + i, "100", n=i) for i in range(5)]
    today = [call("chat", DAY0 + i * 6 * MINUTE, "0.5", n=i) for i in range(60)]  # $30 by 6:00
    Writer(store).write(project_id, calls=yesterday + today)
    for name, amount, extra in [
        ("projected", 100.0, {}),
        ("spent", 25.0, {}),
        ("roomy", 200.0, {}),
        ("no projection", 100.0, {"project_after": 1}),
    ]:
        add_rule(store, project_id, budget_rule(name, amount, receiver.url(f"/{amount}"), **extra))

    report = run(store, project_id, DAY0 + 6 * HOUR)

    by_name = {event.rule_name: event for event in report.events}
    assert set(by_name) == {"projected", "spent"}
    projected = by_name["projected"]
    assert projected.reason == "budget_projected"
    assert projected.numbers["spent_usd"] == pytest.approx(30)
    assert projected.numbers["projected_usd"] == pytest.approx(120)
    assert projected.numbers["budget_usd"] == 100
    assert projected.numbers["elapsed_fraction"] == pytest.approx(0.25)
    assert projected.numbers["period_start"] == "2026-09-21T00:00:00.000000000Z"
    assert "$30.00 so far, $120.00 projected" in projected.summary
    assert by_name["spent"].reason == "budget_spent"
    assert "interval=1h" in projected.link and "metric=cost" in projected.link
    assert len(receiver.received) == 2 and all(signature_ok(r) for r in receiver.received)


def test_budget_periods_are_utc_days_and_months() -> None:
    leap_day = to_ns_text("2028-02-29T13:00:00Z")
    assert budget_period(leap_day, "day") == (
        to_ns_text("2028-02-29T00:00:00Z"),
        to_ns_text("2028-03-01T00:00:00Z"),
    )
    assert budget_period(leap_day, "month") == (
        to_ns_text("2028-02-01T00:00:00Z"),
        to_ns_text("2028-03-01T00:00:00Z"),
    )
    # A window ending exactly at midnight belongs to the day that just ended.
    midnight = to_ns_text("2028-03-01T00:00:00Z")
    assert budget_period(midnight, "month")[0] == to_ns_text("2028-02-01T00:00:00Z")


def to_ns_text(moment: str) -> int:
    return to_ns(datetime.fromisoformat(moment.replace("Z", "+00:00")))


# --- threshold, Slack ------------------------------------------------------------------


def test_error_rate_threshold_fires_to_slack(
    store: Store, project_id: str, receiver: Receiver
) -> None:
    now = T0 + 15 * MINUTE
    calls = [
        call("chat", T0 + i * 30 * NS, "0.01", status="Error" if i % 4 == 0 else "Unset", n=i)
        for i in range(20)
    ]  # 5 errors in 20 calls
    Writer(store).write(project_id, calls=calls)
    slack = [{"type": "slack", "url": receiver.url("/slack")}]
    errors = {"metric": "error_rate", "value": 0.1, "window": "15m"}
    add_rule(
        store, project_id, threshold_rule("chat <errors> & co", slack, min_samples=10, **errors)
    )
    add_rule(store, project_id, threshold_rule("needs more calls", slack, min_samples=50, **errors))

    report = run(store, project_id, now)

    (event,) = report.events
    assert (event.rule_name, event.value, event.reason) == ("chat <errors> & co", 0.25, "threshold")
    assert event.numbers == {"op": ">", "threshold": 0.1, "samples": 20.0}
    (message,) = receiver.at("/slack")
    body = message.json()
    assert set(body) == {"text"}
    assert body["text"].startswith(":rotating_light: *Firing: chat &lt;errors&gt; &amp; co*")
    summary = "error_rate of feature chat over the last 15m: 25.0% (fires when &gt; 10.0%)"
    assert summary in body["text"]
    assert "x-tokentrail-signature" not in message.headers  # Slack does not verify signatures


# --- delivery retries and failures ---------------------------------------------------


def test_failed_deliveries_are_retried_with_backoff_and_recorded(
    store: Store, project_id: str, receiver: Receiver, client: TestClient
) -> None:
    Writer(store).write(project_id, calls=[call("chat", T0, "0.01")])
    receiver.scripts = {"/flaky": [500], "/down": [503] * 10, "/gone": [404]}
    closed = f"http://127.0.0.1:{free_port()}/nobody"
    rules = {
        path: add_rule(store, project_id, threshold_rule(path, [webhook(url)]))
        for path, url in [
            ("/flaky", receiver.url("/flaky")),
            ("/down", receiver.url("/down")),
            ("/gone", receiver.url("/gone")),
            ("closed", closed),
        ]
    }
    sleeps = Sleeps()

    run(store, project_id, T0 + 10 * MINUTE, sleeps)

    flaky = receiver.at("/flaky")
    assert len(flaky) == 2 and flaky[0].body == flaky[1].body and all(map(signature_ok, flaky))
    assert len(receiver.at("/down")) == 4 and len(receiver.at("/gone")) == 1
    # Doubling backoff: one wait for /flaky, three for /down, three for the closed port.
    assert sorted(sleeps.seconds) == [1.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0]

    def delivery(path: str) -> dict[str, Any]:
        page = client.get("/api/v1/alerts", params={"rule_id": rules[path].rule_id}).json()
        (event,) = page["items"]
        (outcome,) = event["deliveries"]
        return {key: outcome[key] for key in ("status", "attempts", "http_status", "error")}

    assert delivery("/flaky") == {
        "status": "delivered",
        "attempts": 2,
        "http_status": 200,
        "error": "",
    }
    assert delivery("/down") == {
        "status": "failed",
        "attempts": 4,
        "http_status": 503,
        "error": "HTTP 503",
    }
    assert delivery("/gone") == {
        "status": "failed",
        "attempts": 1,
        "http_status": 404,
        "error": "HTTP 404",
    }
    refused = delivery("closed")
    assert (refused["status"], refused["attempts"], refused["http_status"]) == ("failed", 4, None)
    assert refused["error"].startswith("URLError")

    # Paging through the four events, newest first, and the state filter.
    first = client.get("/api/v1/alerts", params={"limit": 3}).json()
    rest = client.get("/api/v1/alerts", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert len(first["items"]) == 3 and len(rest["items"]) == 1 and rest["next_cursor"] is None
    seen = {e["rule_id"] for e in first["items"] + rest["items"]}
    assert seen == {rule.rule_id for rule in rules.values()}
    assert client.get("/api/v1/alerts", params={"state": "resolved"}).json()["items"] == []
    window = {"start": "2026-09-23T00:00:00Z", "end": "2026-09-23T00:10:00Z"}
    assert client.get("/api/v1/alerts", params=window).json()["items"] == []


def test_one_broken_rule_does_not_silence_the_others(store: Store, project_id: str) -> None:
    Writer(store).write(project_id, calls=[call("chat", T0, "0.01")])
    for name in ("broken", "fine"):
        add_rule(store, project_id, threshold_rule(name, [webhook(f"http://127.0.0.1:9/{name}")]))

    def sender(url: str, body: bytes, headers: Any, timeout: float) -> HttpReply:
        if url.endswith("/broken"):
            raise RuntimeError("a bug, not a network error")
        return HttpReply(200)

    deliverer = Deliverer(sender=sender, sleep=Sleeps())
    report = evaluate(store, T0 + MINUTE, project_id=project_id, deliverer=deliverer)

    assert (report.failed_rules, [e.rule_name for e in report.events]) == (1, ["fine"])


def test_retry_waits_are_bounded_in_total() -> None:
    sleeps = Sleeps()
    statuses = iter([503] * 100)

    def sender(url: str, body: bytes, headers: Any, timeout: float) -> HttpReply:
        return HttpReply(next(statuses), retry_after_s=50)

    rule = RuleSpec.model_validate(threshold_rule("r", [webhook("http://127.0.0.1:9/x")]))
    payload = fake_payload(rule)
    (result,) = Deliverer(sender=sender, sleep=sleeps).deliver(payload, rule.channels)
    # Retry-After 50 s is capped at 30 s per wait and 60 s in all: two waits, three attempts.
    assert (sleeps.seconds, result.attempts, result.status) == ([30.0, 30.0], 3, "failed")


def fake_payload(rule: RuleSpec) -> AlertPayload:
    stamp = "2026-09-21T00:00:00.000000000Z"
    return AlertPayload(
        event_id="e1", project_id="p", rule_id="r", rule_name=rule.name, state="firing",
        repeat=False, metric=rule.metric, scope=rule.scope, condition=rule.condition,
        reason="threshold", value=1.0, numbers={}, window=EvaluatedWindow(start=stamp, end=stamp),
        fired_at=stamp, resolved_at=None, time=stamp, link="/api/v1/features", summary="s",
    )  # fmt: skip


def test_slack_links_need_a_public_url() -> None:
    rule = RuleSpec.model_validate(threshold_rule("r", []))
    payload = fake_payload(rule).model_copy(update={"state": "resolved"})
    assert slack_text(payload).splitlines() == [
        ":white_check_mark: *Resolved: r*",
        "s",
        "/api/v1/features",
    ]
    link = query_link("https://tt.example.com/", "cost", rule.scope, T0, T0 + HOUR, 3600)
    linked = payload.model_copy(update={"link": link})
    assert slack_text(linked).splitlines()[-1] == (
        "<https://tt.example.com/api/v1/features/chat/timeseries?start=2026-09-23T00%3A00%3A00"
        ".000000000Z&end=2026-09-23T01%3A00%3A00.000000000Z&metric=cost&interval=1h"
        "|Show the numbers>"
    )


def test_signature_helper_rejects_tampering_and_stale_timestamps() -> None:
    body = b'{"state":"firing"}'
    header = sign(SECRET, 1_800_000_000, body)
    assert verify(SECRET, "1800000000", header, body, now_s=1_800_000_010)
    assert not verify(SECRET, "1800000000", header, body + b" ", now_s=1_800_000_010)
    assert not verify("another-secret-000000", "1800000000", header, body, now_s=1_800_000_010)
    assert not verify(SECRET, "1800000000", header, body, now_s=1_800_001_000)


# --- the state machine and spike math without a store ----------------------------------


FIRING = AlertState("firing", since_ns=10 * MINUTE, event_id="e", notified_ns=10 * MINUTE)


@pytest.mark.parametrize(
    ("state", "met", "now", "renotify_s", "move"),
    [
        (AlertState(), False, 0, None, None),
        (AlertState(), True, 0, None, "fire"),
        (FIRING, True, 70 * MINUTE, None, None),
        (FIRING, True, 69 * MINUTE, 3600, None),
        (FIRING, True, 70 * MINUTE, 3600, "remind"),
        (FIRING, False, 11 * MINUTE, 3600, "resolve"),
    ],
)
def test_state_machine(
    state: AlertState, met: bool, now: int, renotify_s: int | None, move: str | None
) -> None:
    assert transition(state, met, now, renotify_s) == move


@dataclass
class StubReader:
    """Hourly points for windows ending at ``END``: values oldest first, ``None`` for no data."""

    values: Sequence[float | None]

    def series(self, metric: str, start: int, end: int, step_s: int, scope: Scope) -> list[Point]:
        first = end - len(self.values) * step_s * NS
        return [
            Point(first + i * step_s * NS, v, 10.0)
            for i, v in enumerate(self.values)
            if v is not None
        ]


END = T0 + 100 * HOUR


def spike(metric: str = "cost", **condition: Any) -> RuleSpec:
    body = spike_rule("s", "chat", [])
    body["metric"] = metric
    body["condition"] = {"type": "spike", "window": "1h", "baseline_windows": 4,
                         "min_baseline_windows": 2, **condition}  # fmt: skip
    return RuleSpec.model_validate(body)


@pytest.mark.parametrize(
    ("metric", "values", "condition", "met", "reason"),
    [
        # A flat baseline has no spread: any rise is infinitely many deviations.
        ("cost", [1.0, 1.0, 1.0, 1.0, 1.5], {"z_score": 3}, True, "spike"),
        ("cost", [1.0, 1.0, 1.0, 1.0, 1.0], {"z_score": 3}, False, "ok"),
        # Quiet windows of an additive metric count as 0: mean 0.5, so 1.0 is 2x.
        ("cost", [1.0, None, 1.0, None, 1.0], {"ratio": 2}, True, "spike"),
        # ... but are gaps for a ratio metric: mean 1.0, so 1.0 is no spike.
        ("cost_per_call", [1.0, None, 1.0, None, 1.0], {"ratio": 2}, False, "ok"),
        ("cost", [None, None, None, 1.0, 9.0], {"ratio": 2}, False, "insufficient_baseline"),
        ("cost_per_call", [1.0, 1.1, 0.9, 1.0, None], {"ratio": 2}, False, "no_data"),
        # A zero baseline: any spend is infinitely many times it.
        ("error_rate", [0.0, 0.0, 0.0, 0.0, 0.2], {"ratio": 2}, True, "spike"),
        # Both must hold with "and", either with "or".
        ("cost", [1.0, 1.2, 0.8, 1.0, 1.5], {"ratio": 2, "z_score": 3}, False, "ok"),
        (
            "cost",
            [1.0, 1.2, 0.8, 1.0, 1.5],
            {"ratio": 2, "z_score": 3, "combine": "or"},
            True,
            "spike",
        ),
        # Drops, for a score mean that falls.
        (
            "score:helpful",
            [0.8, 0.82, 0.78, 0.8, 0.3],
            {"ratio": 2, "direction": "down"},
            True,
            "spike",
        ),
        (
            "score:helpful",
            [0.8, 0.82, 0.78, 0.8, 0.5],
            {"ratio": 2, "direction": "down"},
            False,
            "ok",
        ),
    ],
)
def test_spike_math(
    metric: str, values: list[float | None], condition: dict, met: bool, reason: str
) -> None:
    finding = check(StubReader(values), spike(metric, **condition), END)  # type: ignore[arg-type]
    assert (finding.met, finding.reason) == (met, reason)


# --- rules through the API --------------------------------------------------------------


def test_rule_crud(client: TestClient, receiver: Receiver) -> None:
    body = spike_rule(
        "chat spend spike",
        "chat",
        [webhook(receiver.url("/h")), {"type": "slack", "url": "https://hooks.example/T/B/x"}],
    )
    created = client.post("/api/v1/alert-rules", json=body)
    assert created.status_code == 201
    rule = created.json()
    assert rule["metric"] == "cost" and rule["enabled"] is True and rule["renotify"] is None
    assert rule["scope"] == {"service": "", "feature": "chat", "model": ""}
    assert rule["channels"] == [
        {"type": "webhook", "url": receiver.url("/h"), "signed": True},
        {"type": "slack", "url": "https://hooks.example/T/B/x", "signed": False},
    ]
    assert SECRET not in created.text
    assert rule["status"] == {"state": "ok", "since": None, "last_notified": None}

    path = f"/api/v1/alert-rules/{rule['id']}"
    changed = client.patch(path, json={"enabled": False, "renotify": "2h", "condition": {
        "type": "threshold", "op": ">=", "value": 5, "window": "15m"}})  # fmt: skip
    assert changed.status_code == 200, changed.text
    patched = changed.json()
    assert (patched["enabled"], patched["renotify"], patched["condition"]["op"]) == (
        False,
        "2h",
        ">=",
    )
    assert patched["channels"] == rule["channels"]  # untouched: secrets kept
    assert client.get(path).json() == patched
    assert [r["id"] for r in client.get("/api/v1/alert-rules").json()] == [rule["id"]]

    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404
    assert client.get("/api/v1/alert-rules").json() == []
    assert client.delete(path).status_code == 404


def test_a_disabled_rule_is_not_evaluated(
    store: Store, project_id: str, receiver: Receiver
) -> None:
    Writer(store).write(project_id, calls=[call("chat", T0, "0.01")])
    body = threshold_rule("off", [webhook(receiver.url("/off"))])
    add_rule(store, project_id, {**body, "enabled": False})
    assert run(store, project_id, T0 + MINUTE).rules == 0
    assert receiver.received == []


def _messages(response: Any) -> str:
    return " | ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in response.json()["detail"]
    )


SPIKE = spike_rule("r", "chat", [])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": "latency"}, "unknown metric 'latency': use one of cost, calls"),
        ({"condition": {**SPIKE["condition"], "window": "15x"}}, "'15x' is not a duration"),
        ({"condition": {**SPIKE["condition"], "window": "90s"}}, "must be whole minutes"),
        (
            {"condition": {**SPIKE["condition"], "ratio": None, "z_score": None}},
            "needs ratio, z_score or both",
        ),
        (
            {"condition": {**SPIKE["condition"], "baseline_windows": 1000, "window": "1d"}},
            "must fit in 366 days",
        ),
        (
            {
                "condition": {"type": "budget", "amount_usd": 10, "period": "day"},
                "metric": "tokens",
            },
            "use metric cost",
        ),
        (
            {"condition": {"type": "budget", "amount_usd": 10, "period": "week"}},
            "condition.budget.period",
        ),
        ({"condition": {"type": "drift"}}, "condition: Input tag 'drift'"),
        ({"channels": [webhook("ftp://example.com/x")]}, "must be an http:// or https:// URL"),
        (
            {"channels": [webhook("http://127.0.0.1/x", secret="short")]},
            "channels.0.webhook.secret",
        ),
        ({"renotify": "30s"}, "must be at least 1m"),
        ({"owner": "me"}, "owner: Extra inputs are not permitted"),
    ],
)
def test_invalid_rules_get_clear_422s(client: TestClient, change: dict, message: str) -> None:
    response = client.post("/api/v1/alert-rules", json={**SPIKE, **change})
    assert response.status_code == 422
    assert message in _messages(response)


def test_a_patch_is_validated_as_a_whole_rule(client: TestClient) -> None:
    body = {
        "name": "b",
        "metric": "cost",
        "condition": {"type": "budget", "amount_usd": 5, "period": "month"},
    }
    rule = client.post("/api/v1/alert-rules", json=body).json()
    response = client.patch(f"/api/v1/alert-rules/{rule['id']}", json={"metric": "tokens"})
    assert response.status_code == 422
    assert "body: Value error, a budget condition watches spend: use metric cost" in _messages(
        response
    )
    assert client.get(f"/api/v1/alert-rules/{rule['id']}").json()["metric"] == "cost"


def test_projects_see_only_their_own_rules_and_alerts(store: Store, receiver: Receiver) -> None:
    mine, theirs = "project-a-" + str(time.time_ns()), "project-b-" + str(time.time_ns())
    with TestClient(build_app(store, mine)) as a, TestClient(build_app(store, theirs)) as b:
        rule = a.post(
            "/api/v1/alert-rules", json=threshold_rule("a", [webhook(receiver.url("/a"))])
        ).json()
        Writer(store).write(mine, calls=[call("chat", T0, "0.01")])
        Writer(store).write(theirs, calls=[call("chat", T0, "0.01")])
        run(store, mine, T0 + MINUTE)
        path = f"/api/v1/alert-rules/{rule['id']}"

        assert b.get("/api/v1/alert-rules").json() == []
        assert b.get(path).status_code == 404
        assert b.patch(path, json={"name": "x"}).status_code == 404
        assert b.delete(path).status_code == 404
        assert b.get("/api/v1/alerts").json()["items"] == []
        assert b.get("/api/v1/alerts", params={"rule_id": rule["id"]}).json()["items"] == []
        assert len(a.get("/api/v1/alerts").json()["items"]) == 1
        assert a.get(path).json()["name"] == "a"
        # Evaluating the other project leaves this one's rule alone.
        assert run(store, theirs, T0 + 2 * MINUTE).rules == 0


# --- when the evaluator runs -----------------------------------------------------------


def test_scheduler_survives_a_failing_pass_and_uses_its_clock() -> None:
    seen: list[int] = []
    second_pass = threading.Event()

    def run_pass(now_ns: int) -> None:
        seen.append(now_ns)
        if len(seen) == 1:
            raise RuntimeError("the store went away")
        second_pass.set()

    scheduler = AlertScheduler(run_pass, interval_s=0.001, clock=lambda: 42).start()
    try:
        assert second_pass.wait(10)
    finally:
        scheduler.stop()
    assert seen[:2] == [42, 42] and not scheduler.running


def test_start_alerts_evaluates_at_once_with_the_injected_clock(
    store: Store, project_id: str
) -> None:
    Writer(store).write(project_id, calls=[call("chat", T0, "0.01")])
    url = f"http://127.0.0.1:{free_port()}/scheduled"
    add_rule(store, project_id, threshold_rule("scheduled", [webhook(url)]))
    sent = threading.Event()

    def sender(to: str, body: bytes, headers: Any, timeout: float) -> HttpReply:
        if to == url:
            sent.set()
        return HttpReply(200)  # no network: other tests' rules may be evaluated too

    deliverer = Deliverer(sender=sender, sleep=Sleeps())
    scheduler = start_alerts(store, 3600, clock=lambda: T0 + MINUTE, deliverer=deliverer)
    assert scheduler is not None
    try:
        assert sent.wait(30)  # the first pass runs at start, not after the interval
    finally:
        scheduler.stop()
    assert start_alerts(store, 0) is None


def test_serve_evaluates_by_default_only_on_the_embedded_store() -> None:
    class ServerStore:
        embedded = False

    assert start_alerts(ServerStore(), None) is None  # type: ignore[arg-type]


def test_alerts_evaluate_command_runs_one_pass(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tokentrail.cli", "alerts", "evaluate", "--data-dir", str(tmp_path)],
        env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 rules evaluated: 0 fired, 0 reminded, 0 resolved, 0 failed"


def test_serve_takes_the_alert_interval_from_flag_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tokentrail.cli import _parser

    assert _parser().parse_args(["serve"]).alert_interval is None
    monkeypatch.setenv("TOKENTRAIL_ALERT_INTERVAL", "15")
    assert _parser().parse_args(["serve"]).alert_interval == 15.0
    assert _parser().parse_args(["serve", "--alert-interval", "0"]).alert_interval == 0.0

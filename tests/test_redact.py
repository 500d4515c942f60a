"""The collector's redaction stage, through the real ingest pipeline into the embedded store."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tokentrail.cli import _parser
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.records import LogRecord, Span, SpanEvent
from tokentrail.redaction import Redactor
from tokentrail.schema import Store
from tokentrail.schema.prices import seed_shipped_prices

NOW = time.time_ns()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
EMAIL, CARD, KEY = "ann@example.com", "4111 1111 1111 1111", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs"


def _messages(text: str, role: str = "user") -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


# Every convention's content keys, each carrying something to hide.
CONTENT_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.input.messages": _messages(f"mail {EMAIL}"),
    "gen_ai.output.messages": _messages(f"card {CARD}", "assistant"),
    "gen_ai.system_instructions": json.dumps([{"type": "text", "content": f"key {KEY}"}]),
    "gen_ai.prompt.0.content": f"I am {EMAIL}",
    "gen_ai.completion.0.content": f"noted {CARD}",
    "llm.input_messages.0.message.content": f"from {EMAIL}",
    "llm.output_messages.0.message.content": f"to {EMAIL}",
    "input.value": json.dumps({"messages": [{"role": "user", "content": EMAIL}]}),
    "output.value": f"sure, {EMAIL}",
    "langfuse.observation.input": f"in {KEY}",
    "langfuse.observation.output": f"out {KEY}",
    "traceloop.entity.input": f"in {EMAIL}",
    "traceloop.entity.output": f"out {EMAIL}",
}
NOT_CONTENT = {"user.id": EMAIL, "http.url": f"https://x.test/?to={EMAIL}"}


def _llm_span(span_id: str) -> Span:
    return Span(
        trace_id=TRACE, span_id=span_id, parent_span_id="", name="chat gpt-4o-mini",
        kind="Client", start_time_unix_nano=NOW, end_time_unix_nano=NOW + 10**6,
        attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10,
            **CONTENT_ATTRIBUTES, **NOT_CONTENT,
        },
        resource_attributes={"service.name": "svc"},
        events=[
            SpanEvent(NOW, "gen_ai.user.message", {"content": f"hi {EMAIL}", "role": "user"}),
            SpanEvent(NOW, "gen_ai.choice", {"gen_ai.event.content": _messages(CARD)}),
            SpanEvent(NOW, "gen_ai.evaluation.result", {
                "gen_ai.evaluation.name": "pii", "gen_ai.evaluation.score.value": 0.0,
                "gen_ai.evaluation.explanation": f"answer leaked {EMAIL}",
            }),
            SpanEvent(NOW, "log", {"message": f"debug {EMAIL}"}),  # not content: kept
        ],
    )  # fmt: skip


def _stored_span(store: Store, project_id: str, span_id: str) -> tuple[dict[str, str], Any]:
    row = store.query(
        "SELECT SpanAttributes, Events.Name, Events.Attributes FROM spans FINAL"
        " WHERE project_id = {p:String} AND SpanId = {s:String}",
        {"p": project_id, "s": span_id},
    ).rows[0]
    return dict(row[0]), dict(zip(row[1], [dict(a) for a in row[2]], strict=True))


def _stored_call(store: Store, project_id: str) -> dict[str, Any]:
    (call,) = store.query(
        "SELECT prompt, completion FROM llm_calls FINAL WHERE project_id = {p:String}",
        {"p": project_id},
    ).dicts()
    return call


def _hidden(text: str) -> bool:
    return EMAIL not in text and CARD not in text and KEY not in text


def test_stage_redacts_every_content_key_event_and_the_call(store: Store, project_id: str) -> None:
    seed_shipped_prices(store)
    IngestPipeline(store, redactor=Redactor()).ingest(project_id, [_llm_span("00000000000000b1")])
    attributes, events = _stored_span(store, project_id, "00000000000000b1")
    for key in CONTENT_ATTRIBUTES:
        assert _hidden(attributes[key]), (key, attributes[key])
        assert "[REDACTED:" in attributes[key]
    assert json.loads(attributes["gen_ai.input.messages"])[0]["parts"][0]["content"] == (
        "mail [REDACTED:email]"
    )
    assert {key: attributes[key] for key in NOT_CONTENT} == NOT_CONTENT
    assert events["gen_ai.user.message"] == {"content": "hi [REDACTED:email]", "role": "user"}
    assert _hidden(events["gen_ai.choice"]["gen_ai.event.content"])
    assert _hidden(events["gen_ai.evaluation.result"]["gen_ai.evaluation.explanation"])
    assert events["log"] == {"message": f"debug {EMAIL}"}
    call = _stored_call(store, project_id)
    assert call["prompt"] and call["completion"]
    assert _hidden(call["prompt"]) and _hidden(call["completion"])
    assert "[REDACTED:api_key]" in call["prompt"]  # system instructions lead the prompt
    (comment,) = store.query(
        "SELECT comment FROM scores FINAL WHERE project_id = {p:String}", {"p": project_id}
    ).rows[0]
    assert comment == "answer leaked [REDACTED:email]"


def test_without_a_redactor_content_is_stored_as_sent(store: Store, project_id: str) -> None:
    seed_shipped_prices(store)
    IngestPipeline(store).ingest(project_id, [_llm_span("00000000000000b2")])
    attributes, _ = _stored_span(store, project_id, "00000000000000b2")
    assert {k: attributes[k] for k in CONTENT_ATTRIBUTES} == {
        k: str(v) for k, v in CONTENT_ATTRIBUTES.items()
    }
    assert EMAIL in _stored_call(store, project_id)["prompt"]


def test_a_failing_rule_drops_content_and_keeps_the_batch(store: Store, project_id: str) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("rule bug")

    seed_shipped_prices(store)
    pipeline = IngestPipeline(store, redactor=Redactor(rules=[broken]))
    pipeline.ingest(project_id, [_llm_span("00000000000000b3")])
    attributes, _ = _stored_span(store, project_id, "00000000000000b3")
    assert attributes["gen_ai.input.messages"] == "[REDACTED:redaction_failed]"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert _stored_call(store, project_id)["prompt"] == "[REDACTED:redaction_failed]"


def test_content_sent_as_log_records_is_redacted(store: Store, project_id: str) -> None:
    span_id = "00000000000000b4"
    details = LogRecord(
        time_unix_nano=NOW, observed_time_unix_nano=NOW, trace_id=TRACE, span_id=span_id,
        event_name="gen_ai.client.inference.operation.details",
        attributes={
            "gen_ai.input.messages": _messages(f"mail {EMAIL}"),
            "gen_ai.output.messages": _messages(f"card {CARD}", "assistant"),
        },
    )  # fmt: skip
    message = LogRecord(
        time_unix_nano=NOW, observed_time_unix_nano=NOW, trace_id=TRACE, span_id=span_id,
        event_name="gen_ai.user.message", body={"content": f"hi {EMAIL}"},
    )  # fmt: skip
    other = LogRecord(time_unix_nano=NOW, observed_time_unix_nano=NOW, body=f"login {EMAIL}")
    IngestPipeline(store, redactor=Redactor()).ingest_logs(project_id, [details, message, other])
    rows = store.query(
        "SELECT EventName, Body, LogAttributes FROM logs WHERE project_id = {p:String}",
        {"p": project_id},
    ).rows
    stored = {event: (body, dict(attributes)) for event, body, attributes in rows}
    assert stored.pop("")[0] == f"login {EMAIL}"  # not GenAI content: an ordinary log line
    assert len(stored) == 2
    for body, attributes in stored.values():
        assert _hidden(body) and all(_hidden(value) for value in attributes.values())
    (content,) = store.query(
        "SELECT prompt, completion FROM llm_call_content FINAL WHERE project_id = {p:String}",
        {"p": project_id},
    ).rows
    assert all(text and _hidden(text) for text in content)


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, "off"),
        (["--redact", "builtin"], {}, "builtin"),
        ([], {"REDACT": "builtin"}, "builtin"),
    ],
)
def test_serve_flag_and_environment(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], expected: str
) -> None:
    monkeypatch.delenv("TOKENTRAIL_REDACT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"TOKENTRAIL_{name}", value)
    assert _parser().parse_args(["serve", *argv]).redact == expected

"""Content controls: built-in and user redaction, the size limit, and where they apply."""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any

import pytest
from opentelemetry.trace import SpanKind
from sdk_harness import traced

import tokentrail
from tokentrail import content
from tokentrail._truncate import cut_text, fit_json, fit_text, truncation_marker
from tokentrail.redaction import (
    BUILTIN_KINDS,
    RedactionError,
    Redactor,
    luhn_valid,
    redact_builtin,
)

# --- built-in patterns -------------------------------------------------------------

CAUGHT = [
    ("write to jane.doe+billing@example.co.uk today", "email"),
    ("card 4111 1111 1111 1111 exp 12/26", "card"),
    ("card 4111-1111-1111-1111", "card"),
    ("paid with 5500005555555559.", "card"),
    ("amex 3782 822463 10005", "card"),
    ("qty 2 4111111111111111 shipped", "card"),
    ("call +1 (415) 555-0132 now", "phone"),
    ("call +44 20 7946 0958", "phone"),
    ("call 415-555-0132", "phone"),
    ("call (415) 555 0132", "phone"),
    ("call 415.555.0132", "phone"),
    ("key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv", "api_key"),
    ("key sk-ant-api03-Xy7Zq2Wv9Ut4Sr1Pq8Onm", "api_key"),
    ("id AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
    ("token ghp_" + "a1B2c3D4" * 5, "github_token"),
    ("token github_pat_11ABCDEFG0123456789_abcdefghij", "github_token"),
    ("token xoxb-123456789012-abcdefABCDEF", "slack_token"),
    ("Authorization: Bearer abc.def-1234567890ABCDEF", "bearer_token"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw", "jwt"),
    ("secret Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6", "secret"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAA\n-----END RSA PRIVATE KEY-----", "private_key"),
]

KEPT = [
    "card-like but not Luhn: 4111 1111 1111 1112",
    "epoch ms 1700000000000 and ns 1700000000000000000",
    "primes 3 5 7 11 13 17 19 23 29 31 37 41 43 47 53",
    "order 2024-05-01, ip 192.168.100.200, version 1.2.3, amount +12345.6789",
    "uuid 550e8400-e29b-41d4-a716-446655440000",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "class BetaManagedAgentsAgentToolset20260401ReadInput",
    "pip install sk-learn-is-not-a-key-just-prose",
    "Bearer tokens-are-a-kind-of-credential",
    "email me @ the usual address",
    "ZIP 94103, room 101, call ext. 5532",
]


@pytest.mark.parametrize(("text", "kind"), CAUGHT)
def test_builtin_patterns_catch(text: str, kind: str) -> None:
    assert f"[REDACTED:{kind}]" in redact_builtin(text)


@pytest.mark.parametrize("text", KEPT)
def test_builtin_patterns_leave_lookalikes(text: str) -> None:
    assert redact_builtin(text) == text


def test_every_kind_is_exercised() -> None:
    assert {kind for _, kind in CAUGHT} == BUILTIN_KINDS


def test_only_the_card_is_cut_from_a_run_of_numbers() -> None:
    assert redact_builtin("ref 12 4111 1111 1111 1111 345") == "ref 12 [REDACTED:card] 345"
    two = "4111 1111 1111 1111 5500 0055 5555 5559"
    assert redact_builtin(two) == "[REDACTED:card] [REDACTED:card]"


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


def test_redaction_is_linear_on_hostile_input() -> None:
    # Patterns with unbounded runs could go quadratic; these would take minutes.
    pem = "-----BEGIN RSA PRIVATE KEY-----"
    hostile = (pem * 3000, "a@" * 50_000, "1 " * 50_000, "Ab1" * 40_000)
    started = time.monotonic()
    for text in hostile:
        redact_builtin(text)
    assert time.monotonic() - started < 2


# --- Redactor ----------------------------------------------------------------------


def test_user_rules_run_after_the_builtins() -> None:
    seen: list[str] = []

    def rule(text: str) -> str:
        seen.append(text)
        return text.replace("ACME-42", "[REDACTED:customer]")

    redactor = Redactor(rules=[rule])
    assert redactor.text("ACME-42 at a@b.io") == "[REDACTED:customer] at [REDACTED:email]"
    assert seen == ["ACME-42 at [REDACTED:email]"]
    assert Redactor(builtin=False, rules=[rule]).text("ACME-42 a@b.io") == (
        "[REDACTED:customer] a@b.io"
    )


def test_json_text_sees_through_escapes() -> None:
    messages = [{"role": "user", "parts": [{"type": "text", "content": "x\n4111111111111111"}]}]
    escaped = json.dumps(messages, ensure_ascii=True).replace("@", "\\u0040")
    escaped = escaped.replace("x", "bob@example.com ")
    redacted = json.loads(Redactor().json_text(escaped))
    assert redacted[0]["parts"][0]["content"] == "[REDACTED:email] \n[REDACTED:card]"
    unchanged = json.dumps(["nothing to hide"], indent=2)
    assert Redactor().json_text(unchanged) is unchanged  # formatting kept when clean
    assert Redactor().json_text('["cut short by the sender: a@b.io') == (
        '["cut short by the sender: [REDACTED:email]'
    )


def test_a_failing_rule_raises_redaction_error_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tokentrail")

    def broken(text: str) -> str:
        raise ValueError("bug in the rule")

    def wrong_type(text: str) -> Any:
        return None

    for rule in (broken, wrong_type):
        redactor = Redactor(rules=[rule])
        for _ in range(3):
            with pytest.raises(RedactionError):
                redactor.text("hello")
    assert len([r for r in caplog.records if "redaction with" in r.getMessage()]) == 2


# --- size limit ----------------------------------------------------------------------


def _message(text: str, role: str = "user") -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def test_fit_json_cuts_the_long_string_and_says_how_much() -> None:
    long = "word " * 1000  # 5000 chars
    value = [_message("short question"), _message(long, "assistant")]
    text = fit_json(value, 1000)
    assert len(text) <= 1000
    parsed = json.loads(text)
    assert parsed[0] == _message("short question")  # short strings are not touched
    cut = parsed[1]["parts"][0]["content"]
    kept = cut[: cut.index("…")]
    assert long.startswith(kept)
    assert cut.endswith(truncation_marker(len(long) - len(kept)))
    assert len(text) > 900  # the limit is used, not wasted


def test_fit_json_counts_escaped_characters() -> None:
    value = [_message('"quoted"\n' * 500), _message("\\" * 3000)]
    text = fit_json(value, 2000)
    assert len(text) <= 2000
    assert "truncated" in json.loads(text)[1]["parts"][0]["content"]


def test_fit_json_falls_back_to_cutting_text_when_the_structure_is_too_big() -> None:
    value = [_message(str(i)) for i in range(500)]
    text = fit_json(value, 500)
    assert len(text) <= 500
    assert text.endswith("chars]") and "…[truncated" in text


def test_fit_json_random_structures_always_fit() -> None:
    rng = random.Random(5)
    valid = 0
    for _ in range(300):
        value = [
            _message("".join(rng.choice('ab\n"é€😀') for _ in range(rng.randint(0, 3000))))
            for _ in range(rng.randint(1, 6))
        ]
        limit = rng.randint(200, 4000)
        text = fit_json(value, limit)
        assert len(text) <= limit
        # Valid JSON whenever the messages with every string cut to nothing fit.
        skeleton = json.dumps([_message(truncation_marker(99)) for _ in value], ensure_ascii=False)
        if len(skeleton) <= limit:
            json.loads(text)
            valid += 1
    assert valid > 200


def test_huge_strings_are_cut_before_redaction_with_the_full_count() -> None:
    policy = content.content_policy(max_content_chars=1000)
    huge = "call 415-555-0132 " + "4111 1111 1111 1111 and more " * 150_000  # 4.3 MB
    started = time.monotonic()
    (message,) = json.loads(policy.encode([_message(huge)]))
    assert time.monotonic() - started < 0.5  # redacts ~5 KB, not 4.3 MB
    text = message["parts"][0]["content"]
    kept, marker = text.split("…")
    assert kept.startswith("call [REDACTED:phone] [REDACTED:card] and more")
    assert "4111" not in kept
    # The count covers the early cut too; it is of the redacted text, which
    # is a little shorter here (a marker is shorter than a card number).
    removed = int(marker.removeprefix("[truncated ").removesuffix(" chars]"))
    assert 0.99 * len(huge) < len(kept) + removed < len(huge)


def test_redaction_shrinking_the_early_cut_redacts_the_whole_string() -> None:
    policy = content.content_policy(max_content_chars=1000)
    pem = "-----BEGIN PRIVATE KEY-----\n" + "A" * 8000 + "\n-----END PRIVATE KEY-----"
    text = pem + " then mail bob@example.com " + "x" * 20_000
    encoded = policy.encode([_message(text)])
    assert len(encoded) <= 1000
    kept = json.loads(encoded)[0]["parts"][0]["content"]
    assert kept.startswith("[REDACTED:private_key] then mail [REDACTED:email] xxx")


def test_fit_text_and_cut_text() -> None:
    assert fit_text("short", 100) == "short"
    plain = fit_text("x" * 500, 100)
    assert len(plain) <= 100 and plain.endswith(truncation_marker(500 - plain.index("…")))
    assert json.loads(fit_text(json.dumps([_message("y" * 500)]), 200))
    assert cut_text("abcdef" * 100, 64).startswith("abc")


# --- through the SDK -----------------------------------------------------------------

SECRET_PROMPT = "I am jane@example.com, card 4111 1111 1111 1111, key sk-proj-Ab3dEf6hIj9kLm2nOp5q"


def _recorded(name: str = "chat m", **init_options: Any) -> dict[str, Any]:
    with traced(**init_options) as sdk:
        with tokentrail.llm_call(provider="openai", model="m") as call:
            call.record(prompt=SECRET_PROMPT, completion="x" * 40_000, input_tokens=3)
        return sdk.attrs(name)


def test_llm_call_content_is_redacted_and_limited_by_default() -> None:
    attrs = _recorded()
    (prompt,) = json.loads(attrs["gen_ai.input.messages"])
    assert prompt["parts"][0]["content"] == (
        "I am [REDACTED:email], card [REDACTED:card], key [REDACTED:api_key]"
    )
    completion = attrs["gen_ai.output.messages"]
    assert len(completion) <= content.DEFAULT_MAX_CONTENT_CHARS
    assert "…[truncated " in json.loads(completion)[0]["parts"][0]["content"]


def test_init_content_options() -> None:
    raw = _recorded(redact=False, max_content_chars=0)
    assert json.loads(raw["gen_ai.input.messages"])[0]["parts"][0]["content"] == SECRET_PROMPT
    assert len(json.loads(raw["gen_ai.output.messages"])[0]["parts"][0]["content"]) == 40_000

    def mask_names(text: str) -> str:
        return text.replace("jane", "[REDACTED:name]")

    custom = _recorded(redact=[mask_names], max_content_chars=300)
    assert "[REDACTED:name]@" not in custom["gen_ai.input.messages"]  # built-ins ran first
    assert "[REDACTED:email]" in custom["gen_ai.input.messages"]
    assert len(custom["gen_ai.output.messages"]) <= 300

    only_rules = _recorded(redact=Redactor(builtin=False, rules=[mask_names]))
    assert "[REDACTED:name]@example.com" in only_rules["gen_ai.input.messages"]


def test_failing_rule_drops_content_but_not_the_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokentrail")

    def broken(text: str) -> str:
        raise RuntimeError("rule bug")

    with traced(redact=[broken]) as sdk:
        for _ in range(3):
            with tokentrail.llm_call(provider="openai", model="m") as call:
                call.record(prompt=[_message("hi"), _message("ho", "assistant")], output_tokens=7)
        spans = sdk.spans()
    assert len(spans) == 3
    for span in spans:
        attrs = dict(span.attributes or {})
        assert attrs["gen_ai.usage.output_tokens"] == 7
        assert json.loads(attrs["gen_ai.input.messages"]) == [
            _message("[REDACTED:redaction_failed]"),
            _message("[REDACTED:redaction_failed]", "assistant"),
        ]
    assert len([r for r in caplog.records if "rule bug" in str(r.exc_info)]) == 1


def test_policy_without_init_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert content.current_policy().redactor is not None  # built-ins on by default
    monkeypatch.setenv("TOKENTRAIL_REDACT", "off")
    monkeypatch.setenv("TOKENTRAIL_MAX_CONTENT_CHARS", "100")
    policy = content.current_policy()
    assert (policy.redactor, policy.max_chars) == (None, 100)
    assert "a@b.io" in content.encode_messages([_message("a@b.io")])
    monkeypatch.setenv("TOKENTRAIL_MAX_CONTENT_CHARS", "0")
    assert content.current_policy().max_chars is None


def test_bad_limits_fall_back_to_the_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokentrail")
    assert content.content_policy(max_content_chars=5).max_chars == 16 * 1024
    assert "ignoring max_content_chars" in caplog.text


# --- other instrumentations' spans ---------------------------------------------------


def test_content_from_other_instrumentations_is_cleaned_on_export() -> None:
    messages = json.dumps([_message("reach me at bob@example.org " + "z" * 5000)])
    with traced(max_content_chars=1000) as sdk:
        tracer = sdk.provider.get_tracer("com.anthropic.sdk.python")
        with tracer.start_as_current_span(
            "anthropic.messages.create",
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.input.messages": messages, "gen_ai.request.model": "claude"},
        ) as span:
            span.add_event("gen_ai.user.message", {"content": "call +1 415 555 0132"})
            span.add_event("log", {"message": "bob@example.org"})  # not content: untouched
        attrs = sdk.attrs("anthropic.messages.create")
        exported = sdk.span("anthropic.messages.create")
        events = {event.name: dict(event.attributes or {}) for event in exported.events}
    assert len(attrs["gen_ai.input.messages"]) <= 1000
    cleaned = json.loads(attrs["gen_ai.input.messages"])[0]["parts"][0]["content"]
    assert cleaned.startswith("reach me at [REDACTED:email] zzz") and "…[truncated" in cleaned
    assert attrs["gen_ai.request.model"] == "claude"
    assert events["gen_ai.user.message"] == {"content": "call [REDACTED:phone]"}
    assert events["log"] == {"message": "bob@example.org"}


def test_other_instrumentations_content_is_dropped_when_a_rule_fails() -> None:
    def broken(text: str) -> str:
        raise RuntimeError("rule bug")

    with traced(redact=[broken]) as sdk:
        tracer = sdk.provider.get_tracer("openinference.instrumentation.openai")
        with tracer.start_as_current_span("ChatCompletion", attributes={"input.value": "hi"}):
            pass
        assert sdk.attrs("ChatCompletion")["input.value"] == "[REDACTED:redaction_failed]"

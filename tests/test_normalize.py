"""The convention normalizer: OTel GenAI spans (current and deprecated) → LlmCall and Score."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tokentrail.collector.normalize import (
    CONTEXT_KEYS,
    CallContext,
    context_of,
    inherit_context,
    is_llm_span,
    normalize,
    scores_from_span,
    to_llm_call,
)
from tokentrail.collector.records import LlmCall, Span, SpanEvent

TRACE = "0af7651916cd43dd8448eb211c80319c"
START = 1_764_000_000_000_000_000


def make_span(
    attributes: dict[str, Any] | None = None,
    *,
    span_id: str = "00f067aa0ba902b7",
    parent: str = "",
    resource: dict[str, Any] | None = None,
    events: list[SpanEvent] | None = None,
    status: str = "Unset",
) -> Span:
    return Span(
        trace_id=TRACE,
        span_id=span_id,
        parent_span_id=parent,
        name="chat gpt-4o-mini",
        kind="Client",
        start_time_unix_nano=START,
        end_time_unix_nano=START + 1_500_000_000,
        attributes=attributes or {},
        resource_attributes=resource if resource is not None else {"service.name": "checkout"},
        status_code=status,
        events=events or [],
    )


def call_of(attributes: dict[str, Any], **kwargs: Any) -> LlmCall:
    call = to_llm_call(make_span(attributes, **kwargs))
    assert call is not None
    return call


CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}


# --- what is an LLM call -----------------------------------------------------------


@pytest.mark.parametrize(
    "attributes",
    [
        {"gen_ai.operation.name": "chat"},
        {"gen_ai.operation.name": "embeddings"},
        {"gen_ai.operation.name": "generate_content"},
        {"gen_ai.operation.name": "text_completion"},
        {"gen_ai.request.model": "gpt-4o"},
        {"gen_ai.response.model": "gpt-4o-2024-08-06"},
        {"gen_ai.operation.name": "Chat"},
    ],
)
def test_llm_spans_are_recognized(attributes: dict[str, Any]) -> None:
    assert is_llm_span(make_span(attributes))


@pytest.mark.parametrize(
    "operation", ["invoke_agent", "create_agent", "execute_tool", "invoke_workflow"]
)
def test_agent_and_tool_spans_are_never_llm_calls(operation: str) -> None:
    # Agent spans often repeat their children's model and usage: never price them.
    span = make_span(
        {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100,
        }
    )
    assert not is_llm_span(span)
    assert to_llm_call(span) is None


@pytest.mark.parametrize(
    "attributes",
    [{}, {"http.method": "POST"}, {"gen_ai.request.model": ""}, {"gen_ai.operation.name": "x"}],
)
def test_other_spans_are_not_llm_calls(attributes: dict[str, Any]) -> None:
    assert to_llm_call(make_span(attributes)) is None


def test_a_model_on_the_resource_does_not_make_every_span_a_call() -> None:
    span = make_span(
        {}, resource={"gen_ai.request.model": "gpt-4o", "gen_ai.operation.name": "chat"}
    )
    assert not is_llm_span(span)


# --- canonical fields --------------------------------------------------------------


def test_current_otel_genai_keys() -> None:
    call = call_of(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.id": "chatcmpl-123",
            "gen_ai.response.finish_reasons": ["stop", "length"],
            "gen_ai.response.time_to_first_chunk": 0.25,
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 100,
            "gen_ai.usage.reasoning.output_tokens": 50,
            "gen_ai.usage.cost": 0.0042,
            "deployment.environment.name": "staging",
        },
        parent="b7ad6b7169203331",
        resource={"service.name": "checkout", "deployment.environment.name": "prod"},
    )
    assert (call.trace_id, call.span_id, call.parent_span_id) == (
        TRACE,
        "00f067aa0ba902b7",
        "b7ad6b7169203331",
    )
    assert (call.start_time_unix_nano, call.duration_ns) == (START, 1_500_000_000)
    assert (call.provider, call.request_model, call.response_model) == (
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
    )
    assert call.operation == "chat"
    assert (call.input_tokens, call.output_tokens) == (1200, 300)
    assert (call.cache_read_tokens, call.cache_write_tokens, call.reasoning_tokens) == (
        1000,
        100,
        50,
    )
    assert call.provided_cost_usd == Decimal("0.0042")
    assert call.finish_reasons == ["stop", "length"]
    assert call.response_id == "chatcmpl-123"
    assert call.time_to_first_token_s == 0.25
    assert call.environment == "staging"  # the span's own beats its resource's
    assert call.service == "checkout"
    assert (call.status_code, call.error_type) == ("Unset", "")
    assert call.sample_weight == 1.0
    assert call.convention == "otel_genai"
    assert call.price_status == "unpriced"  # pricing is a later stage


def test_deprecated_otel_genai_keys() -> None:
    call = call_of(
        {
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.prompt_tokens": 80,
            "gen_ai.usage.completion_tokens": 20,
            "gen_ai.usage.cache_read_input_tokens": 30,
            "gen_ai.usage.cache_creation_input_tokens": 10,
            "gen_ai.usage.reasoning_tokens": 5,
            "gen_ai.response.finish_reason": "stop",
        },
        resource={"service.name": "svc", "deployment.environment": "prod"},
    )
    assert call.provider == "openai"
    assert (call.input_tokens, call.output_tokens) == (80, 20)
    assert (call.cache_read_tokens, call.cache_write_tokens, call.reasoning_tokens) == (30, 10, 5)
    assert call.finish_reasons == ["stop"]
    assert call.environment == "prod"
    assert call.operation == ""


@pytest.mark.parametrize(
    "key",
    [
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
    ],
)
def test_every_cache_write_spelling(key: str) -> None:
    assert call_of({**CHAT, key: 7}).cache_write_tokens == 7


def test_current_names_win_over_deprecated_ones() -> None:
    call = call_of(
        {
            **CHAT,
            "gen_ai.provider.name": "azure.ai.openai",
            "gen_ai.system": "openai",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.prompt_tokens": 99,
        }
    )
    assert (call.provider, call.input_tokens) == ("azure.ai.openai", 10)


@pytest.mark.parametrize(
    ("system", "provider"),
    [
        ("az.ai.openai", "azure.ai.openai"),
        ("vertex_ai", "gcp.vertex_ai"),
        ("Anthropic", "anthropic"),
    ],
)
def test_deprecated_provider_spellings(system: str, provider: str) -> None:
    assert call_of({**CHAT, "gen_ai.system": system}).provider == provider


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        (12, 12),
        ("12", 12),
        (12.0, 12),
        ("1e3", 1000),
        (" 7 ", 7),
        (-5, 0),
        ("-5", 0),
        ("1e999999999", 2**64 - 1),
    ],
)
def test_token_counts_are_coerced_to_non_negative_ints(value: Any, tokens: int) -> None:
    call = call_of({**CHAT, "gen_ai.usage.input_tokens": value})
    assert call.input_tokens == tokens
    assert type(call.input_tokens) is int


@pytest.mark.parametrize("value", ["abc", "nan", "inf", True, None, [1], {"a": 1}, b"12", ""])
def test_unusable_token_values_fall_through_without_raising(value: Any) -> None:
    call = call_of({**CHAT, "gen_ai.usage.input_tokens": value, "gen_ai.usage.prompt_tokens": "9"})
    assert call.input_tokens == 9  # the next key in the row is tried


@pytest.mark.parametrize(
    ("value", "cost"),
    [
        (0.1, Decimal("0.1")),
        ("0.0042", Decimal("0.0042")),
        (3, Decimal(3)),
        (-1, None),
        ("nan", None),
    ],
)
def test_provided_cost_is_an_exact_decimal(value: Any, cost: Decimal | None) -> None:
    assert call_of({**CHAT, "gen_ai.usage.cost": value}).provided_cost_usd == cost


def test_finish_reasons_sent_as_a_json_string() -> None:
    call = call_of({**CHAT, "gen_ai.response.finish_reasons": '["tool_calls"]'})
    assert call.finish_reasons == ["tool_calls"]


@pytest.mark.parametrize(("value", "weight"), [("0.25", 0.25), (4, 4.0), (0, 1.0), ("x", 1.0)])
def test_sample_weight(value: Any, weight: float) -> None:
    assert call_of({**CHAT, "tokentrail.sample_weight": value}).sample_weight == weight


def test_sample_weight_from_the_resource() -> None:
    resource = {"service.name": "svc", "tokentrail.sample_weight": 10}
    assert call_of(CHAT, resource=resource).sample_weight == 10.0


# --- errors --------------------------------------------------------------------------


def test_error_status_with_error_type() -> None:
    call = call_of({**CHAT, "error.type": "RateLimitError"}, status="Error")
    assert (call.status_code, call.error_type) == ("Error", "RateLimitError")


def test_error_status_without_a_type() -> None:
    call = call_of(CHAT, status="Error")
    assert (call.status_code, call.error_type) == ("Error", "error")


def test_error_type_from_the_exception_event() -> None:
    event = SpanEvent(START, "exception", {"exception.type": "openai.APITimeoutError"})
    call = call_of(CHAT, status="Error", events=[event])
    assert call.error_type == "openai.APITimeoutError"


def test_error_type_alone_marks_failure() -> None:
    call = call_of({**CHAT, "error.type": "timeout"})
    assert (call.status_code, call.error_type) == ("Error", "timeout")


def test_ok_span_is_not_an_error() -> None:
    call = call_of(CHAT, status="Ok")
    assert (call.status_code, call.error_type) == ("Ok", "")


# --- content -------------------------------------------------------------------------

INPUT = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}])
OUTPUT = json.dumps(
    [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello"}],
            "finish_reason": "stop",
        }
    ]
)


def test_content_from_span_attributes_is_stored_as_given() -> None:
    call = call_of({**CHAT, "gen_ai.input.messages": INPUT, "gen_ai.output.messages": OUTPUT})
    assert (call.prompt, call.completion) == (INPUT, OUTPUT)


def test_system_instructions_lead_the_prompt() -> None:
    system = json.dumps([{"type": "text", "content": "Be brief."}])
    call = call_of({**CHAT, "gen_ai.input.messages": INPUT, "gen_ai.system_instructions": system})
    assert json.loads(call.prompt) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]},
    ]


def test_structured_content_is_dumped_as_json() -> None:
    messages = [{"role": "user", "parts": [{"type": "text", "content": "Grüß dich"}]}]
    call = call_of({**CHAT, "gen_ai.input.messages": messages})
    assert json.loads(call.prompt) == messages
    assert "Grüß" in call.prompt  # readable, not \u-escaped


def test_unparseable_input_is_kept_verbatim() -> None:
    truncated = '[{"role": "user", "parts": [{"type": "text", "content": "Hi'
    call = call_of({**CHAT, "gen_ai.input.messages": truncated, "gen_ai.system_instructions": "x"})
    assert call.prompt == truncated


def test_content_from_the_operation_details_event() -> None:
    event = SpanEvent(
        START,
        "gen_ai.client.inference.operation.details",
        {"gen_ai.input.messages": INPUT, "gen_ai.output.messages": OUTPUT},
    )
    call = call_of(CHAT, events=[event])
    assert (call.prompt, call.completion) == (INPUT, OUTPUT)


def test_span_attributes_win_over_events() -> None:
    event = SpanEvent(
        START,
        "gen_ai.client.inference.operation.details",
        {"gen_ai.input.messages": "[]", "gen_ai.output.messages": OUTPUT},
    )
    call = call_of({**CHAT, "gen_ai.input.messages": INPUT}, events=[event])
    assert (call.prompt, call.completion) == (INPUT, OUTPUT)


def test_deprecated_message_events() -> None:
    tool_calls = [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    ]
    events = [
        SpanEvent(
            START, "gen_ai.system.message", {"gen_ai.event.content": '{"content": "Be brief."}'}
        ),
        SpanEvent(START, "gen_ai.user.message", {"content": "Weather?"}),
        SpanEvent(START, "gen_ai.assistant.message", {"tool_calls": json.dumps(tool_calls)}),
        SpanEvent(START, "gen_ai.tool.message", {"content": "sunny", "id": "call_1"}),
        SpanEvent(
            START,
            "gen_ai.choice",
            {
                "gen_ai.event.content": json.dumps(
                    {"index": 0, "finish_reason": "stop", "message": {"content": "Sunny."}}
                )
            },
        ),
    ]
    call = call_of(CHAT, events=events)
    assert json.loads(call.prompt) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_1", "name": "weather", "arguments": "{}"}],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": "sunny"}],
        },
    ]
    assert json.loads(call.completion) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Sunny."}],
            "finish_reason": "stop",
        }
    ]


def test_oldest_content_prompt_and_completion_events() -> None:
    events = [
        SpanEvent(
            START,
            "gen_ai.content.prompt",
            {"gen_ai.prompt": json.dumps([{"role": "user", "content": "2+2?"}])},
        ),
        SpanEvent(START, "gen_ai.content.completion", {"gen_ai.completion": "4"}),
    ]
    call = call_of(CHAT, events=events)
    assert json.loads(call.prompt) == [
        {"role": "user", "parts": [{"type": "text", "content": "2+2?"}]}
    ]
    assert json.loads(call.completion) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "4"}]}
    ]


def test_no_content_is_empty() -> None:
    call = call_of(CHAT)
    assert (call.prompt, call.completion) == ("", "")


# --- feature / user / session ----------------------------------------------------------


def test_context_from_span_then_resource() -> None:
    span = make_span(
        {"tokentrail.feature": "search", "enduser.id": "u-1"},
        resource={"service.name": "svc", "session.id": "s-1", "tokentrail.feature": "other"},
    )
    assert context_of(span) == ("search", "u-1", "s-1")


def test_context_fallback_keys() -> None:
    span = make_span(
        {"gen_ai.agent.name": "planner", "gen_ai.user": "u-2", "gen_ai.conversation.id": "c-9"}
    )
    assert context_of(span) == CallContext("planner", "u-2", "c-9")


def test_context_keys_cover_every_spelling() -> None:
    expected = {
        "tokentrail.feature",
        "gen_ai.agent.name",
        "user.id",
        "enduser.id",
        "gen_ai.user",
        "session.id",
        "gen_ai.conversation.id",
    }
    assert expected <= set(CONTEXT_KEYS)


def test_call_carries_its_own_context() -> None:
    call = call_of({**CHAT, "tokentrail.feature": "f", "user.id": "u", "session.id": "s"})
    assert (call.feature, call.user_id, call.session_id) == ("f", "u", "s")


def bare_call(span_id: str, parent: str, feature: str = "", user_id: str = "") -> LlmCall:
    return LlmCall(TRACE, span_id, parent, START, 1, feature=feature, user_id=user_id)


def test_inherit_from_nearest_ancestor_per_field() -> None:
    ancestry = {
        "p1": ("p2", ("", "user-near", "")),
        "p2": ("p3", ("feature-far", "user-far", "")),
        "p3": ("", ("feature-root", "", "session-root")),
    }
    call = bare_call("c", "p1")
    inherit_context([call], ancestry)
    assert (call.feature, call.user_id, call.session_id) == (
        "feature-far",
        "user-near",
        "session-root",
    )


def test_inherit_keeps_the_calls_own_values() -> None:
    call = bare_call("c", "p1", feature="mine")
    inherit_context([call], {"p1": ("", ("theirs", "u", "s"))})
    assert (call.feature, call.user_id, call.session_id) == ("mine", "u", "s")


def test_inherit_survives_a_cycle() -> None:
    ancestry = {"a": ("b", ("", "", "")), "b": ("a", ("", "", "")), "c": ("c", ("", "", ""))}
    first, second = bare_call("x", "a"), bare_call("c", "c")
    inherit_context([first, second], ancestry)
    assert (first.feature, second.feature) == ("", "")


def test_inherit_stops_at_a_missing_link() -> None:
    # p1 is not known (yet): its grandparent's value must not jump the gap,
    # p1 itself may carry a nearer value once it arrives.
    call = bare_call("c", "p1")
    inherit_context([call], {"p2": ("", ("far", "", ""))})
    assert call.feature == ""


def test_normalize_inherits_within_the_batch_and_skips_agent_spans() -> None:
    root = make_span(
        {"tokentrail.feature": "support-bot", "user.id": "u-7"}, span_id="aaaaaaaaaaaaaaa1"
    )
    agent = make_span(
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.request.model": "gpt-4o",
            "session.id": "s-3",
        },
        span_id="aaaaaaaaaaaaaaa2",
        parent="aaaaaaaaaaaaaaa1",
    )
    chat = make_span(CHAT, span_id="aaaaaaaaaaaaaaa3", parent="aaaaaaaaaaaaaaa2")
    calls, scores = normalize([chat, agent, root])
    assert [c.span_id for c in calls] == ["aaaaaaaaaaaaaaa3"]
    assert (calls[0].feature, calls[0].user_id, calls[0].session_id) == (
        "support-bot",
        "u-7",
        "s-3",
    )
    assert scores == []


# --- scores ------------------------------------------------------------------------------


def evaluation(attributes: dict[str, Any], time: int = START + 5) -> SpanEvent:
    return SpanEvent(time, "gen_ai.evaluation.result", attributes)


def test_numeric_score() -> None:
    span = make_span(
        CHAT,
        events=[
            evaluation(
                {
                    "gen_ai.evaluation.name": "relevance",
                    "gen_ai.evaluation.score.value": 0.8,
                    "gen_ai.evaluation.score.label": "relevant",
                    "gen_ai.evaluation.explanation": "on topic",
                }
            )
        ],
    )
    [score] = scores_from_span(span)
    assert (score.trace_id, score.span_id, score.name) == (TRACE, span.span_id, "relevance")
    assert (score.data_type, score.value, score.string_value) == ("numeric", 0.8, "relevant")
    assert (score.comment, score.source, score.time_unix_nano) == ("on topic", "sdk", START + 5)
    assert len(score.score_id) == 40


def test_categorical_score_by_default_without_a_value() -> None:
    event = evaluation({"gen_ai.evaluation.name": "tone", "gen_ai.evaluation.score.label": "rude"})
    [score] = scores_from_span(make_span(events=[event]))
    assert (score.data_type, score.string_value, score.value) == ("categorical", "rude", 0.0)


@pytest.mark.parametrize(
    ("attributes", "value"),
    [
        ({"gen_ai.evaluation.score.value": 1}, 1.0),
        ({"gen_ai.evaluation.score.value": True}, 1.0),
        ({"gen_ai.evaluation.score.value": 0}, 0.0),
        ({"gen_ai.evaluation.score.label": "fail"}, 0.0),
        ({"gen_ai.evaluation.score.label": "true"}, 1.0),
    ],
)
def test_boolean_score(attributes: dict[str, Any], value: float) -> None:
    event = evaluation(
        {"gen_ai.evaluation.name": "correct", "tokentrail.score.data_type": "boolean", **attributes}
    )
    [score] = scores_from_span(make_span(events=[event]))
    assert (score.data_type, score.value) == ("boolean", value)


def test_score_riding_on_its_own_span_targets_the_judged_span() -> None:
    carrier = make_span(
        {
            "tokentrail.score.span_id": "ABCDEF0123456789",
            "tokentrail.score.source": "human",
        },
        span_id="1111111111111111",
        events=[
            evaluation({"gen_ai.evaluation.name": "thumbs", "gen_ai.evaluation.score.value": 1})
        ],
    )
    [score] = scores_from_span(carrier)
    assert (score.span_id, score.source) == ("abcdef0123456789", "human")


def test_unknown_score_source_falls_back_to_sdk() -> None:
    event = evaluation(
        {
            "gen_ai.evaluation.name": "n",
            "gen_ai.evaluation.score.value": 1,
            "tokentrail.score.source": "martian",
        }
    )
    [score] = scores_from_span(make_span(events=[event]))
    assert score.source == "sdk"


def test_unusable_evaluations_are_skipped() -> None:
    events = [
        evaluation({"gen_ai.evaluation.score.value": 1}),  # no name
        evaluation({"gen_ai.evaluation.name": "empty"}),  # neither value nor label
        evaluation({"gen_ai.evaluation.name": "nan", "gen_ai.evaluation.score.value": "nan"}),
        SpanEvent(START, "something.else", {"gen_ai.evaluation.name": "x"}),
    ]
    assert scores_from_span(make_span(events=events)) == []


def test_score_ids_are_deterministic_and_distinct() -> None:
    def ids(*events: SpanEvent) -> list[str]:
        return [s.score_id for s in scores_from_span(make_span(events=list(events)))]

    a = evaluation({"gen_ai.evaluation.name": "a", "gen_ai.evaluation.score.value": 1})
    b = evaluation({"gen_ai.evaluation.name": "b", "gen_ai.evaluation.score.value": 1})
    later = evaluation(
        {"gen_ai.evaluation.name": "a", "gen_ai.evaluation.score.value": 1}, START + 9
    )
    assert ids(a) == ids(a)  # a re-sent batch yields the same id
    assert len(set(ids(a, b, later))) == 3


def test_normalize_returns_scores_of_every_span() -> None:
    event = evaluation({"gen_ai.evaluation.name": "q", "gen_ai.evaluation.score.value": 2})
    calls, scores = normalize([make_span({}, events=[event])])
    assert calls == [] and [s.name for s in scores] == ["q"]


def test_flattened_message_text_is_not_reinterpreted_as_json() -> None:
    event = SpanEvent(START, "gen_ai.user.message", {"content": "[1, 2]"})
    call = call_of(CHAT, events=[event])
    assert json.loads(call.prompt) == [
        {"role": "user", "parts": [{"type": "text", "content": "[1, 2]"}]}
    ]

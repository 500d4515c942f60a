"""Every convention CONVENTIONS.md lists, read from attribute sets shaped like the real libraries'.

The attribute sets follow what the instrumentations emit (checked against
opentelemetry-instrumentation-genai-openai 1.3b0, Traceloop
opentelemetry-instrumentation-openai 0.62, openinference-instrumentation-openai
0.1.66 and the anthropic SDK's own spans against a fake provider; Langfuse from
its SDK's attribute module), plus the older spellings the table keeps.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tokentrail.collector.normalize import (
    KEYS,
    CallContext,
    context_of,
    is_llm_span,
    normalize,
    scores_from_span,
    to_llm_call,
    unknown_keys,
)
from tokentrail.collector.records import LlmCall, Span

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
START = 1_764_000_000_000_000_000


def span(
    attributes: dict[str, Any],
    *,
    span_id: str = "00f067aa0ba902b7",
    parent: str = "",
    resource: dict[str, Any] | None = None,
    start: int = START,
    duration: int = 2_000_000_000,
) -> Span:
    return Span(
        trace_id=TRACE, span_id=span_id, parent_span_id=parent, name="llm", kind="Client",
        start_time_unix_nano=start, end_time_unix_nano=start + duration,
        attributes=attributes,
        resource_attributes=resource if resource is not None else {"service.name": "svc"},
    )  # fmt: skip


def call_of(attributes: dict[str, Any], **kwargs: Any) -> LlmCall:
    call = to_llm_call(span(attributes, **kwargs))
    assert call is not None
    return call


def messages(text: str) -> Any:
    return json.loads(text)


# --- CONVENTIONS.md, row by row ------------------------------------------------------

# The table "Canonical field ← attribute keys", key by key in its order. Derived
# keys (Langfuse JSON details, timestamps) are named by the attribute they read.
TABLE = {
    "provider": ["gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"],
    "request_model": [
        "gen_ai.request.model", "llm.request.model_name", "llm.model_name",
        "langfuse.observation.model.name", "model",
    ],
    "response_model": ["gen_ai.response.model", "llm.response.model_name"],
    "input_tokens": [
        "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt",
        "llm.usage.prompt_tokens", "langfuse.observation.usage_details",
    ],
    "output_tokens": [
        "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
    ],
    "total_tokens": [
        "gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total",
    ],
    "cache_read_tokens": [
        "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",
    ],
    "cache_write_tokens": [
        "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens", "llm.token_count.prompt_details.cache_write",
    ],
    "reasoning_tokens": [
        "gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
        "llm.token_count.completion_details.reasoning",
    ],
    "provided_cost_usd": [
        "gen_ai.usage.cost", "llm.cost.total", "llm.cost.prompt",
        "langfuse.observation.cost_details",
    ],
    "operation": ["gen_ai.operation.name", "llm.request.type"],
    "streaming": ["gen_ai.request.stream", "gen_ai.is_streaming", "llm.is_streaming"],
    "time_to_first_token_s": [
        "gen_ai.response.time_to_first_chunk", "langfuse.observation.completion_start_time",
    ],
    "finish_reasons": [
        "gen_ai.response.finish_reasons", "gen_ai.response.finish_reason", "llm.finish_reason",
    ],
    "response_id": ["gen_ai.response.id"],
    "session_id": [
        "session.id", "gen_ai.conversation.id", "langfuse.session.id",
        "traceloop.association.properties.session_id",
    ],
    "user_id": [
        "user.id", "enduser.id", "langfuse.user.id", "gen_ai.user",
        "traceloop.association.properties.user_id",
    ],
    "feature": [
        "tokentrail.feature", "gen_ai.agent.name", "traceloop.workflow.name",
        "langfuse.trace.name",
    ],
    "environment": [
        "deployment.environment.name", "deployment.environment", "langfuse.environment",
    ],
}  # fmt: skip


@pytest.mark.parametrize("field", sorted(TABLE))
def test_every_row_of_the_table_in_its_order(field: str) -> None:
    # Extra spellings may follow or sit between, never reorder the table's keys.
    known = KEYS[field]
    assert all(key in known for key in TABLE[field]), set(TABLE[field]) - set(known)
    positions = [known.index(key) for key in TABLE[field]]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("field", "first", "second", "expected"),
    [
        ("user_id", "langfuse.user.id", "gen_ai.user", "lf-user"),
        ("session_id", "langfuse.session.id", "traceloop.association.properties.session_id",
         "lf-session"),
        ("feature", "traceloop.workflow.name", "langfuse.trace.name", "tl-workflow"),
    ],
)  # fmt: skip
def test_interleaved_rows_pick_the_earlier_key(
    field: str, first: str, second: str, expected: str
) -> None:
    values = {"lf-user", "lf-session", "tl-workflow"}
    attributes = {first: expected, second: next(v for v in values if v != expected)}
    assert getattr(context_of(span(attributes)), field) == expected


def test_span_attributes_before_resource_attributes() -> None:
    call = call_of(
        {"langfuse.observation.type": "generation", "langfuse.environment": "staging",
         "langfuse.observation.model.name": "gpt-4o"},
        resource={"service.name": "svc", "deployment.environment.name": "prod"},
    )  # fmt: skip
    assert call.environment == "staging"


# --- OTel GenAI ----------------------------------------------------------------------


def test_official_openai_instrumentation_span() -> None:
    call = call_of(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.id": "chatcmpl-AbC123",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.cache_read.input_tokens": 1024,
            "gen_ai.usage.output_tokens": 40,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 256,
            "gen_ai.openai.request.service_tier": "auto",
            "openai.response.service_tier": "default",
            "server.address": "api.openai.com",
            "server.port": 443,
        }
    )
    assert (call.convention, call.provider, call.model) == (
        "otel_genai", "openai", "gpt-4o-mini-2024-07-18",
    )  # fmt: skip
    assert (call.input_tokens, call.cache_read_tokens, call.output_tokens) == (1200, 1024, 40)
    assert call.unknown_keys == []  # request parameters are understood, just not stored


def test_anthropic_sdk_span_with_cache_write() -> None:
    call = call_of(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.response.model": "claude-sonnet-4-5-20250929",
            "gen_ai.response.id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "gen_ai.usage.input_tokens": 2100,  # all input, cache included
            "gen_ai.usage.cache_read.input_tokens": 1500,
            "gen_ai.usage.cache_write.input_tokens": 500,
            "gen_ai.usage.output_tokens": 80,
            "anthropic.message.stop_reason": "end_turn",
            "http.request.method": "POST",
            "http.response.status_code": 200,
        }
    )
    assert (call.cache_read_tokens, call.cache_write_tokens, call.input_tokens) == (1500, 500, 2100)
    assert call.finish_reasons == ["end_turn"]
    assert call.unknown_keys == []


def test_streaming_from_the_request_flag() -> None:
    call = call_of({"gen_ai.operation.name": "chat", "gen_ai.request.stream": True})
    assert call.streaming is True


# --- OpenLLMetry / Traceloop ------------------------------------------------------------


def test_traceloop_openai_span() -> None:
    call = call_of(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.id": "chatcmpl-1",
            "gen_ai.usage.input_tokens": 300,
            "gen_ai.usage.output_tokens": 90,
            "gen_ai.usage.total_tokens": 390,
            "gen_ai.usage.reasoning_tokens": 64,
            "gen_ai.usage.cache_read.input_tokens": 0,
            "gen_ai.is_streaming": False,
            "gen_ai.user": "user-42",
            "gen_ai.headers": "{}",
            "gen_ai.openai.api_base": "https://api.openai.com/v1/",
            "gen_ai.openai.response.system_fingerprint": "fp_1",
            "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", '
            '"content": "Hi"}]}]',
        }
    )
    assert call.convention == "openllmetry"
    assert (call.input_tokens, call.output_tokens, call.reasoning_tokens) == (300, 90, 64)
    assert (call.streaming, call.user_id) == (False, "user-42")
    assert messages(call.prompt)[0]["parts"][0]["content"] == "Hi"
    assert call.unknown_keys == []


def test_old_openllmetry_indexed_keys() -> None:
    call = call_of(
        {
            "llm.request.type": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-3.5-turbo",
            "gen_ai.usage.prompt_tokens": 25,
            "gen_ai.usage.completion_tokens": 12,
            "llm.usage.total_tokens": 37,
            "llm.is_streaming": True,
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "Be brief.",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": "Weather in Paris?",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.finish_reason": "tool_calls",
            "gen_ai.completion.0.tool_calls.0.id": "call_9",
            "gen_ai.completion.0.tool_calls.0.name": "weather",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Paris"}',
            "traceloop.workflow.name": "trip-planner",
            "traceloop.association.properties.user_id": "u-7",
            "traceloop.association.properties.session_id": "s-7",
            "traceloop.association.properties.tenant": "acme",
        }
    )
    assert (call.convention, call.operation, call.provider) == ("openllmetry", "chat", "openai")
    assert (call.input_tokens, call.output_tokens, call.streaming) == (25, 12, True)
    assert (call.feature, call.user_id, call.session_id) == ("trip-planner", "u-7", "s-7")
    assert call.finish_reasons == ["tool_calls"]
    assert messages(call.prompt) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
    ]
    assert messages(call.completion) == [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_9", "name": "weather",
                       "arguments": '{"city": "Paris"}'}],
            "finish_reason": "tool_calls",
        }
    ]  # fmt: skip
    assert call.unknown_keys == []


def test_openllmetry_multimodal_content_sent_as_json() -> None:
    content = json.dumps(
        [{"type": "text", "text": "What is this?"},
         {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]
    )  # fmt: skip
    call = call_of(
        {"llm.request.type": "chat", "gen_ai.prompt.0.role": "user",
         "gen_ai.prompt.0.content": content}
    )  # fmt: skip
    assert messages(call.prompt)[0]["parts"] == [
        {"type": "text", "content": "What is this?"},
        {"type": "uri", "modality": "image", "uri": "https://x/cat.png"},
    ]


def test_llm_request_type_alone_marks_a_call() -> None:
    call = call_of({"llm.request.type": "embedding", "llm.usage.prompt_tokens": 8})
    assert (call.operation, call.input_tokens) == ("embeddings", 8)


@pytest.mark.parametrize("kind", ["workflow", "task", "agent", "tool"])
def test_traceloop_decorated_spans_are_never_priced(kind: str) -> None:
    decorated = span(
        {
            "traceloop.span.kind": kind,
            "traceloop.entity.name": "plan",
            "traceloop.entity.input": '{"args": [], "kwargs": {}}',
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100,
        }
    )
    assert not is_llm_span(decorated)


def test_traceloop_entity_io_is_the_last_content_fallback() -> None:
    call = call_of(
        {"llm.request.type": "chat", "traceloop.entity.input": "summarize this",
         "traceloop.entity.output": "summary"}
    )  # fmt: skip
    assert messages(call.prompt) == [
        {"role": "user", "parts": [{"type": "text", "content": "summarize this"}]}
    ]
    assert messages(call.completion)[0]["parts"][0]["content"] == "summary"


# --- OpenInference ----------------------------------------------------------------------

OPENINFERENCE_CHAT = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.provider": "openai",
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.invocation_parameters": '{"model": "gpt-4o-mini", "temperature": 0}',
    "llm.token_count.prompt": 1200,
    "llm.token_count.completion": 60,
    "llm.token_count.total": 1260,
    "llm.token_count.prompt_details.cache_read": 1024,
    "llm.token_count.prompt_details.audio": 0,
    "llm.token_count.completion_details.reasoning": 32,
    "llm.finish_reason": "tool_calls",
    "input.mime_type": "application/json",
    "input.value": '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}',
    "output.mime_type": "application/json",
    "output.value": '{"id": "chatcmpl-1", "choices": []}',
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "Be brief.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.contents.0.message_content.type": "text",
    "llm.input_messages.1.message.contents.0.message_content.text": "What is in the image?",
    "llm.input_messages.1.message.contents.1.message_content.type": "image",
    "llm.input_messages.1.message.contents.1.message_content.image.image.url": "https://x/a.png",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "describe",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "{}",
    "llm.tools.0.tool.json_schema": "{}",
    "session.id": "s-1",
    "user.id": "u-1",
    "metadata": '{"team": "search"}',
}


def test_openinference_llm_span() -> None:
    call = call_of(OPENINFERENCE_CHAT)
    assert (call.convention, call.provider, call.request_model) == (
        "openinference", "openai", "gpt-4o-mini-2024-07-18",
    )  # fmt: skip
    assert (call.input_tokens, call.output_tokens) == (1200, 60)
    assert (call.cache_read_tokens, call.reasoning_tokens) == (1024, 32)
    assert call.finish_reasons == ["tool_calls"]
    assert (call.user_id, call.session_id) == ("u-1", "s-1")
    assert messages(call.prompt) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "What is in the image?"},
                {"type": "uri", "modality": "image", "uri": "https://x/a.png"},
            ],
        },
    ]
    assert messages(call.completion) == [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_1", "name": "describe", "arguments": "{}"}],
        }
    ]
    assert call.unknown_keys == []


def test_openinference_values_when_no_messages_were_flattened() -> None:
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    response = {"choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "Hello"}}]}  # fmt: skip
    call = call_of(
        {"openinference.span.kind": "LLM", "input.value": json.dumps(request),
         "output.value": json.dumps(response)}
    )  # fmt: skip
    assert messages(call.prompt) == [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]
    assert messages(call.completion) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello"}],
         "finish_reason": "stop"}
    ]  # fmt: skip


def test_openinference_plain_text_values() -> None:
    call = call_of(
        {"openinference.span.kind": "LLM", "input.value": "Hi there", "output.value": "Hello"}
    )
    assert messages(call.prompt)[0] == {
        "role": "user", "parts": [{"type": "text", "content": "Hi there"}]
    }  # fmt: skip


def test_openinference_cost_total_then_parts() -> None:
    assert call_of({**OPENINFERENCE_CHAT, "llm.cost.total": 0.5}).provided_cost_usd == Decimal(
        "0.5"
    )
    parts = {**OPENINFERENCE_CHAT, "llm.cost.prompt": "0.25", "llm.cost.completion": 0.125}
    assert call_of(parts).provided_cost_usd == Decimal("0.375")


def test_openinference_embedding_span() -> None:
    call = call_of(
        {"openinference.span.kind": "EMBEDDING", "embedding.model_name": "text-embedding-3-small",
         "llm.token_count.prompt": 9, "embedding.embeddings.0.embedding.text": "hello"}
    )  # fmt: skip
    assert (call.request_model, call.input_tokens, call.unknown_keys) == (
        "text-embedding-3-small", 9, [],
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["AGENT", "TOOL", "CHAIN", "RETRIEVER"])
def test_openinference_agent_tool_chain_spans_are_never_priced(kind: str) -> None:
    # An agent span often sums its children's usage: pricing it would double the bill.
    grouped = span(
        {"openinference.span.kind": kind, "llm.model_name": "gpt-4o",
         "llm.token_count.prompt": 500, "llm.token_count.completion": 50}
    )  # fmt: skip
    assert not is_llm_span(grouped)
    assert normalize([grouped])[0] == []


def test_openinference_evaluations_become_scores() -> None:
    judged = span(
        {
            "openinference.span.kind": "CHAIN",
            "annotations.0.annotation.name": "hallucination",
            "annotations.0.annotation.score": 1,
            "annotations.0.annotation.label": "hallucinated",
            "annotations.0.annotation.explanation": "Not in the documents.",
            "annotations.0.annotation.annotator_kind": "LLM",
            "annotations.0.annotation.identifier": "judge-v2",
            "evaluations.0.evaluation.name": "relevance",
            "evaluations.0.evaluation.label": "relevant",
            "evaluations.0.evaluation.annotator_kind": "HUMAN",
            "trace.evaluations.0.evaluation.name": "retrieval_quality",
            "trace.evaluations.0.evaluation.score": 0.92,
            "evaluation.name": "toxicity",
            "evaluation.score": 0.0,
        }
    )
    scores = {score.name: score for score in scores_from_span(judged)}
    assert set(scores) == {"hallucination", "relevance", "retrieval_quality", "toxicity"}
    hallucination = scores["hallucination"]
    assert (hallucination.data_type, hallucination.value, hallucination.string_value) == (
        "numeric", 1.0, "hallucinated",
    )  # fmt: skip
    assert (hallucination.comment, hallucination.source) == ("Not in the documents.", "evaluator")
    assert hallucination.span_id == judged.span_id
    assert hallucination.time_unix_nano == judged.end_time_unix_nano
    relevance = scores["relevance"]
    assert (relevance.data_type, relevance.string_value, relevance.source) == (
        "categorical", "relevant", "human",
    )  # fmt: skip
    assert scores["retrieval_quality"].span_id == ""  # judges the whole trace
    assert (scores["toxicity"].data_type, scores["toxicity"].value) == ("numeric", 0.0)
    assert len({score.score_id for score in scores.values()}) == 4
    assert [s.score_id for s in scores_from_span(judged)] == [
        s.score_id for s in scores_from_span(judged)
    ]  # a re-sent span yields the same ids


def test_openinference_result_without_name_or_value_is_skipped() -> None:
    judged = span({"annotations.0.annotation.label": "x", "evaluations.0.evaluation.name": "n"})
    assert scores_from_span(judged) == []


# --- Langfuse ----------------------------------------------------------------------------

LANGFUSE_GENERATION = {
    "langfuse.observation.type": "generation",
    "langfuse.observation.model.name": "gpt-4o",
    "langfuse.observation.model.parameters": '{"temperature": 0}',
    # Langfuse counts usage types apart: input excludes the cached tokens.
    "langfuse.observation.usage_details": json.dumps(
        {
            "input": 2140,
            "input_cached_tokens": 1024,
            "output": 96,
            "output_reasoning_tokens": 310,
            "total": 3570,
        }
    ),
    "langfuse.observation.cost_details": json.dumps(
        {"input": 0.000535, "output": 0.000609, "total": 0.001144}
    ),
    "langfuse.observation.completion_start_time": '"2025-11-24T16:00:00.250000+00:00"',
    "langfuse.observation.input": json.dumps([{"role": "user", "content": "Hi"}]),
    "langfuse.observation.output": json.dumps({"role": "assistant", "content": "Hello"}),
    "langfuse.observation.metadata.step": "answer",
    "langfuse.trace.name": "support-bot",
    "langfuse.trace.tags": ["beta"],
    "langfuse.user.id": "u-9",
    "langfuse.session.id": "s-9",
    "langfuse.environment": "production",
    "langfuse.release": "1.2.3",
}
LANGFUSE_START = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z


def test_langfuse_generation() -> None:
    call = call_of(LANGFUSE_GENERATION, start=LANGFUSE_START)
    assert (call.convention, call.request_model) == ("langfuse", "gpt-4o")
    # Folded back into OTel GenAI's counting: subsets inside input and output.
    assert (call.input_tokens, call.cache_read_tokens) == (3164, 1024)
    assert (call.output_tokens, call.reasoning_tokens) == (406, 310)
    assert call.provided_cost_usd == Decimal("0.001144")
    assert call.time_to_first_token_s == pytest.approx(0.25)
    assert (call.feature, call.user_id, call.session_id, call.environment) == (
        "support-bot", "u-9", "s-9", "production",
    )  # fmt: skip
    assert messages(call.prompt) == [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]
    assert messages(call.completion) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello"}]}
    ]
    assert call.unknown_keys == []


def test_langfuse_cost_without_a_total_is_the_sum_of_its_parts() -> None:
    details = json.dumps({"input": "0.25", "output": 0.5})
    call = call_of({**LANGFUSE_GENERATION, "langfuse.observation.cost_details": details})
    assert call.provided_cost_usd == Decimal("0.75")


@pytest.mark.parametrize("value", ["not json", "[]", '{"input": "many"}', 12])
def test_langfuse_unusable_usage_is_skipped(value: Any) -> None:
    call = call_of(
        {"langfuse.observation.type": "generation", "langfuse.observation.usage_details": value}
    )
    assert call.input_tokens == 0


@pytest.mark.parametrize("kind", ["agent", "tool", "span", "chain"])
def test_langfuse_agent_tool_span_types_are_never_priced(kind: str) -> None:
    observation = span(
        {"langfuse.observation.type": kind, "langfuse.observation.model.name": "gpt-4o",
         "langfuse.observation.usage_details": '{"input": 10, "output": 2}'}
    )  # fmt: skip
    assert not is_llm_span(observation)


def test_langfuse_context_reaches_children() -> None:
    trace_span = span(
        {"langfuse.trace.name": "checkout", "langfuse.user.id": "u", "langfuse.session.id": "s"}
    )
    assert context_of(trace_span) == CallContext("checkout", "u", "s")


# --- which keys were understood ---------------------------------------------------------


def test_unknown_keys_name_what_no_reader_understood() -> None:
    call = call_of(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_token": 12,  # misspelled: why input_tokens is 0
            "llm.token_count.prompts": 12,
            "langfuse.observation.usage": "{}",
            "traceloop.something_new": 1,
            "http.route": "/chat",  # outside the LLM namespaces
            "app.custom": "x",
        }
    )
    assert call.input_tokens == 0
    assert call.unknown_keys == [
        "gen_ai.usage.input_token",
        "langfuse.observation.usage",
        "llm.token_count.prompts",
        "traceloop.something_new",
    ]


def test_unknown_keys_are_bounded() -> None:
    attributes = {"gen_ai.operation.name": "chat", **{f"gen_ai.x{i:03}": i for i in range(200)}}
    assert len(unknown_keys(span(attributes))) == 64


# --- counting --------------------------------------------------------------------------


def test_a_total_counting_cache_on_top_folds_it_into_input() -> None:
    # Some senders report Anthropic's raw usage: input without the cached tokens.
    call = call_of(
        {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 200,
         "gen_ai.usage.cache_read.input_tokens": 1000, "gen_ai.usage.output_tokens": 50,
         "gen_ai.usage.total_tokens": 1250}
    )  # fmt: skip
    assert (call.input_tokens, call.cache_read_tokens, call.output_tokens) == (1200, 1000, 50)


def test_a_total_agreeing_with_inclusive_counts_changes_nothing() -> None:
    call = call_of(
        {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 1200,
         "gen_ai.usage.cache_read.input_tokens": 1000, "gen_ai.usage.output_tokens": 50,
         "gen_ai.usage.total_tokens": 1250}
    )  # fmt: skip
    assert call.input_tokens == 1200


@pytest.mark.parametrize(
    ("attributes", "convention"),
    [
        ({"gen_ai.operation.name": "chat"}, "otel_genai"),
        ({"gen_ai.operation.name": "chat", "gen_ai.is_streaming": False}, "openllmetry"),
        ({"openinference.span.kind": "LLM", "gen_ai.request.model": "m"}, "openinference"),
        ({"langfuse.observation.type": "generation", "gen_ai.request.model": "m"}, "langfuse"),
        ({"model": "gpt-4o"}, ""),
    ],
)
def test_convention_is_the_most_specific_that_claims_the_span(
    attributes: dict[str, Any], convention: str
) -> None:
    assert call_of(attributes).convention == convention

"""Auto-instrumentation, proven with the real `openai` and `anthropic` clients.

The clients talk HTTP to the fake provider (tests/fake_provider.py), whose
token counts are deterministic, so every number here is exact. Nothing inside
the client libraries is patched by the tests: tokentrail's own instrumentation
is the only thing that touches them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from fake_provider import MODEL_SUFFIX, REPLY, count_tokens, received
from opentelemetry.trace import SpanKind, StatusCode
from sdk_harness import Traced
from sdk_harness import traced as sdk_traced

import tokentrail
from tokentrail import semconv
from tokentrail.instrumentation.anthropic import CONTENT_MODE_ENV

REPLY_TOKENS = count_tokens(REPLY)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TOOL_ARGUMENTS = '{"city": "fake"}'


@pytest.fixture
def traced() -> Iterator[Traced]:
    with sdk_traced(instrument=True) as initialised:
        yield initialised


@pytest.fixture
def traced_no_content() -> Iterator[Traced]:
    with sdk_traced(instrument=True, capture_content=False) as initialised:
        yield initialised


@pytest.fixture
def client(fake_provider: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_provider + "/v1", api_key="test", max_retries=0)


@pytest.fixture
def async_client(fake_provider: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake_provider + "/v1", api_key="test", max_retries=0)


@pytest.fixture
def claude(fake_provider: str) -> anthropic.Anthropic:
    """An anthropic client routed to the test's provider (it is not the global one)."""
    built = anthropic.Anthropic(base_url=fake_provider, api_key="test", max_retries=0)
    return tokentrail.instrument_anthropic(built)


def _json(attrs: dict[str, Any], key: str) -> Any:
    return json.loads(attrs[key])


def _usage(attrs: dict[str, Any]) -> dict[str, Any]:
    keys = (
        semconv.INPUT_TOKENS,
        semconv.OUTPUT_TOKENS,
        semconv.CACHE_READ_TOKENS,
        semconv.CACHE_WRITE_TOKENS,
        semconv.REASONING_TOKENS,
    )
    return {key: attrs[key] for key in keys if key in attrs}


# --- OpenAI chat completions ----------------------------------------------------------


def test_chat_span_follows_otel_genai(traced: Traced, client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "answer briefly"},
        {"role": "user", "content": "what is the weather today"},
    ]
    result = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        stop=["END"],
        seed=7,
        frequency_penalty=0.1,
        presence_penalty=0.3,
        prompt_cache_key="k1",  # the fake then reports half the prompt as cached
        reasoning_effort="low",  # ...and 2 reasoning tokens
    )
    span = traced.span("chat gpt-4o-mini")
    attrs = dict(span.attributes or {})
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "tokentrail"
    assert attrs[semconv.OPERATION_NAME] == "chat"
    assert attrs[semconv.PROVIDER_NAME] == "openai"
    assert attrs[semconv.SERVER_ADDRESS] == "127.0.0.1"
    assert isinstance(attrs[semconv.SERVER_PORT], int)
    assert attrs[semconv.REQUEST_MODEL] == "gpt-4o-mini"
    assert attrs[semconv.RESPONSE_MODEL] == "gpt-4o-mini" + MODEL_SUFFIX == result.model
    assert attrs[semconv.RESPONSE_ID] == result.id
    assert attrs[semconv.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[semconv.REQUEST_TEMPERATURE] == 0.2
    assert attrs[semconv.REQUEST_TOP_P] == 0.9
    assert attrs[semconv.REQUEST_MAX_TOKENS] == 50
    assert attrs[semconv.REQUEST_STOP_SEQUENCES] == ("END",)
    assert attrs[semconv.REQUEST_SEED] == 7
    assert attrs[semconv.REQUEST_FREQUENCY_PENALTY] == 0.1
    assert attrs[semconv.REQUEST_PRESENCE_PENALTY] == 0.3
    assert attrs[semconv.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] == "fp_fake"
    assert semconv.REQUEST_STREAM not in attrs
    # 2 + 5 prompt words, 3 of them cached; 5 reply words + 2 reasoning tokens.
    assert _usage(attrs) == {
        semconv.INPUT_TOKENS: 7,
        semconv.OUTPUT_TOKENS: REPLY_TOKENS + 2,
        semconv.CACHE_READ_TOKENS: 3,
        semconv.REASONING_TOKENS: 2,
    }
    assert _json(attrs, semconv.INPUT_MESSAGES) == [
        {"role": "system", "parts": [{"type": "text", "content": "answer briefly"}]},
        {"role": "user", "parts": [{"type": "text", "content": "what is the weather today"}]},
    ]
    assert _json(attrs, semconv.OUTPUT_MESSAGES) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": REPLY}],
            "finish_reason": "stop",
        }
    ]


def test_chat_stream_usage_from_final_chunk_and_time_to_first_chunk(
    traced: Traced, client: openai.OpenAI
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert isinstance(stream, openai.Stream)  # the proxy still passes for the client's type
    first = next(stream)
    assert traced.spans() == []  # open until the stream is done
    chunks = [first, *stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    span = traced.span("chat gpt-4o-mini")
    attrs = dict(span.attributes or {})
    assert attrs[semconv.REQUEST_STREAM] is True
    assert attrs[semconv.RESPONSE_ID] == chunks[0].id
    assert attrs[semconv.RESPONSE_FINISH_REASONS] == ("stop",)
    assert _usage(attrs) == {
        semconv.INPUT_TOKENS: 2,
        semconv.OUTPUT_TOKENS: REPLY_TOKENS,
        semconv.CACHE_READ_TOKENS: 0,
        semconv.REASONING_TOKENS: 0,
    }
    assert span.end_time is not None and span.start_time is not None
    ttft = attrs[semconv.RESPONSE_TIME_TO_FIRST_CHUNK]
    assert 0 < ttft < (span.end_time - span.start_time) / 1e9
    assert _json(attrs, semconv.OUTPUT_MESSAGES)[0]["parts"] == [{"type": "text", "content": REPLY}]


def test_chat_stream_ends_span_on_early_close_exit_and_garbage(
    traced: Traced, client: openai.OpenAI
) -> None:
    def stream(model: str) -> Any:
        return client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True
        )

    with stream("closed-by-with") as chunks:
        next(chunks)
        next(chunks)
    closed = stream("closed-by-close")
    next(closed)
    closed.close()
    closed.close()  # a second close ends nothing twice
    dropped = stream("dropped")
    next(dropped)
    del dropped
    gc.collect()
    names = sorted(s.name for s in traced.spans())
    assert names == ["chat closed-by-close", "chat closed-by-with", "chat dropped"]
    # Two chunks were read (role, then the first word): the partial reply is kept.
    partial = _json(traced.attrs("chat closed-by-with"), semconv.OUTPUT_MESSAGES)
    assert partial[0]["parts"] == [{"type": "text", "content": "Hello"}]
    # Without stream_options.include_usage the API sends no usage: none is invented.
    assert semconv.INPUT_TOKENS not in traced.attrs("chat closed-by-with")


def test_chat_stream_helper_is_traced(traced: Traced, client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == REPLY
    attrs = traced.attrs("chat gpt-4o-mini")
    assert attrs[semconv.OUTPUT_TOKENS] == REPLY_TOKENS
    assert semconv.RESPONSE_TIME_TO_FIRST_CHUNK in attrs


def test_chat_tool_calls_whole_and_streamed(traced: Traced, client: openai.OpenAI) -> None:
    asked = [{"role": "user", "content": "weather in Paris"}]
    result = client.chat.completions.create(
        model="whole",
        messages=asked,
        tools=[WEATHER_TOOL],
    )
    call = result.choices[0].message.tool_calls[0]
    answered = [
        *asked,
        result.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    client.chat.completions.create(model="answer", messages=answered, tools=[WEATHER_TOOL])
    for _ in client.chat.completions.create(
        model="streamed",
        messages=asked,
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    ):
        pass
    expected_call = {
        "type": "tool_call",
        "id": "call_1",
        "name": "get_weather",
        "arguments": TOOL_ARGUMENTS,
    }
    for name in ("chat whole", "chat streamed"):
        attrs = traced.attrs(name)
        assert attrs[semconv.RESPONSE_FINISH_REASONS] == ("tool_calls",)
        output = _json(attrs, semconv.OUTPUT_MESSAGES)
        assert output == [
            {"role": "assistant", "parts": [expected_call], "finish_reason": "tool_calls"}
        ]
        assert attrs[semconv.OUTPUT_TOKENS] == count_tokens(f"get_weather {TOOL_ARGUMENTS}")
    history = _json(traced.attrs("chat answer"), semconv.INPUT_MESSAGES)
    assert history[1]["parts"] == [expected_call]
    assert history[2] == {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "call_1", "response": "sunny"}],
    }


def test_raw_response_and_parse_are_traced(traced: Traced, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="raw", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["content-type"] == "application/json"
    completion = raw.parse()
    assert completion.choices[0].message.content == REPLY
    attrs = traced.attrs("chat raw")
    assert attrs[semconv.RESPONSE_ID] == completion.id
    assert attrs[semconv.OUTPUT_TOKENS] == REPLY_TOKENS
    parsed = client.chat.completions.parse(
        model="parsed", messages=[{"role": "user", "content": "hi"}]
    )
    assert traced.attrs("chat parsed")[semconv.RESPONSE_ID] == parsed.id


# --- OpenAI Responses API and embeddings ----------------------------------------------


def test_responses_api(traced: Traced, client: openai.OpenAI) -> None:
    result = client.responses.create(
        model="gpt-5",
        instructions="be kind",
        input="tell me a joke please",
        prompt_cache_key="k",
        reasoning={"effort": "medium"},
        max_output_tokens=100,
        temperature=0.5,
    )
    attrs = traced.attrs("chat gpt-5")
    assert attrs[semconv.PROVIDER_NAME] == "openai"
    assert attrs[semconv.RESPONSE_ID] == result.id
    assert attrs[semconv.RESPONSE_MODEL] == "gpt-5" + MODEL_SUFFIX
    assert attrs[semconv.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[semconv.REQUEST_MAX_TOKENS] == 100
    assert attrs[semconv.REQUEST_TEMPERATURE] == 0.5
    # 2 instruction words + 5 input words, 3 cached; medium effort = 4 reasoning tokens.
    assert _usage(attrs) == {
        semconv.INPUT_TOKENS: 7,
        semconv.OUTPUT_TOKENS: REPLY_TOKENS + 4,
        semconv.CACHE_READ_TOKENS: 3,
        semconv.REASONING_TOKENS: 4,
    }
    assert _json(attrs, semconv.SYSTEM_INSTRUCTIONS) == [{"type": "text", "content": "be kind"}]
    assert _json(attrs, semconv.INPUT_MESSAGES) == [
        {"role": "user", "parts": [{"type": "text", "content": "tell me a joke please"}]}
    ]
    assert _json(attrs, semconv.OUTPUT_MESSAGES) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": REPLY}],
            "finish_reason": "stop",
        }
    ]


def test_responses_api_stream_and_truncation(traced: Traced, client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model="gpt-5",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "hi there"}]}],
            max_output_tokens=2,  # the fake stops after two words
            stream=True,
        )
    )
    assert events[-1].type == "response.incomplete"
    attrs = traced.attrs("chat gpt-5")
    assert attrs[semconv.REQUEST_STREAM] is True
    assert attrs[semconv.RESPONSE_FINISH_REASONS] == ("length",)
    assert _usage(attrs) == {
        semconv.INPUT_TOKENS: 2,
        semconv.OUTPUT_TOKENS: 2,
        semconv.CACHE_READ_TOKENS: 0,
        semconv.REASONING_TOKENS: 0,
    }
    assert attrs[semconv.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert _json(attrs, semconv.INPUT_MESSAGES) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi there"}]}
    ]
    output = _json(attrs, semconv.OUTPUT_MESSAGES)
    assert output[0]["parts"] == [{"type": "text", "content": "Hello from"}]


def test_responses_api_tool_call(traced: Traced, client: openai.OpenAI) -> None:
    tool = {"type": "function", **WEATHER_TOOL["function"]}
    result = client.responses.create(model="tools", input="weather?", tools=[tool])
    call = result.output[0]
    client.responses.create(
        model="answer",
        input=[
            {"role": "user", "content": "weather?"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
        tools=[tool],
    )
    attrs = traced.attrs("chat tools")
    assert attrs[semconv.RESPONSE_FINISH_REASONS] == ("tool_calls",)
    part = _json(attrs, semconv.OUTPUT_MESSAGES)[0]["parts"][0]
    assert part == {
        "type": "tool_call",
        "id": "call_1",
        "name": "get_weather",
        "arguments": TOOL_ARGUMENTS,
    }
    history = _json(traced.attrs("chat answer"), semconv.INPUT_MESSAGES)
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[1]["parts"] == [part]
    assert history[2]["parts"][0]["response"] == "sunny"


def test_embeddings(traced: Traced, client: openai.OpenAI) -> None:
    result = client.embeddings.create(
        model="text-embedding-3-small", input=["one two", "three"], dimensions=4
    )
    assert len(result.data) == 2 and len(result.data[0].embedding) == 4
    span = traced.span("embeddings text-embedding-3-small")
    attrs = dict(span.attributes or {})
    assert span.kind is SpanKind.CLIENT
    assert attrs[semconv.OPERATION_NAME] == "embeddings"
    assert attrs[semconv.EMBEDDINGS_DIMENSION_COUNT] == 4
    assert attrs[semconv.RESPONSE_MODEL] == "text-embedding-3-small" + MODEL_SUFFIX
    assert attrs[semconv.INPUT_TOKENS] == 3
    assert semconv.INPUT_MESSAGES not in attrs


# --- async ----------------------------------------------------------------------------


def test_async_client(traced: Traced, async_client: openai.AsyncOpenAI) -> None:
    async def run() -> list[str]:
        with tokentrail.feature("async-feature", user_id="u9"):
            await async_client.chat.completions.create(
                model="async-chat", messages=[{"role": "user", "content": "one two three"}]
            )
            stream = await async_client.chat.completions.create(
                model="async-stream",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            assert isinstance(stream, openai.AsyncStream)
            async with stream:
                texts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            events = await async_client.responses.create(
                model="async-responses", input="hi", stream=True
            )
            kinds = [event.type async for event in events]
            await async_client.embeddings.create(model="async-embed", input="a b c d")
        return ["".join(texts), kinds[-1]]

    assert asyncio.run(run()) == [REPLY, "response.completed"]
    assert traced.attrs("chat async-chat")[semconv.INPUT_TOKENS] == 3
    streamed = traced.attrs("chat async-stream")
    assert streamed[semconv.OUTPUT_TOKENS] == REPLY_TOKENS
    assert streamed[semconv.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert traced.attrs("chat async-responses")[semconv.OUTPUT_TOKENS] == REPLY_TOKENS
    assert traced.attrs("embeddings async-embed")[semconv.INPUT_TOKENS] == 4
    for name in ("chat async-chat", "chat async-stream", "embeddings async-embed"):
        assert traced.attrs(name)[semconv.FEATURE] == "async-feature"
        assert traced.attrs(name)[semconv.USER_ID] == "u9"


# --- errors, capture, attribution -----------------------------------------------------


def test_error_marks_span_and_propagates_the_clients_exception(
    traced: Traced, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(
            model="error-429", messages=[{"role": "user", "content": "x"}]
        )
    error = raised.value
    # The very object openai raised: it passed through tokentrail's wrapper, yet
    # its traceback still starts inside the client (a copy would start in ours).
    frames = [frame.filename for frame in traceback.extract_tb(error.__traceback__)]
    assert any(name.endswith(os.path.join("instrumentation", "_openai_call.py")) for name in frames)
    assert os.sep + "openai" + os.sep in frames[-1]
    assert not isinstance(error.__context__, openai.OpenAIError)
    assert error.status_code == 429
    span = traced.span("chat error-429")
    attrs = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attrs[semconv.ERROR_TYPE] == "RateLimitError"
    assert attrs[semconv.HTTP_RESPONSE_STATUS_CODE] == 429
    assert [e.name for e in span.events] == ["exception"]

    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="error-500", input="x")
    assert traced.attrs("embeddings error-500")[semconv.ERROR_TYPE] == "InternalServerError"


def test_error_in_the_middle_of_a_stream(traced: Traced, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="error-midstream", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    span = traced.span("chat error-midstream")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})[semconv.ERROR_TYPE] == "APIError"


def test_capture_off_records_no_content(
    traced_no_content: Traced, client: openai.OpenAI, fake_provider: str
) -> None:
    client.chat.completions.create(model="quiet", messages=[{"role": "user", "content": "secret"}])
    client.responses.create(model="quiet-responses", instructions="secret", input="secret")
    for _ in client.chat.completions.create(
        model="quiet-stream", messages=[{"role": "user", "content": "secret"}], stream=True
    ):
        pass
    claude = tokentrail.instrument_anthropic(
        anthropic.Anthropic(base_url=fake_provider, api_key="test", max_retries=0)
    )
    claude.messages.create(
        model="claude-quiet", max_tokens=50, messages=[{"role": "user", "content": "secret"}]
    )
    content_keys = {semconv.INPUT_MESSAGES, semconv.OUTPUT_MESSAGES, semconv.SYSTEM_INSTRUCTIONS}
    spans = traced_no_content.spans()
    assert len(spans) == 4
    for span in spans:
        attrs = dict(span.attributes or {})
        assert not content_keys & attrs.keys(), span.name
        assert semconv.OUTPUT_TOKENS in attrs or span.name == "chat quiet-stream"


def test_feature_user_session_reach_every_llm_span(
    traced: Traced, client: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    with tokentrail.feature("support-chat", user_id="u1", session_id="s1"):
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])
        claude.messages.create(
            model="claude-m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    root = traced.span("support-chat")
    expected = {semconv.FEATURE: "support-chat", semconv.USER_ID: "u1", semconv.SESSION_ID: "s1"}
    for name in ("chat m1", "anthropic.messages.create"):
        span = traced.span(name)
        assert expected.items() <= dict(span.attributes or {}).items(), name
        assert span.parent is not None and span.parent.span_id == root.context.span_id


def test_a_fault_in_tokentrail_code_never_reaches_the_caller(
    traced: Traced, client: openai.OpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tokentrail")
    # The fake answers 200 with the right keys holding the wrong types; the
    # client does not validate, so tokentrail's response reader is what breaks.
    results = [
        client.chat.completions.create(
            model="malformed", messages=[{"role": "user", "content": "x"}]
        )
        for _ in range(2)
    ]
    assert [r.choices for r in results] == [5, 5]  # the client's own result, unchanged
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "chat.completions.create" in warnings[0].getMessage()
    assert [s.name for s in traced.spans()] == ["chat malformed", "chat malformed"]


# --- anthropic (its own tracing, configured by tokentrail) ----------------------------


def _cached_prompt() -> dict[str, Any]:
    text = {
        "type": "text",
        "text": "alpha beta gamma delta",
        "cache_control": {"type": "ephemeral"},
    }
    return {
        "model": "claude-test",
        "max_tokens": 100,
        "system": "be terse now please",
        "messages": [{"role": "user", "content": [text]}],
    }


# 8 prompt words: the fake reads half from cache, writes a quarter, and bills 2 as
# plain input; OTel's input_tokens counts all 8.
ANTHROPIC_USAGE = {
    semconv.INPUT_TOKENS: 8,
    semconv.OUTPUT_TOKENS: REPLY_TOKENS,
    semconv.CACHE_READ_TOKENS: 4,
    "gen_ai.usage.cache_write.input_tokens": 2,
}


def _anthropic_usage(attrs: dict[str, Any]) -> dict[str, Any]:
    return {key: attrs[key] for key in ANTHROPIC_USAGE if key in attrs}


def test_anthropic_messages_traced_by_its_own_sdk(
    traced: Traced, claude: anthropic.Anthropic
) -> None:
    message = claude.messages.create(**_cached_prompt())
    span = traced.span("anthropic.messages.create")
    attrs = dict(span.attributes or {})
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "com.anthropic.sdk.python"
    assert span.kind is SpanKind.CLIENT
    assert attrs[semconv.PROVIDER_NAME] == "anthropic"
    assert attrs[semconv.RESPONSE_ID] == message.id
    assert attrs[semconv.RESPONSE_MODEL] == "claude-test" + MODEL_SUFFIX
    assert _anthropic_usage(attrs) == ANTHROPIC_USAGE
    assert _json(attrs, semconv.SYSTEM_INSTRUCTIONS) == [
        {"type": "text", "content": "be terse now please"}
    ]
    output = _json(attrs, semconv.OUTPUT_MESSAGES)
    assert output[0]["parts"] == [{"type": "text", "content": REPLY}]
    assert len([s for s in traced.spans() if "messages" in s.name]) == 1  # not wrapped twice


def test_anthropic_stream(traced: Traced, claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(**_cached_prompt()) as stream:
        text = "".join(stream.text_stream)
    assert text == REPLY
    attrs = traced.attrs("anthropic.messages.create")
    assert attrs[semconv.REQUEST_STREAM] is True
    assert _anthropic_usage(attrs) == ANTHROPIC_USAGE
    assert attrs[semconv.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert _json(attrs, semconv.INPUT_MESSAGES)[0]["parts"] == [
        {"type": "text", "content": "alpha beta gamma delta"}
    ]


def test_anthropic_error(traced: Traced, claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(
            model="error-429", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    span = traced.span("anthropic.messages.create")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})[semconv.ERROR_TYPE] == "rate_limit_error"


def test_anthropic_through_the_global_provider(fake_provider: str) -> None:
    """What `init()` alone gives an app, in a fresh interpreter (OTel globals are per process)."""
    script = f"""
        import json, os, anthropic, tokentrail
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        before = anthropic.Anthropic(base_url="{fake_provider}", api_key="t", max_retries=0)
        exporter = InMemorySpanExporter()
        tokentrail.init(exporter=exporter)  # becomes the global provider
        after = anthropic.Anthropic(base_url="{fake_provider}", api_key="t", max_retries=0)
        ask = dict(model="claude-g", max_tokens=10, messages=[{{"role": "user", "content": "x"}}])
        with tokentrail.feature("global-feature", user_id="u7"):
            after.messages.create(**ask)
            before.messages.create(**ask)
        tokentrail.flush()
        mode = os.environ.get("{CONTENT_MODE_ENV}")
        tokentrail.shutdown()
        print(json.dumps({{
            "spans": [dict(s.attributes) for s in exporter.get_finished_spans()],
            "mode": mode,
            "mode_after_shutdown": os.environ.get("{CONTENT_MODE_ENV}"),
        }}))
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENTRAIL_"))}
    env.pop(CONTENT_MODE_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mode"] == "content" and result["mode_after_shutdown"] is None
    llm = [s for s in result["spans"] if s.get(semconv.OPERATION_NAME) == "chat"]
    assert len(llm) == 2
    for attrs in llm:
        assert attrs[semconv.FEATURE] == "global-feature" and attrs[semconv.USER_ID] == "u7"
        assert attrs[semconv.OUTPUT_TOKENS] == REPLY_TOKENS
    # The client built after init() captures content; the one built before keeps
    # the mode it was built with (see tokentrail.instrument_anthropic).
    assert semconv.INPUT_MESSAGES in llm[0] and semconv.INPUT_MESSAGES not in llm[1]


# --- switching instrumentation on and off ---------------------------------------------


def test_init_can_leave_libraries_alone(client: openai.OpenAI) -> None:
    with sdk_traced(instrument=False) as traced:
        client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "x"}])
        assert [s.name for s in traced.spans()] == []
        assert CONTENT_MODE_ENV not in os.environ or os.environ[CONTENT_MODE_ENV] != "content"
    with sdk_traced(instrument=("anthropic",)) as traced:
        client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "x"}])
        assert [s.name for s in traced.spans()] == []


def test_instrument_one_client_only_and_never_twice(fake_provider: str) -> None:
    with sdk_traced(instrument=False) as traced:
        mine = openai.OpenAI(base_url=fake_provider + "/v1", api_key="t", max_retries=0)
        other = openai.OpenAI(base_url=fake_provider + "/v1", api_key="t", max_retries=0)
        assert tokentrail.instrument_openai(mine) is mine
        tokentrail.instrument_openai(mine)  # again: still one span per call
        ask: Any = {"messages": [{"role": "user", "content": "x"}]}
        mine.chat.completions.create(model="mine", **ask)
        other.chat.completions.create(model="other", **ask)
        tokentrail.instrument_openai()  # classes too: `mine` must not get two spans
        mine.chat.completions.create(model="mine-again", **ask)
        other.chat.completions.create(model="other-now", **ask)
        names = sorted(s.name for s in traced.spans())
        assert names == ["chat mine", "chat mine-again", "chat other-now"]
        tokentrail.uninstrument()
        mine.chat.completions.create(model="gone", **ask)
        other.chat.completions.create(model="gone", **ask)
        assert "chat gone" not in [s.name for s in traced.spans()]


def test_fake_provider_exposes_what_it_received(
    traced: Traced, client: openai.OpenAI, fake_provider: str
) -> None:
    client.chat.completions.create(model="seen", messages=[{"role": "user", "content": "x"}])
    seen = [r for r in received(fake_provider) if (r["body"] or {}).get("model") == "seen"]
    assert seen[-1]["path"] == "/v1/chat/completions"
    assert seen[-1]["headers"]["authorization"] == "Bearer test"

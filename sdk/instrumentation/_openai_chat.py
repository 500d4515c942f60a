"""OpenAI Chat Completions: request attributes, response outcome, stream folding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.util.types import AttributeValue

from tokentrail import semconv
from tokentrail.content import encode_messages, to_messages
from tokentrail.instrumentation._spans import (
    Kind,
    Outcome,
    field_of,
    integer,
    request_params,
    text_part,
    tool_call_part,
)

OPERATION = "chat"

PARAMS: tuple[tuple[str, str, Kind], ...] = (
    ("temperature", semconv.REQUEST_TEMPERATURE, "number"),
    ("top_p", semconv.REQUEST_TOP_P, "number"),
    ("max_tokens", semconv.REQUEST_MAX_TOKENS, "int"),
    # The newer name wins when both are given, as it does at the API.
    ("max_completion_tokens", semconv.REQUEST_MAX_TOKENS, "int"),
    ("frequency_penalty", semconv.REQUEST_FREQUENCY_PENALTY, "number"),
    ("presence_penalty", semconv.REQUEST_PRESENCE_PENALTY, "number"),
    ("stop", semconv.REQUEST_STOP_SEQUENCES, "str[]"),
    ("seed", semconv.REQUEST_SEED, "int"),
    ("service_tier", semconv.OPENAI_REQUEST_SERVICE_TIER, "str"),
)


def request_attributes(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attributes = request_params(kwargs, PARAMS)
    n = integer(kwargs.get("n"))
    if n is not None and n != 1:
        attributes[semconv.REQUEST_CHOICE_COUNT] = n
    output_type = output_type_of(kwargs.get("response_format"))
    if output_type is not None:
        attributes[semconv.OUTPUT_TYPE] = output_type
    return attributes


def output_type_of(response_format: Any) -> str | None:
    kind = field_of(response_format, "type") if response_format is not None else None
    if kind in ("json_object", "json_schema"):
        return "json"
    return "text" if kind == "text" else None


def content_attributes(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """The prompt; system messages stay in it, as they are part of the chat history."""
    messages = kwargs.get("messages")
    if not isinstance(messages, (list, tuple)):
        messages = list(messages) if messages is not None else []
    return {semconv.INPUT_MESSAGES: encode_messages(to_messages(messages, "user"))}


def assistant_message(
    text: str | None, tool_calls: list[dict[str, Any]], finish_reason: str | None
) -> dict[str, Any]:
    """One choice as an OTel GenAI output message (shared by whole and streamed responses)."""
    parts = [text_part(text)] if text else []
    parts.extend(tool_calls)
    message: dict[str, Any] = {"role": "assistant", "parts": parts}
    if finish_reason:
        message["finish_reason"] = finish_reason
    return message


def usage_into(outcome: Outcome, usage: Any) -> None:
    if usage is None:
        return
    outcome.input_tokens = usage.prompt_tokens  # includes cached tokens, as OTel wants
    outcome.output_tokens = usage.completion_tokens  # includes reasoning tokens
    prompt_details = usage.prompt_tokens_details
    if prompt_details is not None:
        outcome.cache_read_tokens = prompt_details.cached_tokens
    completion_details = usage.completion_tokens_details
    if completion_details is not None:
        outcome.reasoning_tokens = completion_details.reasoning_tokens


def _openai_extras(outcome: Outcome, fingerprint: Any, service_tier: Any) -> None:
    outcome.set_extra(semconv.OPENAI_RESPONSE_SYSTEM_FINGERPRINT, fingerprint)
    outcome.set_extra(semconv.OPENAI_RESPONSE_SERVICE_TIER, service_tier)


def outcome(completion: Any, capture: bool) -> Outcome:
    """A ChatCompletion (or ParsedChatCompletion) as an Outcome."""
    choices = completion.choices
    result = Outcome(
        response_id=completion.id,
        response_model=completion.model,
        finish_reasons=[str(c.finish_reason) for c in choices if c.finish_reason] or None,
    )
    usage_into(result, completion.usage)
    _openai_extras(result, completion.system_fingerprint, completion.service_tier)
    if capture:
        messages = []
        for choice in choices:
            message = choice.message
            calls = [
                tool_call_part(call.id, call.function.name, call.function.arguments)
                for call in message.tool_calls or ()
                if getattr(call, "function", None) is not None
            ]
            messages.append(assistant_message(message.content, calls, choice.finish_reason))
        result.output_messages = messages
    return result


class _Choice:
    __slots__ = ("finish_reason", "text", "tool_calls")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.tool_calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]
        self.finish_reason: str | None = None


class StreamAccumulator:
    """Folds ChatCompletionChunks; usage arrives in the final chunk when the caller
    asked for it with `stream_options={"include_usage": True}`."""

    __slots__ = ("_capture", "_choices", "_fingerprint", "_id", "_model", "_tier", "_usage")

    def __init__(self, capture: bool) -> None:
        self._capture = capture
        self._id: Any = None
        self._model: Any = None
        self._fingerprint: Any = None
        self._tier: Any = None
        self._usage: Any = None
        self._choices: dict[int, _Choice] = {}

    def feed(self, chunk: Any) -> bool:
        if self._id is None:
            self._id, self._model = chunk.id, chunk.model
        if chunk.usage is not None:
            self._usage = chunk.usage
        self._fingerprint = chunk.system_fingerprint or self._fingerprint
        self._tier = chunk.service_tier or self._tier
        output = False
        for choice in chunk.choices:
            state = self._choices.get(choice.index)
            if state is None:
                state = self._choices[choice.index] = _Choice()
            if choice.finish_reason:
                state.finish_reason = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                output = True
                if self._capture:
                    state.text.append(delta.content)
            if delta.tool_calls:
                output = True
                if self._capture:
                    self._fold_tool_calls(state, delta.tool_calls)
        return output

    @staticmethod
    def _fold_tool_calls(state: _Choice, deltas: list[Any]) -> None:
        for delta in deltas:
            call = state.tool_calls.setdefault(delta.index, [None, None, []])
            call[0] = delta.id or call[0]
            function = delta.function
            if function is not None:
                call[1] = function.name or call[1]
                if function.arguments:
                    call[2].append(function.arguments)

    def outcome(self) -> Outcome:
        choices = [self._choices[index] for index in sorted(self._choices)]
        result = Outcome(
            response_id=self._id,
            response_model=self._model,
            finish_reasons=[c.finish_reason for c in choices if c.finish_reason] or None,
        )
        usage_into(result, self._usage)
        _openai_extras(result, self._fingerprint, self._tier)
        if self._capture:
            result.output_messages = [
                assistant_message(
                    "".join(choice.text),
                    [
                        tool_call_part(call_id, name, "".join(pieces))
                        for call_id, name, pieces in (
                            choice.tool_calls[i] for i in sorted(choice.tool_calls)
                        )
                    ],
                    choice.finish_reason,
                )
                for choice in choices
            ]
        return result

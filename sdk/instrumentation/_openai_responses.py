"""OpenAI Responses API: request attributes, response outcome, stream folding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.util.types import AttributeValue

from tokentrail import semconv
from tokentrail.content import encode_messages
from tokentrail.instrumentation._openai_chat import output_type_of
from tokentrail.instrumentation._spans import (
    Kind,
    Outcome,
    field_of,
    request_params,
    text_part,
    tool_call_part,
)

OPERATION = "chat"  # OTel GenAI names Responses API calls "chat" too

PARAMS: tuple[tuple[str, str, Kind], ...] = (
    ("temperature", semconv.REQUEST_TEMPERATURE, "number"),
    ("top_p", semconv.REQUEST_TOP_P, "number"),
    ("max_output_tokens", semconv.REQUEST_MAX_TOKENS, "int"),
    ("service_tier", semconv.OPENAI_REQUEST_SERVICE_TIER, "str"),
)

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
# Why a response stopped, in the finish-reason words chat completions use.
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def request_attributes(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attributes = request_params(kwargs, PARAMS)
    output_type = output_type_of(field_of(kwargs.get("text"), "format"))
    if output_type is not None:
        attributes[semconv.OUTPUT_TYPE] = output_type
    return attributes


def content_attributes(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    instructions = kwargs.get("instructions")
    if isinstance(instructions, str):
        attributes[semconv.SYSTEM_INSTRUCTIONS] = encode_messages([text_part(instructions)])
    items = kwargs.get("input")
    if isinstance(items, str):
        messages = [{"role": "user", "parts": [text_part(items)]}]
    else:
        messages = [m for m in map(_input_message, items or ()) if m is not None]
    if messages:
        attributes[semconv.INPUT_MESSAGES] = encode_messages(messages)
    return attributes


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    parts = []
    for part in content or ():
        kind = field_of(part, "type")
        if kind in _TEXT_PARTS:
            parts.append(text_part(str(field_of(part, "text"))))
        elif kind == "refusal":
            parts.append(text_part(str(field_of(part, "refusal"))))
        else:  # images, files, audio: name the kind, never copy the payload
            parts.append({"type": str(kind)})
    return parts


def _input_message(item: Any) -> dict[str, Any] | None:
    """One Responses input item as an OTel message; reasoning and references are skipped."""
    kind = field_of(item, "type")
    role = field_of(item, "role")
    if role is not None and kind in (None, "message"):
        return {"role": str(role), "parts": _parts(field_of(item, "content"))}
    if kind == "function_call":
        call = tool_call_part(
            field_of(item, "call_id"), field_of(item, "name"), field_of(item, "arguments")
        )
        return {"role": "assistant", "parts": [call]}
    if kind == "function_call_output":
        response = {
            "type": "tool_call_response",
            "id": field_of(item, "call_id"),
            "response": field_of(item, "output"),
        }
        return {"role": "tool", "parts": [response]}
    return None


def _output_parts(items: Any) -> tuple[list[dict[str, Any]], bool]:
    """(parts of the assistant message, whether it calls a tool)."""
    parts: list[dict[str, Any]] = []
    calls_tool = False
    for item in items or ():
        kind = item.type
        if kind == "message":
            parts.extend(_parts(item.content))
        elif kind == "function_call":
            calls_tool = True
            parts.append(tool_call_part(item.call_id, item.name, item.arguments))
        elif kind == "reasoning":
            summary = " ".join(s.text for s in item.summary or () if getattr(s, "text", None))
            if summary:
                parts.append({"type": "reasoning", "content": summary})
    return parts, calls_tool


def _finish_reason(response: Any, calls_tool: bool) -> str:
    status = response.status
    if status == "incomplete":
        reason = getattr(response.incomplete_details, "reason", None)
        return _INCOMPLETE.get(str(reason), str(reason))
    if status == "failed":
        return "error"
    return "tool_calls" if calls_tool else "stop"


def outcome(response: Any, capture: bool) -> Outcome:
    """A Response as an Outcome."""
    parts, calls_tool = _output_parts(response.output)
    finish = _finish_reason(response, calls_tool)
    result = Outcome(
        response_id=response.id, response_model=response.model, finish_reasons=[finish]
    )
    usage = response.usage
    if usage is not None:
        result.input_tokens = usage.input_tokens  # includes cached tokens
        result.output_tokens = usage.output_tokens  # includes reasoning tokens
        if usage.input_tokens_details is not None:
            result.cache_read_tokens = usage.input_tokens_details.cached_tokens
        if usage.output_tokens_details is not None:
            result.reasoning_tokens = usage.output_tokens_details.reasoning_tokens
    result.set_extra(semconv.OPENAI_RESPONSE_SERVICE_TIER, getattr(response, "service_tier", None))
    if capture and parts:
        result.output_messages = [{"role": "assistant", "parts": parts, "finish_reason": finish}]
    return result


_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_OUTPUT_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.refusal.delta",
    }
)


class StreamAccumulator:
    """Folds Responses stream events; the final event carries the whole response,
    so deltas are kept only for a stream closed before it arrives."""

    __slots__ = ("_capture", "_final", "_started", "_text")

    def __init__(self, capture: bool) -> None:
        self._capture = capture
        self._started: Any = None  # the response as of response.created
        self._final: Any = None
        self._text: list[str] = []

    def feed(self, event: Any) -> bool:
        kind = event.type
        if kind in _OUTPUT_EVENTS:
            if self._capture and kind == "response.output_text.delta":
                self._text.append(event.delta)
            return True
        if kind in _FINAL_EVENTS:
            self._final = event.response
        elif kind == "response.created":
            self._started = event.response
        return False

    def outcome(self) -> Outcome:
        if self._final is not None:
            return outcome(self._final, self._capture)
        started = self._started
        partial = Outcome(
            response_id=getattr(started, "id", None), response_model=getattr(started, "model", None)
        )
        if self._capture and self._text:
            message = {"role": "assistant", "parts": [text_part("".join(self._text))]}
            partial.output_messages = [message]
        return partial

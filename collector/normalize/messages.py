"""Prompt and completion in one shape, whichever convention carried them.

Stored content is a JSON array of OTel GenAI messages: ``[{"role": ..., "parts":
[{"type": "text", "content": ...}, {"type": "tool_call", "id", "name",
"arguments"}, {"type": "tool_call_response", "id", "response"}, {"type": "uri",
"modality", "uri"}, ...], "finish_reason"?}]``. Current OTel senders already
send that; this module converts the provider-shaped bodies the other
conventions carry ({role, content, tool_calls}, request and response JSON).

Input is untrusted: anything that is not the expected shape becomes text
rather than raising, so a malformed prompt never drops a batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tokentrail.collector.normalize.base import parse_json, text

Message = dict[str, Any]


def dumps(value: Any) -> str:
    # default=str: OTLP bytes values must not make a prompt unstorable.
    return json.dumps(value, ensure_ascii=False, default=str)


def text_part(content: Any) -> dict[str, Any]:
    return {"type": "text", "content": content}


def structured(value: Any) -> Any:
    """A value that may arrive as a JSON string because its sender flattened it."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        parsed = parse_json(value)
        return value if parsed is None else parsed
    return value


def _part(item: Any) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        return text_part(item)
    kind = item.get("type")
    # OpenAI and Anthropic spell text blocks {"type": "text", "text"}; OTel "content".
    if kind in ("text", "input_text", "output_text") and "text" in item:
        return text_part(item["text"])
    if kind == "image_url" and isinstance(item.get("image_url"), Mapping):
        return {"type": "uri", "modality": "image", "uri": item["image_url"].get("url")}
    return dict(item)


def parts_of(content: Any) -> list[dict[str, Any]]:
    """Message content (text, or a list of typed blocks) as OTel parts."""
    if content in (None, "", [], {}):
        return []
    if isinstance(content, list):
        return [_part(item) for item in content]
    return [text_part(content)]


def decoded_blocks(content: Any) -> Any:
    """Content some senders JSON-encode when it is a list of typed blocks, decoded.

    Only a list whose every item is a typed block is decoded: user text that
    merely looks like JSON ("[1, 2]") stays text.
    """
    if isinstance(content, str) and content.lstrip().startswith("["):
        parsed = parse_json(content)
        if (
            isinstance(parsed, list)
            and parsed
            and all(isinstance(item, Mapping) and "type" in item for item in parsed)
        ):
            return parsed
    return content


def _tool_call(call: Any) -> dict[str, Any] | None:
    if not isinstance(call, Mapping):
        return None
    function = call.get("function")
    function = function if isinstance(function, Mapping) else call
    return {
        "type": "tool_call",
        "id": call.get("id"),
        "name": function.get("name"),
        "arguments": function.get("arguments"),
    }


def message_of(body: Mapping[str, Any], role: str) -> Message:
    """A provider-shaped message {role, content, tool_calls, tool_call_id} as an OTel message."""
    role = text(body.get("role")) or role
    content = body.get("content")
    if role == "tool":
        # A tool result: OTel carries it as the call's response, not as text.
        call_id = body.get("tool_call_id", body.get("id"))
        parts = (
            []
            if content in (None, "")
            else [{"type": "tool_call_response", "id": call_id, "response": content}]
        )
    else:
        parts = parts_of(content)
    calls = structured(body.get("tool_calls"))
    if isinstance(calls, list):
        parts += [part for call in calls if (part := _tool_call(call))]
    legacy_call = structured(body.get("function_call"))  # OpenAI's pre-tools function calling
    if isinstance(legacy_call, Mapping) and (part := _tool_call(legacy_call)):
        parts.append(part)
    return {"role": role, "parts": parts}


def choice_of(body: Mapping[str, Any]) -> Message:
    """A response choice {index, finish_reason, message} as an assistant message."""
    inner = structured(body.get("message"))
    message = message_of(inner if isinstance(inner, Mapping) else body, "assistant")
    if (reason := text(body.get("finish_reason"))) is not None:
        message["finish_reason"] = reason
    return message


def _objects(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, Mapping) for i in value)


def messages_of(value: Any, role: str) -> list[Message]:
    """Whatever a convention put in its input/output value, as OTel messages.

    Knows message lists, chat request bodies (``messages``), chat responses
    (``choices``) and single messages; anything else is one ``role`` message
    holding the value as text, so nothing the sender captured is lost.
    """
    raw, value = value, structured(value)
    if value in (None, "", [], {}):
        return []
    if isinstance(value, Mapping):
        if _objects(value.get("messages")):
            return [message_of(item, role) for item in value["messages"]]
        if _objects(value.get("choices")):
            return [choice_of(item) for item in value["choices"]]
        if "role" in value or "content" in value:
            return [message_of(value, role)]
    elif isinstance(value, list) and all(
        isinstance(item, Mapping) and ("role" in item or "content" in item) for item in value
    ):
        return [message_of(item, role) for item in value]
    # As sent: a JSON text that is no known shape is kept byte for byte.
    return [{"role": role, "parts": [text_part(raw if isinstance(raw, str) else dumps(raw))]}]


def encode(messages: list[Message]) -> str:
    """Stored form of converted messages: "" when there are none."""
    return dumps(messages) if messages else ""

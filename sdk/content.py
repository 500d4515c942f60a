"""Prompt and completion content: provider-shaped messages → OTel GenAI message JSON.

Everything the SDK records as ``gen_ai.input.messages`` / ``gen_ai.output.messages``
goes through :func:`encode_messages`, so capture policy applies in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Messages = str | Mapping[str, Any] | Sequence[Any]


def to_messages(value: Messages, role: str) -> list[dict[str, Any]]:
    """Normalise prompt/completion input to OTel GenAI message dicts.

    `role` is used where the input does not say (a bare string).
    """
    if isinstance(value, str):
        return [{"role": role, "parts": [_text(value)]}]
    if isinstance(value, Mapping) or hasattr(value, "model_dump"):
        return [_message(value, role)]
    return [_message(item, role) for item in value]


def _message(item: Any, role: str) -> dict[str, Any]:
    if isinstance(item, str):
        return {"role": role, "parts": [_text(item)]}
    if hasattr(item, "model_dump"):  # provider SDK objects (pydantic models)
        item = item.model_dump(exclude_none=True)
    message = dict(item)
    if "parts" in message:
        return message  # already in OTel shape
    content = message.pop("content", None)
    parts = _parts(content)
    for call in message.pop("tool_calls", None) or ():
        function = call.get("function") or {}
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name"),
                "arguments": function.get("arguments"),
            }
        )
    if "tool_call_id" in message:
        # A tool result: OTel carries the content as the response, not as text.
        parts = [
            {
                "type": "tool_call_response",
                "id": message.pop("tool_call_id"),
                "response": content,
            }
        ]
    message.setdefault("role", role)
    message["parts"] = parts
    return message


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)]
    if isinstance(content, Sequence):
        parts: list[dict[str, Any]] = []
        for part in content:
            if isinstance(part, str):
                parts.append(_text(part))
            elif isinstance(part, Mapping) and part.get("type") == "text" and "text" in part:
                # OpenAI / Anthropic content blocks spell it "text", OTel "content".
                parts.append(_text(str(part["text"])))
            else:
                parts.append(dict(part) if isinstance(part, Mapping) else {"content": part})
        return parts
    return [_text(str(content))]


def _text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def encode_messages(messages: list[dict[str, Any]]) -> str:
    """The JSON text stored on the span."""
    return json.dumps(messages, ensure_ascii=False, default=str)

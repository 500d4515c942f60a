"""Prompt and completion content: provider-shaped messages → OTel GenAI message JSON.

Everything the SDK records as ``gen_ai.input.messages`` / ``gen_ai.output.messages``
goes through :func:`encode_messages`, so the content policy (redaction, then the
size limit) applies in one place, on the calling thread, before any span
processor or exporter sees the text. Whether content is captured at all is the
caller's check (`_runtime.capture_content`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from tokentrail._runtime import logger
from tokentrail._truncate import dumps, fit_json, fit_text, truncation_marker
from tokentrail.redaction import FAILED, RedactionError, Redactor, Rule, map_strings, marker

Messages = str | Mapping[str, Any] | Sequence[Any]

DEFAULT_MAX_CONTENT_CHARS = 16 * 1024
MAX_CONTENT_CHARS_ENV = "TOKENTRAIL_MAX_CONTENT_CHARS"
REDACT_ENV = "TOKENTRAIL_REDACT"
# Below this a limit would leave only the truncation marker.
_MIN_CONTENT_CHARS = 64
# How far past the limit a string is kept for redaction before the final cut.
_PRECUT_MARGIN = 4096

RedactSetting: TypeAlias = bool | Sequence[Rule] | Redactor | None
"""What ``init(redact=...)`` takes: True/None for the built-in patterns, False for no
redaction, a list of ``str -> str`` rules to run after the built-ins, or a
:class:`~tokentrail.redaction.Redactor` for full control (e.g. rules only)."""


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


def encode_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """The JSON text recorded on the span: redacted, then fitted to the size limit.

    Also takes a list of parts (``gen_ai.system_instructions``). If redaction
    fails, each message keeps its role but its parts are replaced by one
    ``[REDACTED:redaction_failed]`` text part: content is dropped, never sent
    unredacted.
    """
    return current_policy().encode(messages)


@dataclass(frozen=True)
class ContentPolicy:
    """How recorded content is cleaned: redaction, then the per-attribute size limit."""

    max_chars: int | None = DEFAULT_MAX_CONTENT_CHARS  # None: no limit
    redactor: Redactor | None = None

    def encode(self, value: Any) -> str:
        if self.redactor is None and self.max_chars is None:
            return dumps(value)
        try:
            value = map_strings(value, self._string, stringify=True)
        except RedactionError:
            return dumps(_withheld(value))
        return dumps(value) if self.max_chars is None else fit_json(value, self.max_chars)

    def _string(self, text: str) -> str:
        """One string of the content, redacted, and cut first when far over the limit.

        Only the first ``max_chars`` characters of a string can be kept, so a
        huge one (a long document in the prompt) is cut before redaction,
        bounding the work on the calling thread. A match the cut splits sits
        past the kept part, unless redaction shrank the text ahead of it by
        half the margin; then the whole string is redacted after all.
        """
        if self.max_chars is not None and len(text) > (bound := self.max_chars + _PRECUT_MARGIN):
            kept = self._redacted(text[:bound])
            if len(kept) >= bound - _PRECUT_MARGIN // 2:
                return kept + truncation_marker(len(text) - bound)
        return self._redacted(text)

    def _redacted(self, text: str) -> str:
        return text if self.redactor is None else self.redactor.text(text)

    def scrub(self, text: str) -> str:
        """The same policy for a content string someone else's instrumentation recorded.

        Raises RedactionError when redaction fails; the caller drops the value.
        """
        if self.redactor is not None:
            text = self.redactor.json_text(text)
        return text if self.max_chars is None else fit_text(text, self.max_chars)


def _withheld(value: Any) -> list[dict[str, Any]]:
    part = {"type": "text", "content": marker(FAILED)}
    if isinstance(value, Sequence) and all(isinstance(m, Mapping) and "role" in m for m in value):
        return [{"role": str(m["role"]), "parts": [part]} for m in value]
    return [part]


def content_policy(
    max_content_chars: int | None = None, redact: RedactSetting = None
) -> ContentPolicy:
    """The policy for these ``init()`` arguments, the environment filling what they leave open.

    ``max_content_chars``: else TOKENTRAIL_MAX_CONTENT_CHARS, else 16 KiB; 0
    means no limit. ``redact``: else TOKENTRAIL_REDACT (``builtin`` or ``off``),
    else the built-in patterns.
    """
    return ContentPolicy(_max_chars(max_content_chars), _redactor(redact))


def _max_chars(requested: int | None) -> int | None:
    raw: int | str = (
        requested if requested is not None else os.environ.get(MAX_CONTENT_CHARS_ENV, "")
    )
    try:
        limit = int(raw) if raw != "" else DEFAULT_MAX_CONTENT_CHARS
    except ValueError:
        limit = -1
    if limit == 0:
        return None
    if limit < _MIN_CONTENT_CHARS:
        logger.warning(
            "tokentrail: ignoring max_content_chars=%r (0 for no limit, else at least %d); "
            "using %d",
            raw,
            _MIN_CONTENT_CHARS,
            DEFAULT_MAX_CONTENT_CHARS,
        )
        return DEFAULT_MAX_CONTENT_CHARS
    return limit


def _redactor(setting: RedactSetting) -> Redactor | None:
    if isinstance(setting, Redactor):
        return setting if setting.active else None
    if setting is None:
        raw = os.environ.get(REDACT_ENV, "").strip().lower()
        if raw not in ("", "builtin", "off"):
            logger.warning("tokentrail: ignoring %s=%r (expected builtin or off)", REDACT_ENV, raw)
        setting = raw != "off"
    if isinstance(setting, bool):
        return Redactor() if setting else None
    rules: list[Callable[[str], str]] = list(setting)
    return Redactor(rules=rules)


# Set by init(); None means "init() has not run" and the environment decides.
_configured: ContentPolicy | None = None
_from_env: tuple[tuple[str | None, str | None], ContentPolicy] | None = None


def configure(policy: ContentPolicy | None) -> None:
    """Install the policy init() built (None on shutdown)."""
    global _configured
    _configured = policy


def current_policy() -> ContentPolicy:
    """The policy in force: init()'s, else one built from the environment.

    The environment's is cached while the variables are unchanged, so a
    faulty setting warns once rather than on every call.
    """
    global _from_env
    if _configured is not None:
        return _configured
    key = (os.environ.get(REDACT_ENV), os.environ.get(MAX_CONTENT_CHARS_ENV))
    cached = _from_env
    if cached is None or cached[0] != key:
        cached = _from_env = (key, content_policy())
    return cached[1]

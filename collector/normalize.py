"""Decoded spans → :class:`LlmCall` and :class:`Score`, whatever convention sent them.

Each convention is one :class:`Reader`: the attribute keys that spell each
canonical field, plus how to find the prompt and completion. The readers' keys
are merged in ``READERS`` order into one list per field; for each field the
first key holding a usable value wins, span attributes before resource
attributes (CONVENTIONS.md). This release reads OTel GenAI, current and
deprecated names; OpenInference, OpenLLMetry and Langfuse join as further
readers without touching the code below them.

Values are coerced defensively: senders put numbers in strings, counts in
floats and garbage anywhere, and one bad attribute must never drop a batch.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from tokentrail import semconv
from tokentrail.collector.records import Attributes, LlmCall, Score, Span, SpanEvent

LLM_OPERATIONS = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "completion", "generate"}
)
# An agent or tool span often repeats its children's usage: pricing it would
# double the bill, so these are never LLM calls whatever else they carry.
NON_LLM_OPERATIONS = frozenset({"invoke_agent", "create_agent", "execute_tool", "invoke_workflow"})

# llm_calls stores counts as UInt64; clamp rather than fail the whole insert.
_MAX_TOKENS = 2**64 - 1
# Decimal(38, 12) leaves 26 integer digits for a provided cost.
_MAX_COST_DIGITS = 26


# --- coercion: attribute value → canonical value, or None when unusable --------


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _decimal(value: Any) -> Decimal | None:
    """A finite Decimal from an int, float or numeric string (floats via str, so 0.1 stays 0.1)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _tokens(value: Any) -> int | None:
    number = _decimal(value)
    if number is None:
        return None
    if number.adjusted() >= 20:  # never materialize a huge int from "1e999999999"
        return _MAX_TOKENS if number > 0 else 0
    return min(max(int(number), 0), _MAX_TOKENS)


def _cost(value: Any) -> Decimal | None:
    number = _decimal(value)
    if number is None or number < 0 or number.adjusted() >= _MAX_COST_DIGITS:
        return None
    return number


def _seconds(value: Any) -> float | None:
    number = _float(value)
    return number if number is not None and number >= 0 else None


def _weight(value: Any) -> float | None:
    number = _float(value)
    return number if number is not None and number > 0 else None


def _reasons(value: Any) -> list[str] | None:
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = _json(value)
    if isinstance(value, list | tuple):
        reasons = [text for item in value if (text := _text(item))]
    else:
        reasons = [text] if (text := _text(value)) else []
    return reasons or None


# Deprecated gen_ai.system spellings → their gen_ai.provider.name successors.
_PROVIDER_RENAMES = {
    "az.ai.openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "xai": "x_ai",
}


def _provider(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    name = text.lower()  # old gen_ai.system values came capitalised ("OpenAI")
    return _PROVIDER_RENAMES.get(name, name)


# Canonical LlmCall field → how its attribute values are read. Only these fields
# come from attributes; everything else is structural (ids, times, status).
_COERCE: dict[str, Callable[[Any], Any]] = {
    "provider": _provider,
    "request_model": _text,
    "response_model": _text,
    "operation": _text,
    "input_tokens": _tokens,
    "output_tokens": _tokens,
    "cache_read_tokens": _tokens,
    "cache_write_tokens": _tokens,
    "reasoning_tokens": _tokens,
    "provided_cost_usd": _cost,
    "time_to_first_token_s": _seconds,
    "finish_reasons": _reasons,
    "response_id": _text,
    "environment": _text,
    "feature": _text,
    "user_id": _text,
    "session_id": _text,
    "sample_weight": _weight,
}


# --- readers -------------------------------------------------------------------


def _never(span: Span) -> bool:
    return False


def _no_content(span: Span) -> tuple[str, str]:
    return "", ""


@dataclass(frozen=True)
class Reader:
    """One convention: its keys per canonical field, in order, and its content."""

    convention: str  # the value stored in llm_calls.convention
    fields: Mapping[str, tuple[str, ...]]
    claims: Callable[[Span], bool]  # does this span speak the convention at all
    content: Callable[[Span], tuple[str, str]] = _no_content  # (prompt, completion)
    # For conventions that flag LLM spans by kind rather than by operation name
    # (openinference.span.kind, langfuse.observation.type).
    marks_llm: Callable[[Span], bool] = _never


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return None


def _dumps(value: Any) -> str:
    # default=str: OTLP bytes values must not make a prompt unstorable.
    return json.dumps(value, ensure_ascii=False, default=str)


def _text_part(content: Any) -> dict[str, Any]:
    return {"type": "text", "content": content}


# OTel GenAI content -------------------------------------------------------------

_INPUT_MESSAGES = "gen_ai.input.messages"
_OUTPUT_MESSAGES = "gen_ai.output.messages"
_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_LEGACY_INPUT_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_LEGACY_CHOICE_EVENT = "gen_ai.choice"
_LEGACY_PROMPT_EVENT = ("gen_ai.content.prompt", "gen_ai.prompt")
_LEGACY_COMPLETION_EVENT = ("gen_ai.content.completion", "gen_ai.completion")
# Span events have no body: instrumentations put the deprecated events' body in
# this attribute as JSON, or flatten its fields into attributes.
_LEGACY_BODY = "gen_ai.event.content"


def _as_json_text(value: Any) -> str | None:
    """A content attribute as stored: a JSON string as given, a structure dumped."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, list | dict) and value:
        return _dumps(value)
    return None


def _first_content(sources: list[Attributes], key: str) -> str | None:
    for attributes in sources:
        if (text := _as_json_text(attributes.get(key))) is not None:
            return text
    return None


def _with_system(messages: str | None, system: str | None) -> str:
    """Prepend system instructions to the input messages as a ``system`` message.

    The input string is kept byte for byte when there are no instructions, or
    when it is not a JSON array (truncated by the sender): a prompt that loses
    its instructions beats one rewritten into something the sender never sent.
    """
    if system is None:
        return messages or ""
    parsed_system = _json(system)
    if isinstance(parsed_system, list):
        parts = parsed_system
    else:
        parts = [parsed_system if isinstance(parsed_system, dict) else _text_part(system)]
    if messages is None:
        return _dumps([{"role": "system", "parts": parts}])
    parsed = _json(messages)
    if not isinstance(parsed, list):
        return messages
    return _dumps([{"role": "system", "parts": parts}, *parsed])


def _structured(value: Any) -> Any:
    """A body field that may arrive as a JSON string when attributes were flattened."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        parsed = _json(value)
        return value if parsed is None else parsed
    return value


def _legacy_body(event: SpanEvent) -> dict[str, Any]:
    body = dict(event.attributes)
    content = _structured(body.pop(_LEGACY_BODY, None))
    if isinstance(content, dict):
        body.update(content)
    elif content is not None:
        body.setdefault("content", content)
    return body


def _legacy_message(body: Mapping[str, Any], role: str) -> dict[str, Any]:
    """A deprecated event body ({role, content, tool_calls, id}) as an OTel message."""
    role = _text(body.get("role")) or role
    parts: list[dict[str, Any]] = []
    content = body.get("content")
    if content not in (None, "", [], {}):
        if role == "tool":
            parts.append({"type": "tool_call_response", "id": body.get("id"), "response": content})
        else:
            parts.append(_text_part(content))
    tool_calls = _structured(body.get("tool_calls"))
    for call in tool_calls if isinstance(tool_calls, list) else []:
        if isinstance(call, dict):
            function = call.get("function")
            function = function if isinstance(function, dict) else {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                }
            )
    return {"role": role, "parts": parts}


def _legacy_choice(body: Mapping[str, Any]) -> dict[str, Any]:
    inner = _structured(body.get("message"))
    message = _legacy_message(inner if isinstance(inner, dict) else body, "assistant")
    if (reason := _text(body.get("finish_reason"))) is not None:
        message["finish_reason"] = reason
    return message


def _legacy_text(value: Any, role: str) -> list[dict[str, Any]]:
    """``gen_ai.prompt``/``gen_ai.completion``: a JSON list of {role, content}, or plain text."""
    parsed = _structured(value)
    if isinstance(parsed, list) and all(isinstance(item, dict) for item in parsed):
        return [_legacy_message(item, role) for item in parsed]
    if parsed in (None, "", []):
        return []
    return [{"role": role, "parts": [_text_part(parsed)]}]


def _legacy_content(events: Iterable[SpanEvent]) -> tuple[list[Any], list[Any]]:
    inputs: list[Any] = []
    outputs: list[Any] = []
    for event in events:
        if event.name in _LEGACY_INPUT_EVENTS:
            inputs.append(_legacy_message(_legacy_body(event), _LEGACY_INPUT_EVENTS[event.name]))
        elif event.name == _LEGACY_CHOICE_EVENT:
            outputs.append(_legacy_choice(_legacy_body(event)))
        elif event.name == _LEGACY_PROMPT_EVENT[0]:
            inputs.extend(_legacy_text(event.attributes.get(_LEGACY_PROMPT_EVENT[1]), "user"))
        elif event.name == _LEGACY_COMPLETION_EVENT[0]:
            outputs.extend(
                _legacy_text(event.attributes.get(_LEGACY_COMPLETION_EVENT[1]), "assistant")
            )
    return inputs, outputs


def otel_genai_content(span: Span) -> tuple[str, str]:
    """Prompt and completion as JSON arrays of messages in the OTel GenAI shape.

    Format: ``[{"role": "system"|"user"|"assistant"|"tool", "parts": [{"type":
    "text", "content": ...}, {"type": "tool_call", "id", "name", "arguments"},
    {"type": "tool_call_response", "id", "response"}, ...], "finish_reason"?}]``,
    which is what ``gen_ai.input.messages``/``gen_ai.output.messages`` already
    carry, so current senders are stored as sent. System instructions become a
    leading ``system`` message of the prompt. Deprecated per-message events are
    converted into the same shape so every convention reads alike.

    Each side comes from the first source that has it: span attributes, then
    the ``gen_ai.client.inference.operation.details`` event, then the
    deprecated events.
    """
    sources = [span.attributes]
    sources += [event.attributes for event in span.events if event.name == _DETAILS_EVENT]
    system = _first_content(sources, _SYSTEM_INSTRUCTIONS)
    inputs = _first_content(sources, _INPUT_MESSAGES)
    outputs = _first_content(sources, _OUTPUT_MESSAGES)
    if inputs is None or outputs is None:
        legacy_inputs, legacy_outputs = _legacy_content(span.events)
        if inputs is None and legacy_inputs:
            inputs = _dumps(legacy_inputs)
        if outputs is None and legacy_outputs:
            outputs = _dumps(legacy_outputs)
    return _with_system(inputs, system), outputs or ""


OTEL_GENAI = Reader(
    convention="otel_genai",
    fields={
        "provider": ("gen_ai.provider.name", "gen_ai.system"),
        "request_model": ("gen_ai.request.model",),
        "response_model": ("gen_ai.response.model",),
        "operation": ("gen_ai.operation.name",),
        "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
        "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
        "cache_read_tokens": (
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
        ),
        "cache_write_tokens": (
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_write.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",
        ),
        "reasoning_tokens": (
            "gen_ai.usage.reasoning.output_tokens",
            "gen_ai.usage.reasoning_tokens",
        ),
        "provided_cost_usd": ("gen_ai.usage.cost",),
        "time_to_first_token_s": ("gen_ai.response.time_to_first_chunk",),
        "finish_reasons": ("gen_ai.response.finish_reasons", "gen_ai.response.finish_reason"),
        "response_id": ("gen_ai.response.id",),
        "environment": ("deployment.environment.name", "deployment.environment"),
        "feature": (semconv.FEATURE, "gen_ai.agent.name"),
        "user_id": (semconv.USER_ID, "enduser.id", "gen_ai.user"),
        "session_id": (semconv.SESSION_ID, "gen_ai.conversation.id"),
        "sample_weight": (semconv.SAMPLE_WEIGHT,),
    },
    claims=lambda span: any(key.startswith("gen_ai.") for key in span.attributes),
    content=otel_genai_content,
)

READERS: tuple[Reader, ...] = (OTEL_GENAI,)


def _merge_keys(readers: Iterable[Reader]) -> dict[str, tuple[str, ...]]:
    merged: dict[str, tuple[str, ...]] = {}
    for reader in readers:
        for name, keys in reader.fields.items():
            if name not in _COERCE:
                raise ValueError(f"reader {reader.convention!r}: unknown field {name!r}")
            known = merged.get(name, ())
            merged[name] = known + tuple(key for key in keys if key not in known)
    return merged


KEYS: Mapping[str, tuple[str, ...]] = _merge_keys(READERS)
"""Canonical field → every attribute key that may carry it, in precedence order."""

MODEL_KEYS = KEYS["request_model"] + KEYS["response_model"]
CONTEXT_KEYS = KEYS["feature"] + KEYS["user_id"] + KEYS["session_id"]
"""Attribute keys :func:`context_of` reads: what a store must keep to resolve ancestors."""


def _lookup(span: Span, name: str, *, resource: bool = True) -> Any:
    coerce = _COERCE[name]
    scopes = (span.attributes, span.resource_attributes) if resource else (span.attributes,)
    for attributes in scopes:
        for key in KEYS[name]:
            if key in attributes and (value := coerce(attributes[key])) is not None:
                return value
    return None


# --- LLM calls -------------------------------------------------------------------


def _operation(span: Span) -> str:
    # Span attributes only: a resource-wide operation would turn every span of
    # the service into an LLM call.
    return (_lookup(span, "operation", resource=False) or "").lower()


def is_llm_span(span: Span) -> bool:
    """True for a span that is one LLM operation (CONVENTIONS.md), never an agent/tool span."""
    operation = _operation(span)
    if operation in NON_LLM_OPERATIONS:
        return False
    return (
        operation in LLM_OPERATIONS
        or any(_text(span.attributes.get(key)) for key in MODEL_KEYS)
        or any(reader.marks_llm(span) for reader in READERS)
    )


def _error_type(span: Span) -> str:
    """The error's type when the span failed, else "".

    A set ``error.type`` alone also marks failure: OTel says to set it exactly
    when the operation ended in error, and some senders forget the status.
    """
    declared = _text(span.attributes.get("error.type"))
    if span.status_code != "Error" and declared is None:
        return ""
    raised = (
        _text(e.attributes.get("exception.type")) for e in span.events if e.name == "exception"
    )
    return declared or next((t for t in raised if t), None) or "error"


def _content(span: Span) -> tuple[str, str]:
    prompt = completion = ""
    for reader in READERS:
        if prompt and completion:
            break
        found_prompt, found_completion = reader.content(span)
        prompt, completion = prompt or found_prompt, completion or found_completion
    return prompt, completion


def _convention(span: Span) -> str:
    return next((reader.convention for reader in READERS if reader.claims(span)), "")


def to_llm_call(span: Span) -> LlmCall | None:
    """The span's canonical LLM call, or None when the span is not one."""
    if not is_llm_span(span):
        return None
    found = {name: value for name in KEYS if (value := _lookup(span, name)) is not None}
    prompt, completion = _content(span)
    error_type = _error_type(span)
    return LlmCall(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        start_time_unix_nano=span.start_time_unix_nano,
        duration_ns=span.duration_ns,
        service=span.service_name,
        status_code="Error" if error_type else span.status_code,
        error_type=error_type,
        prompt=prompt,
        completion=completion,
        convention=_convention(span),
        **found,
    )


# --- feature / user / session ----------------------------------------------------


class CallContext(NamedTuple):
    feature: str
    user_id: str
    session_id: str


Ancestry = Mapping[str, tuple[str, tuple[str, str, str]]]
"""span_id → (parent_span_id, (feature, user_id, session_id)) of that span."""


def context_of(span: Span) -> CallContext:
    """A span's own feature, user and session: span attributes, then its resource's."""
    return CallContext(
        _lookup(span, "feature") or "",
        _lookup(span, "user_id") or "",
        _lookup(span, "session_id") or "",
    )


def ancestry_of(spans: Iterable[Span]) -> dict[str, tuple[str, tuple[str, str, str]]]:
    return {span.span_id: (span.parent_span_id, context_of(span)) for span in spans}


def inherit_context(calls: Iterable[LlmCall], ancestry: Ancestry) -> None:
    """Fill each call's empty feature/user/session from its nearest ancestor having each.

    Walks parent links through ``ancestry`` and stops at the first span it lacks:
    skipping a missing link could take a farther ancestor's value over a nearer
    one that arrives later. A cycle (corrupt or hostile parent ids) ends the walk.
    """
    for call in calls:
        feature, user_id, session_id = call.feature, call.user_id, call.session_id
        parent, seen = call.parent_span_id, {call.span_id}
        while parent and parent not in seen and not (feature and user_id and session_id):
            entry = ancestry.get(parent)
            if entry is None:
                break
            seen.add(parent)
            parent, (up_feature, up_user, up_session) = entry
            feature, user_id, session_id = (
                feature or up_feature,
                user_id or up_user,
                session_id or up_session,
            )
        call.feature, call.user_id, call.session_id = feature, user_id, session_id


# --- scores ----------------------------------------------------------------------

_SCORE_TYPES = frozenset({"numeric", "boolean", "categorical"})
_SCORE_SOURCES = frozenset({"sdk", "api", "evaluator", "human"})
_TRUE_LABELS = frozenset({"true", "yes", "pass", "passed", "1"})
_FALSE_LABELS = frozenset({"false", "no", "fail", "failed", "0"})


def _score_value(value: Any) -> float | None:
    return float(value) if isinstance(value, bool) else _float(value)


def _as_flag(value: float | None, label: str) -> float | None:
    if value is not None:
        return 1.0 if value else 0.0
    lowered = label.lower()
    return 1.0 if lowered in _TRUE_LABELS else 0.0 if lowered in _FALSE_LABELS else None


def _score(span: Span, event: SpanEvent) -> Score | None:
    attributes = event.attributes

    def setting(key: str) -> str:
        # A score sent after its span ended rides on a span of its own, which
        # may carry these settings on the span rather than on the event.
        return _text(attributes.get(key)) or _text(span.attributes.get(key)) or ""

    name = _text(attributes.get(semconv.EVALUATION_NAME))
    if name is None:
        return None
    value = _score_value(attributes.get(semconv.EVALUATION_SCORE_VALUE))
    label = _text(attributes.get(semconv.EVALUATION_SCORE_LABEL)) or ""
    data_type = setting(semconv.SCORE_DATA_TYPE).lower()
    if data_type not in _SCORE_TYPES:
        data_type = "numeric" if value is not None else "categorical"
    if data_type == "boolean":
        value = _as_flag(value, label)
    # An unusable declared type degrades to the type the data supports.
    if data_type in ("numeric", "boolean") and value is None:
        data_type = "categorical"
    if data_type == "categorical" and not label:
        if value is None:
            return None
        data_type = "numeric"
    source = setting(semconv.SCORE_SOURCE).lower()
    time = event.time_unix_nano or span.end_time_unix_nano
    identity = f"{span.trace_id}:{span.span_id}:{time}:{name}"
    return Score(
        trace_id=span.trace_id,
        span_id=setting(semconv.SCORE_TARGET_SPAN_ID).lower() or span.span_id,
        name=name,
        data_type=data_type,
        value=value if value is not None else 0.0,
        string_value=label,
        source=source if source in _SCORE_SOURCES else "sdk",
        comment=_text(attributes.get(semconv.EVALUATION_EXPLANATION)) or "",
        time_unix_nano=time,
        # Deterministic so a re-sent batch collapses into the same row.
        score_id=hashlib.sha1(identity.encode(), usedforsecurity=False).hexdigest(),
    )


def scores_from_span(span: Span) -> list[Score]:
    """The scores carried by the span's ``gen_ai.evaluation.result`` events."""
    return [
        score
        for event in span.events
        if event.name == semconv.EVALUATION_EVENT and (score := _score(span, event)) is not None
    ]


def normalize(spans: list[Span]) -> tuple[list[LlmCall], list[Score]]:
    """LLM calls and scores of one batch, calls completed from their in-batch ancestors.

    Score features are left to the pipeline's context step, which sees stored
    calls as well as this batch.
    """
    calls = [call for span in spans if (call := to_llm_call(span)) is not None]
    scores = [score for span in spans for score in scores_from_span(span)]
    inherit_context(calls, ancestry_of(spans))
    return calls, scores

"""OpenTelemetry GenAI semantic conventions, current and deprecated names.

Also tokentrail's own keys (feature, sample weight, score settings), which the
SDK writes next to the GenAI ones, and the ``gen_ai.evaluation.result`` event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tokentrail import semconv
from tokentrail.collector.normalize.base import Evaluation, Reader, parse_json, text
from tokentrail.collector.normalize.messages import (
    choice_of,
    dumps,
    encode,
    message_of,
    structured,
    text_part,
)
from tokentrail.collector.records import Attributes, Span, SpanEvent

CONVENTION = "otel_genai"

LLM_OPERATIONS = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "completion", "generate"}
)
# An agent or tool span often repeats its children's usage: pricing it would
# double the bill, so these are never LLM calls whatever else they carry.
NON_LLM_OPERATIONS = frozenset({"invoke_agent", "create_agent", "execute_tool", "invoke_workflow"})

OPERATION = "gen_ai.operation.name"

# --- content ---------------------------------------------------------------------

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
        return dumps(value)
    return None


def _first_content(sources: list[Attributes], key: str) -> str | None:
    for attributes in sources:
        if (found := _as_json_text(attributes.get(key))) is not None:
            return found
    return None


def _with_system(messages: str | None, system: str | None) -> str:
    """Prepend system instructions to the input messages as a ``system`` message.

    The input string is kept byte for byte when there are no instructions, or
    when it is not a JSON array (truncated by the sender): a prompt that loses
    its instructions beats one rewritten into something the sender never sent.
    """
    if system is None:
        return messages or ""
    parsed_system = parse_json(system)
    if isinstance(parsed_system, list):
        parts = parsed_system
    else:
        parts = [parsed_system if isinstance(parsed_system, dict) else text_part(system)]
    if messages is None:
        return dumps([{"role": "system", "parts": parts}])
    parsed = parse_json(messages)
    if not isinstance(parsed, list):
        return messages
    return dumps([{"role": "system", "parts": parts}, *parsed])


def _legacy_body(event: SpanEvent) -> dict[str, Any]:
    body = dict(event.attributes)
    content = structured(body.pop(_LEGACY_BODY, None))
    if isinstance(content, dict):
        body.update(content)
    elif content is not None:
        body.setdefault("content", content)
    return body


def _legacy_text(value: Any, role: str) -> list[dict[str, Any]]:
    """``gen_ai.prompt``/``gen_ai.completion``: a JSON list of {role, content}, or plain text."""
    parsed = structured(value)
    if isinstance(parsed, list) and all(isinstance(item, dict) for item in parsed):
        return [message_of(item, role) for item in parsed]
    if parsed in (None, "", []):
        return []
    return [{"role": role, "parts": [text_part(parsed)]}]


def _legacy_content(events: Iterable[SpanEvent]) -> tuple[list[Any], list[Any]]:
    inputs: list[Any] = []
    outputs: list[Any] = []
    for event in events:
        if event.name in _LEGACY_INPUT_EVENTS:
            inputs.append(message_of(_legacy_body(event), _LEGACY_INPUT_EVENTS[event.name]))
        elif event.name == _LEGACY_CHOICE_EVENT:
            outputs.append(choice_of(_legacy_body(event)))
        elif event.name == _LEGACY_PROMPT_EVENT[0]:
            inputs.extend(_legacy_text(event.attributes.get(_LEGACY_PROMPT_EVENT[1]), "user"))
        elif event.name == _LEGACY_COMPLETION_EVENT[0]:
            outputs.extend(
                _legacy_text(event.attributes.get(_LEGACY_COMPLETION_EVENT[1]), "assistant")
            )
    return inputs, outputs


def otel_genai_content(span: Span) -> tuple[str, str]:
    """Prompt and completion as JSON arrays of messages in the OTel GenAI shape.

    ``gen_ai.input.messages``/``gen_ai.output.messages`` already carry that shape,
    so current senders are stored as sent. System instructions become a leading
    ``system`` message of the prompt. Deprecated per-message events are
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
        inputs = inputs if inputs is not None else encode(legacy_inputs) or None
        outputs = outputs if outputs is not None else encode(legacy_outputs) or None
    return _with_system(inputs, system), outputs or ""


# --- evaluations -----------------------------------------------------------------


def _evaluation(span: Span, event: SpanEvent) -> Evaluation | None:
    attributes = event.attributes

    def setting(key: str) -> str:
        # A score sent after its span ended rides on a span of its own, which
        # may carry these settings on the span rather than on the event.
        return text(attributes.get(key)) or text(span.attributes.get(key)) or ""

    name = text(attributes.get(semconv.EVALUATION_NAME))
    if name is None:
        return None
    time = event.time_unix_nano or span.end_time_unix_nano
    return Evaluation(
        name=name,
        value=attributes.get(semconv.EVALUATION_SCORE_VALUE),
        label=text(attributes.get(semconv.EVALUATION_SCORE_LABEL)) or "",
        explanation=text(attributes.get(semconv.EVALUATION_EXPLANATION)) or "",
        time_unix_nano=time,
        span_id=setting(semconv.SCORE_TARGET_SPAN_ID).lower() or span.span_id,
        identity=f"{time}:{name}",
        source=setting(semconv.SCORE_SOURCE),
        data_type=setting(semconv.SCORE_DATA_TYPE),
    )


def evaluation_events(span: Span) -> list[Evaluation]:
    """The results carried by the span's ``gen_ai.evaluation.result`` events."""
    return [
        found
        for event in span.events
        if event.name == semconv.EVALUATION_EVENT and (found := _evaluation(span, event))
    ]


# --- the reader ------------------------------------------------------------------


def _verdict(span: Span) -> bool | None:
    operation = (text(span.attributes.get(OPERATION)) or "").lower()
    if operation in NON_LLM_OPERATIONS:
        return False
    return True if operation in LLM_OPERATIONS else None


FIELDS: Mapping[str, tuple[str, ...]] = {
    "provider": ("gen_ai.provider.name", "gen_ai.system"),
    "request_model": ("gen_ai.request.model",),
    "response_model": ("gen_ai.response.model",),
    "operation": (OPERATION,),
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
    "total_tokens": ("gen_ai.usage.total_tokens",),
    "provided_cost_usd": ("gen_ai.usage.cost",),
    "streaming": ("gen_ai.request.stream",),
    "time_to_first_token_s": ("gen_ai.response.time_to_first_chunk",),
    # The anthropic SDK's own spans (2.x) carry the stop reason only under its own name.
    "finish_reasons": (
        "gen_ai.response.finish_reasons",
        "gen_ai.response.finish_reason",
        "anthropic.message.stop_reason",
    ),
    "response_id": ("gen_ai.response.id",),
    "environment": ("deployment.environment.name", "deployment.environment"),
    "feature": (semconv.FEATURE, "gen_ai.agent.name"),
    "user_id": (semconv.USER_ID, "enduser.id"),
    "session_id": (semconv.SESSION_ID, "gen_ai.conversation.id"),
    "sample_weight": (semconv.SAMPLE_WEIGHT,),
}

_UNDERSTOOD = (
    # Content, carried as attributes or (old senders) as span-wide values.
    _INPUT_MESSAGES, _OUTPUT_MESSAGES, _SYSTEM_INSTRUCTIONS, "gen_ai.prompt",
    "gen_ai.completion", _LEGACY_BODY,
    # Described by the spec, deliberately left in `spans` only: request
    # parameters, modality breakdowns of counts already read, agent, tool,
    # retrieval and prompt-template descriptors, evaluation settings.
    "gen_ai.request.*", "gen_ai.response.status", "gen_ai.openai.*", "gen_ai.output.type",
    "gen_ai.usage.audio.*", "gen_ai.usage.image.*", "gen_ai.usage.text.*",
    "gen_ai.agent.*", "gen_ai.workflow.*", "gen_ai.tool.*", "gen_ai.data_source.*",
    "gen_ai.embeddings.*", "gen_ai.retrieval.*", "gen_ai.conversation.*",
    "gen_ai.token.type", "gen_ai.evaluation.*", "gen_ai.prompt.name",
    "gen_ai.prompt.version", "gen_ai.prompt.variable.*",
)  # fmt: skip

OTEL_GENAI = Reader(
    convention=CONVENTION,
    fields=FIELDS,
    claims=lambda keys: any(key.startswith("gen_ai.") for key in keys),
    is_call=_verdict,
    verdict_keys=(OPERATION,),
    understood=_UNDERSTOOD,
    evaluations=evaluation_events,
)

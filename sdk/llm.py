"""`llm_call()`: one OTel GenAI client span per model request.

For providers no auto-instrumentation covers (or for code that already knows
its usage numbers): the span follows the GenAI semantic conventions, so the
collector treats it exactly like one from the official instrumentations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextvars import Token
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from tokentrail._runtime import SyncScope, capture_content, get_tracer, logger, record_error
from tokentrail.context import current_attribution

# OTel GenAI attribute names (semantic conventions v1.37+ spelling).
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
COST = "gen_ai.usage.cost"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"

Messages = str | Mapping[str, Any] | Sequence[Any]


class LLMCall(SyncScope):
    """The handle `llm_call()` yields: the span, its ids, and `record()`."""

    def __init__(
        self,
        provider: str,
        model: str,
        operation: str,
        *,
        start_time: int | None,
        end_time: int | None,
        capture_content: bool | None,
        attributes: Mapping[str, AttributeValue] | None,
        tracer_provider: trace.TracerProvider | None,
    ) -> None:
        self._provider = provider
        self._model = model
        self._operation = operation
        self._start_time = start_time
        self._end_time = end_time
        self._capture = capture_content
        self._extra = dict(attributes or {})
        self._tracer_provider = tracer_provider
        self._finish_reasons: list[str] = []
        self._token: Token[otel_context.Context] | None = None
        self.span: trace.Span = trace.INVALID_SPAN
        """The OTel span; non-recording until the block is entered."""

    @property
    def trace_id(self) -> str:
        """Hex trace id, for `score(trace_id=...)` or a link in your own logs."""
        return format(self.span.get_span_context().trace_id, "032x")

    @property
    def span_id(self) -> str:
        """Hex span id of the LLM span."""
        return format(self.span.get_span_context().span_id, "016x")

    def record(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        response_model: str | None = None,
        response_id: str | None = None,
        finish_reasons: str | Sequence[str] | None = None,
        prompt: Messages | None = None,
        completion: Messages | None = None,
        cost_usd: float | None = None,
    ) -> None:
        """Attach what the provider answered; call it as often as you like.

        Token counts follow OTel GenAI: `input_tokens` includes cached (read
        and written) tokens and `output_tokens` includes reasoning tokens.
        `prompt` / `completion` are recorded only while content capture is on;
        pass a string, one message, or a list of messages ({"role",
        "content"} chat dicts or OTel {"role", "parts"} messages). `cost_usd`
        overrides the collector's own pricing for this call.
        """
        try:
            if finish_reasons is not None:
                reasons = [finish_reasons] if isinstance(finish_reasons, str) else finish_reasons
                self._finish_reasons = [str(r) for r in reasons]
                self.span.set_attribute(RESPONSE_FINISH_REASONS, self._finish_reasons)
            counts = (
                (INPUT_TOKENS, input_tokens),
                (OUTPUT_TOKENS, output_tokens),
                (CACHE_READ_TOKENS, cache_read_tokens),
                (CACHE_WRITE_TOKENS, cache_write_tokens),
                (REASONING_TOKENS, reasoning_tokens),
            )
            for key, count in counts:
                if count is not None:
                    self.span.set_attribute(key, int(count))
            if response_model is not None:
                self.span.set_attribute(RESPONSE_MODEL, response_model)
            if response_id is not None:
                self.span.set_attribute(RESPONSE_ID, response_id)
            if cost_usd is not None:
                self.span.set_attribute(COST, float(cost_usd))
            if capture_content(self._capture):
                if prompt is not None:
                    self.span.set_attribute(INPUT_MESSAGES, _dump(to_messages(prompt, "user")))
                if completion is not None:
                    messages = to_messages(completion, "assistant")
                    if self._finish_reasons:
                        for message in messages:
                            message.setdefault("finish_reason", self._finish_reasons[0])
                    self.span.set_attribute(OUTPUT_MESSAGES, _dump(messages))
        except Exception:  # telemetry must not break the caller's request
            logger.warning("tokentrail: could not record LLM call details", exc_info=True)

    def __enter__(self) -> LLMCall:
        name = f"{self._operation} {self._model}" if self._model else self._operation
        attributes: dict[str, AttributeValue] = {
            **current_attribution().attributes(),
            **self._extra,
            OPERATION_NAME: self._operation,
            PROVIDER_NAME: self._provider,
        }
        if self._model:
            attributes[REQUEST_MODEL] = self._model
        self.span = get_tracer(self._tracer_provider).start_span(
            name, kind=trace.SpanKind.CLIENT, attributes=attributes, start_time=self._start_time
        )
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Returning None lets the caller's exception propagate untouched.
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None
        if exc is not None:
            record_error(self.span, exc)
        self.span.end(end_time=self._end_time)


def llm_call(
    provider: str,
    model: str,
    operation: str = "chat",
    *,
    start_time: int | None = None,
    end_time: int | None = None,
    capture_content: bool | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> LLMCall:
    """Trace one model request: `with tokentrail.llm_call(provider=, model=) as call:`.

    The span is named "{operation} {model}", kind CLIENT, and is current inside
    the block, so `score()` and HTTP spans nest under it. An exception leaves
    it with status ERROR and `error.type`, then propagates unchanged.
    `start_time` / `end_time` (ns since epoch) backfill past requests.
    `capture_content` overrides the `init()` setting for this call;
    `attributes` adds any other span attributes (e.g. request parameters).
    """
    return LLMCall(
        provider,
        model,
        operation,
        start_time=start_time,
        end_time=end_time,
        capture_content=capture_content,
        attributes=attributes,
        tracer_provider=tracer_provider,
    )


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


def _dump(messages: list[dict[str, Any]]) -> str:
    return json.dumps(messages, ensure_ascii=False, default=str)

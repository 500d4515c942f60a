"""`llm_call()`: one OTel GenAI client span per model request.

For providers no auto-instrumentation covers (or for code that already knows
its usage numbers): the span follows the GenAI semantic conventions, so the
collector treats it exactly like one from the official instrumentations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import Token
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from tokentrail._runtime import SyncScope, capture_content, get_tracer, logger, record_error
from tokentrail.content import Messages, encode_messages, to_messages
from tokentrail.context import current_attribution
from tokentrail.semconv import (
    CACHE_READ_TOKENS,
    CACHE_WRITE_TOKENS,
    COST,
    INPUT_MESSAGES,
    INPUT_TOKENS,
    OPERATION_NAME,
    OUTPUT_MESSAGES,
    OUTPUT_TOKENS,
    PROVIDER_NAME,
    REASONING_TOKENS,
    REQUEST_MODEL,
    RESPONSE_FINISH_REASONS,
    RESPONSE_ID,
    RESPONSE_MODEL,
)


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
                    messages = to_messages(prompt, "user")
                    self.span.set_attribute(INPUT_MESSAGES, encode_messages(messages))
                if completion is not None:
                    messages = to_messages(completion, "assistant")
                    if self._finish_reasons:
                        for message in messages:
                            message.setdefault("finish_reason", self._finish_reasons[0])
                    self.span.set_attribute(OUTPUT_MESSAGES, encode_messages(messages))
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

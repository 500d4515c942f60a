"""What every instrumented model call shares: its tracer, its outcome, its error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from tokentrail import semconv
from tokentrail._runtime import SCOPE_NAME, record_error, resolve_provider
from tokentrail.content import encode_messages

# One tracer per provider: TracerProvider.get_tracer builds a new Tracer on each
# call, which is measurable on a per-request path.
_cached: tuple[trace.TracerProvider, trace.Tracer] | None = None


def tracer(explicit: trace.TracerProvider | None = None) -> trace.Tracer:
    """The tracer for an instrumented call, resolved like every tokentrail span's."""
    global _cached
    provider = resolve_provider(explicit)
    cached = _cached
    if cached is not None and cached[0] is provider:
        return cached[1]
    from tokentrail import __version__  # late: the package imports this module

    got = provider.get_tracer(SCOPE_NAME, __version__)
    _cached = (provider, got)
    return got


def integer(value: Any) -> int | None:
    """`value` if it is a real int: provider objects are not validated, so usage may be junk."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


Kind = Literal["number", "int", "str", "str[]"]


def request_params(
    kwargs: Mapping[str, Any], table: tuple[tuple[str, str, Kind], ...]
) -> dict[str, AttributeValue]:
    """Copy the request arguments `table` names into span attributes.

    A value of the wrong type (including the client's "not given" sentinels)
    sets nothing, so a span never carries an attribute the caller did not pass.
    """
    attributes: dict[str, AttributeValue] = {}
    for argument, attribute, kind in table:
        value = kwargs.get(argument)
        if value is None:
            continue
        if kind == "number":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[attribute] = float(value)
        elif kind == "int":
            if (number := integer(value)) is not None:
                attributes[attribute] = number
        elif kind == "str":
            if isinstance(value, str):
                attributes[attribute] = value
        elif isinstance(value, str):
            attributes[attribute] = [value]
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            attributes[attribute] = list(value)
    return attributes


def field_of(obj: Any, name: str) -> Any:
    """A field of a provider object or of the plain dict a caller passed in its place."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "content": text}


def tool_call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


@dataclass(slots=True)
class Outcome:
    """What a response (or a stream, once read) says, before it is written to the span.

    Token counts follow OTel GenAI: input includes cached tokens, output
    includes reasoning tokens. `output_messages` is set only when content
    capture is on. Values of the wrong type are dropped when written: the
    clients do not validate responses, so a field may hold anything.
    """

    response_id: Any = None
    response_model: Any = None
    finish_reasons: list[str] | None = None
    input_tokens: Any = None
    output_tokens: Any = None
    cache_read_tokens: Any = None
    cache_write_tokens: Any = None
    reasoning_tokens: Any = None
    output_messages: list[dict[str, Any]] | None = None
    extra: dict[str, AttributeValue] | None = None

    def set_extra(self, key: str, value: Any) -> None:
        """Keep a provider-specific string attribute (e.g. the system fingerprint)."""
        if isinstance(value, str):
            if self.extra is None:
                self.extra = {}
            self.extra[key] = value

    def attributes(self) -> dict[str, AttributeValue]:
        # Plain ifs rather than a loop over pairs: this runs once per model call.
        attributes: dict[str, AttributeValue] = dict(self.extra) if self.extra else {}
        if isinstance(self.response_id, str):
            attributes[semconv.RESPONSE_ID] = self.response_id
        if isinstance(self.response_model, str):
            attributes[semconv.RESPONSE_MODEL] = self.response_model
        if self.finish_reasons:
            attributes[semconv.RESPONSE_FINISH_REASONS] = self.finish_reasons
        # `type(x) is int` also rejects bools, which are ints to isinstance.
        if type(self.input_tokens) is int:
            attributes[semconv.INPUT_TOKENS] = self.input_tokens
        if type(self.output_tokens) is int:
            attributes[semconv.OUTPUT_TOKENS] = self.output_tokens
        if type(self.cache_read_tokens) is int:
            attributes[semconv.CACHE_READ_TOKENS] = self.cache_read_tokens
        if type(self.cache_write_tokens) is int:
            attributes[semconv.CACHE_WRITE_TOKENS] = self.cache_write_tokens
        if type(self.reasoning_tokens) is int:
            attributes[semconv.REASONING_TOKENS] = self.reasoning_tokens
        if self.output_messages:
            attributes[semconv.OUTPUT_MESSAGES] = encode_messages(self.output_messages)
        return attributes

    def apply(self, span: Span) -> None:
        # One set_attributes call takes the span's lock once instead of per key.
        span.set_attributes(self.attributes())


def record_failure(span: Span, exc: BaseException) -> None:
    """ERROR status and `error.type` (the exception's class name, e.g. RateLimitError).

    Only real errors: a cancelled call (CancelledError, KeyboardInterrupt) was
    stopped by the application, so its span just ends, as the anthropic SDK does.
    """
    if not isinstance(exc, Exception):
        return
    record_error(span, exc)
    status = integer(getattr(exc, "status_code", None))
    if status is not None:
        span.set_attribute(semconv.HTTP_RESPONSE_STATUS_CODE, status)

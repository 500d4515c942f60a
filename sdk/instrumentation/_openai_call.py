"""One instrumented OpenAI call: start its span, then end it on error, on return or
when its stream is done. Wrappers for sync and async methods share all of it.

Every step that is tokentrail's own code is guarded: a fault there is reported
once per wrapper and the application's call goes on, or returns, unchanged.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable, Mapping
from contextvars import Token
from dataclasses import dataclass
from typing import Any

import openai
from openai._legacy_response import LegacyAPIResponse
from openai._response import BaseAPIResponse
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from tokentrail import semconv
from tokentrail._runtime import capture_content
from tokentrail.instrumentation._guard import Faults
from tokentrail.instrumentation._spans import Outcome, record_failure, tracer
from tokentrail.instrumentation._streams import (
    Accumulator,
    AsyncStreamProxy,
    StreamSpan,
    SyncStreamProxy,
)

_AZURE = (openai.AzureOpenAI, openai.AsyncAzureOpenAI)


@dataclass(frozen=True)
class Operation:
    """How one API method maps onto a GenAI span."""

    name: str  # gen_ai.operation.name
    request_attributes: Callable[[Mapping[str, Any]], dict[str, AttributeValue]]
    content_attributes: Callable[[Mapping[str, Any]], dict[str, AttributeValue]]
    outcome: Callable[[Any, bool], Outcome]
    accumulator: Callable[[bool], Accumulator] | None = None


class Call:
    """The span of one call in flight, current while the request runs."""

    __slots__ = ("capture", "faults", "operation", "span", "started", "streams", "token")

    def __init__(
        self,
        span: trace.Span,
        operation: Operation,
        faults: Faults,
        capture: bool,
        streams: bool,
    ) -> None:
        self.span = span
        self.operation = operation
        self.faults = faults
        self.capture = capture
        self.streams = streams
        self.started = time.perf_counter()  # for a stream's time to first chunk
        # Current while the request runs, so HTTP spans nest under it and
        # outgoing requests carry its trace context.
        self.token: Token[otel_context.Context] = otel_context.attach(
            trace.set_span_in_context(span)
        )

    def detach(self) -> None:
        otel_context.detach(self.token)

    def failed(self, exc: BaseException) -> None:
        try:
            record_failure(self.span, exc)
        except Exception:
            self.faults.report()
        finally:
            self.span.end()

    def returned(self, result: Any) -> Any:
        """End the span (or hand it to a stream proxy); always returns what the client returned."""
        span = self.span
        try:
            if not span.is_recording():
                span.end()
                return result
            if isinstance(result, (openai.Stream, openai.AsyncStream)):
                return self._proxy(result)
            parsed = self._parsed(result)
            if parsed is not None:
                self.operation.outcome(parsed, self.capture).apply(span)
        except Exception:
            self.faults.report()
        span.end()
        return result

    def _proxy(self, stream: Any) -> Any:
        make = self.operation.accumulator
        if make is None:  # an API this operation does not stream: nothing to fold
            self.span.end()
            return stream
        stream_span = StreamSpan(self.span, make(self.capture), self.started, self.faults)
        if isinstance(stream, openai.AsyncStream):
            return AsyncStreamProxy(stream, stream_span)
        return SyncStreamProxy(stream, stream_span)

    def _parsed(self, result: Any) -> Any:
        """The response object behind `result`, or None when it is not read yet."""
        if isinstance(result, LegacyAPIResponse):
            # `.with_raw_response`: the body is already read; parse() caches, so
            # the application's own parse() returns this same object. A raw
            # stream is the application's to parse, so its span ends here.
            return None if self.streams else result.parse()
        if isinstance(result, BaseAPIResponse):
            return None  # `.with_streaming_response`: the body is not read yet
        return result


# Per client: (its base URL object, the attributes derived from it). Parsing the
# URL on every call costs more than this lookup; a new base_url is a new object.
_client_cache: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, AttributeValue]]] = (
    weakref.WeakKeyDictionary()
)


def _client_attributes(resource: Any) -> dict[str, AttributeValue]:
    client = resource._client
    url = client.base_url
    cached = _client_cache.get(client)
    if cached is not None and cached[0] is url:
        return dict(cached[1])
    provider = "azure.ai.openai" if isinstance(client, _AZURE) else "openai"
    port = url.port or (443 if url.scheme == "https" else 80)
    attributes: dict[str, AttributeValue] = {
        semconv.PROVIDER_NAME: provider,
        semconv.SERVER_ADDRESS: url.host,
        semconv.SERVER_PORT: port,
    }
    _client_cache[client] = (url, attributes)
    return dict(attributes)


def begin(
    operation: Operation,
    faults: Faults,
    resource: Any,
    kwargs: Mapping[str, Any],
    tracer_provider: trace.TracerProvider | None,
) -> Call | None:
    """Start the span; None (and the call runs untraced) if tokentrail fails here."""
    try:
        model = kwargs.get("model")
        model = model if isinstance(model, str) else ""
        streams = kwargs.get("stream") is True
        attributes = _client_attributes(resource)
        attributes[semconv.OPERATION_NAME] = operation.name
        if model:
            attributes[semconv.REQUEST_MODEL] = model
        if streams:
            attributes[semconv.REQUEST_STREAM] = True
        attributes.update(operation.request_attributes(kwargs))
        name = f"{operation.name} {model}" if model else operation.name
        span = tracer(tracer_provider).start_span(
            name, kind=trace.SpanKind.CLIENT, attributes=attributes
        )
    except Exception:
        faults.report()
        return None
    capture = False
    try:
        capture = capture_content()
        if capture and span.is_recording():
            span.set_attributes(operation.content_attributes(kwargs))
    except Exception:  # the span is still worth having without its prompt
        faults.report()
    return Call(span, operation, faults, capture, streams)


def wrap(
    original: Callable[..., Any],
    operation: Operation,
    where: str,
    tracer_provider: trace.TracerProvider | None,
    *,
    is_async: bool,
) -> Callable[..., Any]:
    """A replacement for an API method (called with the resource as `self`)."""
    faults = Faults(f"openai {where}")

    if is_async:

        @functools.wraps(original)
        async def async_method(self: Any, *args: Any, **kwargs: Any) -> Any:
            call = begin(operation, faults, self, kwargs, tracer_provider)
            if call is None:
                return await original(self, *args, **kwargs)
            try:
                result = await original(self, *args, **kwargs)
            except BaseException as exc:
                call.failed(exc)
                raise  # the application's own exception object, untouched
            finally:
                call.detach()
            return call.returned(result)

        method: Callable[..., Any] = async_method
    else:

        @functools.wraps(original)
        def sync_method(self: Any, *args: Any, **kwargs: Any) -> Any:
            call = begin(operation, faults, self, kwargs, tracer_provider)
            if call is None:
                return original(self, *args, **kwargs)
            try:
                result = original(self, *args, **kwargs)
            except BaseException as exc:
                call.failed(exc)
                raise
            finally:
                call.detach()
            return call.returned(result)

        method = sync_method
    method.__tokentrail_original__ = original  # type: ignore[attr-defined]
    return method

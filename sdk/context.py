"""Who and what an LLM call is for: `feature()` and the processor that stamps it.

Attribution lives in a ContextVar, so it reaches spans started by any library
(the openai instrumentation, an HTTP client) on the same logical thread of
work and follows asyncio tasks, which copy the context when they are created.
Threads are covered by `tokentrail._threads`, which `init()` installs.

Across processes it travels as W3C baggage: `feature()` also puts
`tokentrail.feature`, `user.id` and `session.id` into the OTel baggage of the
context it enters, so whatever injects OTel context into outgoing requests
(`opentelemetry.propagate.inject`, the requests/httpx/aiohttp instrumentations)
sends them along, and the ContextSpanProcessor of a downstream service stamps
them from the extracted context when no local scope sets them. Baggage goes
wherever those instrumentations send requests, third-party APIs included:
`init(propagate_baggage=False)` keeps it in the process.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.util.types import AttributeValue

from tokentrail import semconv
from tokentrail._runtime import SyncScope, get_tracer, logger, record_error

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Attribution:
    """The feature, user and session that spans started now belong to."""

    feature: str | None = None
    user_id: str | None = None
    session_id: str | None = None

    def overridden_by(self, inner: Attribution) -> Attribution:
        """An inner scope replaces only the fields it sets."""
        changes = {k: v for k, v in vars(inner).items() if v is not None}
        return replace(self, **changes)

    def attributes(self) -> dict[str, AttributeValue]:
        pairs = (
            (semconv.FEATURE, self.feature),
            (semconv.USER_ID, self.user_id),
            (semconv.SESSION_ID, self.session_id),
        )
        return {key: value for key, value in pairs if value is not None}


# Attribution is frozen, so one shared default instance is safe.
_current: ContextVar[Attribution] = ContextVar(
    "tokentrail_attribution",
    default=Attribution(),  # noqa: B039
)


# init(propagate_baggage=...) decides; on by default, also without init().
_propagate_baggage = True

_BAGGAGE_KEYS = (semconv.FEATURE, semconv.USER_ID, semconv.SESSION_ID)


def configure(propagate_baggage: bool) -> None:
    """Record init()'s choice about putting attribution into outgoing baggage."""
    global _propagate_baggage
    _propagate_baggage = propagate_baggage


def current_attribution() -> Attribution:
    """The attribution in effect for the running code."""
    return _current.get()


def incoming_attributes(context: otel_context.Context | None = None) -> dict[str, str]:
    """Attribution an upstream service sent as baggage (read from ``context``, else the
    current one)."""
    entries = baggage.get_all(context)
    if not entries:
        return {}
    return {
        key: value for key in _BAGGAGE_KEYS if isinstance(value := entries.get(key), str) and value
    }


class ContextSpanProcessor(SpanProcessor):
    """Copies the current attribution onto every span as it starts.

    This is what lets spans from other instrumentations (and the LLM span
    itself) carry feature, user and session, so the collector never has to
    guess them from an ancestor. Precedence: attributes the span already has,
    then the local `feature()` scope, then baggage from an upstream service
    (`read_baggage=False` ignores it, e.g. on a service taking requests
    straight from the internet), then the static attributes.

    `init()` installs it; add it yourself when you build your own provider.
    """

    def __init__(
        self,
        static_attributes: Mapping[str, AttributeValue] | None = None,
        read_baggage: bool = True,
    ) -> None:
        # Static attributes stand in for resource attributes on providers whose
        # resource we must not change (an application's own provider), and
        # carry the sample weight.
        self._static = dict(static_attributes or {})
        self._read_baggage = read_baggage
        self._failed = False

    def on_start(self, span: SdkSpan, parent_context: otel_context.Context | None = None) -> None:
        try:
            existing = span.attributes or {}
            incoming = incoming_attributes(parent_context) if self._read_baggage else {}
            stamps = {**self._static, **incoming, **_current.get().attributes()}
            for key, value in stamps.items():
                if key not in existing:
                    span.set_attribute(key, value)
        except Exception:  # a processor must never break the caller's span
            if not self._failed:
                self._failed = True
                logger.warning(
                    "tokentrail: could not stamp attribution (logged once)", exc_info=True
                )


class FeatureScope(SyncScope):
    """What `feature()` returns: a context manager and a decorator."""

    def __init__(
        self,
        name: str,
        user_id: str | None,
        session_id: str | None,
        span: bool,
        tracer_provider: trace.TracerProvider | None,
    ) -> None:
        self._name = name
        self._own = Attribution(name, user_id, session_id)
        self._make_span = span
        self._tracer_provider = tracer_provider
        # A stack, not one slot, so re-entering the same object nests correctly.
        self._entered: list[
            tuple[Token[Attribution], trace.Span | None, Token[otel_context.Context] | None]
        ] = []

    @property
    def span(self) -> trace.Span:
        """The span this scope opened (a non-recording one when it opened none)."""
        span = self._entered[-1][1] if self._entered else None
        return trace.INVALID_SPAN if span is None else span

    def __enter__(self) -> FeatureScope:
        token = _current.set(_current.get().overridden_by(self._own))
        span: trace.Span | None = None
        span_token: Token[otel_context.Context] | None = None
        context = _with_baggage(self._own) if _propagate_baggage else None
        if self._make_span:
            span = get_tracer(self._tracer_provider).start_span(
                self._name,
                kind=trace.SpanKind.INTERNAL,
                attributes=_current.get().attributes(),
            )
            context = trace.set_span_in_context(span, context)
        if context is not None:
            span_token = otel_context.attach(context)
        self._entered.append((token, span, span_token))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, span, span_token = self._entered.pop()
        if span_token is not None:
            otel_context.detach(span_token)
        if span is not None:
            if exc is not None:
                record_error(span, exc)
            span.end()
        _current.reset(token)

    def _fresh(self) -> FeatureScope:
        # Each decorated call gets its own scope so concurrent calls (threads,
        # tasks) never share the enter/exit bookkeeping.
        own = self._own
        return FeatureScope(
            self._name, own.user_id, own.session_id, self._make_span, self._tracer_provider
        )

    def __call__(self, func: F) -> F:
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            # The scope would close when the generator is created, not when it
            # is consumed, silently attributing nothing: refuse instead.
            raise TypeError("tokentrail.feature cannot decorate generators; use it as `with`")
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                # Entered inside the coroutine, so it applies per call and to
                # the task that actually runs it.
                with self._fresh():
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)

        return cast(F, wrapper)


def _with_baggage(own: Attribution) -> otel_context.Context:
    """The current context with this scope's fields in its baggage (an outer scope's
    fields are already there, so the merge matches `Attribution.overridden_by`)."""
    context = otel_context.get_current()
    for key, value in own.attributes().items():
        context = baggage.set_baggage(key, str(value), context)
    return context


def feature(
    name: str,
    user_id: str | None = None,
    session_id: str | None = None,
    *,
    span: bool = True,
    tracer_provider: trace.TracerProvider | None = None,
) -> FeatureScope:
    """Attribute everything inside to a product feature (and user / session).

    Use as `with tokentrail.feature("support-chat", user_id=u):` or as a
    decorator on sync or async functions. Nested scopes override only the
    fields they set. By default it also opens an INTERNAL span named after the
    feature, so the LLM calls of one request share a trace and `score()` has a
    span to land on; pass `span=False` when your framework already opened one
    (the attribution is stamped on that and every other span either way).

    After `init()` the scope also reaches threads and thread-pool tasks started
    inside it (see `tokentrail._threads`) and, as W3C baggage, services called
    with OTel context propagation.
    """
    return FeatureScope(name, user_id, session_id, span, tracer_provider)

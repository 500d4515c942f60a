"""Tracing for the `openai` client, which (as of 3.x) emits no spans of its own.

Wrapped: `chat.completions.create` / `.parse`, `responses.create` / `.parse` and
`embeddings.create`, on `OpenAI` and `AsyncOpenAI` (and the Azure clients, as
provider `azure.ai.openai`). `.with_raw_response` goes through the same
methods and is traced too (a raw *stream*, and `.with_streaming_response`,
get a span without the response details: their body is read after the call
returns, by code tokentrail does not see). The `.stream()` helpers call
`create` and are traced.

Streams need `stream_options={"include_usage": True}` for token counts: the
API sends usage only then, and tokentrail does not change requests.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import trace

from tokentrail._runtime import logger
from tokentrail.instrumentation import (
    _openai_chat,
    _openai_embeddings,
    _openai_responses,
)
from tokentrail.instrumentation._openai_call import Operation, wrap

ClientT = TypeVar("ClientT")

CHAT = Operation(
    _openai_chat.OPERATION,
    _openai_chat.request_attributes,
    _openai_chat.content_attributes,
    _openai_chat.outcome,
    _openai_chat.StreamAccumulator,
)
RESPONSES = Operation(
    _openai_responses.OPERATION,
    _openai_responses.request_attributes,
    _openai_responses.content_attributes,
    _openai_responses.outcome,
    _openai_responses.StreamAccumulator,
)
EMBEDDINGS = Operation(
    _openai_embeddings.OPERATION,
    _openai_embeddings.request_attributes,
    _openai_embeddings.content_attributes,
    _openai_embeddings.outcome,
)

_MARK = "__tokentrail_original__"


def _targets() -> list[tuple[type, tuple[str, ...], str, Operation, bool]]:
    """(resource class, its path on a client, method, operation, is async)."""
    from openai.resources.chat.completions.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import AsyncEmbeddings, Embeddings
    from openai.resources.responses.responses import AsyncResponses, Responses

    targets: list[tuple[type, tuple[str, ...], str, Operation, bool]] = []
    for sync_cls, async_cls, path, methods, operation in (
        (Completions, AsyncCompletions, ("chat", "completions"), ("create", "parse"), CHAT),
        (Responses, AsyncResponses, ("responses",), ("create", "parse"), RESPONSES),
        (Embeddings, AsyncEmbeddings, ("embeddings",), ("create",), EMBEDDINGS),
    ):
        for method in methods:
            targets.append((sync_cls, path, method, operation, False))
            targets.append((async_cls, path, method, operation, True))
    return targets


_lock = threading.Lock()
_patched_classes: list[tuple[type, str, Callable[..., Any]]] = []
# Resources patched one client at a time; weak so instrumenting never keeps a client alive.
_patched_resources: weakref.WeakSet[Any] = weakref.WeakSet()


def _unwrapped(function: Any) -> Any:
    return getattr(function, _MARK, function)


def instrument_openai(
    client: ClientT | None = None, *, tracer_provider: trace.TracerProvider | None = None
) -> ClientT | None:
    """See `tokentrail.instrument_openai`; returns `client`."""
    matched = False
    with _lock:
        for cls, path, method, operation, is_async in _targets():
            where = ".".join((*path, method))
            if client is None:
                current = cls.__dict__.get(method)
                if current is None or hasattr(current, _MARK):
                    continue
                wrapper = wrap(current, operation, where, tracer_provider, is_async=is_async)
                setattr(cls, method, wrapper)
                _patched_classes.append((cls, method, current))
                continue
            resource: Any = client
            for name in path:
                resource = getattr(resource, name, None)
            if not isinstance(resource, cls):
                continue
            matched = True
            if method in vars(resource):
                continue
            # Wrap the class's own function, so a class patch never doubles the span.
            original = _unwrapped(getattr(type(resource), method))
            wrapper = wrap(original, operation, where, tracer_provider, is_async=is_async)
            setattr(resource, method, wrapper.__get__(resource, type(resource)))
            _patched_resources.add(resource)
    if client is not None and not matched:
        logger.warning("tokentrail: %r is not an openai client; nothing instrumented", client)
    return client


def uninstrument_openai() -> None:
    """Undo every `instrument_openai()`: class patches and per-client ones."""
    with _lock:
        for cls, method, original in reversed(_patched_classes):
            setattr(cls, method, original)
        _patched_classes.clear()
        for resource in list(_patched_resources):
            for method in ("create", "parse"):
                bound = vars(resource).get(method)
                if bound is not None and hasattr(getattr(bound, "__func__", None), _MARK):
                    delattr(resource, method)
        _patched_resources.clear()
    logger.debug("tokentrail: openai instrumentation removed")

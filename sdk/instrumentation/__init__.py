"""Auto-instrumentation of the `openai` and `anthropic` clients.

`tokentrail.init()` calls :func:`instrument` for every installed library; pass
`init(instrument=False)` to skip it, or `init(instrument=("openai",))` to pick.
The library modules are imported only when they are instrumented, so the
light SDK never needs either client installed.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from typing import TypeVar

from opentelemetry import trace

from tokentrail._runtime import logger

LIBRARIES = ("openai", "anthropic")

ClientT = TypeVar("ClientT")


def instrument_openai(
    client: ClientT | None = None, *, tracer_provider: trace.TracerProvider | None = None
) -> ClientT | None:
    """Trace OpenAI calls: of every client (`client=None`) or of `client` only.

    openai has no tracing of its own, so tokentrail wraps `chat.completions`
    (`create`, `parse`), `responses` (`create`, `parse`) and `embeddings.create`
    on sync and async clients, streams included. With no client the classes
    are patched (clients made before and after are traced; `init()` does
    this); with a client only that object is, and `client` is returned.
    A call is never traced twice. For streams, token counts need
    `stream_options={"include_usage": True}`. `tracer_provider` overrides
    the one `init()` configured.
    """
    from tokentrail.instrumentation import openai as impl

    return impl.instrument_openai(client, tracer_provider=tracer_provider)


def instrument_anthropic(
    client: ClientT | None = None,
    *,
    capture_content: bool | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> ClientT | None:
    """Turn on the anthropic client's own OTel tracing with tokentrail's content mode.

    anthropic >= 2 traces itself, through the global tracer provider, so
    nothing is wrapped. With no client (what `init()` does) clients built
    afterwards capture content as `capture_content` says. With a client, a
    configured *copy* is returned (anthropic clients cannot be reconfigured in
    place): use it for clients built before `init()`, or when tokentrail's
    provider is not the global one::

        client = tokentrail.instrument_anthropic(anthropic.Anthropic())
    """
    from tokentrail.instrumentation import anthropic as impl

    return impl.instrument_anthropic(
        client, capture_content=capture_content, tracer_provider=tracer_provider
    )


def instrument(
    libraries: bool | Iterable[str] = True, *, capture_content: bool | None = None
) -> tuple[str, ...]:
    """Instrument the named (default: all) libraries that are installed; never raises.

    Returns the names instrumented. A library that fails is logged and skipped,
    because a broken instrumentation must not stop the application starting.
    """
    if libraries is True:
        names: tuple[str, ...] = LIBRARIES
    elif libraries is False:
        names = ()
    else:
        names = tuple(libraries)
    done = []
    for name in names:
        if name not in LIBRARIES:
            known = ", ".join(LIBRARIES)
            logger.warning("tokentrail: cannot instrument %r; known: %s", name, known)
            continue
        if importlib.util.find_spec(name) is None:
            continue
        try:
            if name == "openai":
                instrument_openai()
            else:
                instrument_anthropic(capture_content=capture_content)
        except Exception:
            logger.warning("tokentrail: could not instrument %s", name, exc_info=True)
            continue
        done.append(name)
    return tuple(done)


def uninstrument() -> None:
    """Remove all instrumentation (for tests, and `tokentrail.shutdown()`)."""
    # Only modules already loaded can have patched anything; importing them
    # here would import the client libraries for nothing.
    openai_impl = sys.modules.get("tokentrail.instrumentation.openai")
    if openai_impl is not None:
        openai_impl.uninstrument_openai()
    anthropic_impl = sys.modules.get("tokentrail.instrumentation.anthropic")
    if anthropic_impl is not None:
        anthropic_impl.uninstrument_anthropic()


__all__ = ["LIBRARIES", "instrument", "instrument_anthropic", "instrument_openai", "uninstrument"]

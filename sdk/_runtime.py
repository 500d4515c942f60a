"""State that `init()` decides and the public helpers read.

It lives apart from `_setup` so that `context`, `llm` and `scores` can read it
without importing the module that imports them (which would be circular).
"""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

logger = logging.getLogger("tokentrail")

SCOPE_NAME = "tokentrail"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

# Set by init(); None means "init() has not run", and the helpers then fall back
# to the global provider and the environment, so they also work for users who
# configured OpenTelemetry themselves.
_provider: trace.TracerProvider | None = None
_capture_content: bool | None = None


def env_flag(name: str, default: bool) -> bool:
    """Read a boolean environment variable leniently; unknown spellings keep the default."""
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if raw:
        logger.warning("tokentrail: ignoring %s=%r (expected true or false)", name, raw)
    return default


def capture_content_default() -> bool:
    """Content capture is on unless TOKENTRAIL_CAPTURE_CONTENT turns it off.

    On by default because seeing prompts and completions is the point of a
    development setup; production deployments opt out with the variable or
    `init(capture_content=False)`, and the collector redacts what it stores.
    """
    return env_flag("TOKENTRAIL_CAPTURE_CONTENT", True)


def capture_content(override: bool | None = None) -> bool:
    """Whether prompts and completions may be recorded right now."""
    if override is not None:
        return override
    if _capture_content is not None:
        return _capture_content
    return capture_content_default()


def configure(provider: trace.TracerProvider | None, capture: bool | None) -> None:
    """Record what init() chose (or clear it on shutdown)."""
    global _provider, _capture_content
    _provider = provider
    _capture_content = capture


def get_tracer(tracer_provider: trace.TracerProvider | None = None) -> trace.Tracer:
    """The tracer every tokentrail span comes from.

    An explicit provider wins (the demo and tests use their own); then the one
    init() wired, which matters when the global slot was already taken by a
    provider we could not attach to; then whatever is global.
    """
    from tokentrail import __version__  # late: the package imports this module

    return resolve_provider(tracer_provider).get_tracer(SCOPE_NAME, __version__)


def resolve_provider(tracer_provider: trace.TracerProvider | None = None) -> trace.TracerProvider:
    """The provider get_tracer() would use, for callers that cache their tracer per provider."""
    return tracer_provider or _provider or trace.get_tracer_provider()


def record_error(span: Span, exc: BaseException) -> None:
    """Mark a span failed the way OTel semantic conventions expect."""
    span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__name__)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


_Scope = TypeVar("_Scope", bound="SyncScope")


class SyncScope:
    """A context manager whose enter and exit do no I/O, so ``async with`` runs them as is."""

    def __enter__(self: _Scope) -> _Scope:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise NotImplementedError

    async def __aenter__(self: _Scope) -> _Scope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

"""Anthropic: configure the client's own tracing rather than wrapping it a second time.

anthropic >= 2 emits OTel GenAI spans itself (scope `com.anthropic.sdk.python`,
span `anthropic.messages.create`, usage including cache read/write, time to
first chunk on streams) through the *global* tracer provider, unless a client
is given `open_telemetry={"tracer_provider": ...}`. Because those spans come
from a provider tokentrail's processor is on, they get feature/user/session
stamped like any other span.

What tokentrail sets:
- clients built after `init()` with no `open_telemetry` option read the
  `ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE` variable, which tokentrail
  sets from `capture_content` ("content" / "metadata_only");
- a client built before `init()` still gets spans (its tracer is looked up on
  its first request) but keeps the content mode it was built with;
- `instrument_anthropic(client)` returns a copy of any client with tracing on,
  content mode from `capture_content`, and tokentrail's provider, which is the
  way to trace a client that was built earlier, or given its own option, or
  used while tokentrail's provider is not the global one.
"""

from __future__ import annotations

import os
import threading
from typing import Any, TypeVar

from opentelemetry import trace

from tokentrail import _runtime
from tokentrail._runtime import logger

ClientT = TypeVar("ClientT")

ENABLED_ENV = "ANTHROPIC_OPEN_TELEMETRY"
CONTENT_MODE_ENV = "ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE"

_lock = threading.Lock()
# The variable's value before tokentrail set it (None: unset), for uninstrument.
_saved: list[str | None] = []


def content_mode(capture_content: bool | None = None) -> str:
    return "content" if _runtime.capture_content(capture_content) else "metadata_only"


def instrument_anthropic(
    client: ClientT | None = None,
    *,
    capture_content: bool | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> ClientT | None:
    """See `tokentrail.instrument_anthropic`."""
    mode = content_mode(capture_content)
    if client is not None:
        return _configured_copy(client, mode, tracer_provider)
    with _lock:
        previous = os.environ.get(CONTENT_MODE_ENV)
        if not _saved:
            _saved.append(previous)
        user_set = _saved[0] is not None
        # Turning capture off always wins (content must not leave the process);
        # turning it on leaves a mode the user chose for anthropic alone.
        if mode == "metadata_only" or not user_set:
            os.environ[CONTENT_MODE_ENV] = mode
    if os.environ.get(ENABLED_ENV, "").lower() == "false":
        logger.warning(
            "tokentrail: %s=false turns the anthropic client's tracing off, so its calls "
            "are not traced; unset it, or use tokentrail.instrument_anthropic(client)",
            ENABLED_ENV,
        )
    if _runtime.resolve_provider(tracer_provider) is not trace.get_tracer_provider():
        logger.info(
            "tokentrail: anthropic clients trace to the global tracer provider, which is not "
            "tokentrail's; route a client with tokentrail.instrument_anthropic(client)"
        )
    return None


def _configured_copy(client: Any, mode: str, tracer_provider: trace.TracerProvider | None) -> Any:
    # `with_options` replaces the whole option, so start from the client's resolved one.
    options = dict(client.open_telemetry)
    options["traces"] = {**options["traces"], "enabled": True, "content_mode": mode}
    provider = _runtime.resolve_provider(tracer_provider)
    if provider is not trace.get_tracer_provider():
        options["tracer_provider"] = provider
    return client.with_options(open_telemetry=options)


def uninstrument_anthropic() -> None:
    """Restore the content-mode variable; copies already made keep their options."""
    with _lock:
        if not _saved:
            return
        previous = _saved.pop()
        if previous is None:
            os.environ.pop(CONTENT_MODE_ENV, None)
        else:
            os.environ[CONTENT_MODE_ENV] = previous

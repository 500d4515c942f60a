"""Streamed responses: the span stays open until the application is done with the stream.

A proxy stands in for the client's stream object. Whether the application
reads it to the end, closes it early, leaves a `with` block, or drops it, the
span ends exactly once, with what was read so far. Sync and async proxies are
thin shells over one `StreamSpan`, which owns all the bookkeeping.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from opentelemetry.trace import Span

from tokentrail import semconv
from tokentrail.instrumentation._guard import Faults
from tokentrail.instrumentation._spans import Outcome, record_failure


class Accumulator(Protocol):
    """Folds stream items into an Outcome, per API."""

    def feed(self, item: Any) -> bool:
        """Take one item; True when it carried output (marks the first chunk)."""
        ...

    def outcome(self) -> Outcome: ...


class StreamSpan:
    """The span of one streamed call and everything read from its stream."""

    __slots__ = ("_accumulator", "_ended", "_faults", "_first_chunk", "_span", "_started")

    def __init__(
        self, span: Span, accumulator: Accumulator, started: float, faults: Faults
    ) -> None:
        self._span = span
        self._accumulator: Accumulator | None = accumulator
        self._started = started  # perf_counter() when the request was sent
        self._first_chunk: float | None = None
        self._faults = faults
        self._ended = False

    def item(self, item: Any) -> None:
        accumulator = self._accumulator
        if accumulator is None:
            return
        try:
            if accumulator.feed(item) and self._first_chunk is None:
                self._first_chunk = time.perf_counter()
        except Exception:
            # Stop folding (the outcome would be wrong) but keep streaming.
            self._accumulator = None
            self._faults.report()

    def end(self, error: BaseException | None = None) -> None:
        """End the span once; later calls (close after exhaustion, __del__) do nothing."""
        if self._ended:
            return
        self._ended = True
        span = self._span
        try:
            if self._first_chunk is not None:
                ttft = self._first_chunk - self._started
                span.set_attribute(semconv.RESPONSE_TIME_TO_FIRST_CHUNK, ttft)
            if self._accumulator is not None:
                self._accumulator.outcome().apply(span)
            if error is not None:
                record_failure(span, error)
        except Exception:
            self._faults.report()
        finally:
            span.end()

    @property
    def ended(self) -> bool:
        return self._ended


class _Proxy:
    """Delegates everything it does not define to the client's stream object."""

    __slots__ = ("_stream_span", "_wrapped")

    def __init__(self, wrapped: Any, stream_span: StreamSpan) -> None:
        self._wrapped = wrapped
        self._stream_span = stream_span

    def __getattr__(self, name: str) -> Any:
        if name in _Proxy.__slots__:  # not set yet (a failed __init__): no recursion
            raise AttributeError(name)
        return getattr(self._wrapped, name)

    # `isinstance(stream, openai.Stream)` keeps holding for the application.
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._wrapped)

    def __repr__(self) -> str:
        return repr(self._wrapped)

    def __del__(self) -> None:
        # Dropped without being read to the end or closed: end the span with what was read.
        try:
            stream_span = self._stream_span
            if not stream_span.ended:
                stream_span.end()
        except Exception:  # at interpreter exit anything may be half torn down
            pass


class SyncStreamProxy(_Proxy):
    __slots__ = ()

    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._wrapped)
        except StopIteration:
            self._stream_span.end()
            raise
        except BaseException as exc:
            self._stream_span.end(exc)
            raise
        self._stream_span.item(item)
        return item

    def close(self) -> None:
        self._stream_span.end()
        self._wrapped.close()

    def __enter__(self) -> SyncStreamProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncStreamProxy(_Proxy):
    __slots__ = ()

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._wrapped.__anext__()
        except StopAsyncIteration:
            self._stream_span.end()
            raise
        except BaseException as exc:
            self._stream_span.end(exc)
            raise
        self._stream_span.item(item)
        return item

    async def close(self) -> None:
        self._stream_span.end()
        await self._wrapped.close()

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

"""The OTLP/gRPC receivers: ``TraceService/Export`` and ``LogsService/Export``.

Same semantics as OTLP/HTTP (see :mod:`tokentrail.collector.receiver`), and the
same code from the raw request bytes on: decode, partial success, ingest. Only
the answers change to gRPC status codes: INVALID_ARGUMENT for a malformed
request (never retried), UNAUTHENTICATED, RESOURCE_EXHAUSTED over the size
limit; and, with ``RetryInfo`` so OTel exporters retry after the delay,
RESOURCE_EXHAUSTED when the ingest queue is full and UNAVAILABLE when neither
store nor spool can take the export.

The bound on exports in progress is ours, not gRPC's: past it gRPC would answer
RESOURCE_EXHAUSTED itself, without ``RetryInfo``, and OTLP exporters that follow
the spec drop such a batch. So the server is ``grpc.aio`` on a thread of its own
(the rest of the app stays sync): the handler counts exports in, refuses the one
past :data:`MAX_CONCURRENT_CALLS` at once with RESOURCE_EXHAUSTED and
``RetryInfo``, and runs the blocking work (auth, decode, ingest) on a few worker
threads. At most that many request bodies are held in memory, plus those gRPC
is still reading, which its own call limit (8 times ours) bounds.

The services are registered by hand rather than through the generated
``add_*Servicer_to_server``: those parse the request before our code runs, so
a malformed payload would surface as INTERNAL instead of INVALID_ARGUMENT and
skip the decoder HTTP uses.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent import futures
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tokentrail.api.auth import KeyRing, Unauthenticated
from tokentrail.collector.decode import PROTOBUF, DecodeError
from tokentrail.collector.ingest_queue import (
    QUEUE_FULL_RETRY_AFTER_SECONDS,
    Backpressure,
    QueueFull,
)
from tokentrail.collector.receiver import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IN_FLIGHT,
    LOGS,
    TRACES,
    Accept,
    InFlight,
    Signal,
    acknowledge,
)

logger = logging.getLogger(__name__)

Item = TypeVar("Item")

# Each export holds a worker while it is stored; a few cover a handful of
# exporters, and more would only queue on the same store.
DEFAULT_WORKERS = 8
# Exports in progress (being decoded, or waiting for a worker or for their
# write): past this many the next is answered RESOURCE_EXHAUSTED with
# RetryInfo at once, as HTTP answers 429.
MAX_CONCURRENT_CALLS = DEFAULT_MAX_IN_FLIGHT
# gRPC's own limit is only an outer safety bound (its refusals carry no
# RetryInfo): ours answers at once, so calls cannot pile up to it under
# ordinary overload, only while gRPC is still reading their messages.
_GRPC_CALL_LIMIT_FACTOR = 8

# The OTLP exporters read the retry delay from this trailer (google.rpc.RetryInfo).
_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"


def _service_name(module: Any, service: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[service].full_name)


def _retry_info(seconds: int) -> tuple[tuple[str, bytes], ...]:
    retry_info = RetryInfo(retry_delay=Duration(seconds=seconds)).SerializeToString()
    return ((_RETRY_INFO_KEY, retry_info),)


class _Refused(Exception):
    """The answer to an export that was not taken: a status, and the retry delay if any."""

    def __init__(self, code: grpc.StatusCode, details: str, retry_after: int | None = None):
        super().__init__(details)
        self.code, self.details, self.retry_after = code, details, retry_after


def _export_handler(
    signal: Signal[Item],
    accept: Accept,
    keyring: KeyRing,
    workers: futures.ThreadPoolExecutor,
    in_flight: InFlight,
) -> grpc.RpcMethodHandler:
    """The unary ``Export`` method of one signal, taking the request as raw bytes."""

    def work(authorization: str, body: bytes) -> Message:
        """The blocking part, on a worker thread; raises :class:`_Refused`."""
        try:
            project_id = keyring.project_for_authorization(authorization)
        except Unauthenticated as exc:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from exc
        try:
            items, errors = signal.decode(body, PROTOBUF)
        except DecodeError as exc:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        try:
            return acknowledge(signal, accept, project_id, items, errors, body, PROTOBUF)
        except Backpressure as exc:
            code = grpc.StatusCode.UNAVAILABLE
            if isinstance(exc, QueueFull):
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
            raise _Refused(code, str(exc), exc.retry_after) from exc

    async def export(body: bytes, context: grpc.aio.ServicerContext) -> Message:
        # context.abort raises, ending the call with that status.
        if not in_flight.enter():
            delay = QUEUE_FULL_RETRY_AFTER_SECONDS
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the collector is at its limit of {in_flight.limit} exports in progress;"
                f" retry after {delay} s",
                trailing_metadata=_retry_info(delay),
            )
        metadata = dict(context.invocation_metadata() or ())
        try:
            done = workers.submit(work, str(metadata.get("authorization", "")), body)
        except BaseException:
            in_flight.leave()
            raise
        # Out when the work ends, not when the call does: a call cancelled by
        # its client still holds its body on a worker until then.
        done.add_done_callback(in_flight.leave)
        try:
            return await asyncio.wrap_future(done)
        except _Refused as refused:
            trailers = () if refused.retry_after is None else _retry_info(refused.retry_after)
            await context.abort(refused.code, refused.details, trailing_metadata=trailers)
            raise  # not reached: abort raises

    return grpc.unary_unary_rpc_method_handler(
        export, response_serializer=lambda message: message.SerializeToString()
    )


class GrpcReceiver:
    """The ``grpc.aio`` server, run on the event loop of a thread of its own.

    ``start()`` and ``stop(grace)`` are called from sync code, as on a
    ``grpc.Server``.
    """

    def __init__(
        self, server: grpc.aio.Server, loop: asyncio.AbstractEventLoop, ended: threading.Event
    ) -> None:
        self._server, self._loop, self._ended = server, loop, ended
        self._stopping = False

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result()

    def stop(self, grace: float | None) -> threading.Event:
        """Refuse new calls, give those in progress up to ``grace`` seconds, then end.

        The returned event is set once the calls' work is over and the loop
        thread has ended; ``wait()`` on it.
        """
        if not self._stopping:
            self._stopping = True
            asyncio.run_coroutine_threadsafe(self._stop(grace), self._loop)
        return self._ended

    async def _stop(self, grace: float | None) -> None:
        try:
            await self._server.stop(grace)
        finally:
            self._loop.stop()


def _run_loop(
    loop: asyncio.AbstractEventLoop, workers: futures.ThreadPoolExecutor, ended: threading.Event
) -> None:
    """The receiver thread: its event loop until stopped, then the workers' last exports."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        # Calls already cancelled leave work started (counted in) to finish,
        # so that it reaches the queue before the app drains it.
        workers.shutdown(wait=True, cancel_futures=True)
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
        ended.set()


def grpc_server(
    accept: Accept,
    keyring: KeyRing,
    address: str,
    max_message_bytes: int = DEFAULT_MAX_BODY_BYTES,
    workers: int = DEFAULT_WORKERS,
    max_in_flight: int = MAX_CONCURRENT_CALLS,
) -> tuple[GrpcReceiver, int]:
    """A started-to-be server bound to ``address`` (``host:port``), and its bound port.

    Call ``start()`` on it, and ``stop(grace).wait()`` at shutdown. ``accept`` is
    the callable the HTTP receivers get, under the same contract: durable before
    it returns, :class:`Backpressure` to have the export retried. ``workers``
    threads run it; past ``max_in_flight`` exports in progress the next is
    refused, retryable. ``max_message_bytes`` bounds the message after gzip
    inflation (gRPC enforces it, answering RESOURCE_EXHAUSTED), like the HTTP
    body limit. Port 0 picks a free one. Raises RuntimeError when the address
    cannot be bound.
    """
    pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokentrail-grpc")
    in_flight = InFlight(max_in_flight)
    loop = asyncio.new_event_loop()
    ended = threading.Event()
    thread = threading.Thread(
        target=_run_loop, args=(loop, pool, ended), name="tokentrail-grpc-loop", daemon=True
    )
    thread.start()

    async def bind() -> tuple[grpc.aio.Server, int]:
        # Made on the loop that will serve it.
        server = grpc.aio.server(
            maximum_concurrent_rpcs=_GRPC_CALL_LIMIT_FACTOR * max_in_flight,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                # gRPC turns SO_REUSEPORT on by default: a second server would then
                # share the port silently instead of failing to start.
                ("grpc.so_reuseport", 0),
            ],
        )
        traces = _service_name(trace_service_pb2, "TraceService")
        logs = _service_name(logs_service_pb2, "LogsService")
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    traces, {"Export": _export_handler(TRACES, accept, keyring, pool, in_flight)}
                ),
                grpc.method_handlers_generic_handler(
                    logs, {"Export": _export_handler(LOGS, accept, keyring, pool, in_flight)}
                ),
            )
        )
        return server, server.add_insecure_port(address)

    try:
        server, port = asyncio.run_coroutine_threadsafe(bind(), loop).result()
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        raise
    return GrpcReceiver(server, loop, ended), port


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC wants it, with IPv6 literals bracketed."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"

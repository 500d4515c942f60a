"""The OTLP/gRPC receivers: ``TraceService/Export`` and ``LogsService/Export``.

Same semantics as OTLP/HTTP (see :mod:`tokentrail.collector.receiver`), and the
same code from the raw request bytes on: decode, partial success, ingest. Only
the answers change to gRPC status codes: INVALID_ARGUMENT for a malformed
request (never retried), UNAUTHENTICATED, RESOURCE_EXHAUSTED over the size
limit; and, with ``RetryInfo`` so OTel exporters retry after the delay,
RESOURCE_EXHAUSTED when the ingest queue is full and UNAVAILABLE when neither
store nor spool can take the export.

The services are registered by hand rather than through the generated
``add_*Servicer_to_server``: those parse the request before our code runs, so
a malformed payload would surface as INTERNAL instead of INVALID_ARGUMENT and
skip the decoder HTTP uses.
"""

from __future__ import annotations

import logging
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
from tokentrail.collector.ingest_queue import Backpressure, QueueFull
from tokentrail.collector.receiver import (
    DEFAULT_MAX_BODY_BYTES,
    LOGS,
    TRACES,
    Accept,
    Signal,
    acknowledge,
)

logger = logging.getLogger(__name__)

Item = TypeVar("Item")

DEFAULT_GRPC_PORT = 4317
# Each export holds a worker while it is stored; a few cover a handful of
# exporters, and more would only queue on the same store.
DEFAULT_WORKERS = 8
# Calls waiting for a worker wait in memory: past this many in all, gRPC itself
# answers RESOURCE_EXHAUSTED (which OTel exporters retry), as HTTP answers 429.
MAX_CONCURRENT_CALLS = 4 * DEFAULT_WORKERS

# The OTLP exporters read the retry delay from this trailer (google.rpc.RetryInfo).
_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"


def _service_name(module: Any, service: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[service].full_name)


def _export_handler(
    signal: Signal[Item], accept: Accept, keyring: KeyRing
) -> grpc.RpcMethodHandler:
    """The unary ``Export`` method of one signal, taking the request as raw bytes."""

    def export(body: bytes, context: grpc.ServicerContext) -> Message:
        # context.abort raises, ending the call with that status.
        metadata = dict(context.invocation_metadata())
        try:
            project_id = keyring.project_for_authorization(str(metadata.get("authorization", "")))
        except Unauthenticated as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        try:
            items, errors = signal.decode(body, PROTOBUF)
        except DecodeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            return acknowledge(signal, accept, project_id, items, errors, body, PROTOBUF)
        except Backpressure as exc:
            delay = Duration(seconds=exc.retry_after)
            retry_info = RetryInfo(retry_delay=delay).SerializeToString()
            context.set_trailing_metadata(((_RETRY_INFO_KEY, retry_info),))
            if isinstance(exc, QueueFull):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    return grpc.unary_unary_rpc_method_handler(
        export, response_serializer=lambda message: message.SerializeToString()
    )


def grpc_server(
    accept: Accept,
    keyring: KeyRing,
    address: str,
    max_message_bytes: int = DEFAULT_MAX_BODY_BYTES,
    workers: int = DEFAULT_WORKERS,
) -> tuple[grpc.Server, int]:
    """A started-to-be server bound to ``address`` (``host:port``), and its bound port.

    Call ``start()`` on it, and ``stop(grace)`` at shutdown. ``accept`` is the
    callable the HTTP receivers get, under the same contract: durable before it
    returns, :class:`Backpressure` to have the export retried.
    ``max_message_bytes`` bounds the message after gzip inflation (gRPC enforces
    it, answering RESOURCE_EXHAUSTED), like the HTTP body limit. Port 0 picks a
    free one. Raises RuntimeError when the address cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokentrail-grpc"),
        maximum_concurrent_rpcs=MAX_CONCURRENT_CALLS,
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
                traces, {"Export": _export_handler(TRACES, accept, keyring)}
            ),
            grpc.method_handlers_generic_handler(
                logs, {"Export": _export_handler(LOGS, accept, keyring)}
            ),
        )
    )
    port = server.add_insecure_port(address)
    return server, port


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC wants it, with IPv6 literals bracketed."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"

"""The OTLP/gRPC receivers: ``TraceService/Export`` and ``LogsService/Export``.

Same semantics as OTLP/HTTP (see :mod:`tokentrail.collector.receiver`), and the
same code from the raw request bytes on: decode, partial success, ingest. Only
the answers change to gRPC status codes: INVALID_ARGUMENT for a malformed
request (never retried), UNAUTHENTICATED, RESOURCE_EXHAUSTED over the size
limit, UNAVAILABLE with ``RetryInfo`` when storing failed (retried by OTel
exporters).

The services are registered by hand rather than through the generated
``add_*Servicer_to_server``: those parse the request before our code runs, so
a malformed payload would surface as INTERNAL instead of INVALID_ARGUMENT and
skip the decoder HTTP uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
from tokentrail.collector.receiver import (
    DEFAULT_MAX_BODY_BYTES,
    LOGS,
    RETRY_AFTER_SECONDS,
    TRACES,
    LogIngest,
    Signal,
    StorageUnavailable,
    acknowledge,
)
from tokentrail.collector.receiver import Ingest as SpanIngest

logger = logging.getLogger(__name__)

Item = TypeVar("Item")

DEFAULT_GRPC_PORT = 4317
# Each export holds a worker while it is stored; a few cover a handful of
# exporters, and more would only queue on the same store.
DEFAULT_WORKERS = 8

# The OTLP exporters read the retry delay from this trailer (google.rpc.RetryInfo).
_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
_RETRY_INFO = RetryInfo(retry_delay=Duration(seconds=RETRY_AFTER_SECONDS)).SerializeToString()


def _service_name(module: Any, service: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[service].full_name)


def _export_handler(
    signal: Signal[Item],
    ingest: Callable[[str, list[Item]], None],
    keyring: KeyRing,
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
            return acknowledge(signal, ingest, project_id, items, errors)
        except StorageUnavailable as exc:
            context.set_trailing_metadata(((_RETRY_INFO_KEY, _RETRY_INFO),))
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    return grpc.unary_unary_rpc_method_handler(
        export, response_serializer=lambda message: message.SerializeToString()
    )


def grpc_server(
    ingest: SpanIngest,
    log_ingest: LogIngest,
    keyring: KeyRing,
    address: str,
    max_message_bytes: int = DEFAULT_MAX_BODY_BYTES,
    workers: int = DEFAULT_WORKERS,
) -> tuple[grpc.Server, int]:
    """A started-to-be server bound to ``address`` (``host:port``), and its bound port.

    Call ``start()`` on it, and ``stop(grace)`` at shutdown. ``ingest`` and
    ``log_ingest`` are the same callables the HTTP receivers get, under the same
    contract: store durably before returning, raise to have the export retried.
    ``max_message_bytes`` bounds the message after gzip inflation (gRPC enforces
    it, answering RESOURCE_EXHAUSTED), like the HTTP body limit. Port 0 picks a
    free one. Raises RuntimeError when the address cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokentrail-grpc"),
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
                traces, {"Export": _export_handler(TRACES, ingest, keyring)}
            ),
            grpc.method_handlers_generic_handler(
                logs, {"Export": _export_handler(LOGS, log_ingest, keyring)}
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

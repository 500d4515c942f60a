"""The OTLP/HTTP receivers: ``POST /v1/traces`` and ``POST /v1/logs`` as OTLP defines them.

Both signals share one implementation (content type, gzip, size limits, error
answers); a :class:`Signal` holds the little that differs. Every answer is one
an OTLP exporter understands: 200 with the signal's Export*ServiceResponse
(partial success when items were rejected), or a google.rpc.Status body with
400 (never retried), 413, 415, or 429/503 with Retry-After (retried) — always in
the encoding the client used. What is accepted is handed to an ``Accept``
callable (the ingest queue), which makes it durable before the 200.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the endpoint
# signature, which refers to the local `project_dependency`.
import json
import logging
import threading
import zlib
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tokentrail.collector import telemetry
from tokentrail.collector.decode import (
    JSON,
    PROTOBUF,
    DecodeError,
    flatten,
    media_type,
    parse_traces_request,
)
from tokentrail.collector.decode_logs import flatten_logs, parse_logs_request
from tokentrail.collector.ingest_queue import Backpressure, Export, QueueFull, StorageUnavailable
from tokentrail.collector.limits import configured_limits
from tokentrail.collector.records import LogRecord, Span

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
# Takes a decoded export; returns once it is durable, raises Backpressure if refused.
Accept = Callable[[Export], None]

# TOKENTRAIL_MAX_REQUEST_BYTES, read here so every transport defaults to it.
DEFAULT_MAX_BODY_BYTES = configured_limits().request_bytes
# Exports read, decoded or waiting for their write at once. Each holds up to a
# body (DEFAULT_MAX_BODY_BYTES) and its decoded items, so this bounds memory
# taken by requests in progress, as the ingest queue bounds memory after them.
DEFAULT_MAX_IN_FLIGHT = 32
MAX_REPORTED_ERRORS = 20

_GZIP = frozenset({"gzip", "x-gzip"})  # x-gzip is gzip's old alias (RFC 9110)
_IDENTITY = frozenset({"", "identity"})
_GZIP_WBITS = zlib.MAX_WBITS | 16  # accept the gzip wrapper only, not raw zlib

# OTLP leaves Status.code to the server; these follow the usual gRPC mapping
# so logs read the same as for OTLP/gRPC.
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 12, 429: 8, 503: 14}
_GRPC_UNKNOWN = 2

_OPENAPI_EXTRA = {
    "requestBody": {
        "required": True,
        "content": {
            PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"type": "object"}},
        },
    }
}


@dataclass(frozen=True)
class Signal(Generic[Item]):
    """What differs between the OTLP signals; everything else is shared."""

    name: str  # "traces", "logs": the path, the route's name, the ingest route
    items: str  # what the signal carries, for messages: "spans", "log records"
    decode: Callable[[bytes, str], tuple[list[Item], list[str]]]  # → items, rejections
    response_type: type[ExportTraceServiceResponse] | type[ExportLogsServiceResponse]
    rejected_field: str  # the partial_success field counting rejected items
    rejected: telemetry.Counter  # counts refusals by reason


TRACES = Signal[Span](
    "traces",
    "spans",
    lambda body, content_type: flatten(parse_traces_request(body, content_type)),
    ExportTraceServiceResponse,
    "rejected_spans",
    telemetry.SPANS_REJECTED,
)
LOGS = Signal[LogRecord](
    "logs",
    "log records",
    lambda body, content_type: flatten_logs(parse_logs_request(body, content_type)),
    ExportLogsServiceResponse,
    "rejected_log_records",
    telemetry.LOGS_REJECTED,
)


def otlp_http_router(
    accept: Accept,
    project_dependency: Callable[..., str],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> APIRouter:
    """A router serving ``POST /v1/traces`` and ``POST /v1/logs``.

    ``project_dependency`` is a FastAPI dependency returning the project id of
    the caller's API key (it raises HTTPException 401 itself). ``accept`` is
    called in a worker thread with each export holding valid items and must
    make it durable before returning: the 200 it leads to tells the exporter to
    forget it. If it raises :class:`Backpressure` the client gets 429 or 503
    with Retry-After and sends it again; any other exception is a 503 too.
    ``max_body_bytes`` bounds the body both as sent and after gunzip; past
    ``max_in_flight`` exports in progress, the next is answered 429 at once.
    """
    router = APIRouter()
    in_flight = InFlight(max_in_flight)
    for signal in (TRACES, LOGS):
        router.include_router(
            _signal_router(signal, accept, project_dependency, max_body_bytes, in_flight)
        )
    return router


class InFlight:
    """Exports in progress, counted against a limit; shared by the OTLP transports.

    Each transport refuses the export past the limit in its own retryable way.
    Locked: gRPC counts out from worker threads.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """Count one more export in; False, counting nothing, when at the limit."""
        with self._lock:
            if self._count >= self.limit:
                return False
            self._count += 1
            return True

    def leave(self, _: object = None) -> None:
        """Count one out (the ignored argument lets it serve as a future's done-callback)."""
        with self._lock:
            self._count -= 1


def _signal_router(
    signal: Signal[Item],
    accept: Accept,
    project_dependency: Callable[..., str],
    max_body_bytes: int,
    in_flight: InFlight,
) -> APIRouter:
    router = APIRouter(route_class=_OtlpRoute)

    @router.post(
        f"/v1/{signal.name}",
        name=f"export_{signal.name}",
        response_class=Response,
        summary=f"Receive OTLP {signal.name} data (protobuf or JSON, optionally gzip)",
        openapi_extra=_OPENAPI_EXTRA,
    )
    async def export(
        request: Request, project_id: Annotated[str, Depends(project_dependency)]
    ) -> Response:
        content_type = _supported_content_type(request)
        gzipped = _is_gzipped(request)
        if not in_flight.enter():
            raise HTTPException(
                429,
                f"{in_flight.limit} exports are in progress, the most this collector takes;"
                " retry later",
                headers={"Retry-After": str(QueueFull.retry_after)},
            )
        try:
            body = await _read_body(request, max_body_bytes)
            upload = _Upload(project_id, body, content_type, gzipped, max_body_bytes)
            # Inflating, decoding and storing are CPU- or I/O-bound: keep them off the loop.
            return await run_in_threadpool(_export, signal, accept, upload)
        finally:
            in_flight.leave()

    return router


class _OtlpRoute(APIRoute):
    """A route answering every HTTPException, the auth dependency's too, with a Status body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        signal = self.path.rsplit("/", 1)[-1]  # "/v1/traces" → "traces"

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except StarletteHTTPException as exc:
                response = _failure(request, exc.status_code, str(exc.detail), exc.headers)
            except Exception:
                telemetry.HTTP_REQUESTS.inc(signal=signal, code="500")  # the server's answer
                raise
            telemetry.HTTP_REQUESTS.inc(signal=signal, code=str(response.status_code))
            return response

        return handle


def _supported_content_type(request: Request) -> str:
    content_type = request.headers.get("content-type", "")
    if media_type(content_type) not in (PROTOBUF, JSON):
        raise HTTPException(415, f"Content-Type must be {PROTOBUF} or {JSON}, got {content_type!r}")
    return content_type


def _is_gzipped(request: Request) -> bool:
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in _GZIP:
        return True
    if encoding in _IDENTITY:
        return False
    raise HTTPException(415, f"Content-Encoding must be gzip or identity, got {encoding!r}")


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes ``limit`` so a huge upload is never buffered."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {declared} bytes exceeds the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body exceeds the {limit}-byte limit")
    return bytes(body)


@dataclass(frozen=True)
class _Upload:
    """One export request as received, before inflating and decoding."""

    project_id: str
    body: bytes
    content_type: str
    gzipped: bool
    limit: int


def _export(signal: Signal[Item], accept: Accept, upload: _Upload) -> Response:
    """Decode, store and acknowledge one export; failures leave as HTTPException."""
    body = _gunzip(upload.body, upload.limit) if upload.gzipped else upload.body
    try:
        items, errors = signal.decode(body, upload.content_type)
    except DecodeError as exc:
        raise HTTPException(400, str(exc)) from exc
    try:
        response = acknowledge(
            signal, accept, upload.project_id, items, errors, body, upload.content_type
        )
    except Backpressure as exc:
        status = 429 if isinstance(exc, QueueFull) else 503
        retry_after = {"Retry-After": str(exc.retry_after)}
        raise HTTPException(status, str(exc), headers=retry_after) from exc
    as_json = media_type(upload.content_type) == JSON
    return _message_response(200, response, as_json=as_json)


def acknowledge(
    signal: Signal[Item],
    accept: Accept,
    project_id: str,
    items: list[Item],
    errors: list[str],
    body: bytes,
    content_type: str,
) -> Message:
    """Hand valid items on and build the Export*ServiceResponse; shared by HTTP and gRPC.

    Raises :class:`Backpressure` when the export was not accepted, so each
    transport maps it to its own retryable answer.
    """
    if errors:
        logger.warning(
            "project %s: rejected %d of %d %s, first: %s",
            project_id,
            len(errors),
            len(errors) + len(items),
            signal.items,
            errors[0],
        )
    if items:
        try:
            accept(Export(signal.name, project_id, list(items), body, content_type))
        except Backpressure as exc:
            reason = "queue_full" if isinstance(exc, QueueFull) else "unavailable"
            signal.rejected.inc(len(items), reason=reason)
            raise
        except Exception as exc:
            signal.rejected.inc(len(items), reason="unavailable")
            logger.exception(
                "project %s: storing %d %s failed; answered retryable so the exporter retries",
                project_id,
                len(items),
                signal.items,
            )
            raise StorageUnavailable(
                f"the {signal.items} could not be stored right now; retry later"
            ) from exc
    return _export_response(signal, errors)


def _gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body without ever holding more than ``limit`` + 1 output bytes.

    A gzip bomb is a few kilobytes on the wire and gigabytes inflated, so the
    output is bounded while inflating, not checked afterwards. Concatenated
    gzip members are valid gzip and are all read.
    """
    out = bytearray()
    pending = body
    try:
        while True:
            inflater = zlib.decompressobj(wbits=_GZIP_WBITS)
            while not inflater.eof:
                if not pending:
                    raise HTTPException(400, "gzip body is empty or truncated")
                # max_length >= 1 here, and 0 would mean "unbounded" to zlib.
                out += inflater.decompress(pending, limit + 1 - len(out))
                if len(out) > limit:
                    raise HTTPException(
                        413, f"decompressed request body exceeds the {limit}-byte limit"
                    )
                pending = inflater.unconsumed_tail
            pending = inflater.unused_data
            if not pending.strip(b"\0"):  # gzip tools tolerate trailing zero padding
                return bytes(out)
    except zlib.error as exc:
        raise HTTPException(400, f"invalid gzip body: {exc}") from exc


def _export_response(signal: Signal[Item], errors: list[str]) -> Message:
    """Full success, or partial success naming why items were rejected (never retried)."""
    response = signal.response_type()
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        message = "; ".join(shown)
        if len(errors) > len(shown):
            message += f"; and {len(errors) - len(shown)} more"
        # Both responses spell partial success alike but for the count's name.
        setattr(response.partial_success, signal.rejected_field, len(errors))
        response.partial_success.error_message = message
    return response


def _failure(
    request: Request, status_code: int, message: str, headers: Mapping[str, str] | None
) -> Response:
    """A google.rpc.Status answer, JSON unless the client sent protobuf."""
    status = status_pb2.Status(code=_GRPC_CODES.get(status_code, _GRPC_UNKNOWN), message=message)
    as_json = media_type(request.headers.get("content-type", "")) != PROTOBUF
    return _message_response(status_code, status, as_json=as_json, headers=headers)


def _message_response(
    status_code: int,
    message: Message,
    *,
    as_json: bool,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if as_json:
        content = json.dumps(json_format.MessageToDict(message)).encode()
        return Response(content, status_code, headers, media_type=JSON)
    return Response(message.SerializeToString(), status_code, headers, media_type=PROTOBUF)

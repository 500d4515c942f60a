"""Bad input at OTLP/HTTP and OTLP/gRPC: the collector never answers 5xx, never hangs.

Hypothesis throws random bytes, corrupted exports made by the official OTel
encoder, and OTLP-shaped JSON with wrong types, wrong or non-hex ids, invalid
UTF-8, huge numbers and deep or huge attribute values at the real composition
root (real store, key ring, ingest pipeline): /v1/traces and /v1/logs of the
app, and the same pipeline's gRPC ``TraceService/Export`` and ``LogsService/Export``
on a loopback port. A request mixing good and bad spans must store the good ones
and list exactly the bad ones, whichever way it came in.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from test_logs import protobuf as encode_log_records
from test_logs import record_per_message_events
from test_receiver import record_sdk_spans

import tokentrail.collector
from tokentrail.api.app import create_app
from tokentrail.api.auth import KeyRing, hash_key
from tokentrail.collector.grpc_receiver import grpc_server
from tokentrail.collector.ingest_queue import IngestQueue
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.receiver import DEFAULT_MAX_BODY_BYTES
from tokentrail.collector.service import open_ingest_queue
from tokentrail.schema.store import Store

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
KEY = "tt-fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PATHS = ("/v1/traces", "/v1/logs")
ALLOWED = frozenset({200, 400, 413, 415})
# Generous for a 2-core machine writing to embedded ClickHouse; a hang is far longer.
REQUEST_TIMEOUT_S = 20.0

# The same exports over OTLP/gRPC, by their wire names as any client calls them.
GRPC_METHODS = {
    "/v1/traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/v1/logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
GRPC_METADATA = (("authorization", f"Bearer {KEY}"),)
# OK (partial success included), malformed, too big. UNAVAILABLE only as back-pressure.
GRPC_ALLOWED = frozenset(
    {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
TRANSPORTS = ("http", "grpc")
# The one outcome vocabulary of both transports, so a test can be run over either.
OUTCOMES = {
    200: "ok",
    400: "invalid",
    413: "too big",
    415: "unsupported",
    grpc.StatusCode.OK: "ok",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "too big",
    grpc.StatusCode.UNAVAILABLE: "busy",
}

# TOKENTRAIL_FUZZ_SCALE=20 makes a bug hunt of the same tests; the default keeps CI short.
SCALE = int(os.environ.get("TOKENTRAIL_FUZZ_SCALE", "1"))
FUZZ = settings(
    max_examples=40 * SCALE,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # keep runs reproducible from the seed, not from a local cache
)
# Requests that reach the store are slower: fewer of them.
FUZZ_STORED = settings(FUZZ, max_examples=15 * SCALE)
# gRPC calls are cheap: random bytes get more of them than over HTTP.
FUZZ_GRPC = settings(FUZZ, max_examples=100 * SCALE)


@pytest.fixture(scope="module")
def project() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def keyring(store: Store, project: str) -> KeyRing:
    return KeyRing(store, env_keys={hash_key(KEY): project})


@pytest.fixture(scope="module")
def pipeline(store: Store) -> IngestPipeline:
    return IngestPipeline(store)


@pytest.fixture(scope="module")
def queue(
    store: Store, pipeline: IngestPipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestQueue]:
    """One queue (and spool) behind both transports, as ``tokentrail serve`` wires them.

    At the end, no export may have been set aside as unwritable: bad input must
    be refused when received, never found out by failing writes.
    """
    spool = tmp_path_factory.mktemp("spool")
    opened = open_ingest_queue(store, pipeline, spool, 1024**3)
    yield opened
    opened.close()
    assert sorted(spool.glob("rejected/*")) == []


@pytest.fixture(scope="module")
def client(
    store: Store, keyring: KeyRing, pipeline: IngestPipeline, queue: IngestQueue
) -> Iterator[TestClient]:
    """The real app; module-scoped so each hypothesis example reuses it."""
    with TestClient(create_app(store, keyring, pipeline, queue)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


@pytest.fixture(scope="module")
def channel(keyring: KeyRing, queue: IngestQueue) -> Iterator[grpc.Channel]:
    """A channel to the real gRPC receiver, started on a free loopback port for this module."""
    server, port = grpc_server(queue.submit, keyring, "127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
            yield opened
    finally:
        assert server.stop(grace=None).wait(timeout=REQUEST_TIMEOUT_S)


@dataclass(frozen=True)
class Via:
    """Both ways into the one collector: the app over HTTP, the receiver over gRPC."""

    client: TestClient
    pool: ThreadPoolExecutor
    channel: grpc.Channel
    queue: IngestQueue


@pytest.fixture(scope="module")
def via(
    client: TestClient, pool: ThreadPoolExecutor, channel: grpc.Channel, queue: IngestQueue
) -> Via:
    return Via(client, pool, channel, queue)


def stored(via: Via, store: Store, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` once every export accepted so far is written."""
    assert via.queue.drain(REQUEST_TIMEOUT_S), "exports accepted but never written"
    return list(store.query(sql, params).rows)


def stored_span_ids(via: Via, store: Store, project: str, trace_id: bytes) -> set[str]:
    sql = "SELECT SpanId FROM spans WHERE project_id = {p:String} AND TraceId = {t:String}"
    return {span_id for (span_id,) in stored(via, store, sql, {"p": project, "t": trace_id.hex()})}


class Answer(Protocol):
    """What the tests read of a response (starlette may answer with httpx or httpx2)."""

    @property
    def status_code(self) -> int: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def post(
    client: TestClient,
    pool: ThreadPoolExecutor,
    path: str,
    body: bytes,
    content_type: str,
    gzipped: bool = False,
) -> Answer:
    """POST with a time bound, and check the property every answer must have."""
    headers = {**AUTH, "Content-Type": content_type}
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    future = pool.submit(client.post, path, content=body, headers=headers)
    try:
        response = future.result(timeout=REQUEST_TIMEOUT_S)
    except FutureTimeout:
        pytest.fail(f"{path} did not answer within {REQUEST_TIMEOUT_S}s")
    assert response.status_code in ALLOWED, (response.status_code, response.text[:500])
    return response


@dataclass(frozen=True)
class Reply:
    """A finished gRPC call: its status, and the serialized response when it is OK."""

    code: grpc.StatusCode
    content: bytes
    details: str


def call(channel: grpc.Channel, path: str, body: bytes, gzipped: bool = False) -> Reply:
    """Export raw ``body`` bytes over gRPC with a deadline; check what every answer must be.

    No serializers: the bytes go out exactly as given, as a broken client would send them.
    """
    export_method = channel.unary_unary(GRPC_METHODS[path])
    compression = grpc.Compression.Gzip if gzipped else grpc.Compression.NoCompression
    try:
        content = export_method(
            body, timeout=REQUEST_TIMEOUT_S, metadata=GRPC_METADATA, compression=compression
        )
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            pytest.fail(f"{GRPC_METHODS[path]} did not answer within {REQUEST_TIMEOUT_S}s")
        assert code in GRPC_ALLOWED or is_back_pressure(error), (code, details[:500])
        return Reply(code, b"", details)
    return Reply(grpc.StatusCode.OK, content, "")


def is_back_pressure(error: grpc.RpcError) -> bool:
    """UNAVAILABLE because the collector cannot take more now, and says when to retry.

    That is, with RetryInfo, which the receiver sends on purpose. Not
    back-pressure: UNAVAILABLE without it (the server crashed or is gone), nor
    an export whose items "could not be stored" (handing them over failed
    unexpectedly): retried, bad input would be resent for ever.
    """
    if error.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    trailers = dict(error.trailing_metadata() or ())
    refused = "could not be stored" in (error.details() or "")
    return "google.rpc.retryinfo-bin" in trailers and not refused


def send(via: Via, transport: str, path: str, body: bytes, gzipped: bool = False) -> str:
    """Send a protobuf ``body`` over ``transport`` ("http" or "grpc"); its outcome, in
    :data:`OUTCOMES` words so that both transports are held to the same expectation."""
    if transport == "grpc":
        return OUTCOMES[call(via.channel, path, body, gzipped).code]
    return OUTCOMES[post(via.client, via.pool, path, body, PROTOBUF, gzipped).status_code]


_Answer = TypeVar("_Answer", ExportTraceServiceResponse, ExportLogsServiceResponse)


def export(
    via: Via,
    transport: str,
    path: str,
    request: ExportTraceServiceRequest | ExportLogsServiceRequest,
    answer: _Answer,
    as_json: bool = False,
    gzipped: bool = False,
    json_ids: Mapping[int, Mapping[str, str]] | None = None,
) -> _Answer:
    """Send ``request`` and parse its answer, which must be a success (partial or not).

    Over gRPC, or over HTTP as protobuf or (``as_json``) OTLP/JSON; ``json_ids``
    then overrides the ids of the listed spans or records, for ids only JSON can
    spell (not hex at all).
    """
    if transport == "grpc":
        reply = call(via.channel, path, request.SerializeToString(), gzipped)
        assert reply.code == grpc.StatusCode.OK, reply.details
        answer.ParseFromString(reply.content)
        return answer
    if as_json:
        key = "resourceSpans" if path == "/v1/traces" else "resourceLogs"
        document = otlp_json(request, key)
        for i, ids in (json_ids or {}).items():
            _first_scope_items(document, key)[i].update(ids)
        body, content_type = json.dumps(document).encode(), JSON
    else:
        body, content_type = request.SerializeToString(), PROTOBUF
    response = post(via.client, via.pool, path, body, content_type, gzipped)
    assert response.status_code == 200, response.text
    if as_json:
        json_format.Parse(response.content, answer)
    else:
        answer.ParseFromString(response.content)
    return answer


# --- sample exports made by the real OTel encoder ---------------------------------------

TRACES_BODY = encode_spans(record_sdk_spans()).SerializeToString()
LOGS_BODY = encode_log_records(record_per_message_events().logs)
VALID_BODIES = {"/v1/traces": TRACES_BODY, "/v1/logs": LOGS_BODY}


def corrupt(body: bytes, data: st.DataObject) -> bytes:
    """The body truncated, with bits flipped, or with random bytes spliced in."""
    how = data.draw(st.sampled_from(["truncate", "flip", "splice"]))
    if how == "truncate":
        return body[: data.draw(st.integers(0, len(body) - 1))]
    mutable = bytearray(body)
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            at = data.draw(st.integers(0, len(mutable) - 1))
            mutable[at] ^= 1 << data.draw(st.integers(0, 7))
        return bytes(mutable)
    at = data.draw(st.integers(0, len(mutable)))
    return bytes(mutable[:at]) + data.draw(st.binary(min_size=1, max_size=64)) + bytes(mutable[at:])


# --- JSON shaped like OTLP, with anything in its fields ----------------------------------

HEX = "0123456789abcdef"
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),  # json.dumps spells NaN/Infinity, which is not JSON
    st.text(max_size=20),
    st.text(alphabet=HEX, max_size=40),
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` about nine times in ten, else junk: enough junk to fail, enough good to pass.

    With junk as often as good, nearly every request dies in ParseDict and the
    stages behind it (normalize, the writer) would never see fuzzed input.
    """
    return st.one_of(*[good] * 9, junk)


any_values: st.SearchStrategy[Any] = st.recursive(
    mostly(
        st.one_of(
            st.builds(lambda v: {"stringValue": v}, st.text(max_size=30)),
            st.builds(lambda v: {"intValue": v}, st.integers(-(2**70), 2**70)),
            st.builds(lambda v: {"doubleValue": v}, st.floats(allow_nan=False)),
            st.builds(lambda v: {"boolValue": v}, st.booleans()),
            st.builds(lambda v: {"bytesValue": v}, st.text(max_size=12)),
            st.just({}),
        )
    ),
    lambda inner: st.one_of(
        st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=3)),
        st.builds(
            lambda kvs: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kvs]}},
            st.lists(st.tuples(st.text(max_size=6), inner), max_size=3),
        ),
    ),
    max_leaves=10,
)
attributes = mostly(
    st.lists(
        st.fixed_dictionaries({"key": mostly(st.text(max_size=10)), "value": any_values}),
        max_size=4,
    )
)


def hex_ids(size: int) -> st.SearchStrategy[Any]:
    """OTLP/JSON ids of ``size`` bytes, often of another length, zero, non-hex or not a string."""
    return st.one_of(
        st.binary(min_size=size, max_size=size).map(bytes.hex),
        st.binary(min_size=size, max_size=size).map(lambda b: b.hex().upper()),
        st.binary(min_size=size, max_size=size).map(bytes.hex),
        st.binary(min_size=size, max_size=size).map(bytes.hex),
        st.binary(min_size=size, max_size=size).map(bytes.hex),
        st.text(alphabet=HEX, max_size=40),
        st.sampled_from(["0" * 32, "0" * 16, "zz" * size, "", "W47/95gDgQPSabYzgT/GDA=="]),
        junk,
    )


trace_ids, span_ids = hex_ids(16), hex_ids(8)
u64_times = st.integers(0, 2**64 - 1)
times = mostly(
    st.one_of(u64_times.map(str), u64_times, u64_times.map(str), st.integers(-(2**70), 2**70))
)
json_spans = st.fixed_dictionaries(
    {"traceId": trace_ids, "spanId": span_ids},
    optional={
        "parentSpanId": span_ids,
        "name": mostly(st.text(max_size=20)),
        "kind": mostly(st.integers(-(2**40), 2**40) | st.sampled_from(["SPAN_KIND_CLIENT", "X"])),
        "startTimeUnixNano": times,
        "endTimeUnixNano": times,
        "attributes": attributes,
        "status": mostly(
            st.fixed_dictionaries(
                {}, optional={"code": mostly(st.integers(-3, 5)), "message": mostly(st.text())}
            )
        ),
        "events": mostly(
            st.lists(
                st.fixed_dictionaries(
                    {"name": mostly(st.text(max_size=5)), "attributes": attributes},
                    optional={"timeUnixNano": times},
                ),
                max_size=2,
            )
        ),
        "links": mostly(
            st.lists(
                st.fixed_dictionaries(
                    {"traceId": trace_ids, "spanId": span_ids}, optional={"attributes": attributes}
                ),
                max_size=2,
            )
        ),
    },
)
json_records = st.fixed_dictionaries(
    {},
    optional={
        "traceId": trace_ids,
        "spanId": span_ids,
        "timeUnixNano": times,
        "observedTimeUnixNano": times,
        "severityNumber": mostly(st.integers(-(2**40), 2**40)),
        "severityText": mostly(st.text(max_size=5)),
        "body": any_values,
        "attributes": attributes,
        "eventName": mostly(st.text(max_size=10)),
        "flags": mostly(st.integers(-(2**40), 2**40)),
    },
)
resource = mostly(st.fixed_dictionaries({}, optional={"attributes": attributes}))


def traces_document(spans: list[Any], res: Any) -> dict[str, Any]:
    return {"resourceSpans": [{"resource": res, "scopeSpans": [{"spans": spans}]}]}


def logs_document(records: list[Any], res: Any) -> dict[str, Any]:
    return {"resourceLogs": [{"resource": res, "scopeLogs": [{"logRecords": records}]}]}


# --- properties --------------------------------------------------------------------------


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    body=st.binary(max_size=512),
    content_type=st.sampled_from([PROTOBUF, JSON]),
    gzipped=st.booleans(),
)
def test_random_bytes_are_never_a_server_error(
    client: TestClient,
    pool: ThreadPoolExecutor,
    path: str,
    body: bytes,
    content_type: str,
    gzipped: bool,
) -> None:
    post(client, pool, path, body, content_type, gzipped)


@FUZZ_GRPC
@given(path=st.sampled_from(PATHS), body=st.binary(max_size=512), gzipped=st.booleans())
def test_random_bytes_over_grpc_are_never_a_server_error(
    channel: grpc.Channel, path: str, body: bytes, gzipped: bool
) -> None:
    call(channel, path, body, gzipped)


@pytest.mark.parametrize("transport", TRANSPORTS)
@FUZZ
@given(path=st.sampled_from(PATHS), gzipped=st.booleans(), data=st.data())
def test_corrupted_encoder_output_is_never_a_server_error(
    via: Via, transport: str, path: str, gzipped: bool, data: st.DataObject
) -> None:
    send(via, transport, path, corrupt(VALID_BODIES[path], data), gzipped)


@FUZZ
@given(gzipped=st.booleans(), data=st.data())
def test_corrupted_gzip_is_never_a_server_error(
    client: TestClient, pool: ThreadPoolExecutor, gzipped: bool, data: st.DataObject
) -> None:
    """The corruption lands in the gzip stream itself, not in what it wraps."""
    headers = {**AUTH, "Content-Type": PROTOBUF, "Content-Encoding": "gzip"}
    body = corrupt(gzip.compress(TRACES_BODY), data)
    response = pool.submit(client.post, "/v1/traces", content=body, headers=headers).result(
        timeout=REQUEST_TIMEOUT_S
    )
    assert response.status_code in ALLOWED, (response.status_code, response.text[:500])


@FUZZ
@given(
    spans=st.lists(json_spans, max_size=3),
    res=resource,
    gzipped=st.booleans(),
    good_ids=st.booleans(),
)
def test_otlp_shaped_json_traces_are_never_a_server_error(
    client: TestClient,
    pool: ThreadPoolExecutor,
    spans: list[Any],
    res: Any,
    gzipped: bool,
    good_ids: bool,
) -> None:
    """``good_ids``: valid ids on every span, so half the examples get past the id checks."""
    if good_ids:
        for i, span in enumerate(spans):
            span.pop("parentSpanId", None)
            span.update(traceId=uuid.uuid4().hex, spanId=f"{i + 1:016x}")
    body = json.dumps(traces_document(spans, res)).encode()
    post(client, pool, "/v1/traces", body, JSON, gzipped)


@FUZZ
@given(records=st.lists(json_records, max_size=3), res=resource, gzipped=st.booleans())
def test_otlp_shaped_json_logs_are_never_a_server_error(
    client: TestClient, pool: ThreadPoolExecutor, records: list[Any], res: Any, gzipped: bool
) -> None:
    body = json.dumps(logs_document(records, res)).encode()
    post(client, pool, "/v1/logs", body, JSON, gzipped)


@FUZZ
@given(path=st.sampled_from(PATHS), data=st.data())
def test_invalid_utf8_and_surrogates_in_json_are_never_a_server_error(
    client: TestClient, pool: ThreadPoolExecutor, path: str, data: st.DataObject
) -> None:
    """Raw non-UTF-8 bytes, or lone surrogates escaped as \\udXXX, inside string values."""
    bad = data.draw(
        st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\\ud800", b"\\udfff", b"\\u0000"])
    )
    name = (
        b'"' + data.draw(st.binary(max_size=4)).replace(b'"', b"").replace(b"\\", b"") + bad + b'"'
    )
    if path == "/v1/traces":
        body = (
            b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813f'
            b'c60c","spanId":"eee19b7ec3c1b174","name":'
            + name
            + b',"attributes":[{"key":'
            + name
            + b',"value":{"stringValue":'
            + name
            + b"}}]}]}]}]}"
        )
    else:
        body = (
            b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityText":'
            + name
            + b',"body":{"stringValue":'
            + name
            + b"}}]}]}]}"
        )
    post(client, pool, path, body, JSON, data.draw(st.booleans()))


def otlp_json(request: Message, top: str) -> dict[str, Any]:
    """``request`` as OTLP/JSON: protobuf's JSON mapping with the ids in hex, not base64."""
    document = json_format.MessageToDict(request)
    for item in _first_scope_items(document, top):
        for key in ("traceId", "spanId"):
            item[key] = base64.b64decode(item.get(key, "")).hex()
        if "parentSpanId" in item:
            item["parentSpanId"] = base64.b64decode(item["parentSpanId"]).hex()
    return document


def _first_scope_items(document: dict[str, Any], top: str) -> list[dict[str, Any]]:
    """The spans or log records of the first scope of the first resource of an OTLP/JSON export."""
    scopes, items = (
        ("scopeSpans", "spans") if top == "resourceSpans" else ("scopeLogs", "logRecords")
    )
    found: list[dict[str, Any]] = document[top][0][scopes][0].get(items, [])
    return found


def _good_ids() -> st.SearchStrategy[tuple[bytes, bytes]]:
    return st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8)).filter(
        lambda pair: any(pair[0]) and any(pair[1])
    )


_bad_ids = st.one_of(
    st.tuples(st.binary(max_size=24).filter(lambda b: len(b) != 16), st.just(b"\x01" * 8)),
    st.tuples(st.just(b"\x01" * 16), st.binary(max_size=12).filter(lambda b: len(b) != 8)),
    st.just((b"\0" * 16, b"\x01" * 8)),
    st.just((b"\x01" * 16, b"\0" * 8)),
)


def _is_hex(text: str) -> bool:
    try:
        return len(bytes.fromhex(text)) * 2 == len(text)
    except ValueError:
        return False


# Ids only OTLP/JSON can spell: not hex at all, so of no length, right or wrong.
_non_hex = st.one_of(
    st.sampled_from(["zz" * 16, "W47/95gDgQPSabYzgT/GDA==", "7ULsX/jfk/w=", "0x01", "abc", " 01"]),
    st.text(min_size=1, max_size=40).filter(lambda text: not _is_hex(text)),
)
# The JSON keys of a span's or a log record's ids, as flatten names them, in the order it checks.
SPAN_ID_FIELDS = {"traceId": "trace_id", "spanId": "span_id", "parentSpanId": "parent_span_id"}
LOG_ID_FIELDS = {"traceId": "trace_id", "spanId": "span_id"}


def _non_hex_ids(fields: Mapping[str, str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(list(fields)), _non_hex, min_size=1)


def assert_exactly_listed(
    listed: str,
    item: str,
    fields: Mapping[str, str],
    kinds: list[bool],
    non_hex: Mapping[int, Mapping[str, str]],
) -> None:
    """The partial-success message names exactly the bad items, non-hex ids by their field."""
    where = f"{item} {{}} of scope 0 of resource 0:".format
    bad = [i for i, valid in enumerate(kinds) if not valid]
    assert [i for i in range(len(kinds)) if where(i) in listed] == bad
    for i, ids in non_hex.items():
        assert f"{where(i)} {_first_non_hex(fields, ids)}" in listed


def _first_non_hex(fields: Mapping[str, str], ids: Mapping[str, str]) -> str:
    """The problem flatten reports for ``ids``: the first bad one in its order."""
    return next(f"{name} must be a hex string" for key, name in fields.items() if key in ids)


@pytest.mark.parametrize("transport", TRANSPORTS)
@FUZZ_STORED
@given(
    kinds=st.lists(st.booleans(), min_size=1, max_size=6),
    data=st.data(),
    as_json=st.booleans(),
    gzipped=st.booleans(),
)
def test_good_spans_are_stored_and_exactly_the_bad_ones_are_listed(
    via: Via,
    store: Store,
    project: str,
    transport: str,
    kinds: list[bool],
    data: st.DataObject,
    as_json: bool,
    gzipped: bool,
) -> None:
    """``kinds[i]``: whether span i is valid; good ones share one fresh trace.

    ``as_json`` (HTTP only: gRPC is protobuf) sends OTLP/JSON, where a bad span
    may also have ids that are not hex at all.
    """
    trace_id = uuid.uuid4().bytes
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    good: set[str] = set()
    non_hex: dict[int, dict[str, str]] = {}
    for i, valid in enumerate(kinds):
        t_id, span_id = trace_id, i.to_bytes(1, "big") + uuid.uuid4().bytes[:7]
        if valid:
            good.add(span_id.hex())
        elif as_json and transport == "http" and data.draw(st.booleans()):
            non_hex[i] = data.draw(_non_hex_ids(SPAN_ID_FIELDS))  # over good ids
        else:
            t_id, span_id = data.draw(_bad_ids)
        spans.add(name=f"span {i}", trace_id=t_id, span_id=span_id, start_time_unix_nano=10**18)
    answer = export(
        via,
        transport,
        "/v1/traces",
        request,
        ExportTraceServiceResponse(),
        as_json,
        gzipped,
        json_ids=non_hex,
    )

    bad = [i for i, valid in enumerate(kinds) if not valid]
    assert answer.partial_success.rejected_spans == len(bad)
    assert_exactly_listed(
        answer.partial_success.error_message, "span", SPAN_ID_FIELDS, kinds, non_hex
    )
    assert stored_span_ids(via, store, project, trace_id) == good


@pytest.mark.parametrize("transport", TRANSPORTS)
@FUZZ_STORED
@given(kinds=st.lists(st.booleans(), min_size=1, max_size=6), data=st.data(), as_json=st.booleans())
def test_good_log_records_are_kept_and_exactly_the_bad_ones_are_listed(
    via: Via, transport: str, kinds: list[bool], data: st.DataObject, as_json: bool
) -> None:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    non_hex: dict[int, dict[str, str]] = {}
    for i, valid in enumerate(kinds):
        trace_id, span_id = data.draw(_good_ids() if valid else _bad_ids)
        if not valid and as_json and transport == "http" and data.draw(st.booleans()):
            non_hex[i] = data.draw(_non_hex_ids(LOG_ID_FIELDS))
            trace_id, span_id = b"", b""  # no context: valid, but for the ids JSON gets instead
        elif not valid and len(trace_id) in (0, 16) and len(span_id) in (0, 8):
            span_id = b"\x01" * 3  # all-zero ids are "no context" for a log record: still valid
        records.add(trace_id=trace_id, span_id=span_id, severity_text=str(i))
    answer = export(
        via,
        transport,
        "/v1/logs",
        request,
        ExportLogsServiceResponse(),
        as_json,
        json_ids=non_hex,
    )
    bad = [i for i, valid in enumerate(kinds) if not valid]
    assert answer.partial_success.rejected_log_records == len(bad)
    assert_exactly_listed(
        answer.partial_success.error_message, "log record", LOG_ID_FIELDS, kinds, non_hex
    )


def _proto_value(value: Any) -> AnyValue:
    """A Python value drawn below as the AnyValue carrying it."""
    if isinstance(value, tuple):  # tagged, so bytes/int/float/list/dict stay distinct
        tag, inner = value
        proto = AnyValue()
        if tag == "array":
            proto.array_value.SetInParent()  # so an empty array is still an array
            proto.array_value.values.extend(_proto_value(v) for v in inner)
        else:
            proto.kvlist_value.SetInParent()
            for key, item in inner:
                proto.kvlist_value.values.add(key=key).value.CopyFrom(_proto_value(item))
        return proto
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if value is None:
        return AnyValue()
    return AnyValue(string_value=value)


proto_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(),  # NaN and infinities are fine in protobuf
        st.binary(max_size=20),
        st.text(max_size=30),
        st.text(max_size=3) | st.just("x" * 70_000),
    ),
    lambda inner: st.one_of(
        st.tuples(st.just("array"), st.lists(inner, max_size=3)),
        st.tuples(st.just("kvlist"), st.lists(st.tuples(st.text(max_size=5), inner), max_size=3)),
    ),
    max_leaves=8,
)
proto_attributes = st.lists(st.tuples(st.text(max_size=20), proto_values), max_size=5)
u64 = st.integers(0, 2**64 - 1) | st.integers(0, 2**62)


@pytest.mark.parametrize("transport", TRANSPORTS)
@FUZZ_STORED
@given(
    spans=st.lists(
        st.fixed_dictionaries(
            {
                "name": st.text(max_size=30),
                "kind": st.integers(-(2**31), 2**31 - 1),
                "start": u64,
                "end": u64,
                "attributes": proto_attributes,
                "status": st.integers(-(2**31), 2**31 - 1),
                "events": st.lists(
                    st.tuples(u64, st.text(max_size=10), proto_attributes), max_size=2
                ),
                "trace_state": st.text(max_size=20),
            }
        ),
        min_size=1,
        max_size=4,
    ),
    resource=proto_attributes,
    gzipped=st.booleans(),
)
def test_any_well_formed_protobuf_span_is_stored_or_listed(
    via: Via,
    store: Store,
    project: str,
    transport: str,
    spans: list[dict[str, Any]],
    resource: list[tuple[str, Any]],
    gzipped: bool,
) -> None:
    """Good ids, anything else in range of the proto types: each span is stored or listed."""
    trace_id = uuid.uuid4().bytes
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in resource:
        resource_spans.resource.attributes.add(key=key).value.CopyFrom(_proto_value(value))
    added = resource_spans.scope_spans.add().spans
    for i, drawn in enumerate(spans):
        span = added.add(
            trace_id=trace_id,
            span_id=bytes([i + 1]) * 8,
            name=drawn["name"],
            kind=drawn["kind"],
            start_time_unix_nano=drawn["start"],
            end_time_unix_nano=drawn["end"],
            trace_state=drawn["trace_state"],
        )
        span.status.code = drawn["status"]
        for key, value in drawn["attributes"]:
            span.attributes.add(key=key).value.CopyFrom(_proto_value(value))
        for when, name, attrs in drawn["events"]:
            event = span.events.add(time_unix_nano=when, name=name)
            for key, value in attrs:
                event.attributes.add(key=key).value.CopyFrom(_proto_value(value))

    answer = export(
        via, transport, "/v1/traces", request, ExportTraceServiceResponse(), gzipped=gzipped
    )

    listed = answer.partial_success.error_message
    rejected = {i for i in range(len(spans)) if f"span {i} of scope 0 of resource 0:" in listed}
    assert answer.partial_success.rejected_spans == len(rejected)
    kept = {bytes([i + 1]).hex() * 8 for i in range(len(spans)) if i not in rejected}
    assert stored_span_ids(via, store, project, trace_id) == kept


def _convention_keys() -> list[str]:
    """Every dotted attribute or event name the normalizers and content stages look for.

    Read from their source so the fuzzer follows new conventions by itself; a
    key ending in "." is a prefix (indexed messages, custom properties).
    """
    package = Path(tokentrail.collector.__file__).parent
    sources = [*package.glob("normalize/*.py"), *package.glob("*.py")]
    found = {
        key
        for source in sources
        for key in re.findall(r'"([a-z_]+(?:\.[a-z_0-9]+)+\.?)"', source.read_text())
    }
    keys: set[str] = set()
    for key in found:
        if key.endswith("."):
            keys.update(key + tail for tail in ("0.content", "0.role", "0.message.content", "x"))
        else:
            keys.add(key)
    return sorted(keys)


CONVENTION_KEYS = _convention_keys()
# Values the normalizers branch on, so examples get past the first type check.
WORDS = ["chat", "text_completion", "embeddings", "openai", "anthropic", "gpt-4o", "llm", "LLM"]
llm_values = st.one_of(
    proto_values,
    st.sampled_from(WORDS),
    st.integers(-(2**63), 2**63 - 1),
    junk.map(json.dumps),
    st.lists(
        st.fixed_dictionaries(
            {"role": junk | st.sampled_from(["user", "assistant", "system", "tool"])},
            optional={"content": junk, "parts": junk, "tool_calls": junk},
        ),
        max_size=3,
    ).map(json.dumps),
)
llm_attributes = st.lists(st.tuples(st.sampled_from(CONVENTION_KEYS), llm_values), max_size=12)


@pytest.mark.parametrize("transport", TRANSPORTS)
@FUZZ_STORED
@given(
    spans=st.lists(
        st.tuples(st.sampled_from(CONVENTION_KEYS + WORDS), llm_attributes),
        min_size=1,
        max_size=3,
    ),
    records=st.lists(
        st.tuples(st.sampled_from(CONVENTION_KEYS), proto_values | llm_values, llm_attributes),
        max_size=3,
    ),
)
def test_llm_shaped_junk_is_stored_or_listed(
    via: Via,
    transport: str,
    spans: list[tuple[str, list[tuple[str, Any]]]],
    records: list[tuple[str, Any, list[tuple[str, Any]]]],
) -> None:
    """Real convention keys with values of any type reach normalize, pricing and content."""
    trace_id = uuid.uuid4().bytes
    traces = ExportTraceServiceRequest()
    added = traces.resource_spans.add().scope_spans.add().spans
    for i, (name, attributes) in enumerate(spans):
        span = added.add(
            trace_id=trace_id,
            span_id=bytes([i + 1]) * 8,
            parent_span_id=bytes([i]) * 8 if i else b"",
            name=name,
            kind=3,
            start_time_unix_nano=1_700_000_000_000_000_000 + i,
            end_time_unix_nano=1_700_000_001_000_000_000,
        )
        for key, value in attributes:
            span.attributes.add(key=key).value.CopyFrom(_proto_value(value))
    logs = ExportLogsServiceRequest()
    log_records = logs.resource_logs.add().scope_logs.add().log_records
    for event_name, body, attributes in records:
        record = log_records.add(
            trace_id=trace_id, span_id=b"\x01" * 8, event_name=event_name, time_unix_nano=1
        )
        record.body.CopyFrom(_proto_value(body))
        for key, value in attributes:
            record.attributes.add(key=key).value.CopyFrom(_proto_value(value))

    export(via, transport, "/v1/traces", traces, ExportTraceServiceResponse())
    export(via, transport, "/v1/logs", logs, ExportLogsServiceResponse())


# --- explicit regression cases -----------------------------------------------------------


def nested(depth: int, kind: str) -> str:
    """An OTLP/JSON AnyValue nested ``depth`` arrays or kvlists deep, as JSON text.

    Text, because json.dumps itself overflows the stack on such a value.
    """
    if kind == "array":
        opening, closing = '{"arrayValue":{"values":[', "]}}"
    else:
        opening, closing = '{"kvlistValue":{"values":[{"key":"k","value":', "}]}}"
    return opening * depth + '{"stringValue":"leaf"}' + closing * depth


GOOD_SPAN = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}


@pytest.mark.parametrize("depth", [5, 20, 40, 100, 500])
@pytest.mark.parametrize("kind", ["array", "kvlist"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_deeply_nested_attribute_values(
    client: TestClient, pool: ThreadPoolExecutor, depth: int, kind: str, gzipped: bool
) -> None:
    value = nested(depth, kind)
    attrs = '[{"key":"deep","value":' + value + "}]"
    span = json.dumps(GOOD_SPAN)[:-1] + ',"attributes":' + attrs + "}"
    traces = '{"resourceSpans":[{"scopeSpans":[{"spans":[' + span + "]}]}]}"
    post(client, pool, "/v1/traces", traces.encode(), JSON, gzipped)
    record = '{"body":' + value + ',"attributes":' + attrs + "}"
    logs = '{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + record + "]}]}]}"
    post(client, pool, "/v1/logs", logs.encode(), JSON, gzipped)


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, encoded by hand."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("depth", [5, 30, 60, 200, 500])
def test_deeply_nested_protobuf_attribute_values(via: Via, transport: str, depth: int) -> None:
    """Encoded by hand: the protobuf runtime refuses to build or serialize this deep."""
    value = field(1, b"leaf")  # AnyValue.string_value
    for _ in range(depth):
        value = field(5, field(1, value))  # AnyValue.array_value → ArrayValue.values
    span = trace_pb2.Span(
        name="deep", trace_id=uuid.uuid4().bytes, span_id=b"\x02" * 8, start_time_unix_nano=10**18
    ).SerializeToString() + field(9, field(1, b"deep") + field(2, value))  # Span.attributes
    body = field(1, field(2, field(2, span)))  # request → resource_spans → scope_spans → spans
    send(via, transport, "/v1/traces", body)


def test_huge_strings_and_numbers(client: TestClient, pool: ThreadPoolExecutor) -> None:
    huge = "x" * (2 * 1024 * 1024)
    span = {
        **GOOD_SPAN,
        "name": huge,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": str(2**63 - 1),
        "kind": 2**31 - 1,
        "attributes": [
            {"key": huge, "value": {"stringValue": huge}},
            {"key": "i", "value": {"intValue": str(-(2**63))}},
            {"key": "d", "value": {"doubleValue": 1.7976931348623157e308}},
            {"key": "n", "value": {"doubleValue": "NaN"}},
            {"key": "b", "value": {"bytesValue": base64.b64encode(huge.encode()).decode()}},
        ],
    }
    body = json.dumps(traces_document([span], {})).encode()
    for gzipped in (False, True):
        response = post(client, pool, "/v1/traces", body, JSON, gzipped)
        assert response.status_code == 200 and "partialSuccess" not in response.json()


@pytest.mark.parametrize(
    "times",
    [
        {"startTimeUnixNano": str(2**64 - 1)},
        {"startTimeUnixNano": "1", "endTimeUnixNano": str(2**63)},
        {"events": [{"timeUnixNano": str(2**64 - 1), "name": "e"}]},
    ],
)
def test_a_span_time_past_2262_is_rejected_not_retried(
    client: TestClient, pool: ThreadPoolExecutor, times: dict[str, Any]
) -> None:
    """Regression: fixed64 times past Int64 failed the insert, answered 503 (retry forever)."""
    other = {"traceId": GOOD_SPAN["traceId"], "spanId": "00000000000000aa"}
    body = json.dumps(traces_document([other, {**GOOD_SPAN, **times}], {})).encode()
    response = post(client, pool, "/v1/traces", body, JSON)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert partial["errorMessage"].startswith("span 1 of scope 0 of resource 0:")


@pytest.mark.parametrize("bad", ["zz" * 16, "W47/95gDgQPSabYzgT/GDA==", "5b8efff7 98038103"])
def test_a_non_hex_json_id_rejects_its_span_and_the_rest_is_queryable(via: Via, bad: str) -> None:
    """Regression: one span with a non-hex id (base64, say) failed the whole export with 400."""
    trace = uuid.uuid4().hex
    spans = [
        {"traceId": trace, "spanId": "00000000000000a1", "name": "kept"},
        {"traceId": bad, "spanId": "00000000000000a2", "name": "not hex"},
        {"traceId": trace, "spanId": "00000000000000a3", "parentSpanId": "xyz", "name": "parent"},
        {"traceId": trace, "spanId": "00000000000000a4", "parentSpanId": "00000000000000a1"},
    ]
    body = json.dumps(traces_document(spans, {})).encode()
    response = post(via.client, via.pool, "/v1/traces", body, JSON)

    assert response.status_code == 200
    not_hex = "must be a hex string (OTLP/JSON ids are hex, not base64), got"
    assert response.json()["partialSuccess"] == {
        "rejectedSpans": "2",
        "errorMessage": f"span 1 of scope 0 of resource 0: trace_id {not_hex} {bad!r}; "
        f"span 2 of scope 0 of resource 0: parent_span_id {not_hex} 'xyz'",
    }
    assert via.queue.drain(REQUEST_TIMEOUT_S)
    found = via.client.get(f"/api/v1/traces/{trace}", headers=AUTH)
    assert found.status_code == 200, found.text
    [root] = found.json()["spans"]  # a tree: the good child under its parent
    assert (root["span_id"], [child["span_id"] for child in root["children"]]) == (
        "00000000000000a1",
        ["00000000000000a4"],
    )


@pytest.mark.parametrize("field_name", ["timeUnixNano", "observedTimeUnixNano"])
def test_a_log_time_past_2262_is_rejected_not_retried(
    client: TestClient, pool: ThreadPoolExecutor, field_name: str
) -> None:
    body = json.dumps(logs_document([{}, {field_name: str(2**64 - 1)}], {})).encode()
    response = post(client, pool, "/v1/logs", body, JSON)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1"
    assert partial["errorMessage"].startswith("log record 1 of scope 0 of resource 0:")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("opening", ["[", '{"a":', '{"resourceSpans":[{"scopeSpans":['])
def test_pathologically_deep_json_is_400(
    client: TestClient, pool: ThreadPoolExecutor, path: str, opening: str
) -> None:
    """Nesting far past any recursion limit fails parsing, not the server."""
    response = post(client, pool, path, (opening * 100_000).encode(), JSON)
    assert response.status_code == 400


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("gzipped", [False, True])
def test_an_oversized_body_is_413(via: Via, transport: str, path: str, gzipped: bool) -> None:
    """As sent, or only once inflated (a gzip bomb); over gRPC RESOURCE_EXHAUSTED."""
    body = b"\0" * (DEFAULT_MAX_BODY_BYTES + 1)
    assert send(via, transport, path, body, gzipped) == "too big"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("bad", [b"\xff", b"\xed\xa0\x80", b"\xc3"])  # not UTF-8, surrogate, cut
def test_invalid_utf8_in_a_protobuf_string_is_400(via: Via, transport: str, bad: bytes) -> None:
    """proto3 strings must be UTF-8; the parser refuses them before they reach a column."""
    span = trace_pb2.Span(trace_id=uuid.uuid4().bytes, span_id=b"\x03" * 8).SerializeToString()
    body = field(1, field(2, field(2, span + field(5, b"name" + bad))))  # Span.name
    assert send(via, transport, "/v1/traces", body) == "invalid"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_batch_spanning_many_days_is_stored(
    via: Via, store: Store, project: str, transport: str
) -> None:
    """Regression: spans on > 100 days in one export hit ClickHouse's partitions-per-insert
    limit (tables are partitioned by day), failed the insert and were answered 503 forever.
    """
    day = 86_400 * 10**9
    trace_id = uuid.uuid4().bytes
    traces = ExportTraceServiceRequest()
    spans = traces.resource_spans.add().scope_spans.add().spans
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    for i in range(101):
        start = 1_600_000_000 * 10**9 + i * day
        spans.add(trace_id=trace_id, span_id=(i + 1).to_bytes(8, "big"), start_time_unix_nano=start)
        records.add(trace_id=trace_id, time_unix_nano=start)

    export(via, transport, "/v1/traces", traces, ExportTraceServiceResponse())
    export(via, transport, "/v1/logs", logs, ExportLogsServiceResponse())

    params = {"p": project, "t": trace_id.hex()}
    for table in ("spans", "logs"):
        sql = f"SELECT count() FROM {table} WHERE project_id = {{p:String}}"
        sql += " AND TraceId = {t:String}"
        assert stored(via, store, sql, params) == [(101,)], table

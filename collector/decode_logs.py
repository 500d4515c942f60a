"""Decode OTLP log exports into :class:`~tokentrail.collector.records.LogRecord` records.

The same two steps as for traces (``decode``), on the same machinery: parse the
body, then flatten the request, rejecting a record with malformed ids on its
own so one broken record never costs the client the rest of its batch. Unlike a
span, a log record may have no trace context at all: both ids are optional.
"""

from __future__ import annotations

from typing import NamedTuple

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as ProtoLogRecord
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs

from tokentrail.collector import telemetry
from tokentrail.collector.decode import (
    SPAN_ID_BYTES,
    TRACE_ID_BYTES,
    IdPath,
    decode_attributes,
    decode_value,
    hex_or_empty,
    length_problem,
    parse_request,
    time_problem,
)
from tokentrail.collector.records import Attributes, LogRecord

_LOG_ID_PATH: IdPath = (
    (("resourceLogs", "resource_logs"), False),
    (("scopeLogs", "scope_logs"), False),
    (("logRecords", "log_records"), True),
)

# The low byte of LogRecord.flags holds the W3C trace flags; the rest is reserved.
_TRACE_FLAGS_MASK = 0xFF
_MAX_SEVERITY = 255  # stored as UInt8, as the ClickHouse exporter's otel_logs does


def parse_logs_request(body: bytes, content_type: str) -> ExportLogsServiceRequest:
    """Parse an OTLP/HTTP log export body in the encoding its Content-Type names."""
    return parse_request(body, content_type, ExportLogsServiceRequest, _LOG_ID_PATH)


def flatten_logs(request: ExportLogsServiceRequest) -> tuple[list[LogRecord], list[str]]:
    """Every valid record of ``request``, and one message per rejected record.

    ``len(errors)`` is the number of rejected records, ready for OTLP's
    ``partial_success.rejected_log_records``.
    """
    records: list[LogRecord] = []
    errors: list[str] = []
    for r, resource_logs in enumerate(request.resource_logs):
        resource = decode_attributes(resource_logs.resource.attributes)
        for c, scope_logs in enumerate(resource_logs.scope_logs):
            scope = decode_attributes(scope_logs.scope.attributes)
            origin = _Origin(resource_logs, scope_logs, resource, scope)
            for k, proto in enumerate(scope_logs.log_records):
                problem = length_problem(
                    "trace_id", proto.trace_id, TRACE_ID_BYTES, optional=True
                ) or length_problem("span_id", proto.span_id, SPAN_ID_BYTES, optional=True)
                problem = (
                    problem
                    or time_problem("time_unix_nano", proto.time_unix_nano)
                    or time_problem("observed_time_unix_nano", proto.observed_time_unix_nano)
                )
                if problem:
                    errors.append(f"log record {k} of scope {c} of resource {r}: {problem}")
                    continue
                records.append(_record(proto, origin))
    telemetry.LOGS_RECEIVED.inc(len(records) + len(errors))
    telemetry.LOGS_ACCEPTED.inc(len(records))
    if errors:
        telemetry.LOGS_REJECTED.inc(len(errors), reason="invalid")
    return records, errors


class _Origin(NamedTuple):
    """The resource and scope a record was sent under, their attributes decoded once."""

    resource_logs: ResourceLogs
    scope_logs: ScopeLogs
    resource: Attributes
    scope: Attributes


def _record(proto: ProtoLogRecord, origin: _Origin) -> LogRecord:
    severity = proto.severity_number
    scope = origin.scope_logs.scope
    return LogRecord(
        time_unix_nano=proto.time_unix_nano,
        observed_time_unix_nano=proto.observed_time_unix_nano,
        trace_id=hex_or_empty(proto.trace_id),
        span_id=hex_or_empty(proto.span_id),
        trace_flags=proto.flags & _TRACE_FLAGS_MASK,
        severity_text=proto.severity_text,
        severity_number=severity if 0 <= severity <= _MAX_SEVERITY else 0,
        body=decode_value(proto.body),
        attributes=decode_attributes(proto.attributes),
        event_name=proto.event_name,
        # Copies, so a later stage editing one record cannot touch its siblings.
        resource_attributes=dict(origin.resource),
        resource_schema_url=origin.resource_logs.schema_url,
        scope_name=scope.name,
        scope_version=scope.version,
        scope_attributes=dict(origin.scope),
        scope_schema_url=origin.scope_logs.schema_url,
    )

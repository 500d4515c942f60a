"""`score()`: quality judgements that travel inside traces.

A score is an OTel GenAI evaluation event, so any backend that understands the
conventions can read it; the collector turns it into a `scores` row bound to
the trace (and span) it judges.
"""

from __future__ import annotations

import math

from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.util.types import AttributeValue

from tokentrail import semconv
from tokentrail._runtime import get_tracer, logger

ScoreValue = float | int | bool | str


def score(
    name: str,
    value: ScoreValue,
    trace_id: str | int | None = None,
    span_id: str | int | None = None,
    comment: str | None = None,
    source: str = "sdk",
    *,
    timestamp: int | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> None:
    """Record a quality score; never raises.

    Without ids it lands on the current span (an `llm_call` block, or the
    `feature` span). With `trace_id` (hex string or int) and usually
    `span_id`, it is sent later, e.g. user feedback on an answer whose span has
    long ended: a tiny "evaluation {name}" span parented to the judged span
    carries it. Numbers are numeric scores, bools boolean (also sent as
    1.0/0.0), strings categorical labels. `timestamp` (ns) backdates it.
    """
    try:
        attributes = _event_attributes(name, value, comment, source)
        if attributes is None:
            return
        if trace_id is None and span_id is None:
            span = trace.get_current_span()
            if not span.is_recording():
                logger.warning("tokentrail: score %r dropped: no active span and no trace id", name)
                return
            span.add_event(semconv.EVALUATION_EVENT, attributes, timestamp=timestamp)
            return
        _send_detached(name, attributes, trace_id, span_id, timestamp, tracer_provider)
    except Exception:  # a score is never worth an exception in user code
        logger.warning("tokentrail: could not record score %r", name, exc_info=True)


def _event_attributes(
    name: str, value: ScoreValue, comment: str | None, source: str
) -> dict[str, AttributeValue] | None:
    attributes: dict[str, AttributeValue] = {
        semconv.EVALUATION_NAME: name,
        semconv.SCORE_SOURCE: source,
    }
    # bool first: it is also an int.
    if isinstance(value, bool):
        attributes[semconv.EVALUATION_SCORE_VALUE] = 1.0 if value else 0.0
        attributes[semconv.EVALUATION_SCORE_LABEL] = "true" if value else "false"
        attributes[semconv.SCORE_DATA_TYPE] = "boolean"
    elif isinstance(value, int | float) and math.isfinite(value):
        attributes[semconv.EVALUATION_SCORE_VALUE] = float(value)
        attributes[semconv.SCORE_DATA_TYPE] = "numeric"
    elif isinstance(value, str):
        attributes[semconv.EVALUATION_SCORE_LABEL] = value
        attributes[semconv.SCORE_DATA_TYPE] = "categorical"
    else:
        logger.warning("tokentrail: score %r dropped: unsupported value %r", name, value)
        return None
    if comment is not None:
        attributes[semconv.EVALUATION_EXPLANATION] = comment
    return attributes


def _send_detached(
    name: str,
    attributes: dict[str, AttributeValue],
    trace_id: str | int | None,
    span_id: str | int | None,
    timestamp: int | None,
    tracer_provider: trace.TracerProvider | None,
) -> None:
    trace_int = _parse_id(trace_id, 32)
    span_int = _parse_id(span_id, 16) if span_id is not None else None
    if trace_int is None or (span_id is not None and span_int is None):
        logger.warning(
            "tokentrail: score %r dropped: bad ids trace_id=%r span_id=%r", name, trace_id, span_id
        )
        return
    span_attributes: dict[str, AttributeValue] = {}
    if span_int is None:
        # A trace-level score still needs a parent span id for the new span to
        # join that trace; a random one marks "the trace, no particular span".
        span_int = RandomIdGenerator().generate_span_id()
    else:
        # On the span and on the event, so a reader of either finds the target.
        span_attributes[semconv.SCORE_TARGET_SPAN_ID] = format(span_int, "016x")
        attributes = {**attributes, **span_attributes}
    parent = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_int,
            span_int,
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
    )
    span = get_tracer(tracer_provider).start_span(
        f"evaluation {name}",
        context=trace.set_span_in_context(parent),
        kind=trace.SpanKind.INTERNAL,
        attributes=span_attributes,
        start_time=timestamp,
    )
    span.add_event(semconv.EVALUATION_EVENT, attributes, timestamp=timestamp)
    span.end(end_time=timestamp)


def _parse_id(value: str | int | None, hex_digits: int) -> int | None:
    """Accept ids as ints or hex strings (with or without 0x); None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0x")
        if not text or len(text) > hex_digits:
            return None
        try:
            value = int(text, 16)
        except ValueError:
            return None
    if not isinstance(value, int) or not 0 < value < 16**hex_digits:
        return None
    return value

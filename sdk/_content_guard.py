"""The content policy for spans that other instrumentations wrote.

tokentrail's own spans are cleaned as they are recorded (`content.encode_messages`).
Content that another library puts on spans of our provider never passes there:
the anthropic SDK's own tracing, OpenInference, OpenLLMetry. This exporter
wrapper applies the same redaction and size limit to those spans, on the
export thread, so the application's threads pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tokentrail._runtime import SCOPE_NAME, logger
from tokentrail.content import ContentPolicy, current_policy
from tokentrail.redaction import redact_attributes
from tokentrail.semconv import GENAI_CONTENT_EVENTS


class ContentGuard(SpanExporter):
    """Hands spans to ``inner`` with other instrumentations' content cleaned.

    A span that cannot be cleaned is dropped (and the fault logged once):
    exporting it as it is could leak what redaction was asked to hide.
    """

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._reported = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        policy = current_policy()
        if policy.redactor is None and policy.max_chars is None:
            return self._inner.export(spans)
        cleaned: list[ReadableSpan] = []
        for span in spans:
            try:
                cleaned.append(_cleaned(span, policy))
            except Exception:
                if not self._reported:
                    self._reported = True
                    logger.warning(
                        "tokentrail: could not apply the content policy to span %r; "
                        "dropping such spans (logged once)",
                        span.name,
                        exc_info=True,
                    )
        return self._inner.export(cleaned)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _cleaned(span: ReadableSpan, policy: ContentPolicy) -> ReadableSpan:
    scope = span.instrumentation_scope
    if scope is not None and scope.name.split(".", 1)[0] == SCOPE_NAME:
        return span  # already cleaned when recorded
    attributes = redact_attributes(span.attributes or {}, policy.scrub)
    events: list[Event] = []
    events_changed = False
    for event in span.events:
        keys = list(event.attributes or {}) if event.name in GENAI_CONTENT_EVENTS else None
        changed = redact_attributes(event.attributes or {}, policy.scrub, keys)
        if changed is None:
            events.append(event)
        else:
            events_changed = True
            events.append(Event(event.name, changed, event.timestamp))
    if attributes is None and not events_changed:
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes if attributes is None else attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )

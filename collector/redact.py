"""The ingest pipeline's redaction stage, for content from SDKs that did not redact it.

Runs after normalize, on everything of a batch that holds prompt or completion
text: the content attributes of spans and span events (the keys are listed in
``tokentrail.redaction``, shared with the SDK), the normalized prompt and
completion, score explanations, and GenAI content sent as log records (body
and attributes). The patterns are the SDK's own (``tokentrail.redaction``);
only string values change, in place, before anything is written.

Off unless asked for (``tokentrail serve --redact builtin``): the store is the
operator's own, the tokentrail SDK already redacts before export, and a false
positive here rewrites stored data for good. Turn it on when apps with other
SDKs send content that must not be kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokentrail.collector.log_content import event_name
from tokentrail.collector.records import Attributes, LlmCall, LogRecord, Score, Span, SpanEvent
from tokentrail.redaction import Redactor, redact_attributes, scrub_value
from tokentrail.semconv import GENAI_CONTENT_EVENTS


class ContentRedactor:
    """Applies one :class:`~tokentrail.redaction.Redactor` to a batch, in place.

    Content a rule fails on becomes ``[REDACTED:redaction_failed]``: it is
    never stored as sent, and the batch is never refused for it.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def batch(
        self, spans: Sequence[Span], calls: Iterable[LlmCall], scores: Iterable[Score]
    ) -> None:
        for span in spans:
            self._span(span)
        for call in calls:
            call.prompt = self._text(call.prompt)
            call.completion = self._text(call.completion)
        for score in scores:
            score.comment = self._text(score.comment)

    def logs(self, records: Sequence[LogRecord]) -> None:
        for record in records:
            content_event = event_name(record) in GENAI_CONTENT_EVENTS
            if content_event:
                record.body = scrub_value(record.body, self._redactor.json_text)
            keys = list(record.attributes) if content_event else None
            record.attributes = self._attributes(record.attributes, keys)

    def _span(self, span: Span) -> None:
        span.attributes = self._attributes(span.attributes)
        for event in span.events:
            self._event(event)

    def _event(self, event: SpanEvent) -> None:
        # The deprecated per-message events flatten the message into attributes
        # such as `content`, so every attribute of a content event is content.
        keys = list(event.attributes) if event.name in GENAI_CONTENT_EVENTS else None
        event.attributes = self._attributes(event.attributes, keys)

    def _attributes(self, attributes: Attributes, keys: list[str] | None = None) -> Attributes:
        changed = redact_attributes(attributes, self._redactor.json_text, keys)
        return attributes if changed is None else changed

    def _text(self, text: str) -> str:
        return scrub_value(text, self._redactor.json_text) if text else text

"""The records that flow through the collector, one stage to the next.

``decode`` produces :class:`Span`; ``normalize`` derives :class:`LlmCall` and
:class:`Score`; ``pricing`` fills an LlmCall's cost; ``writer`` stores all three.
``decode_logs`` produces :class:`LogRecord`; ``log_content`` derives
:class:`LlmContent` from the GenAI ones.
Attribute values keep their OTLP types (str, bool, int, float, bytes, list,
dict) until the writer flattens them to the string maps of the ``spans`` table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

AttributeValue = Any  # str | bool | int | float | bytes | list[...] | dict[str, ...] | None
Attributes = dict[str, AttributeValue]


@dataclass
class SpanEvent:
    time_unix_nano: int
    name: str
    attributes: Attributes = field(default_factory=dict)


@dataclass
class SpanLink:
    trace_id: str
    span_id: str
    trace_state: str = ""
    attributes: Attributes = field(default_factory=dict)


@dataclass
class Span:
    """One decoded OTLP span with its resource and scope, ids as lowercase hex."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str  # "Internal", "Server", "Client", "Producer", "Consumer", "Unspecified"
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: Attributes = field(default_factory=dict)
    resource_attributes: Attributes = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""
    trace_state: str = ""
    status_code: str = "Unset"  # "Unset", "Ok", "Error"
    status_message: str = ""
    events: list[SpanEvent] = field(default_factory=list)
    links: list[SpanLink] = field(default_factory=list)

    @property
    def service_name(self) -> str:
        value = self.resource_attributes.get("service.name")
        return value if isinstance(value, str) else ""

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_time_unix_nano - self.start_time_unix_nano)


@dataclass
class LlmCall:
    """One LLM operation, in tokentrail's canonical fields (see CONVENTIONS.md)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    start_time_unix_nano: int
    duration_ns: int
    service: str = ""
    environment: str = ""
    feature: str = ""
    user_id: str = ""
    session_id: str = ""
    provider: str = ""
    request_model: str = ""
    response_model: str = ""
    operation: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    provided_cost_usd: Decimal | None = None
    input_cost_usd: Decimal = Decimal(0)
    output_cost_usd: Decimal = Decimal(0)
    total_cost_usd: Decimal = Decimal(0)
    price_status: str = "unpriced"  # "priced", "unpriced", "provided"
    time_to_first_token_s: float | None = None
    status_code: str = "Unset"
    error_type: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    response_id: str = ""
    prompt: str = ""
    completion: str = ""
    sample_weight: float = 1.0
    streaming: bool = False
    convention: str = ""  # "otel_genai", "openinference", "openllmetry", "langfuse"
    # Attribute keys in an LLM namespace that no convention reader understood.
    unknown_keys: list[str] = field(default_factory=list)
    # Span id of the call this one repeats (two instrumentations, one API call); reports skip it.
    duplicate_of: str = ""

    @property
    def model(self) -> str:
        """The model to price and report: the response model when known."""
        return self.response_model or self.request_model


@dataclass
class Score:
    trace_id: str
    span_id: str
    name: str
    data_type: str  # "numeric", "boolean", "categorical"
    value: float = 0.0
    string_value: str = ""
    source: str = "sdk"  # "sdk", "api", "evaluator", "human"
    comment: str = ""
    time_unix_nano: int = 0
    score_id: str = ""
    feature: str = ""


@dataclass
class LogRecord:
    """One decoded OTLP log record with its resource and scope; ids lowercase hex or ''."""

    time_unix_nano: int
    observed_time_unix_nano: int
    trace_id: str = ""
    span_id: str = ""
    trace_flags: int = 0
    severity_text: str = ""
    severity_number: int = 0
    body: AttributeValue = None
    attributes: Attributes = field(default_factory=dict)
    event_name: str = ""
    resource_attributes: Attributes = field(default_factory=dict)
    resource_schema_url: str = ""
    scope_name: str = ""
    scope_version: str = ""
    scope_attributes: Attributes = field(default_factory=dict)
    scope_schema_url: str = ""

    @property
    def timestamp_unix_nano(self) -> int:
        """When it happened, else when it was observed: OTLP's rule for a missing time."""
        return self.time_unix_nano or self.observed_time_unix_nano

    @property
    def service_name(self) -> str:
        value = self.resource_attributes.get("service.name")
        return value if isinstance(value, str) else ""


@dataclass
class LlmContent:
    """Prompt and completion of one LLM call, derived from the log records of its span."""

    trace_id: str
    span_id: str
    prompt: str
    completion: str
    records: int  # how many distinct log records it was derived from

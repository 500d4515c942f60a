"""Request and response bodies of the query API, so /docs documents every field.

Money stays a ``Decimal`` from the store to the response object and becomes a
JSON number only when serialized: sums are exact until the very edge.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

Usd = Annotated[
    Decimal,
    PlainSerializer(float, return_type=float, when_used="json"),
    Field(description="US dollars; exact in storage, a JSON number here."),
]
# Timestamps are formatted from integer nanoseconds: a datetime would drop the
# last three digits that OTLP carries.
Timestamp = Annotated[
    str,
    Field(
        description="RFC 3339 UTC with nanoseconds, e.g. 2024-05-01T12:00:00.123456789Z.",
        json_schema_extra={"format": "date-time"},
    ),
]
# Ids are stored as lowercase hex; accepting either case spares clients a 404.
HexTraceId = Annotated[
    str,
    Field(pattern=r"^[0-9a-fA-F]{32}$", description="32 hex digits."),
    AfterValidator(str.lower),
]
HexSpanId = Annotated[
    str,
    Field(pattern=r"^[0-9a-fA-F]{16}$", description="16 hex digits."),
    AfterValidator(str.lower),
]
ScoreSource = Literal["sdk", "api", "evaluator", "human"]
ScoreDataType = Literal["numeric", "boolean", "categorical"]


# --- traces ---------------------------------------------------------------------------


class TraceSummary(BaseModel):
    trace_id: str
    start_time: Timestamp
    duration_ms: float
    service: str = Field(description="Service of the root span.")
    feature: str = Field(description="From the trace's LLM calls, else the root span.")
    user_id: str
    session_id: str
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Usd
    status: Literal["ok", "error"] = Field(description='"error" when any span failed.')


class TracePage(BaseModel):
    items: list[TraceSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


class LlmFields(BaseModel):
    """The normalized LLM call recorded for a span, whatever convention sent it."""

    provider: str
    request_model: str
    response_model: str
    operation: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    input_cost_usd: Usd
    output_cost_usd: Usd
    total_cost_usd: Usd
    price_status: str = Field(description="priced, provided (by the client) or unpriced.")
    prompt: str
    completion: str
    latency_ms: float
    time_to_first_token_ms: float | None
    finish_reasons: list[str]
    error_type: str
    feature: str
    user_id: str
    session_id: str
    streaming: bool
    convention: str = Field(
        description="Which convention the span was read with: otel_genai, openinference, "
        'openllmetry, langfuse; "" when none claimed it.'
    )
    unknown_keys: list[str] = Field(
        description="Attribute keys in an LLM namespace (gen_ai.*, llm.*, langfuse.*, "
        "traceloop.* ...) that no convention reader understood: why a field may be empty."
    )
    duplicate_of: str = Field(
        description="Span id of the call this span repeats (two instrumentations of one API "
        'call); reports count that call once, under it. "" for a counted call.'
    )


class SpanEventOut(BaseModel):
    name: str
    time: Timestamp
    attributes: dict[str, str]


class SpanNode(BaseModel):
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    service: str
    start_time: Timestamp
    duration_ms: float
    status: str = Field(description="OTLP status code: Unset, Ok or Error.")
    status_message: str
    attributes: dict[str, str] = Field(description="Span attributes, values as stored.")
    events: list[SpanEventOut]
    llm: LlmFields | None = Field(None, description="Present on spans that are LLM calls.")
    children: list[SpanNode] = Field(default_factory=list)


class ScoreOut(BaseModel):
    id: str
    trace_id: str
    span_id: str | None
    name: str
    data_type: ScoreDataType
    value: float | None = Field(description="Numeric value; 1/0 for booleans; null if categorical.")
    string_value: str = Field(description='The label of a categorical score; "true"/"false".')
    source: str
    comment: str
    feature: str
    timestamp: Timestamp


class TraceDetail(BaseModel):
    trace_id: str
    spans: list[SpanNode] = Field(description="Root spans; spans whose parent is missing too.")
    scores: list[ScoreOut]


# --- features -------------------------------------------------------------------------


class Latency(BaseModel):
    p50: float | None
    p95: float | None


class ScoreMean(BaseModel):
    mean: float
    count: int


class CallTotals(BaseModel):
    """What every per-group report says about its calls."""

    calls: int = Field(description="Estimated calls: each stored call counts its sample weight.")
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: Usd
    cost_per_call_usd: Usd | None = Field(
        description="Cost of priced and provided calls over their number; null if none."
    )
    unpriced_calls: int
    latency_ms: Latency


class FeatureReport(CallTotals):
    feature: str = Field(description='"" collects calls that carried no feature.')
    unpriced_models: list[str]
    scores: dict[str, ScoreMean] = Field(description="Numeric and boolean scores by name.")
    labels: dict[str, dict[str, int]] = Field(
        description="Categorical scores by name: how many times each label was given."
    )


class FeatureList(BaseModel):
    start: Timestamp
    end: Timestamp
    features: list[FeatureReport]


class ModelReport(CallTotals):
    model: str = Field(description="The response model, else the requested one.")


class ModelList(BaseModel):
    feature: str
    start: Timestamp
    end: Timestamp
    models: list[ModelReport] = Field(description="By spend, highest first.")


class UserSpend(BaseModel):
    user_id: str = Field(description='"" collects calls that carried no user.')
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: Usd


class UserList(BaseModel):
    feature: str
    start: Timestamp
    end: Timestamp
    users: list[UserSpend] = Field(description="By spend, highest first.")


class SeriesPoint(BaseModel):
    start: Timestamp = Field(description="Start of the bucket.")
    value: float | None = Field(
        description="null when the bucket has nothing to measure (no priced calls, say)."
    )
    samples: float = Field(description="Calls (weighted) or scores behind the value.")


class FeatureTimeseries(BaseModel):
    feature: str
    metric: str
    interval: str
    start: Timestamp
    end: Timestamp
    points: list[SeriesPoint] = Field(
        description="Buckets with data, oldest first; a missing bucket had no calls or scores."
    )


# --- scores ---------------------------------------------------------------------------


# Strict float still takes JSON integers, and refuses ones too large for a float.
StrictNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]
StrictBoolean = Annotated[bool, Field(strict=True)]
Label = Annotated[str, Field(strict=True, min_length=1, max_length=1000)]


class ScoreIn(BaseModel):
    """A score as a client posts it; the project comes from the API key."""

    model_config = ConfigDict(extra="forbid")

    trace_id: HexTraceId
    span_id: HexSpanId | None = None
    name: str = Field(min_length=1, max_length=200)
    # Strict members, bool first: a JSON `true` must stay a boolean and never
    # become the number 1, nor may "0.9" be read as a number.
    value: StrictBoolean | StrictNumber | Label = Field(
        description="true/false → boolean, a number → numeric, a string → categorical label."
    )
    comment: str = Field("", max_length=10_000)
    source: ScoreSource = "api"
    id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Client-chosen id: re-posting the same id replaces the score, not adds one.",
    )

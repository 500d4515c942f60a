"""Alert rules and alert events as the API takes and gives them.

:class:`RuleSpec` is the one definition of a valid rule: the API validates
requests with it, the store keeps it as JSON, and the evaluator reads it back,
so a rule that was accepted is a rule the evaluator understands.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from tokentrail.api.alerts.durations import check_interval, check_window
from tokentrail.api.durations import seconds
from tokentrail.api.metrics import Scope, check_metric
from tokentrail.api.models import Timestamp

# What people call spend, the metric layer calls cost.
METRIC_ALIASES = {"spend": "cost"}
MAX_BASELINE_S = 366 * 86_400


def _metric(name: str) -> str:
    return check_metric(METRIC_ALIASES.get(name, name))


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url {url!r} must be an http:// or https:// URL with a host")
    return url


Metric = Annotated[
    str,
    AfterValidator(_metric),
    Field(
        description="cost (alias spend), calls, tokens, input_tokens, output_tokens, "
        "cost_per_call, latency_p95 (ms), error_rate (0 to 1) or score:<name> (mean).",
        examples=["cost"],
    ),
]
Window = Annotated[
    str,
    AfterValidator(check_window),
    Field(description="Whole minutes, 1m to 31d: 15m, 1h, 1d.", examples=["1h"]),
]
Interval = Annotated[str, AfterValidator(check_interval), Field(examples=["4h"])]
HttpUrl = Annotated[str, AfterValidator(_http_url), Field(max_length=2000)]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- rules ----------------------------------------------------------------------------


class RuleScope(_Strict):
    """Which calls the rule watches; every field narrows, none means the whole project."""

    service: str = ""
    feature: str | None = Field(
        default=None, description='null: every feature; "": the calls that carried no feature.'
    )
    model: str = Field(default="", description="Request or response model.")

    def metric_scope(self) -> Scope:
        return Scope(service=self.service, feature=self.feature, model=self.model)


class Threshold(_Strict):
    """The metric over the last ``window`` compared with a fixed value."""

    type: Literal["threshold"]
    op: Literal[">", ">=", "<", "<="]
    value: FiniteNumber
    window: Window
    min_samples: float = Field(
        default=0, ge=0, description="Calls (or scores) the window needs before the rule can fire."
    )


class Budget(_Strict):
    """Spend in the current UTC day or month against an amount, now and projected."""

    type: Literal["budget"]
    amount_usd: float = Field(gt=0, allow_inf_nan=False)
    period: Literal["day", "month"]
    project_after: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Fraction of the period that must have passed before the linear "
        "projection counts (early projections are noisy); 1 turns projection off.",
    )


class Spike(_Strict):
    """The last ``window`` against the ``baseline_windows`` windows before it."""

    type: Literal["spike"]
    window: Window
    baseline_windows: int = Field(default=24, ge=2, le=1000)
    ratio: float | None = Field(
        default=None,
        gt=1,
        allow_inf_nan=False,
        description="Fire when current / baseline mean ≥ this.",
    )
    z_score: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Fire when (current - mean) / standard deviation ≥ this.",
    )
    combine: Literal["and", "or"] = Field(
        default="and", description="With both ratio and z_score: need both (and) or either (or)."
    )
    direction: Literal["up", "down"] = Field(
        default="up", description="down watches for drops (a score mean falling), mirrored."
    )
    min_baseline_windows: int = Field(
        default=3,
        ge=2,
        description="Baseline windows that must hold data before the rule can fire.",
    )
    min_baseline_samples: float = Field(
        default=0, ge=0, description="Calls (or scores) the baseline must hold in total."
    )

    @model_validator(mode="after")
    def _sane(self) -> Spike:
        if self.ratio is None and self.z_score is None:
            raise ValueError("a spike needs ratio, z_score or both")
        if self.min_baseline_windows > self.baseline_windows:
            raise ValueError("min_baseline_windows cannot exceed baseline_windows")
        if seconds(self.window) * (self.baseline_windows + 1) > MAX_BASELINE_S:
            raise ValueError("window * (baseline_windows + 1) must fit in 366 days")
        return self


Condition = Annotated[Threshold | Budget | Spike, Field(discriminator="type")]


class WebhookChannel(_Strict):
    """A JSON POST signed with HMAC-SHA256 of the secret (see README, Alerts)."""

    type: Literal["webhook"]
    url: HttpUrl
    secret: str = Field(min_length=16, max_length=256, description="Write-only.")


class SlackChannel(_Strict):
    """A Slack-compatible incoming webhook: receives ``{"text": ...}``."""

    type: Literal["slack"]
    url: HttpUrl


Channel = Annotated[WebhookChannel | SlackChannel, Field(discriminator="type")]


class RuleSpec(_Strict):
    """A whole rule, as created; also what a patch must add up to."""

    name: str = Field(min_length=1, max_length=200)
    scope: RuleScope = Field(default_factory=RuleScope)
    metric: Metric
    condition: Condition
    channels: list[Channel] = Field(default_factory=list, max_length=10)
    renotify: Interval | None = Field(
        default=None, description="Remind while still firing this often; null: notify once."
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _budget_is_spend(self) -> RuleSpec:
        if isinstance(self.condition, Budget) and self.metric != "cost":
            raise ValueError("a budget condition watches spend: use metric cost")
        return self


class RulePatch(_Strict):
    """Fields to replace; a given ``condition``, ``scope`` or ``channels`` replaces it whole."""

    name: str | None = None
    scope: RuleScope | None = None
    metric: Metric | None = None
    condition: Condition | None = None
    channels: list[Channel] | None = None
    renotify: Interval | None = None
    enabled: bool | None = None


class ChannelOut(BaseModel):
    type: Literal["webhook", "slack"]
    url: str
    signed: bool = Field(description="Whether deliveries carry a signature (webhooks).")


class RuleStatus(BaseModel):
    state: Literal["ok", "firing"]
    since: Timestamp | None
    last_notified: Timestamp | None


class RuleOut(BaseModel):
    id: str
    name: str
    scope: RuleScope
    metric: str
    condition: Condition
    channels: list[ChannelOut]
    renotify: str | None
    enabled: bool
    created_at: Timestamp
    updated_at: Timestamp
    status: RuleStatus


# --- events ---------------------------------------------------------------------------

Number = float | int | str | None


class EvaluatedWindow(BaseModel):
    start: Timestamp
    end: Timestamp


class AlertPayload(BaseModel):
    """One alert event: the webhook body, and what ``GET /api/v1/alerts`` lists."""

    event_id: str = Field(description="Stable across retries: receivers de-duplicate on it.")
    project_id: str
    rule_id: str
    rule_name: str
    state: Literal["firing", "resolved"]
    repeat: bool = Field(description="A reminder: still firing after the renotify interval.")
    metric: str
    scope: RuleScope
    condition: Condition
    reason: str = Field(
        description="threshold, budget_spent, budget_projected or spike when firing; what "
        "the numbers say now when resolved (e.g. ok, within_budget, no_data)."
    )
    value: float | None = Field(description="The metric over `window`; null without data.")
    numbers: dict[str, Number] = Field(
        description="The numbers behind the verdict: threshold; spent_usd, projected_usd, "
        "budget_usd; or baseline_mean, baseline_std, ratio, z_score and sample counts."
    )
    window: EvaluatedWindow
    fired_at: Timestamp
    resolved_at: Timestamp | None
    time: Timestamp = Field(description="When this event happened (fired, reminded, resolved).")
    link: str = Field(description="The API query that shows the metric around the event.")
    summary: str


class DeliveryOut(BaseModel):
    channel: int = Field(description="Index in the rule's channels.")
    type: str
    target: str = Field(description="Scheme and host only: paths may hold tokens.")
    status: Literal["delivered", "failed"]
    attempts: int
    http_status: int | None = Field(description="Last HTTP status; null if none arrived.")
    error: str
    finished_at: Timestamp


class AlertEventOut(AlertPayload):
    deliveries: list[DeliveryOut]


class AlertPage(BaseModel):
    items: list[AlertEventOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )

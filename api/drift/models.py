"""Response bodies of ``GET /api/v1/drift``, so /docs documents every field."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tokentrail.api.drift.stats import Effect, Test, Verdict
from tokentrail.api.models import Timestamp


class Period(BaseModel):
    start: Timestamp
    end: Timestamp


class DriftSide(BaseModel):
    value: float | None = Field(description="The metric over this window; null if unmeasured.")
    samples: int = Field(
        description="Observations behind it: stored calls (priced calls for cost per call), "
        "hours for spend rate, scores for a score."
    )
    stddev: float | None = Field(
        description="Standard deviation of one observation, for metrics tested on means."
    )


class MetricDrift(BaseModel):
    metric: str = Field(
        description="cost_per_call, tokens_per_call, spend_rate, latency_p95, error_rate "
        "or score:<name>."
    )
    unit: str = Field(description="usd, tokens, usd_per_hour, ms, ratio or score.")
    baseline: DriftSide
    current: DriftSide
    change_pct: float | None = Field(description="Current over baseline, in percent.")
    test: Test
    p_value: float | None = Field(description="Two-sided; null when not tested.")
    effect_size: float | None = Field(description="Signed: positive when the metric went up.")
    effect_size_kind: Effect
    alpha: float | None = Field(
        description="The level the p-value was held to: alpha over the metrics tested for "
        "this feature (Bonferroni); null when not tested."
    )
    verdict: Verdict = Field(
        description="drifted: p < alpha and at least a small effect; insufficient_data: "
        "fewer than min_samples observations on a side; else stable."
    )
    drifted: bool


class FeatureDrift(BaseModel):
    feature: str = Field(description='"" collects calls that carried no feature.')
    model: str | None = Field(description="The model, when the request was scoped by model.")
    drifted: bool = Field(description="Whether any metric drifted.")
    metrics: list[MetricDrift]


class DriftReport(BaseModel):
    baseline: Period
    current: Period
    alpha: float
    min_samples: int
    features: list[FeatureDrift] = Field(description="Drifted first, then by feature and model.")

"""Synthetic LLM traffic for the query benchmark: calls and scores as column blocks.

Realistic enough that the queries do real work: ~20 features with their own
prompt sizes and model mix over ~10 models priced like the real ones, lognormal
token counts, latency growing with output tokens, a few percent errors, a
daily traffic cycle, one sampled service (weight 4), a sprinkle of duplicate
rows, and two scores (a numeric one on ~10% of calls, a boolean one on ~5%).

Two changes are planted in the last day so the drift query has something to
find: ``summarize`` moves to a dearer model, and ``support-bot``'s
helpfulness falls.

Blocks cover consecutive time ranges, in time order, the way live ingest
writes them. Everything comes from one seeded generator: a run is repeatable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

HOUR_NS = 3_600 * 10**9
DAY_NS = 24 * HOUR_NS

# (name, USD per million input tokens, per million output tokens, ms per output token)
MODELS = (
    ("gpt-4o-mini", 0.15, 0.60, 8.0),
    ("gpt-4o", 2.50, 10.00, 14.0),
    ("o3-mini", 1.10, 4.40, 20.0),
    ("claude-sonnet-4", 3.00, 15.00, 16.0),
    ("claude-haiku-3.5", 0.80, 4.00, 7.0),
    ("gemini-2.0-flash", 0.10, 0.40, 5.0),
    ("gemini-2.5-pro", 1.25, 10.00, 18.0),
    ("mistral-large", 2.00, 6.00, 12.0),
    ("deepseek-chat", 0.27, 1.10, 25.0),
    ("grok-3", 3.00, 15.00, 15.0),
)
FEATURES = (
    "support-bot", "search", "summarize", "classify", "extract", "translate", "autocomplete",
    "code-review", "sql-assist", "email-draft", "moderation", "rerank", "agent-planner",
    "agent-tools", "faq", "onboarding", "report-writer", "tagging", "sentiment", "title-gen",
)  # fmt: skip
SERVICES = ("web", "worker", "batch")
SAMPLED_SERVICE = "batch"  # head-sampled at 1/4: each stored call stands for 4
PLANTED_MODEL_CHANGE = ("summarize", "gpt-4o-mini", "gpt-4o")
PLANTED_SCORE_DROP = ("support-bot", "helpfulness", 0.15)


@dataclass(frozen=True)
class FeatureProfile:
    traffic: float  # share of all calls
    models: np.ndarray  # model indices this feature uses
    model_odds: np.ndarray  # their shares
    input_median: float
    output_median: float
    error_rate: float


def feature_profiles(rng: np.random.Generator) -> list[FeatureProfile]:
    # Zipf-like traffic: a few features carry most calls, as in real apps.
    traffic = 1.0 / np.arange(1, len(FEATURES) + 1) ** 0.8
    traffic /= traffic.sum()
    profiles = []
    for share in traffic:
        models = rng.choice(len(MODELS), size=rng.integers(1, 4), replace=False)
        odds = rng.dirichlet(np.ones(len(models)) * 2)
        profiles.append(
            FeatureProfile(
                traffic=float(share),
                models=models,
                model_odds=odds,
                input_median=float(rng.choice([150, 400, 1200, 3000])),
                output_median=float(rng.choice([20, 80, 250, 600])),
                error_rate=float(rng.uniform(0.005, 0.03)),
            )
        )
    # The planted model change needs its baseline model in summarize's mix.
    summarize = FEATURES.index(PLANTED_MODEL_CHANGE[0])
    cheap = _model_index(PLANTED_MODEL_CHANGE[1])
    profiles[summarize] = FeatureProfile(
        profiles[summarize].traffic, np.array([cheap]), np.array([1.0]), 1200, 250, 0.01
    )
    return profiles


def _model_index(name: str) -> int:
    return next(i for i, model in enumerate(MODELS) if model[0] == name)


def _hex_ids(count: int, digits: int) -> list[str]:
    raw = os.urandom(count * digits // 2).hex()
    return [raw[i : i + digits] for i in range(0, count * digits, digits)]


def _timestamps(rng: np.random.Generator, count: int, start_ns: int, end_ns: int) -> np.ndarray:
    """Sorted times in [start, end) with a daily cycle (peak mid-afternoon UTC)."""
    # Rejection sampling against 1 + 0.6·sin: cheap, exact, vectorized.
    out = np.empty(0, dtype=np.int64)
    while out.size < count:
        t = rng.integers(start_ns, end_ns, size=2 * count, dtype=np.int64)
        phase = (t % DAY_NS) / DAY_NS * 2 * math.pi
        keep = rng.random(t.size) * 1.6 < 1 + 0.6 * np.sin(phase - math.pi / 2 - 0.5)
        out = np.concatenate([out, t[keep]])
    return np.sort(out[:count])


def _decimals(values: np.ndarray) -> list[Decimal]:
    # The column is Decimal(38, 12); formatting once keeps the stored sums exact.
    return [Decimal(f"{v:.12f}") for v in values.tolist()]


class Traffic:
    """Column blocks of ``llm_calls`` and ``scores`` for ``[end - days, end)``."""

    def __init__(self, rows: int, days: int, end_ns: int, seed: int = 7) -> None:
        self.rows = rows
        self.start_ns = end_ns - days * DAY_NS
        self.end_ns = end_ns
        self._rng = np.random.default_rng(seed)
        self._profiles = feature_profiles(self._rng)
        self._prices = np.array([(m[1], m[2], m[3]) for m in MODELS])

    def blocks(self, project_id: str, block_rows: int) -> Iterator[tuple[dict, dict]]:
        """``(calls, scores)`` column blocks, ``block_rows`` calls each, in time order."""
        count = -(-self.rows // block_rows)
        span = (self.end_ns - self.start_ns) // count
        for index in range(count):
            rows = min(block_rows, self.rows - index * block_rows)
            start = self.start_ns + index * span
            end = self.end_ns if index == count - 1 else start + span
            yield self._block(project_id, rows, start, end)

    def _block(self, project_id: str, n: int, start_ns: int, end_ns: int) -> tuple[dict, dict]:
        rng, profiles = self._rng, self._profiles
        ts = _timestamps(rng, n, start_ns, end_ns)
        feature = rng.choice(len(FEATURES), size=n, p=[p.traffic for p in profiles])
        model = np.empty(n, dtype=np.int64)
        in_med = np.empty(n)
        out_med = np.empty(n)
        err = np.empty(n)
        for f, profile in enumerate(profiles):
            rows = feature == f
            model[rows] = rng.choice(profile.models, size=int(rows.sum()), p=profile.model_odds)
            in_med[rows], out_med[rows] = profile.input_median, profile.output_median
            err[rows] = profile.error_rate
        recent = ts >= self.end_ns - DAY_NS
        name, before, after = PLANTED_MODEL_CHANGE
        moved = recent & (feature == FEATURES.index(name)) & (model == _model_index(before))
        model[moved] = _model_index(after)

        input_tokens = np.maximum(1, rng.lognormal(np.log(in_med), 0.6)).astype(np.int64)
        output_tokens = np.maximum(1, rng.lognormal(np.log(out_med), 0.7)).astype(np.int64)
        price = self._prices[model]
        cost = (input_tokens * price[:, 0] + output_tokens * price[:, 1]) / 1e6
        latency_ms = (150 + output_tokens * price[:, 2]) * rng.lognormal(0, 0.25, n)
        error = rng.random(n) < err
        output_tokens[error] = 0
        service = rng.choice(len(SERVICES), size=n, p=[0.6, 0.3, 0.1])
        sampled = service == SERVICES.index(SAMPLED_SERVICE)
        traces, spans = _hex_ids(n, 32), _hex_ids(n, 16)
        # ~0.5% rows repeat the previous call (two instrumentations on one client).
        repeat = rng.random(n) < 0.005
        repeat[0] = False
        duplicate_of = np.where(repeat, np.array(spans, dtype=object)[np.arange(n) - 1], "")

        names = np.array(FEATURES, dtype=object)
        model_names = np.array([m[0] for m in MODELS], dtype=object)
        calls: dict[str, Any] = {
            "project_id": [project_id] * n,
            "Timestamp": ts.tolist(),
            "trace_id": traces,
            "span_id": spans,
            "service": np.array(SERVICES, dtype=object)[service].tolist(),
            "environment": ["production"] * n,
            "feature": names[feature].tolist(),
            "user_id": [f"user-{u}" for u in rng.zipf(1.5, n) % 50_000],
            "provider": ["synthetic"] * n,
            "request_model": model_names[model].tolist(),
            "response_model": model_names[model].tolist(),
            "operation": ["chat"] * n,
            "input_tokens": input_tokens.tolist(),
            "output_tokens": output_tokens.tolist(),
            "input_cost_usd": _decimals(input_tokens * price[:, 0] / 1e6),
            "output_cost_usd": _decimals(output_tokens * price[:, 1] / 1e6),
            "total_cost_usd": _decimals(cost),
            "price_status": ["priced"] * n,
            "duration_ns": (latency_ms * 1e6).astype(np.int64).tolist(),
            "status_code": np.where(error, "Error", "Unset").tolist(),
            "error_type": np.where(error, "RateLimitError", "").tolist(),
            "sample_weight": np.where(sampled, 4.0, 1.0).tolist(),
            "duplicate_of": duplicate_of.tolist(),
        }
        return calls, self._scores(project_id, ts, feature, traces, spans, recent)

    def _scores(
        self,
        project_id: str,
        ts: np.ndarray,
        feature: np.ndarray,
        traces: list[str],
        spans: list[str],
        recent: np.ndarray,
    ) -> dict[str, Any]:
        rng, n = self._rng, ts.size
        helpful = np.flatnonzero(rng.random(n) < 0.10)
        thumbs = np.flatnonzero(rng.random(n) < 0.05)
        mean = np.full(helpful.size, 0.8)
        name, _, drop = PLANTED_SCORE_DROP
        mean[(feature[helpful] == FEATURES.index(name)) & recent[helpful]] -= drop
        value = np.clip(rng.normal(mean, 0.12), 0, 1)
        thumb_value = (rng.random(thumbs.size) < 0.85).astype(float)
        rows = np.concatenate([helpful, thumbs])
        later = rng.integers(10**9, 60 * 10**9, rows.size)  # a score follows its call
        names = np.array(FEATURES, dtype=object)
        return {
            "project_id": [project_id] * rows.size,
            "Timestamp": np.minimum(ts[rows] + later, self.end_ns - 1).tolist(),
            "score_id": _hex_ids(rows.size, 32),
            "trace_id": [traces[i] for i in rows],
            "span_id": [spans[i] for i in rows],
            "name": ["helpfulness"] * helpful.size + ["thumbs_up"] * thumbs.size,
            "data_type": ["numeric"] * helpful.size + ["boolean"] * thumbs.size,
            "value": np.concatenate([value, thumb_value]).tolist(),
            "string_value": [""] * helpful.size
            + ["true" if v else "false" for v in thumb_value.tolist()],
            "source": ["evaluator"] * rows.size,
            "feature": names[feature[rows]].tolist(),
        }

"""Head sampling that keeps totals honest: whole traces, each carrying its weight.

``init(sample_rate=r)`` installs ``ParentBased(TraceIdRatioBased(r))``: a root
span is kept with probability r, decided from its trace id, and every span
below it follows the root's decision (also in downstream services that honour
the sampled flag), so kept traces are complete. Every span of this process
then carries ``tokentrail.sample_weight`` = 1/r, and the collector counts a call
as 1/r calls with 1/r times its tokens and cost: an unbiased estimate of the
unsampled totals.

Limits: a downstream service records its own weight, so give every service of
a trace the same rate. When tokentrail attaches to a TracerProvider the
application built, it cannot change that provider's sampler: ``sample_rate``
is then ignored with a warning, and spans carry no weight (read as 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from tokentrail._runtime import logger

SAMPLE_RATE_ENV = "TOKENTRAIL_SAMPLE_RATE"
# The OTel SDK's own sampler variables; a ratio set there samples just the same
# and must be weighted just the same.
_OTEL_SAMPLER_ENV = "OTEL_TRACES_SAMPLER"
_OTEL_SAMPLER_ARG_ENV = "OTEL_TRACES_SAMPLER_ARG"
_OTEL_RATIO_SAMPLERS = frozenset({"traceidratio", "parentbased_traceidratio"})


@dataclass(frozen=True)
class Sampling:
    rate: float
    # None: the provider builds its sampler from the OTEL_* variables itself.
    sampler: Sampler | None

    @property
    def weight(self) -> float:
        return 1.0 / self.rate


def resolve(sample_rate: float | None) -> Sampling | None:
    """The sampling ``init()`` should set up, or None to keep every trace.

    ``sample_rate``, else TOKENTRAIL_SAMPLE_RATE, else a ratio sampler set with
    OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (kept as configured, only
    weighted). A rate outside (0, 1] is ignored with a warning.
    """
    if sample_rate is None and (raw := os.environ.get(SAMPLE_RATE_ENV, "").strip()):
        sample_rate = _rate(raw, SAMPLE_RATE_ENV)
    if sample_rate is not None:
        rate = _checked(sample_rate)
        if rate is None or rate == 1.0:
            return None
        return Sampling(rate, ParentBased(TraceIdRatioBased(rate)))
    if os.environ.get(_OTEL_SAMPLER_ENV, "").strip().lower() in _OTEL_RATIO_SAMPLERS:
        # The SDK's default when the argument is missing or bad is 1.0.
        rate = _rate(os.environ.get(_OTEL_SAMPLER_ARG_ENV, "1"), _OTEL_SAMPLER_ARG_ENV)
        checked = _checked(rate) if rate is not None else None
        if checked is not None and checked < 1.0:
            return Sampling(checked, None)
    return None


def _rate(raw: str, name: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        logger.warning("tokentrail: ignoring %s=%r (expected a number in (0, 1])", name, raw)
        return None


def _checked(rate: object) -> float | None:
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 < rate <= 1.0:
        logger.warning("tokentrail: ignoring sample_rate=%r (expected a number in (0, 1])", rate)
        return None
    return float(rate)

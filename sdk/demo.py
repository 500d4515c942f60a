"""Synthetic LLM traffic sent through the real SDK and OTLP path.

`tokentrail serve --demo` runs this so a fresh install has a few minutes of
believable data to explore. It goes through `feature`, `llm_call` and `score`
exactly as an application would, so the demo also proves that path end to
end. It uses its own TracerProvider because it runs inside the server
process, whose global OpenTelemetry setup is not ours to change.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from tokentrail._export import Pipeline, otlp_exporter, traces_url
from tokentrail._runtime import logger
from tokentrail.context import feature
from tokentrail.llm import llm_call
from tokentrail.scores import score

SERVICE_NAME = "tokentrail-demo"
WINDOW_S = 300
SPANS_PER_REQUEST = 3  # server span, LLM span, sometimes a feedback span
FLUSH_TIMEOUT_MS = 15_000
_MS = 1_000_000  # ns


@dataclass(frozen=True)
class _Model:
    provider: str
    name: str
    response_model: str  # dated snapshots exercise the price table's aliases
    ttft_ms: int
    ms_per_token: float
    thinks: bool = False  # sometimes spends reasoning tokens
    quality: float = 0.0  # shifts helpfulness


_MODELS = {
    m.name: m
    for m in (
        _Model("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 280, 9.0),
        _Model("openai", "gpt-4o", "gpt-4o-2024-08-06", 420, 16.0, quality=0.05),
        _Model(
            "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", 650, 14.0, True, 0.08
        ),
        _Model("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", 300, 7.0),
        _Model("gcp.gemini", "gemini-2.5-flash", "gemini-2.5-flash", 350, 5.0, True),
        # A self-hosted fine-tune no price table knows: its calls stay unpriced.
        _Model("vllm", "support-llama-ft-v3", "support-llama-ft-v3", 180, 12.0, quality=-0.12),
    )
}


@dataclass(frozen=True)
class _Feature:
    name: str
    weight: float
    models: tuple[tuple[str, float], ...]
    input_tokens: tuple[int, int]
    output_tokens: tuple[int, int]
    cached_prefix: int  # system-prompt tokens a prompt cache can serve
    helpfulness: float
    exchanges: tuple[tuple[str, str], ...]  # (prompt, completion)


_SUPPORT_SYSTEM = "You are Acme's support assistant. Be brief, cite the help centre."

_FEATURES = (
    _Feature(
        "support-chat",
        0.4,
        (("gpt-4o-mini", 0.5), ("claude-haiku-4-5", 0.3), ("support-llama-ft-v3", 0.2)),
        (900, 3200),
        (60, 420),
        1024,
        0.78,
        (
            (
                "How do I reset my password?",
                "Open Settings > Security and choose 'Reset password'; a link arrives by email.",
            ),
            (
                "I was charged twice for March.",
                "Sorry about that. I've flagged the duplicate charge; the refund takes 3-5 days.",
            ),
            (
                "Can I export my data to CSV?",
                "Yes: Reports > Export > CSV. Large exports are emailed when ready.",
            ),
            (
                "The mobile app logs me out every day.",
                "Update to 4.2 or later; it fixes the session refresh bug you're hitting.",
            ),
        ),
    ),
    _Feature(
        "summarize",
        0.25,
        (("gemini-2.5-flash", 0.6), ("gpt-4o-mini", 0.4)),
        (2500, 12000),
        (120, 600),
        0,
        0.82,
        (
            (
                "Summarize this meeting transcript: ...",
                "Decisions: ship v2 on the 14th; Dana owns the migration; revisit pricing in Q3.",
            ),
            (
                "Summarize the attached incident report: ...",
                "A config push disabled caching for 40 minutes; p95 latency tripled; rolled back.",
            ),
            (
                "TL;DR this support thread: ...",
                "Customer hit an SSO redirect loop; fixed by correcting the callback URL.",
            ),
        ),
    ),
    _Feature(
        "search-rerank",
        0.2,
        (("gpt-4o-mini", 0.7), ("gemini-2.5-flash", 0.3)),
        (1500, 4000),
        (20, 80),
        512,
        0.74,
        (
            (
                "Rank these 20 passages for the query 'refund policy'.",
                "[4, 11, 2, 17, 9]",
            ),
            (
                "Rank these passages for 'rotate API key'.",
                "[7, 1, 12, 3, 18]",
            ),
        ),
    ),
    _Feature(
        "code-review",
        0.15,
        (("claude-sonnet-4-5", 0.6), ("gpt-4o", 0.4)),
        (3000, 15000),
        (200, 1200),
        2048,
        0.7,
        (
            (
                "Review this diff: handle None in parse_price() ...",
                "Looks good. Consider returning Decimal instead of float to avoid rounding.",
            ),
            (
                "Review this diff: add retry to webhook sender ...",
                "The retry loop never backs off; add jitter and cap attempts at 5.",
            ),
        ),
    ),
)


class _ProviderError(Exception):
    """Base of the simulated provider failures."""


# Named like the provider SDKs' exceptions: the class name becomes `error.type`.
class RateLimitError(_ProviderError):
    pass


class APITimeoutError(_ProviderError):
    pass


class InternalServerError(_ProviderError):
    pass


_ERRORS = (RateLimitError, RateLimitError, APITimeoutError, InternalServerError)


def run_demo(
    endpoint: str,
    api_key: str | None = None,
    calls: int = 240,
    seed: int = 7,
    *,
    exporter: SpanExporter | None = None,
) -> int:
    """Send `calls` synthetic LLM requests, spread over the last five minutes.

    `endpoint` is the collector base URL (e.g. http://127.0.0.1:4318) and
    `api_key` its bearer token; `exporter` replaces the OTLP exporter (tests).
    The same seed yields the same traffic, timestamps relative to now.
    Returns the number of LLM calls delivered after a final flush: `calls`,
    or 0 with a warning when the collector did not accept them in time (it
    never raises).
    """
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": SERVICE_NAME, "deployment.environment.name": "demo"}
        ),
        shutdown_on_exit=False,
    )
    # The same processor init() installs, so spans get stamped the same way.
    # Traffic is generated far faster than real time: size the queue so no
    # span is dropped before the exporter catches up.
    pipeline = Pipeline(
        exporter or otlp_exporter(traces_url(endpoint), api_key),
        max_queue_size=max(2048, calls * SPANS_PER_REQUEST),
    )
    provider.add_span_processor(pipeline)
    traffic = _Traffic(provider, random.Random(seed), time.time_ns())
    try:
        for _ in range(calls):
            traffic.request()
        delivered = pipeline.force_flush(FLUSH_TIMEOUT_MS)
    finally:
        provider.shutdown()
    if not delivered:
        logger.warning("tokentrail demo: could not deliver the demo traffic to %s", endpoint)
        return 0
    return max(calls, 0)


@dataclass(frozen=True)
class _Plan:
    """One request decided up front, so latency can follow the token counts."""

    feature: _Feature
    model: _Model
    prompt: str
    completion: str
    failure: type[_ProviderError] | None
    input_tokens: int
    visible_tokens: int
    reasoning_tokens: int
    start: int  # ns
    end: int  # ns


class _Traffic:
    """Generates one request at a time; holds users' sessions between requests."""

    def __init__(self, provider: TracerProvider, rng: random.Random, now_ns: int) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("tokentrail.demo")
        self._rng = rng
        self._now = now_ns
        self._users = [f"user-{i:02d}" for i in range(1, 13)]
        self._sessions: dict[str, str] = {}

    def _session(self, user: str) -> str:
        if user not in self._sessions or self._rng.random() < 0.25:
            self._sessions[user] = f"sess-{self._rng.getrandbits(32):08x}"
        return self._sessions[user]

    def _plan(self) -> _Plan:
        rng = self._rng
        feat = rng.choices(_FEATURES, weights=[f.weight for f in _FEATURES])[0]
        names, weights = zip(*feat.models, strict=True)
        model = _MODELS[rng.choices(names, weights=weights)[0]]
        prompt, completion = rng.choice(feat.exchanges)
        failure = rng.choice(_ERRORS) if rng.random() < 0.05 else None
        visible = rng.randint(*feat.output_tokens)
        thinking = model.thinks and rng.random() < 0.5  # not enabled on every call
        reasoning = int(visible * rng.uniform(0.3, 1.5)) if thinking else 0
        latency_ms = model.ttft_ms + int(
            (visible + reasoning) * model.ms_per_token * rng.uniform(0.7, 1.4)
        )
        if failure is APITimeoutError:
            latency_ms = 30_000
        # Anchored so the request and any feedback on it end before now.
        earliest_ns = (latency_ms + 100 + 45_000) * _MS
        start = self._now - rng.randint(earliest_ns, WINDOW_S * 1000 * _MS)
        return _Plan(
            feat,
            model,
            prompt,
            completion,
            failure,
            rng.randint(*feat.input_tokens),
            visible,
            reasoning,
            start,
            start + latency_ms * _MS,
        )

    def request(self) -> None:
        rng = self._rng
        plan = self._plan()
        name = plan.feature.name
        user = rng.choice(self._users)
        with feature(name, user_id=user, session_id=self._session(user), span=False):
            # Stands in for the web framework's server span; the pipeline
            # stamps the feature context onto it like onto any other span.
            root = self._tracer.start_span(
                f"POST /api/{name}",
                kind=trace.SpanKind.SERVER,
                start_time=plan.start - rng.randint(3, 25) * _MS,
                attributes={"http.request.method": "POST", "http.route": f"/api/{name}"},
            )
            with trace.use_span(root, end_on_exit=False):
                try:
                    self._llm(plan)
                    status = 200
                except _ProviderError as exc:
                    root.set_status(trace.StatusCode.ERROR, type(exc).__name__)
                    status = 502
                root.set_attribute("http.response.status_code", status)
            root.end(end_time=plan.end + rng.randint(2, 15) * _MS)

    def _llm(self, plan: _Plan) -> None:
        rng = self._rng
        feat, model = plan.feature, plan.model
        with llm_call(
            provider=model.provider,
            model=model.name,
            start_time=plan.start,
            end_time=plan.end,
            capture_content=True,  # the demo shows content whatever the server's env says
            tracer_provider=self._provider,
        ) as call:
            if plan.failure is not None:
                raise plan.failure(f"{model.provider} returned an error")
            cache_read = cache_write = None
            if feat.cached_prefix and model.provider in ("openai", "anthropic", "gcp.gemini"):
                if rng.random() < 0.6:
                    cache_read = feat.cached_prefix
                elif model.provider == "anthropic":
                    cache_write = feat.cached_prefix  # Anthropic bills cache writes
            messages = [{"role": "user", "content": plan.prompt}]
            if feat.name == "support-chat":
                messages.insert(0, {"role": "system", "content": _SUPPORT_SYSTEM})
            call.record(
                input_tokens=plan.input_tokens,
                # OTel GenAI: reasoning is part of output, cached part of input.
                output_tokens=plan.visible_tokens + plan.reasoning_tokens,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
                reasoning_tokens=plan.reasoning_tokens or None,
                response_model=model.response_model,
                response_id=f"resp_{rng.getrandbits(64):016x}",
                finish_reasons="length" if rng.random() < 0.03 else "stop",
                prompt=messages,
                completion=plan.completion,
            )
            helpfulness = min(1.0, max(0.0, rng.gauss(feat.helpfulness + model.quality, 0.12)))
            if rng.random() < 0.6:  # an LLM judge grades most answers
                score("helpfulness", round(helpfulness, 2), source="evaluator", timestamp=plan.end)
            if feat.name == "code-review" and rng.random() < 0.5:
                verdict = "approve" if helpfulness > 0.6 else "request_changes"
                score("review_verdict", verdict, source="evaluator", timestamp=plan.end)
        if rng.random() < 0.25:  # a few users click thumbs up/down, seconds later
            score(
                "thumbs_up",
                rng.random() < helpfulness,
                trace_id=call.trace_id,
                span_id=call.span_id,
                source="human",
                timestamp=plan.end + rng.randint(2_000, 40_000) * _MS,
                tracer_provider=self._provider,
            )

"""tokentrail: LLM observability on OpenTelemetry.

Usage::

    import tokentrail
    tokentrail.init(service_name="support-bot")  # also traces openai / anthropic calls
    with tokentrail.feature("support-chat", user_id=user.id):
        reply = openai_client.chat.completions.create(...)
        # Providers without auto-instrumentation: one span per request by hand.
        with tokentrail.llm_call(provider="mistral", model="mistral-small") as call:
            answer = mistral_client.chat(...)
            call.record(input_tokens=..., output_tokens=..., completion=...)
    tokentrail.score("helpfulness", 0.9, trace_id=call.trace_id, span_id=call.span_id)
"""

from tokentrail._setup import flush, init, shutdown
from tokentrail.context import ContextSpanProcessor, FeatureScope, feature
from tokentrail.instrumentation import instrument_anthropic, instrument_openai, uninstrument
from tokentrail.llm import LLMCall, llm_call
from tokentrail.scores import score

__version__ = "0.1.0"

__all__ = [
    "ContextSpanProcessor",
    "FeatureScope",
    "LLMCall",
    "__version__",
    "feature",
    "flush",
    "init",
    "instrument_anthropic",
    "instrument_openai",
    "llm_call",
    "score",
    "shutdown",
    "uninstrument",
]

"""tokentrail: LLM observability on OpenTelemetry.

Usage::

    import tokentrail
    tokentrail.init(service_name="support-bot")
    with tokentrail.feature("support-chat", user_id=user.id):
        with tokentrail.llm_call(provider="openai", model="gpt-4o-mini") as call:
            reply = client.chat.completions.create(...)
            call.record(input_tokens=..., output_tokens=..., completion=...)
    tokentrail.score("helpfulness", 0.9, trace_id=call.trace_id, span_id=call.span_id)
"""

from tokentrail._setup import flush, init, shutdown
from tokentrail.context import ContextSpanProcessor, FeatureScope, feature
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
    "llm_call",
    "score",
    "shutdown",
]

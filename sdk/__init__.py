"""tokentrail: LLM observability on OpenTelemetry."""

__version__ = "0.1.0"

"""The query API: traces, per-feature spend and quality, scores."""

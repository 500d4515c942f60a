-- Long-context price tiers on model_prices. Idempotent like every migration
-- (ADD COLUMN IF NOT EXISTS); rows written before it have no tier (NULL).
--
-- tier_threshold_tokens: a call whose prompt (input tokens, cached ones
--   included) exceeds it pays the tier_* rates for the WHOLE call, not only for
--   the tokens beyond it: how Google bills Gemini 2.5 Pro above 200k, Anthropic
--   Claude Sonnet 4/4.5 long context above 200k, and xAI Grok 4 above 128k.
-- tier_*_per_mtok: USD per million tokens in the tier; NULL keeps the row's
--   base rate for that kind of token.
ALTER TABLE model_prices
    ADD COLUMN IF NOT EXISTS tier_threshold_tokens Nullable(UInt64),
    ADD COLUMN IF NOT EXISTS tier_input_per_mtok Nullable(Decimal(38, 12)),
    ADD COLUMN IF NOT EXISTS tier_output_per_mtok Nullable(Decimal(38, 12)),
    ADD COLUMN IF NOT EXISTS tier_cache_read_per_mtok Nullable(Decimal(38, 12)),
    ADD COLUMN IF NOT EXISTS tier_cache_write_per_mtok Nullable(Decimal(38, 12)),
    ADD COLUMN IF NOT EXISTS tier_reasoning_per_mtok Nullable(Decimal(38, 12));

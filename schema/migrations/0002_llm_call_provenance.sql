-- Provenance of each normalized LLM call, for the trace detail and for counting
-- one API call once. Idempotent like every migration (ADD COLUMN IF NOT EXISTS);
-- rows written before it read the defaults.
--
-- duplicate_of: span id of the call this row repeats. Two instrumentations on
--   one client give two nested LLM spans for one request; one of them is kept
--   and the others point at it. Every report filters `duplicate_of = ''`; the
--   rows stay, priced, so the trace detail still shows each span's reading.
-- unknown_keys: the span's attribute keys in an LLM namespace (gen_ai.*, llm.*,
--   langfuse.*, traceloop.* ...) that no convention reader understood: why a
--   field may be empty.
-- streaming: whether the call streamed its response (gen_ai.request.stream,
--   gen_ai.is_streaming, llm.is_streaming).
ALTER TABLE llm_calls
    ADD COLUMN IF NOT EXISTS duplicate_of String DEFAULT '',
    ADD COLUMN IF NOT EXISTS unknown_keys Array(String),
    ADD COLUMN IF NOT EXISTS streaming Bool DEFAULT false;

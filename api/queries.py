"""The SQL of the trace views and score look-ups, in one place.

Spend and quality reports read rollups instead; their statements are composed
by ``rollup_read`` (``metrics``, ``features``, ``feature_breakdowns``).

Rules kept by each statement:

- every table is read with ``FINAL``: the tables are ReplacingMergeTrees and a
  re-sent batch must never count twice, merged or not;
- every table is filtered by ``project_id = {project_id:String}``;
- every report over ``llm_calls`` keeps ``duplicate_of = ''``: a row that
  repeats another call (two instrumentations, one API call) counts once;
- every value arrives as a server-side parameter (``{name:Type}``); the SQL
  text is constant. Optional filters are bound as ``''`` meaning "no filter",
  so no statement is ever assembled from a request.

Times are bound as Unix nanoseconds (``Int64``) and read back the same way, so
nanosecond timestamps survive the round trip.
"""

from __future__ import annotations

# Composed once at import from constants: a window on a table's ``Timestamp``.
_IN_WINDOW = (
    "Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64}) "
    "AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})"
)

# A trace is the spans sharing a TraceId inside the window. Its root is the span
# without a parent, else the earliest (SpanId breaks ties so the pick is stable).
# Who/what (feature, user, session) comes from the trace's earliest LLM call that
# carries it, else from the root span's attributes. Feature/user/session/model
# filters match traces having at least one LLM call that meets all of them.
TRACE_PAGE = f"""
WITH
    trace_spans AS (
        SELECT
            TraceId AS trace_id,
            min(toUnixTimestamp64Nano(Timestamp)) AS start_ns,
            max(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration)) AS end_ns,
            argMin(
                (ServiceName, SpanAttributes['tokentrail.feature'],
                 SpanAttributes['user.id'], SpanAttributes['session.id']),
                (ParentSpanId != '', Timestamp, SpanId)
            ) AS root,
            countIf(StatusCode = 'Error') > 0 AS has_error,
            countIf(ServiceName = {{service:String}}) > 0 AS has_service
        FROM spans FINAL
        WHERE project_id = {{project_id:String}} AND {_IN_WINDOW}
        GROUP BY TraceId
    ),
    trace_calls AS (
        SELECT
            trace_id,
            count() AS calls,
            sum(input_tokens) AS tokens_in,
            sum(output_tokens) AS tokens_out,
            sum(total_cost_usd) AS cost,
            argMinIf(feature, Timestamp, feature != '') AS first_feature,
            argMinIf(user_id, Timestamp, user_id != '') AS first_user_id,
            argMinIf(session_id, Timestamp, session_id != '') AS first_session_id,
            countIf(
                ({{feature:String}} = '' OR feature = {{feature:String}})
                AND ({{user_id:String}} = '' OR user_id = {{user_id:String}})
                AND ({{session_id:String}} = '' OR session_id = {{session_id:String}})
                AND ({{model:String}} = '' OR request_model = {{model:String}}
                     OR response_model = {{model:String}})
            ) > 0 AS matches
        FROM llm_calls FINAL
        WHERE project_id = {{project_id:String}} AND {_IN_WINDOW} AND duplicate_of = ''
        GROUP BY trace_id
    )
SELECT
    t.trace_id AS trace_id,
    t.start_ns AS start_ns,
    t.end_ns - t.start_ns AS duration_ns,
    t.root.1 AS service,
    if(c.first_feature != '', c.first_feature, t.root.2) AS feature,
    if(c.first_user_id != '', c.first_user_id, t.root.3) AS user_id,
    if(c.first_session_id != '', c.first_session_id, t.root.4) AS session_id,
    c.calls AS llm_calls,
    c.tokens_in AS input_tokens,
    c.tokens_out AS output_tokens,
    c.cost AS cost_usd,
    t.has_error AS has_error
FROM trace_spans AS t
LEFT JOIN trace_calls AS c ON c.trace_id = t.trace_id
WHERE (t.start_ns, t.trace_id) < ({{cursor_ns:Int64}}, {{cursor_trace_id:String}})
    AND ({{service:String}} = '' OR t.has_service)
    AND ({{status:String}} = '' OR t.has_error = ({{status:String}} = 'error'))
    AND (NOT {{filter_calls:Bool}} OR c.matches)
ORDER BY t.start_ns DESC, t.trace_id DESC
LIMIT {{limit:UInt32}}
"""

# The trace detail reads by id without a time bound: the spans table's bloom
# filter on TraceId skips the granules that cannot hold it.
TRACE_SPANS = """
SELECT
    SpanId AS span_id,
    ParentSpanId AS parent_span_id,
    SpanName AS name,
    SpanKind AS kind,
    ServiceName AS service,
    toUnixTimestamp64Nano(Timestamp) AS start_ns,
    Duration AS duration_ns,
    StatusCode AS status,
    StatusMessage AS status_message,
    SpanAttributes AS attributes,
    arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS event_ns,
    Events.Name AS event_names,
    Events.Attributes AS event_attributes
FROM spans FINAL
WHERE project_id = {project_id:String} AND TraceId = {trace_id:String}
ORDER BY Timestamp, SpanId
"""

TRACE_CALLS = """
SELECT
    span_id, provider, request_model, response_model, operation,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    input_cost_usd, output_cost_usd, total_cost_usd, price_status, prompt, completion,
    duration_ns, time_to_first_token_s, finish_reasons, error_type,
    feature, user_id, session_id, streaming, convention, unknown_keys, duplicate_of
FROM llm_calls FINAL
WHERE project_id = {project_id:String} AND trace_id = {trace_id:String}
"""

# Content that instrumentations sent as log records (OTel GenAI `event_only`
# capture), per span; stored apart from llm_calls so it lands whichever of the
# span and its log records arrives first.
TRACE_LOGGED_CONTENT = """
SELECT span_id, prompt, completion
FROM llm_call_content FINAL
WHERE project_id = {project_id:String} AND trace_id = {trace_id:String}
"""

TRACE_SCORES = """
SELECT
    score_id, trace_id, span_id, name, data_type, value, string_value, source, comment,
    feature, toUnixTimestamp64Nano(Timestamp) AS timestamp_ns
FROM scores FINAL
WHERE project_id = {project_id:String} AND trace_id = {trace_id:String}
ORDER BY Timestamp, score_id
"""

# The feature a new score belongs to: the scored span's own call first, else the
# trace's earliest call that has one. Resolved at write time so every reader of
# `scores` (reports, drift, alerts) sees it without a join.
SCORE_FEATURE = """
SELECT feature
FROM llm_calls FINAL
WHERE project_id = {project_id:String} AND trace_id = {trace_id:String} AND feature != ''
ORDER BY span_id = {span_id:String} DESC, Timestamp
LIMIT 1
"""

"""The ingest pipeline on the real embedded engine: context across batches, no double count."""

from __future__ import annotations

import time
from decimal import Decimal

from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.records import Score, Span, SpanEvent
from tokentrail.schema import Store
from tokentrail.schema.prices import seed_shipped_prices

NOW = time.time_ns()
TRACE = "0af7651916cd43dd8448eb211c80319c"


def _span(span_id: str, parent: str = "", trace: str = TRACE, **attributes: object) -> Span:
    return Span(
        trace_id=trace, span_id=span_id, parent_span_id=parent, name="s", kind="Client",
        start_time_unix_nano=NOW, end_time_unix_nano=NOW + 5_000_000,
        attributes=dict(attributes), resource_attributes={"service.name": "svc"},
    )  # fmt: skip


def _llm(span_id: str, parent: str, trace: str = TRACE, **extra: object) -> Span:
    return _span(
        span_id, parent, trace,
        **{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
           "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1000,
           "gen_ai.usage.output_tokens": 100, **extra},
    )  # fmt: skip


def _pipeline(store: Store) -> IngestPipeline:
    seed_shipped_prices(store)
    return IngestPipeline(store)


def _calls(store: Store, project_id: str) -> list[dict[str, object]]:
    return store.query(
        "SELECT span_id, feature, user_id, session_id, input_tokens, total_cost_usd, price_status"
        " FROM llm_calls FINAL WHERE project_id = {p:String} ORDER BY span_id",
        {"p": project_id},
    ).dicts()


def test_feature_from_a_parent_that_arrives_in_a_later_batch(store: Store, project_id: str) -> None:
    pipeline = _pipeline(store)
    # Exporters send a child as soon as it ends, before its parent.
    pipeline.ingest(project_id, [_llm("00000000000000b1", "00000000000000a1")])
    assert _calls(store, project_id)[0]["feature"] == ""
    root = _span(
        "00000000000000a1",
        **{"tokentrail.feature": "summarize", "user.id": "u1", "session.id": "s1"},
    )
    pipeline.ingest(project_id, [root])
    (call,) = _calls(store, project_id)
    assert (call["feature"], call["user_id"], call["session_id"]) == ("summarize", "u1", "s1")
    assert call["price_status"] == "priced"


def test_call_inherits_from_ancestors_stored_by_earlier_batches(
    store: Store, project_id: str
) -> None:
    pipeline = _pipeline(store)
    pipeline.ingest(project_id, [_span("00000000000000a1", **{"tokentrail.feature": "rerank"})])
    pipeline.ingest(project_id, [_span("00000000000000a2", "00000000000000a1")])
    pipeline.ingest(project_id, [_llm("00000000000000b1", "00000000000000a2")])
    assert _calls(store, project_id)[0]["feature"] == "rerank"


def test_resent_batch_is_counted_once(store: Store, project_id: str) -> None:
    pipeline = _pipeline(store)
    batch = [
        _span("00000000000000a1", **{"tokentrail.feature": "chat"}),
        _llm("00000000000000b1", "00000000000000a1"),
    ]
    pipeline.ingest(project_id, batch)
    first = _calls(store, project_id)
    pipeline.ingest(project_id, batch)
    assert _calls(store, project_id) == first
    spans = store.query(
        "SELECT count() FROM spans FINAL WHERE project_id = {p:String}", {"p": project_id}
    ).rows
    assert spans == [(2,)]
    total = store.query(
        "SELECT sum(total_cost_usd) FROM llm_calls FINAL WHERE project_id = {p:String}",
        {"p": project_id},
    ).rows[0][0]
    assert total == Decimal("0.000210")  # 1000 x $0.15/M + 100 x $0.60/M, once


def test_scores_take_the_feature_of_the_call_they_judge(store: Store, project_id: str) -> None:
    pipeline = _pipeline(store)
    evaluation = SpanEvent(
        NOW, "gen_ai.evaluation.result",
        {"gen_ai.evaluation.name": "helpfulness", "gen_ai.evaluation.score.value": 0.5},
    )  # fmt: skip
    llm = _llm("00000000000000b1", "", **{"tokentrail.feature": "qa"})
    llm.events.append(evaluation)
    pipeline.ingest(project_id, [llm])
    later = Score(TRACE, "00000000000000b1", "thumbs_up", "boolean", 1.0, "true", "api")
    later.score_id, later.time_unix_nano = "api-1", NOW
    pipeline.record_scores(project_id, [later])
    rows = store.query(
        "SELECT name, feature, value FROM scores FINAL WHERE project_id = {p:String} ORDER BY name",
        {"p": project_id},
    ).rows
    assert rows == [("helpfulness", "qa", 0.5), ("thumbs_up", "qa", 1.0)]

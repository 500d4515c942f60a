"""The evaluator: every enabled rule through the ok → firing → ok state machine.

One pass reads each rule's condition at ``now_ns`` and compares it with the
rule's stored state. Only a change is written and notified: ok → firing fires,
firing → ok resolves, and firing stays quiet unless the rule's renotify
interval has passed since the last notification. The event and the new state
are stored before delivery, so a restart never notifies the same change twice
(a crash in the middle of delivering loses that one notification instead).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from typing import Literal

from tokentrail.api.alerts.conditions import Finding, MetricReader, check
from tokentrail.api.alerts.deliver import Deliverer
from tokentrail.api.alerts.history import record_deliveries, record_event
from tokentrail.api.alerts.links import query_link
from tokentrail.api.alerts.models import AlertPayload, EvaluatedWindow
from tokentrail.api.alerts.rules import StoredRule, enabled_rules
from tokentrail.api.alerts.state import NEVER_FIRED, AlertState, load_states, save_state
from tokentrail.api.durations import seconds
from tokentrail.api.timewindow import rfc3339
from tokentrail.schema.store import Store

log = logging.getLogger("tokentrail.alerts")

NS = 10**9
Move = Literal["fire", "remind", "resolve"]


def transition(state: AlertState, met: bool, now_ns: int, renotify_s: int | None) -> Move | None:
    """What a finding does to a rule in ``state``; ``None``: nothing to record or send."""
    if state.state == "ok":
        return "fire" if met else None
    if not met:
        return "resolve"
    if renotify_s is not None and now_ns - state.notified_ns >= renotify_s * NS:
        return "remind"
    return None


def _next_state(state: AlertState, move: Move, now_ns: int, event_id: str) -> AlertState:
    if move == "fire":
        return AlertState("firing", since_ns=now_ns, event_id=event_id, notified_ns=now_ns)
    if move == "remind":
        return replace(state, notified_ns=now_ns)
    return AlertState("ok", since_ns=now_ns, event_id=event_id, notified_ns=now_ns)


@dataclass(frozen=True)
class PassReport:
    """What one pass did; the CLI prints it."""

    rules: int = 0
    events: list[AlertPayload] = field(default_factory=list)
    failed_rules: int = 0

    def summary(self) -> str:
        fired = sum(e.state == "firing" and not e.repeat for e in self.events)
        reminded = sum(e.repeat for e in self.events)
        resolved = sum(e.state == "resolved" for e in self.events)
        return (
            f"{self.rules} rules evaluated: {fired} fired, {reminded} reminded, "
            f"{resolved} resolved, {self.failed_rules} failed"
        )


def _payload(
    rule: StoredRule,
    finding: Finding,
    move: Move,
    state: AlertState,
    now_ns: int,
    link_base: str,
) -> AlertPayload:
    spec = rule.spec
    return AlertPayload(
        event_id=uuid.uuid4().hex,
        project_id=rule.project_id,
        rule_id=rule.rule_id,
        rule_name=spec.name,
        state="resolved" if move == "resolve" else "firing",
        repeat=move == "remind",
        metric=spec.metric,
        scope=spec.scope,
        condition=spec.condition,
        reason=finding.reason,
        value=finding.value,
        numbers=finding.numbers,
        window=EvaluatedWindow(start=rfc3339(finding.start_ns), end=rfc3339(finding.end_ns)),
        fired_at=rfc3339(now_ns if move == "fire" else state.since_ns),
        resolved_at=rfc3339(now_ns) if move == "resolve" else None,
        time=rfc3339(now_ns),
        link=query_link(
            link_base,
            spec.metric,
            spec.scope,
            finding.context_start_ns,
            finding.end_ns,
            finding.step_s,
        ),
        summary=finding.summary,
    )


def evaluate_rule(
    store: Store,
    rule: StoredRule,
    state: AlertState,
    now_ns: int,
    deliverer: Deliverer,
    link_base: str = "",
) -> AlertPayload | None:
    """One rule, one step of its state machine; the event it produced, if any."""
    finding = check(MetricReader(store, rule.project_id), rule.spec, now_ns)
    renotify_s = seconds(rule.spec.renotify) if rule.spec.renotify else None
    move = transition(state, finding.met, now_ns, renotify_s)
    if move is None:
        return None
    payload = _payload(rule, finding, move, state, now_ns, link_base)
    record_event(store, payload, now_ns)
    save_state(
        store, rule.project_id, rule.rule_id, _next_state(state, move, now_ns, payload.event_id)
    )
    if rule.spec.channels:
        results = deliverer.deliver(payload, rule.spec.channels)
        record_deliveries(store, rule.project_id, payload.event_id, results)
    return payload


def evaluate(
    store: Store,
    now_ns: int,
    *,
    project_id: str | None = None,
    deliverer: Deliverer | None = None,
    link_base: str = "",
) -> PassReport:
    """One pass over the enabled rules of ``project_id``, or of every project.

    A rule that fails (a query error, a bug) is logged and skipped: one broken
    rule must not silence the others.
    """
    deliverer = deliverer or Deliverer()
    states = load_states(store, project_id)
    rules = enabled_rules(store, project_id)
    events: list[AlertPayload] = []
    failed = 0
    for rule in rules:
        state = states.get((rule.project_id, rule.rule_id), NEVER_FIRED)
        try:
            event = evaluate_rule(store, rule, state, now_ns, deliverer, link_base)
        except Exception:
            failed += 1
            log.exception("alert rule %s (project %s) failed", rule.rule_id, rule.project_id)
            continue
        if event is not None:
            events.append(event)
    return PassReport(rules=len(rules), events=events, failed_rules=failed)

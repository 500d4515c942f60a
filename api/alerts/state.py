"""Where each rule's state machine stands, kept in ``alert_state``.

In the store rather than in memory so a restarted evaluator, or a cron run of
``tokentrail alerts evaluate``, knows an alert is already firing and already
notified, and stays quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tokentrail.api.alerts.rules import next_version
from tokentrail.schema.store import Store

StateName = Literal["ok", "firing"]


@dataclass(frozen=True)
class AlertState:
    state: StateName = "ok"
    since_ns: int = 0  # when the current state began; 0: never evaluated into a state
    event_id: str = ""  # the event that fired the current firing
    notified_ns: int = 0  # last notification sent for it (firing or reminder)


NEVER_FIRED = AlertState()

_SELECT = """
SELECT project_id, rule_id, state, since_ns, event_id, notified_ns
FROM alert_state FINAL
WHERE {all_projects:Bool} OR project_id = {project_id:String}
"""


def load_states(store: Store, project_id: str | None) -> dict[tuple[str, str], AlertState]:
    """``(project_id, rule_id) → state`` for one project, or all when ``None``."""
    rows = store.query(
        _SELECT, {"all_projects": project_id is None, "project_id": project_id or ""}
    ).dicts()
    return {
        (row["project_id"], row["rule_id"]): AlertState(
            row["state"], row["since_ns"], row["event_id"], row["notified_ns"]
        )
        for row in rows
    }


def save_state(store: Store, project_id: str, rule_id: str, state: AlertState) -> None:
    store.insert_columns(
        "alert_state",
        {
            "project_id": [project_id],
            "rule_id": [rule_id],
            "state": [state.state],
            "since_ns": [state.since_ns],
            "event_id": [state.event_id],
            "notified_ns": [state.notified_ns],
            "version": [next_version()],
        },
    )

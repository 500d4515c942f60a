"""Alert rules in ``alert_rules``: create, read, replace, delete.

A rule row holds the validated :class:`RuleSpec` as JSON; an edit inserts the
whole rule again with a newer version and a deletion inserts it flagged
``deleted``, which ``FINAL`` then hides (see migration 0006).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from tokentrail.api.alerts.models import RuleSpec
from tokentrail.schema.store import Store

_version_lock = threading.Lock()
_last_version = 0


def next_version() -> int:
    """Wall-clock nanoseconds, strictly increasing in this process.

    Two writes of one row in the same clock tick must still order; across
    processes (server mode) the wall clock orders them.
    """
    global _last_version
    with _version_lock:
        _last_version = max(time.time_ns(), _last_version + 1)
        return _last_version


@dataclass(frozen=True)
class StoredRule:
    project_id: str
    rule_id: str
    spec: RuleSpec
    created_ns: int
    updated_ns: int


# Optional filters are bound as flags or '' so the SQL text never changes.
_SELECT = """
SELECT project_id, rule_id, definition, created_ns, updated_ns
FROM alert_rules FINAL
WHERE ({all_projects:Bool} OR project_id = {project_id:String})
    AND ({rule_id:String} = '' OR rule_id = {rule_id:String})
    AND (NOT {enabled_only:Bool} OR enabled = 1)
ORDER BY project_id, created_ns, rule_id
"""


def _select(
    store: Store,
    project_id: str | None,
    rule_id: str = "",
    enabled_only: bool = False,
) -> list[StoredRule]:
    params = {
        "all_projects": project_id is None,
        "project_id": project_id or "",
        "rule_id": rule_id,
        "enabled_only": enabled_only,
    }
    return [
        StoredRule(
            project_id=row["project_id"],
            rule_id=row["rule_id"],
            spec=RuleSpec.model_validate_json(row["definition"]),
            created_ns=row["created_ns"],
            updated_ns=row["updated_ns"],
        )
        for row in store.query(_SELECT, params).dicts()
    ]


def _write(store: Store, rule: StoredRule, *, deleted: bool = False) -> None:
    columns: dict[str, list[Any]] = {
        "project_id": [rule.project_id],
        "rule_id": [rule.rule_id],
        "name": [rule.spec.name],
        "enabled": [int(rule.spec.enabled)],
        "definition": [rule.spec.model_dump_json()],
        "created_ns": [rule.created_ns],
        "updated_ns": [rule.updated_ns],
        "version": [next_version()],
        "deleted": [int(deleted)],
    }
    store.insert_columns("alert_rules", columns)


def create_rule(store: Store, project_id: str, spec: RuleSpec) -> StoredRule:
    now = time.time_ns()
    rule = StoredRule(project_id, uuid.uuid4().hex, spec, created_ns=now, updated_ns=now)
    _write(store, rule)
    return rule


def get_rule(store: Store, project_id: str, rule_id: str) -> StoredRule | None:
    found = _select(store, project_id, rule_id=rule_id)
    return found[0] if found else None


def list_rules(store: Store, project_id: str) -> list[StoredRule]:
    """A project's rules, oldest first."""
    return _select(store, project_id)


def enabled_rules(store: Store, project_id: str | None = None) -> list[StoredRule]:
    """What the evaluator runs: one project's enabled rules, or every project's."""
    return _select(store, project_id, enabled_only=True)


def replace_rule(store: Store, rule: StoredRule, spec: RuleSpec) -> StoredRule:
    updated = replace(rule, spec=spec, updated_ns=time.time_ns())
    _write(store, updated)
    return updated


def delete_rule(store: Store, rule: StoredRule) -> None:
    """Hide the rule; its alert history stays."""
    _write(store, rule, deleted=True)

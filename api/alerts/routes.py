"""Alert rules (``/alert-rules``) and alert history (``/alerts``) under ``/api/v1``."""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures, and they name `ProjectId`, a local of the router factory.
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, ValidationError

from tokentrail.api.alerts.history import AFTER_ALL, list_events
from tokentrail.api.alerts.models import (
    AlertPage,
    ChannelOut,
    RuleOut,
    RulePatch,
    RuleSpec,
    RuleStatus,
    WebhookChannel,
)
from tokentrail.api.alerts.rules import (
    StoredRule,
    create_rule,
    delete_rule,
    get_rule,
    list_rules,
    replace_rule,
)
from tokentrail.api.alerts.state import NEVER_FIRED, AlertState, load_states
from tokentrail.api.errors import invalid
from tokentrail.api.timewindow import rfc3339, to_ns
from tokentrail.schema.store import Store

RuleId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The rule's id.")]


def rule_out(rule: StoredRule, state: AlertState) -> RuleOut:
    """The public view of a rule: channel secrets stay write-only."""
    spec = rule.spec
    return RuleOut(
        id=rule.rule_id,
        name=spec.name,
        scope=spec.scope,
        metric=spec.metric,
        condition=spec.condition,
        channels=[
            ChannelOut(type=c.type, url=c.url, signed=isinstance(c, WebhookChannel))
            for c in spec.channels
        ],
        renotify=spec.renotify,
        enabled=spec.enabled,
        created_at=rfc3339(rule.created_ns),
        updated_at=rfc3339(rule.updated_ns),
        status=RuleStatus(
            state=state.state,
            since=rfc3339(state.since_ns) if state.since_ns else None,
            last_notified=rfc3339(state.notified_ns) if state.notified_ns else None,
        ),
    )


def patched(spec: RuleSpec, patch: RulePatch) -> RuleSpec:
    """The rule after ``patch``, validated whole: a patch may break a cross-field rule."""
    try:
        return RuleSpec.model_validate(
            {**spec.model_dump(), **patch.model_dump(exclude_unset=True)}
        )
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


def alerts_router(store: Store, project_dependency: Callable[..., str]) -> APIRouter:
    router = APIRouter(tags=["alerts"])
    ProjectId = Annotated[str, Depends(project_dependency)]

    def _state(project_id: str, rule_id: str) -> AlertState:
        return load_states(store, project_id).get((project_id, rule_id), NEVER_FIRED)

    def _found(project_id: str, rule_id: str) -> StoredRule:
        rule = get_rule(store, project_id, rule_id)
        if rule is None:
            raise HTTPException(404, f"alert rule {rule_id} not found")
        return rule

    @router.post(
        "/alert-rules",
        status_code=201,
        response_model=RuleOut,
        summary="Create an alert rule",
        description=(
            "A metric of a scope (service, feature, model) with one condition: `threshold` "
            "(the metric over `window` compared with `value`), `budget` (spend in the UTC "
            "day or month, so far and projected linearly to the period's end) or `spike` "
            "(the last `window` against the `baseline_windows` before it, by `ratio` and/or "
            "`z_score`). Notifies `channels` when it fires and when it resolves; "
            "`renotify` repeats while firing."
        ),
    )
    def post_rule(body: RuleSpec, project_id: ProjectId) -> RuleOut:
        return rule_out(create_rule(store, project_id, body), NEVER_FIRED)

    @router.get(
        "/alert-rules",
        response_model=list[RuleOut],
        summary="List alert rules",
        description="The project's rules, oldest first, each with its state (ok or firing, "
        "since when, last notification). Channel secrets are never returned.",
    )
    def get_rules(project_id: ProjectId) -> list[RuleOut]:
        states = load_states(store, project_id)
        return [
            rule_out(rule, states.get((project_id, rule.rule_id), NEVER_FIRED))
            for rule in list_rules(store, project_id)
        ]

    @router.get(
        "/alert-rules/{rule_id}",
        response_model=RuleOut,
        summary="One alert rule",
        description="The rule and its state; 404 if it is not in this project.",
        responses={404: {"description": "No such rule in this project."}},
    )
    def get_one_rule(rule_id: RuleId, project_id: ProjectId) -> RuleOut:
        return rule_out(_found(project_id, rule_id), _state(project_id, rule_id))

    @router.patch(
        "/alert-rules/{rule_id}",
        response_model=RuleOut,
        summary="Change an alert rule",
        responses={404: {"description": "No such rule in this project."}},
        description="Given fields replace the rule's; `scope`, `condition` and `channels` "
        "are replaced whole (send channel secrets again). The firing state is kept.",
    )
    def patch_rule(rule_id: RuleId, body: RulePatch, project_id: ProjectId) -> RuleOut:
        rule = _found(project_id, rule_id)
        updated = replace_rule(store, rule, patched(rule.spec, body))
        return rule_out(updated, _state(project_id, rule_id))

    @router.delete(
        "/alert-rules/{rule_id}",
        status_code=204,
        response_class=Response,
        summary="Delete an alert rule",
        responses={404: {"description": "No such rule in this project."}},
        description="The rule stops being evaluated; its alert history stays listed.",
    )
    def remove_rule(rule_id: RuleId, project_id: ProjectId) -> Response:
        delete_rule(store, _found(project_id, rule_id))
        return Response(status_code=204)

    @router.get(
        "/alerts",
        response_model=AlertPage,
        summary="Alert history",
        description=(
            "Alert events, newest first: each firing, reminder and resolve with the value, "
            "the numbers that decided it, a link to the API query showing them, and how "
            "delivery to each channel went. Page with `next_cursor`."
        ),
    )
    def get_alerts(
        project_id: ProjectId,
        rule_id: Annotated[str, Query(description="Only this rule's events.")] = "",
        state: Literal["firing", "resolved"] | None = None,
        start: Annotated[
            AwareDatetime | None, Query(description="RFC 3339, inclusive; default: all.")
        ] = None,
        end: Annotated[
            AwareDatetime | None, Query(description="RFC 3339, exclusive; default: all.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(description="`next_cursor` of a page.")] = None,
    ) -> AlertPage:
        if start and end and start >= end:
            invalid(("query", "start"), "start must be before end", start.isoformat())
        return list_events(
            store,
            project_id,
            rule_id=rule_id,
            state=state or "",
            start_ns=to_ns(start) if start else 0,
            end_ns=to_ns(end) if end else AFTER_ALL,
            limit=limit,
            cursor=cursor,
        )

    return router

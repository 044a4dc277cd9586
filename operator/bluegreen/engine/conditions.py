"""Conditions as Kubernetes tools expect them.

``lastTransitionTime`` changes only when ``status`` changes, so dashboards and
``kubectl wait`` see transitions, not every reconcile; reason and message may
change freely. The list is kept in a stable order (the order types first appear).
"""

from __future__ import annotations

import datetime

from bluegreen.api.status import Condition, ConditionType


def set_condition(
    conditions: list[Condition],
    *,
    type_: ConditionType | str,
    status: bool | None,
    reason: str,
    message: str = "",
    now: datetime.datetime,
    generation: int | None,
) -> list[Condition]:
    """Return ``conditions`` with one condition set (True/False/Unknown for True/False/None)."""
    text = "Unknown" if status is None else ("True" if status else "False")
    result: list[Condition] = []
    replaced = False
    for condition in conditions:
        if condition.type != str(type_):
            result.append(condition)
            continue
        since = condition.last_transition_time if condition.status == text else now
        result.append(
            Condition(
                type=str(type_),
                status=text,
                reason=reason,
                message=message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
        replaced = True
    if not replaced:
        result.append(
            Condition(
                type=str(type_),
                status=text,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    return result


def is_true(conditions: list[Condition], type_: ConditionType | str) -> bool:
    return any(c.type == str(type_) and c.status == "True" for c in conditions)


def false_since(conditions: list[Condition], type_: ConditionType | str) -> datetime.datetime | None:
    """When the condition last turned False, or None if it is not False."""
    for condition in conditions:
        if condition.type == str(type_) and condition.status == "False":
            return condition.last_transition_time
    return None

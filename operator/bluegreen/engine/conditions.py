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
    previous = next((c for c in conditions if c.type == str(type_)), None)
    updated = Condition(
        type=str(type_),
        status=text,
        reason=reason,
        message=message,
        last_transition_time=previous.last_transition_time if previous and previous.status == text else now,
        observed_generation=generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c is previous else c for c in conditions]


def is_true(conditions: list[Condition], type_: ConditionType | str) -> bool:
    return any(c.type == str(type_) and c.status == "True" for c in conditions)


def false_since(conditions: list[Condition], type_: ConditionType | str) -> datetime.datetime | None:
    """When the condition last turned False, or None if it is not False."""
    for condition in conditions:
        if condition.type == str(type_) and condition.status == "False":
            return condition.last_transition_time
    return None

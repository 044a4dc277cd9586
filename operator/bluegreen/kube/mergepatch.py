"""JSON merge patch (RFC 7386): applying one, and computing the one that turns A into B.

Used for ``spec.target.overrides`` (a patch users write against the cloned
cluster spec) and for correcting drift on objects the operator owns (send
only what differs). Pure functions on JSON values; inputs are never mutated.

RFC 7386 cannot express "set this key to null" or patch inside a list: a list
is replaced whole, and ``null`` deletes the key.
"""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply ``patch`` to ``target`` as RFC 7386 says, returning a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_diff(current: Any, desired: Any) -> Any:
    """The merge patch that turns ``current`` into ``desired`` (``{}`` when they are equal).

    ``desired`` must not hold ``null`` values inside mappings: a merge patch
    cannot write them (see the module docstring).
    """
    if not isinstance(current, dict) or not isinstance(desired, dict):
        return copy.deepcopy(desired)
    patch: dict[str, Any] = {}
    for key in current.keys() - desired.keys():
        patch[key] = None
    for key, value in desired.items():
        if key not in current:
            patch[key] = copy.deepcopy(value)
        elif current[key] != value:
            if isinstance(current[key], dict) and isinstance(value, dict):
                patch[key] = merge_diff(current[key], value)
            else:
                patch[key] = copy.deepcopy(value)
    return patch

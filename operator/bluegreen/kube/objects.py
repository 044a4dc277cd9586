"""Small pure helpers on Kubernetes objects as dicts: conditions, labels, server-set fields.

Providers clone objects (blue's Cluster, blue's Kustomizations) and judge
readiness from conditions; these helpers keep the rules for that in one place
so the cluster provider and the workload sync read objects the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# Fields the API server owns: a clone must not carry them (a create with a
# uid or resourceVersion is refused, finalizers and ownerReferences would tie
# the clone to controllers and owners of the original).
SERVER_SET_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
    "finalizers",
    "selfLink",
)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    found = obj.get("metadata")
    return found if isinstance(found, dict) else {}


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    found = metadata(obj).get("labels")
    return dict(found) if isinstance(found, dict) else {}


labels_of = labels  # for functions whose own parameter is called `labels`


def name_of(obj: Mapping[str, Any]) -> str:
    return str(metadata(obj).get("name", ""))


def condition(
    obj: Mapping[str, Any], condition_type: str, *, path: tuple[str, ...] = ("status",)
) -> dict[str, Any] | None:
    """The condition of that type under ``<path>.conditions``, or None."""
    node: Any = obj
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    conditions = node.get("conditions") if isinstance(node, dict) else None
    for item in conditions or []:
        if isinstance(item, dict) and item.get("type") == condition_type:
            return item
    return None


def generation_observed(obj: Mapping[str, Any]) -> bool:
    """``status.observedGeneration`` has caught up with ``metadata.generation``."""
    generation = metadata(obj).get("generation")
    status = obj.get("status")
    observed = status.get("observedGeneration") if isinstance(status, dict) else None
    if generation is None:
        return True
    return observed is not None and int(observed) >= int(generation)


def replace_values(mapping: Mapping[str, str], *, old: str, new: str) -> dict[str, str]:
    """Values equal to ``old`` become ``new`` (``cluster: prod-blue`` -> ``cluster: prod-green``)."""
    return {key: (new if value == old else value) for key, value in mapping.items()}


def clean_metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` without status and without what the API server sets in metadata."""
    result = copy.deepcopy(dict(obj))
    result.pop("status", None)
    meta = result.setdefault("metadata", {})
    for key in SERVER_SET_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            meta.pop("annotations")
    return result


def condition_text(condition: Mapping[str, Any] | None, condition_type: str) -> str:
    """``Ready=False (Reason): message``, for condition messages that quote another controller."""
    if condition is None:
        return f"{condition_type} not reported yet"
    text = f"{condition_type}={condition.get('status', 'Unknown')}"
    if condition.get("reason"):
        text += f" ({condition['reason']})"
    if condition.get("message"):
        text += f": {condition['message']}"
    return text


CLONED_FROM = "bluegreen.io/cloned-from"
# Labels that claim an owner which does not own a clone (Flux would prune it with blue's).
FOREIGN_OWNER_PREFIXES = ("kustomize.toolkit.fluxcd.io/",)


def clone_metadata(
    obj: Mapping[str, Any],
    *,
    new_name: str,
    blue_name: str,
    green_name: str,
    labels: Mapping[str, str],
    cloned_from: str,
    drop_labels: tuple[str, ...] = (),
    drop_annotations: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A copy of ``obj`` for green: server-set fields gone, renamed, labels rewritten blue -> green.

    Label values equal to blue's name become green's (so the next upgrade's selectors find
    green); ``drop_labels``/``drop_annotations`` and foreign owners' labels are not carried
    over; ``labels`` are stamped on; the annotation ``bluegreen.io/cloned-from`` says whence.
    """
    clone = clean_metadata(obj)
    meta = clone["metadata"]
    meta["name"] = new_name
    meta.pop("generateName", None)
    kept = {
        key: value
        for key, value in replace_values(labels_of(obj), old=blue_name, new=green_name).items()
        if key not in drop_labels and not key.startswith(FOREIGN_OWNER_PREFIXES)
    }
    meta["labels"] = {**kept, **labels}
    annotations = {
        key: value for key, value in (meta.get("annotations") or {}).items()
        if key not in drop_annotations and not key.startswith(FOREIGN_OWNER_PREFIXES)
    }
    meta["annotations"] = {**annotations, CLONED_FROM: cloned_from}
    return clone


"""Hold patches: how a workload is kept stopped on one side through its Flux Kustomizations.

A handoff (``spec.hooks[].handoff``) moves a StatefulSet, Deployment or CronJob
that must never run on both clusters. Stopping it by hand would not last: Flux
applies the manifests again at its next reconcile and starts it again. So the
side that must not run it gets a *hold*: an entry in its Kustomizations'
``spec.patches`` (kustomize-controller's field: ``{patch: <text>, target: {group,
version, kind, name, namespace}}``) whose strategic-merge patch stops exactly
that workload: ``spec.replicas: 0`` for a StatefulSet or Deployment,
``spec.suspend: true`` for a CronJob (it has no replicas; suspended, it starts
no Job). Flux then renders the workload stopped for as long as the hold is
there, whatever the source says.

A hold is recognised by its target and by the annotation ``bluegreen.io/hold``
in its patch document; any other patch a person wrote is left alone. The patch
also carries what a restarted operator needs to go on, as annotations (they
land on the held workload too, so ``kubectl describe`` shows who holds it):

* ``bluegreen.io/held-replicas``: how many replicas this side ran when it was
  held (what handing it back restores); absent on green's first hold, which
  was there before green ever ran the workload, and on a CronJob's holds;
* ``bluegreen.io/held-since``: when the hold was put (scale-down timeouts).

Kustomize reads a target's ``name`` and ``namespace`` as anchored regular
expressions; the dots a Kubernetes name may hold are escaped so a target
matches that one object only. A target that matches nothing in a Kustomization's
output is no error for kustomize, so every Kustomization of a side can carry the
hold without knowing which of them renders the workload.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from bluegreen.api.spec import ClusterUpgradeSpec

ANNOTATION_HOLD = "bluegreen.io/hold"
ANNOTATION_HELD_REPLICAS = "bluegreen.io/held-replicas"
ANNOTATION_HELD_SINCE = "bluegreen.io/held-since"
HOLD_MARK = "handoff"

# Per kind: (group, version, what the hold's patch sets in spec).
HELD_SPECS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "StatefulSet": ("apps", "v1", {"replicas": 0}),
    "Deployment": ("apps", "v1", {"replicas": 0}),
    "CronJob": ("batch", "v1", {"suspend": True}),
}


@dataclasses.dataclass(frozen=True)
class HoldTarget:
    """A workload a handoff moves: ``StatefulSet``, ``Deployment`` (apps/v1) or ``CronJob`` (batch/v1)."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class HoldRecord:
    """What a hold remembers: the replicas its side ran (None: unknown) and when it was put."""

    replicas: int | None
    since: str | None


def hold_targets(spec: ClusterUpgradeSpec) -> tuple[HoldTarget, ...]:
    """Every workload a ``spec.hooks[]`` handoff moves, once each, in hook order."""
    found: dict[HoldTarget, None] = {}
    for hook in spec.hooks:
        if hook.handoff is not None:
            handoff = hook.handoff
            found[HoldTarget(kind=handoff.kind.value, namespace=handoff.namespace, name=handoff.name)] = None
    return tuple(found)


def _anchored(name: str) -> str:
    return name.replace(".", "\\.")


def hold_patch(target: HoldTarget, *, replicas: int | None = None, since: str | None = None) -> dict[str, Any]:
    """The ``spec.patches`` entry that keeps ``target`` stopped, remembering ``replicas`` and ``since``."""
    group, version, held = HELD_SPECS[target.kind]
    annotations = {ANNOTATION_HOLD: HOLD_MARK}
    if replicas is not None:
        annotations[ANNOTATION_HELD_REPLICAS] = str(replicas)
    if since is not None:
        annotations[ANNOTATION_HELD_SINCE] = since
    document = {
        "apiVersion": f"{group}/{version}",
        "kind": target.kind,
        "metadata": {"name": target.name, "namespace": target.namespace, "annotations": annotations},
        "spec": dict(held),
    }
    return {
        "patch": yaml.safe_dump(document, sort_keys=False),
        "target": {"group": group, "version": version, "kind": target.kind,
                   "name": _anchored(target.name), "namespace": _anchored(target.namespace)},
    }


def _document(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    text = entry.get("patch")
    if not isinstance(text, str):
        return None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return document if isinstance(document, dict) else None


def _annotations(document: Mapping[str, Any]) -> dict[str, Any]:
    meta = document.get("metadata")
    found = meta.get("annotations") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def held_target(entry: Any) -> HoldTarget | None:
    """The workload a ``spec.patches`` entry holds, or None when the entry is not a bluegreen hold."""
    if not isinstance(entry, dict) or not isinstance(entry.get("target"), dict):
        return None
    document = _document(entry)
    if document is None or _annotations(document).get(ANNOTATION_HOLD) != HOLD_MARK:
        return None
    target = entry["target"]
    return HoldTarget(kind=str(target.get("kind", "")),
                      namespace=str(target.get("namespace", "")).replace("\\.", "."),
                      name=str(target.get("name", "")).replace("\\.", "."))


def record_of(entry: Mapping[str, Any]) -> HoldRecord:
    annotations = _annotations(_document(entry) or {})
    replicas: int | None
    try:
        replicas = int(annotations[ANNOTATION_HELD_REPLICAS])
    except (KeyError, TypeError, ValueError):
        replicas = None
    since = annotations.get(ANNOTATION_HELD_SINCE)
    return HoldRecord(replicas=replicas, since=str(since) if since else None)


def patches_of(kustomization: Mapping[str, Any]) -> list[Any]:
    found = (kustomization.get("spec") or {}).get("patches")
    return list(found) if isinstance(found, list) else []


def find_hold(patches: Iterable[Any], target: HoldTarget) -> dict[str, Any] | None:
    """The hold on ``target`` among ``patches``, or None."""
    for entry in patches:
        if held_target(entry) == target:
            assert isinstance(entry, dict)
            return entry
    return None


def without_holds(patches: Iterable[Any], targets: Iterable[HoldTarget] | None = None) -> list[Any]:
    """``patches`` minus bluegreen's holds (on ``targets`` only, when given); other patches stay in order."""
    chosen = None if targets is None else set(targets)
    return [entry for entry in patches
            if (held := held_target(entry)) is None or (chosen is not None and held not in chosen)]


def holds_in(patches: Iterable[Any], targets: Sequence[HoldTarget]) -> list[dict[str, Any]]:
    """The holds among ``patches`` on one of ``targets`` (in ``targets``' order)."""
    listed = list(patches)
    return [entry for target in targets if (entry := find_hold(listed, target)) is not None]

"""Changes to what an upgrade *is*, refused once it has started changing the world.

A ClusterUpgrade's spec stays editable while it runs: later steps, analysis
thresholds, pauses, retention windows and hooks not yet run are read afresh
on every pass, and that is how a person steers an upgrade. Some fields are not
like that. Once green exists at 1.31, a spec asking for 1.32 does not describe
this upgrade any more; once weights were set through one HAProxy, a router
pointing elsewhere would leave the first one half-shifted. Applying such a
change would do half of two upgrades.

So the first pass that asks the world for a change (anything but reading it:
scans and checks do not count) records those fields in ``status.inEffect``, and
from then on a spec that differs in any of them holds the upgrade where it is:
no action at all, ``Progressing=False`` with reason ``UnsafeSpecChange``, a
message naming each field, the value in effect and the fix, and one Warning
Event. Setting the field back resumes. The record is never updated: changing
what an upgrade is takes a new ClusterUpgrade.

Pure, like the rest of the engine.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from bluegreen.api.spec import ClusterUpgradeSpec, Router
from bluegreen.api.status import ClusterUpgradeStatus, ConditionType, Phase
from bluegreen.engine import conditions as cond
from bluegreen.engine.types import Action, Decision, Event, Observed, RemoveAnnotation, RunChecks, ScanPreflight

REASON = "UnsafeSpecChange"
# Actions that only read the world (or consume an annotation): they take no snapshot.
_READ_ONLY = (RemoveAnnotation, RunChecks, ScanPreflight)
# Router settings that change how, not where, weights are written: safe to change at any time.
_ROUTER_TUNING = frozenset({"timeout", "retries", "healthTimeout", "insecureSkipTLSVerify", "bearerTokenSecretRef",
                            "greenHealthCheck"})
_FIX = "to upgrade differently, let this upgrade finish or abort it (bluegreen.io/abort), then create a new " \
       "ClusterUpgrade"


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _router_identity(router: Router) -> str:
    config = {key: value for key, value in router.config.to_wire().items() if key not in _ROUTER_TUNING}
    return _value({router.kind: config})


def snapshot(spec: ClusterUpgradeSpec) -> dict[str, str]:
    """The fields that make the upgrade what it is, by field path, as compact JSON."""
    fields: dict[str, Any] = {
        "spec.strategy": spec.strategy.value,
        "spec.cluster.provider": spec.cluster.provider.value,
        "spec.cluster.name": spec.cluster.name,
        "spec.cluster.namespace": spec.cluster.namespace,
        "spec.target.kubernetesVersion": spec.target.kubernetes_version,
    }
    if spec.node_pools is None:
        fields["spec.target.greenName"] = spec.green_name  # the name in use, defaulted or not
    if spec.workloads_spec is not None:
        flux = spec.workloads_spec.flux
        fields["spec.workloads.flux.mode"] = flux.mode.value
        fields["spec.workloads.flux.namespace"] = spec.flux_namespace
        fields["spec.workloads.flux.selector"] = flux.selector.to_wire()
    snap = {path: _value(value) for path, value in fields.items()}
    if spec.traffic_spec is not None:
        snap["spec.traffic.routers"] = _value(len(spec.traffic_spec.routers))
        for index, router in enumerate(spec.traffic_spec.routers):
            snap[f"spec.traffic.routers[{index}]"] = _router_identity(router)
    if spec.node_pools is not None:
        snap["spec.nodePools.pools"] = _value([pool.to_wire() for pool in spec.node_pools.pools])
    return snap


def unsafe_changes(spec: ClusterUpgradeSpec, in_effect: dict[str, str]) -> list[str]:
    """One line per field that differs from what is in effect, naming the field, both values and the fix."""
    now = snapshot(spec)
    lines: list[str] = []
    for path in dict.fromkeys([*in_effect, *now]):
        before, after = in_effect.get(path), now.get(path)
        if before == after:
            continue
        if before is None:
            lines.append(f"{path} ({after}) is not part of the upgrade under way: remove it; {_FIX}")
        elif after is None:
            lines.append(f"{path} was {before} when the upgrade started and is gone: put it back; {_FIX}")
        else:
            lines.append(f"{path} is {after} but the upgrade under way uses {before}: set it back to {before}; {_FIX}")
    return lines


def changes_the_world(actions: tuple[Action, ...]) -> bool:
    return any(not isinstance(action, _READ_ONLY) for action in actions)


def remember(spec: ClusterUpgradeSpec, decision: Decision) -> Decision:
    """Take the snapshot in the decision that first asks the world for a change (once, never updated)."""
    if decision.status.in_effect is not None or not changes_the_world(decision.actions):
        return decision
    status = decision.status.model_copy(update={"in_effect": snapshot(spec)})
    return Decision(status=status, actions=decision.actions, events=decision.events, wake_at=decision.wake_at)


def guarded(status: ClusterUpgradeStatus) -> bool:
    """Whether spec changes are checked: a snapshot exists and the upgrade can still act."""
    return status.in_effect is not None and status.phase != Phase.COMPLETED


def hold(status: ClusterUpgradeStatus, observed: Observed, now: datetime.datetime, changes: list[str]) -> Decision:
    """Do nothing and say why; annotations stay for the pass after the spec is set back."""
    message = "spec changes what the upgrade under way is, nothing is done until they are undone: " + \
        "; ".join(changes)
    conditions = cond.set_condition(
        list(status.conditions), type_=ConditionType.PROGRESSING, status=False, reason=REASON, message=message,
        now=now, generation=observed.generation,
    )
    events: tuple[Event, ...] = ()
    if status.message != message:
        events = (Event(reason=REASON, message=message, type="Warning"),)
    return Decision(status=status.model_copy(update={
        "conditions": conditions, "message": message, "observed_generation": observed.generation}), events=events)


def resumed(status: ClusterUpgradeStatus) -> bool:
    """The spec was set back: Progressing still says UnsafeSpecChange and must say otherwise."""
    held = status.condition(ConditionType.PROGRESSING)
    return held is not None and held.reason == REASON

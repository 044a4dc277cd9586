"""The way back to blue, shared by a rollback (phases RollingBack, RolledBack) and by the cleanup of a
deleted ClusterUpgrade (phase Deleting, :mod:`bluegreen.engine.deletion`).

Each function is one resumable part of the way back: it looks at status and the observed world, asks
for at most what is still missing (every action idempotent), and says whether its part is over. They
never touch blue but to give it traffic back: nothing here deletes blue's cluster or workloads, or
removes blue from a router.
"""

from __future__ import annotations

import datetime

from bluegreen.api.spec import ClusterUpgradeSpec, GreenDeletionPolicy, RollbackMode, WebhookType, duration
from bluegreen.engine import analysis, hooks
from bluegreen.engine.types import DeleteCluster, DeleteWorkloads, FinalizeRouters
from bluegreen.engine.work import Pass


def router_dwell(spec: ClusterUpgradeSpec) -> datetime.timedelta:
    """How long a weight change takes to reach clients: one TTL for DNS routers, else nothing."""
    ttls = [router.route53.ttl for router in spec.routers if router.route53 is not None]
    return datetime.timedelta(seconds=max(ttls, default=0))


def return_traffic(work: Pass, *, notify: bool = True) -> bool:
    """Blue back to 100 % on every router (at once, or down the steps taken when spec.rollback.mode is
    Gradual), then every handoff that began handed back. True once all of it is done.

    ``notify``: rollback webhooks are told once, in the same pass as the first move back (traffic first),
    counted from the start of the current phase.
    """
    since = work.status.phase_since or work.now
    names = tuple(hook.name for hook in work.spec.analysis.hooks(WebhookType.ROLLBACK)) if notify else ()
    told = analysis.asked_since(work.status, names, since)
    weights = work.status.weights
    if weights.green != 0 or not weights.verified:
        target = rollback_target(work)
        if target is None:  # gradual: holding the current weight for stepInterval
            work.check(webhooks=told, also=True)
            return False
        work.set_weights(target)
        if work.status.routers is not None:
            work.check(webhooks=told, also=True)
        return False
    if told:
        work.check(webhooks=told)
        return False
    return hooks.hand_back(work)


def rollback_target(work: Pass) -> int | None:
    """The next weight on the way back: 0 at once, or (Gradual) the next lower step every stepInterval."""
    current = work.status.weights.green
    if work.spec.rollback.mode != RollbackMode.GRADUAL or not work.status.weights.verified:
        return 0
    lower = sorted({step.set_weight for step in work.spec.traffic.steps
                    if step.set_weight is not None and step.set_weight < current}, reverse=True)
    target = lower[0] if lower and lower[0] > 0 else 0
    changed = work.status.step.weights_changed_at
    started = work.status.phase_since or work.now
    hold = max(duration(work.spec.rollback.step_interval), router_dwell(work.spec))
    if changed is None or changed < started or work.now >= changed + hold:
        work.update(message=f"rolling back gradually: green {current}% -> {target}%")
        return target
    work.wake(changed + hold)
    work.wait(f"rolling back gradually: green at {current}% until {(changed + hold).isoformat()}")
    return None


def retire_green(work: Pass, *, when: str) -> str | None:
    """Green leaves for good: every router drops it (per its onFinalize, once the routers were saved), its
    Flux Kustomizations go, and its cluster too when this upgrade created it and
    spec.rollback.greenDeletionPolicy is Delete. Sets status.greenRetired.

    Returns what became of green's cluster, in words, once all of it is done; None while it is under way.
    ``when`` ends the wait messages ("after the inspection window").
    """
    if work.status.routers is not None and not work.status.routers_finalized:
        work.act(FinalizeRouters(retired="green"))
        work.update(routers_finalized=True)
        work.event("RoutersFinalized", "routers no longer route to green (per each router's onFinalize)")
        work.wait("removing green from every router")
        return None
    green = work.observed.green
    delete = work.spec.rollback.green_deletion_policy == GreenDeletionPolicy.DELETE
    if delete and green.exists and green.managed_by == work.owner:
        # Green's workloads go first (in remote mode Flux would otherwise keep reaching for a
        # deleted cluster); both are idempotent, so they are asked again until green is gone.
        work.act(DeleteWorkloads(side="green"))
        work.act(DeleteCluster(side="green", name=green.name))
        work.wait(f"deleting green cluster {green.name} {when}")
        return None
    retained = green.exists
    if retained:
        work.act(DeleteWorkloads(side="green"))  # kept for inspection, no longer deployed to
    message = f"green cluster {green.name} retained" if retained else f"green cluster {green.name} deleted"
    work.update(green_retired=True)
    work.event("GreenRetired", message)
    return message

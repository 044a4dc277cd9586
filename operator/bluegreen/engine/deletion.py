"""What deleting a ClusterUpgrade does before it goes away: ``spec.onDelete``.

A deleted ClusterUpgrade is held by the finalizer ``bluegreen.io/cleanup`` (the I/O layer keeps it on
exactly while :func:`needs_finalizer` says a deletion would have something to undo), and every pass
of a deleted one comes here instead of to the phase handlers.

The plan is chosen once, on the first pass after the deletion, from the phase the upgrade was in, and
kept in ``status.deletion`` (phase ``Deleting``); from then on each pass carries out the current stage
with the same resumable, idempotent parts a rollback uses (:mod:`bluegreen.engine.rollback`,
:func:`bluegreen.engine.nodepools.uncordon_old`), so an operator killed mid-cleanup finishes it from
status, and a failing step is retried like any other action.

Rollback, by the phase at deletion (Paused counts as the phase it holds):

- Pending, Preflight, Blocked: nothing was created; nothing to do.
- Provisioning .. Promoted, RollingBack, Failed (blue/green): traffic back to blue 100 % (once the routers
  were touched), handoffs handed back, then green retired as after a rollback's inspection window.
- RolledBack: green retired now if it was still kept for inspection.
- Rotating (NodePools), or an aborted or failed rotation: the old nodes uncordoned; the new pools kept.
- Upgrading (InPlace), Retiring, Completed: nothing can or may be undone.

Leave: nothing is changed, in any phase; setting it during a cleanup stops the cleanup where it is.

Invariant (property-tested): nothing here deletes blue's cluster or workloads or removes blue from a
router; the only thing done to blue is giving it its traffic back.
"""

from __future__ import annotations

import datetime

from bluegreen.api.spec import ClusterUpgradeSpec, DeletePolicy
from bluegreen.api.status import (
    ClusterUpgradeStatus,
    ConditionType,
    DeletionStage,
    DeletionStatus,
    Phase,
)
from bluegreen.engine import conditions as cond
from bluegreen.engine import nodepools, rollback
from bluegreen.engine.types import FINALIZER, Decision, Event, Observed
from bluegreen.engine.work import Pass

# Nothing was created yet, or blue's retirement has begun (or is over), or the cluster itself was upgraded.
NOTHING_TO_UNDO = frozenset({Phase.PENDING, Phase.PREFLIGHT, Phase.BLOCKED, Phase.UPGRADING, Phase.RETIRING,
                             Phase.COMPLETED})
# An aborted or failed rotation may leave old nodes cordoned; a finished one has none left.
ROTATION_PHASES = frozenset({Phase.ROTATING, Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED})

_WHAT = {
    DeletionStage.RETURNING_TRAFFIC: "traffic back to blue 100% on every router, handoffs handed back",
    DeletionStage.UNCORDONING: "the old nodes made schedulable again (the new pools are kept)",
    DeletionStage.RETIRING_GREEN: "green removed from the routers, its Kustomizations deleted, its cluster deleted "
                                  "if this upgrade created it (rollback.greenDeletionPolicy)",
}


def reference_phase(status: ClusterUpgradeStatus) -> Phase:
    """The phase whose work a deletion undoes: Paused stands for what it holds, Deleting for where it began."""
    if status.phase == Phase.DELETING and status.deletion is not None:
        return status.deletion.from_phase
    if status.phase == Phase.PAUSED:
        return status.held_phase or Phase.SHIFTING
    return status.phase


def stages_for(policy: DeletePolicy, status: ClusterUpgradeStatus) -> tuple[DeletionStage, ...]:
    """What a deletion in this state does, in order (empty: nothing)."""
    if policy == DeletePolicy.LEAVE:
        return ()
    phase = reference_phase(status)
    if status.node_pools is not None:
        return (DeletionStage.UNCORDONING,) if phase in ROTATION_PHASES else ()
    if status.in_place is not None or phase in NOTHING_TO_UNDO:
        return ()
    if phase == Phase.ROLLED_BACK:
        return () if status.green_retired else (DeletionStage.RETIRING_GREEN,)
    if status.routers is not None:  # the routers were touched: give blue everything back first
        return DeletionStage.RETURNING_TRAFFIC, DeletionStage.RETIRING_GREEN
    return (DeletionStage.RETIRING_GREEN,)


def needs_finalizer(spec: ClusterUpgradeSpec, status: ClusterUpgradeStatus) -> bool:
    """Whether the finalizer bluegreen.io/cleanup must hold the object: a deletion now would have work to do.

    Asked with the status a pass decided, before its actions run: every action that creates something is
    decided in a phase whose deletion has a plan, so the finalizer is on before the first of them.
    """
    if status.phase == Phase.DELETING:
        return True
    return bool(stages_for(spec.on_delete, status))


def decide_deleting(
    spec: ClusterUpgradeSpec | None,
    status: ClusterUpgradeStatus,
    observed: Observed,
    now: datetime.datetime,
    *,
    owner: str,
) -> Decision:
    """One pass of a deleted ClusterUpgrade's cleanup; ``Decision.release`` once it is over."""
    if spec is None or observed.spec_error:
        return _unreadable_spec(status, observed, now)
    work = Pass(spec=spec, observed=observed, now=now, owner=owner, status=status)
    work.update(observed_generation=observed.generation)
    if work.status.deletion is None:
        # This pass only records the plan and the phase Deleting: the next one observes the world as the
        # cleanup sees it (handoffs in the direction back, a rotation's nodes) before acting on it.
        _begin(work)
        work.wake(now)
        done = work.status.deletion is not None and work.status.deletion.stage == DeletionStage.DONE
        return Decision(status=work.status, events=tuple(work.events), wake_at=work.wake_at, release=done)
    for _ in range(len(DeletionStage) + 1):
        state = work.status.deletion
        assert state is not None
        if state.stage == DeletionStage.DONE:
            work.release = True
            break
        if spec.on_delete == DeletePolicy.LEAVE:
            _finish(work, f"spec.onDelete changed to Leave: the cleanup stops at {state.stage.value}; "
                          "what is left stays as it is")
            continue
        if not _carry_out(work, state.stage):
            break
        _next_stage(work)
        if work.actions:  # the part just finished asked for one last action: carried out before going on
            work.wake(work.now)
            break
    return Decision(status=work.status, actions=tuple(work.actions), events=tuple(work.events),
                    wake_at=work.wake_at, release=work.release)


def _begin(work: Pass) -> None:
    policy = work.spec.on_delete
    from_phase = reference_phase(work.status)
    stages = stages_for(policy, work.status)
    if policy == DeletePolicy.ROLLBACK and work.spec.green_name == work.spec.cluster.name:
        stages = tuple(stage for stage in stages if stage != DeletionStage.RETIRING_GREEN)  # never blue
    blue = work.spec.cluster.name
    if stages:
        plan = "; then ".join(_WHAT[stage] for stage in stages)
        message = f"deleted in {from_phase.value} (spec.onDelete: {policy.value}): {plan}; blue {blue} is not deleted"
    elif policy == DeletePolicy.LEAVE:
        message = f"deleted in {from_phase.value} (spec.onDelete: Leave): traffic and clusters stay as they are"
    else:
        message = f"deleted in {from_phase.value} (spec.onDelete: Rollback): nothing to undo in {from_phase.value}"
    work.update(held_phase=None, deletion=DeletionStatus(
        policy=policy.value, from_phase=from_phase, stage=stages[0] if stages else DeletionStage.DONE,
        stages=list(stages), started_at=work.now,
    ))
    work.goto(Phase.DELETING, message)
    if not stages:
        _finish(work, message)


def _carry_out(work: Pass, stage: DeletionStage) -> bool:
    if stage == DeletionStage.RETURNING_TRAFFIC:
        # Rollback webhooks hear of it when traffic actually moves back (not when blue already has it all).
        if not rollback.return_traffic(work, notify=work.status.weights.green != 0):
            work.update(message=f"deleting: {work.status.message}")
            return False
        work.condition(ConditionType.TRAFFIC_SHIFTED, False, "RolledBack", "blue serves 100% of traffic")
        work.event("TrafficReturned", f"blue {work.spec.cluster.name} serves 100% of traffic again")
        return True
    if stage == DeletionStage.UNCORDONING:
        if not nodepools.uncordon_old(work):
            work.update(message=f"deleting: {work.status.message}")
            return False
        work.event("NodesUncordoned", "the old nodes are schedulable again; the new pools are kept")
        return True
    green = work.observed.green
    if not green.exists and (work.status.routers is None or work.status.routers_finalized):
        return True  # never created (or already gone), and no router knows it
    if rollback.retire_green(work, when="(the ClusterUpgrade was deleted)") is None:
        work.update(message=f"deleting: {work.status.message}")
        return False
    return True


def _next_stage(work: Pass) -> None:
    state = work.status.deletion
    assert state is not None
    stages = list(state.stages)
    later = stages[stages.index(state.stage) + 1:] if state.stage in stages else []
    if later:
        work.update(deletion=state.model_copy(update={"stage": later[0]}))
        return
    done = "; ".join(_WHAT[stage] for stage in stages)
    _finish(work, f"cleanup done (spec.onDelete: {state.policy}): {done}; blue {work.spec.cluster.name} "
                  "is not deleted")


def _finish(work: Pass, message: str) -> None:
    state = work.status.deletion
    assert state is not None
    work.update(deletion=state.model_copy(update={"stage": DeletionStage.DONE}), message=message)
    work.condition(ConditionType.PROGRESSING, False, "CleanupDone", message)
    work.event("CleanupDone", f"{message}; removing the finalizer {FINALIZER}")


def _unreadable_spec(status: ClusterUpgradeStatus, observed: Observed, now: datetime.datetime) -> Decision:
    """Without a readable spec there are no routers or clusters to act on: go only if nothing needs undoing."""
    state = status.deletion
    if state is not None:
        nothing = state.stage == DeletionStage.DONE or state.policy == DeletePolicy.LEAVE.value
    else:
        nothing = not stages_for(DeletePolicy.ROLLBACK, status)
    if nothing:
        return Decision(status=status, release=True)
    message = (f"deleted, but the spec cannot be read, so spec.onDelete cannot be carried out: {observed.spec_error}; "
               f"fix the spec (it can still be edited), or remove the finalizer {FINALIZER} to leave traffic and "
               "clusters as they are")
    conditions = cond.set_condition(list(status.conditions), type_=ConditionType.PROGRESSING, status=False,
                                    reason="InvalidSpec", message=message, now=now, generation=observed.generation)
    events = () if status.message == message else (Event(reason="CleanupBlocked", message=message, type="Warning"),)
    return Decision(status=status.model_copy(update={"conditions": conditions, "message": message}), events=events)

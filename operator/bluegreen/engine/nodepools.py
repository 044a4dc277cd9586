"""The NodePools strategy's decisions: new worker pools beside the old, then the old nodes drained one at a time.

Same cluster, new workers. The rotation walks ``status.nodePools.stage``:

1. **CreatingPools**: every pool in ``spec.nodePools.pools`` gets a replacement entry beside it in the
   cluster's definition (``EnsurePool``), named the other of ``<pool>-blue`` / ``<pool>-green``, at the
   old pool's replica count; then wait until each has that many Nodes, all Ready.
2. **CheckingLoadBalancers** (when ``spec.nodePools.loadBalancers`` names any): every new node registered
   and healthy in each, before a single pod moves.
3. **Cordoning**: every old node unschedulable, so nothing evicted lands on another old node.
4. **Draining** one node at a time (``DrainNode``, one eviction per pass), then **WaitingForReplacements**
   until the evicted pods' controllers are back to strength on new nodes, then **Pausing** for
   ``drain.pauseBetweenNodes``; then the next node.
5. **ScalingDown**: the old pools to 0 replicas. They stay in the definition: the next rotation reuses them.

An abort at any point goes to RollingBack, where the old nodes are made schedulable again
(``CordonNodes(unschedulable=False)``); nothing is deleted or scaled, and RolledBack says what is left.

Nothing here does I/O: the reconcile loop observes pools, nodes, load balancers and replacements, carries
out the actions, and records each drain pass's outcome with :func:`record_drain`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

from bluegreen.api.durations import format_duration
from bluegreen.api.spec import BudgetTimeoutAction, ClusterUpgradeSpec, duration
from bluegreen.api.status import (
    EVICTIONS_LIMIT,
    ClusterUpgradeStatus,
    ConditionType,
    DrainState,
    EvictionEntry,
    NodePoolsStatus,
    Phase,
    PoolRotation,
    RotationStage,
)
from bluegreen.engine.types import CordonNodes, DrainNode, EnsurePool, NodeObservation, PoolObservation, ScalePool
from bluegreen.engine.work import Pass

SUFFIXES = ("-blue", "-green")
# No watch covers load balancers: how often their registrations are looked at again.
LOAD_BALANCER_POLL = datetime.timedelta(seconds=3)
# A safety net beside the watches on Nodes and Pods of the rotated cluster.
POLL = datetime.timedelta(seconds=2)
BLOCKED_RETRY = datetime.timedelta(seconds=5)
POLICY_RETRY = datetime.timedelta(seconds=15)
TERMINATION_POLL = datetime.timedelta(seconds=1)


def other_pool(family: str, live: str) -> str:
    """The replacement's name: ``<family>-green`` beside ``<family>`` or ``<family>-blue``, else ``-blue``."""
    return f"{family}-blue" if live == f"{family}-green" else f"{family}-green"


def plan_rotation(spec: ClusterUpgradeSpec, pools: Mapping[str, PoolObservation]) -> tuple[list[PoolRotation],
                                                                                            list[str]]:
    """Which entry of each spec pool is live (the one with replicas) and what replaces it; or what is wrong."""
    rotations: list[PoolRotation] = []
    problems: list[str] = []
    for index, pool in enumerate(spec.pools.pools):
        family = pool.family
        candidates = [name for name in (family, *(family + suffix for suffix in SUFFIXES)) if name in pools]
        live = [name for name in candidates if pools[name].replicas > 0]
        where = f"spec.nodePools.pools[{index}] ({pool.name})"
        if not candidates:
            known = ", ".join(sorted(pools)) or "none"
            problems.append(f"{where}: the cluster has no worker pool {family}, {family}-blue or {family}-green; "
                            f"its pools are: {known}")
        elif not live:
            problems.append(f"{where}: {', '.join(candidates)} {'has' if len(candidates) == 1 else 'have'} 0 "
                            "replicas: there are no nodes to rotate")
        elif len(live) > 1:
            problems.append(f"{where}: {' and '.join(live)} both have replicas, as an unfinished rotation leaves "
                            "them; scale the one you do not want to 0, then retry")
        else:
            old = live[0]
            rotations.append(PoolRotation(pool=pool.name, old=old, new=other_pool(family, old),
                                          replicas=pools[old].replicas,
                                          old_nodes=[node.name for node in pools[old].nodes]))
    return rotations, problems


def start(work: Pass, rotations: list[PoolRotation]) -> None:
    """Preflight passed: begin the rotation."""
    total = sum(len(rotation.old_nodes) for rotation in rotations)
    work.update(node_pools=NodePoolsStatus(stage=RotationStage.CREATING_POOLS, since=work.now, pools=rotations,
                                           nodes_total=total))
    names = ", ".join(f"{rotation.old} -> {rotation.new} ({rotation.replicas})" for rotation in rotations)
    work.goto(Phase.ROTATING, f"rotating worker pools: {names}")


def rotating(work: Pass) -> None:
    state = work.status.node_pools
    assert state is not None, "phase Rotating without status.nodePools"
    _STAGES[state.stage](work, state)


def resume(work: Pass) -> None:
    """Retry after an abort or a failure: from the new pools' check, every old node cordoned and drained again
    (those drained before are empty, so they pass at once)."""
    state = work.status.node_pools
    assert state is not None
    work.update(node_pools=state.model_copy(update={
        "stage": RotationStage.CREATING_POOLS, "since": work.now, "nodes_drained": 0, "drained": [],
        "current": None, "blocking_pod": None, "blocked_reported": False, "pause_until": None,
    }), rolled_back_at=None)
    work.condition(ConditionType.NODES_DRAINED, None, "Retrying", "the rotation goes on from the new pools' check")
    work.goto(Phase.ROTATING, "retry requested: checking the new pools, then cordoning and draining the old nodes")


def abort(work: Pass) -> None:
    """Stop draining; the old nodes are uncordoned in RollingBack (its first pass only records the phase, so an
    abort is never lost to a failed uncordon)."""
    state = work.status.node_pools
    assert state is not None
    work.update(node_pools=state.model_copy(update={"stage": RotationStage.UNCORDONING, "since": work.now,
                                                    "pause_until": None}), held_phase=None)
    work.goto(Phase.ROLLING_BACK, "aborted by request (bluegreen.io/abort): draining stops and the old nodes "
              "are made schedulable again; nothing is deleted", warning=True)
    work.wake(work.now)
    work.done = True


def rolling_back(work: Pass) -> None:
    state = work.status.node_pools
    assert state is not None
    if Phase.ROLLING_BACK in work.entered:  # just aborted: this pass records it, the next uncordons
        work.wake(work.now)
        work.done = True
        return
    if not uncordon_old(work):
        return
    new = ", ".join(f"{rotation.new} ({rotation.replicas})" for rotation in state.pools)
    work.update(node_pools=state.model_copy(update={"stage": RotationStage.ABORTED, "since": work.now,
                                                    "current": None, "blocking_pod": None}))
    work.condition(ConditionType.NODES_DRAINED, False, "Aborted",
                   f"{state.nodes_drained} of {state.nodes_total} old node(s) were drained")
    work.goto(Phase.ROLLED_BACK, f"rotation aborted: the old nodes are schedulable again; the new pool(s) {new} "
              "are kept as they are. Annotate bluegreen.io/retry to go on, or scale the new pools to 0 yourself")
    work.done = True


def uncordon_old(work: Pass) -> bool:
    """The old nodes this rotation cordoned are made schedulable again (an abort, or a deleted upgrade's
    cleanup); the new pools are left as they are. True once none is cordoned."""
    state = work.status.node_pools
    assert state is not None
    nodes = _nodes(work)
    cordoned = [name for name in state.old_nodes if name in nodes and not nodes[name].schedulable]
    if cordoned:
        work.act(CordonNodes(nodes=tuple(cordoned), unschedulable=False))
        work.wake(work.now + POLL)
        work.wait(f"uncordoning {len(cordoned)} old node(s): {_names(cordoned)}")
        return False
    return True


# --- stages -----------------------------------------------------------------------------------------------

def _creating_pools(work: Pass, state: NodePoolsStatus) -> None:
    deadline = (state.since or work.now) + duration(work.spec.pools.nodes_timeout)
    waiting: list[str] = []
    asked = False
    new_nodes: dict[str, list[str]] = {}
    for rotation in state.pools:
        seen = work.observed.pools.get(rotation.new)
        if seen is None or seen.replicas != rotation.replicas:
            work.act(EnsurePool(pool=rotation.pool, source=rotation.old, name=rotation.new,
                                replicas=rotation.replicas))
            asked = True
            waiting.append(f"{rotation.new}: asking for {rotation.replicas} node(s) like {rotation.old}'s")
            continue
        ready = seen.ready_nodes
        new_nodes[rotation.new] = [node.name for node in seen.nodes if node.exists]
        if ready < rotation.replicas or seen.machines != rotation.replicas:
            waiting.append(f"{rotation.new}: {ready} of {rotation.replicas} node(s) Ready")
    if waiting:
        if not asked and work.now >= deadline:
            _fail(work, "NodesTimeout", f"the new pool(s) are not ready after {work.spec.pools.nodes_timeout}: "
                  f"{'; '.join(waiting)}. Nothing was cordoned; the new pools are kept. Fix the cause and annotate "
                  "bluegreen.io/retry, or scale them to 0")
            return
        work.condition(ConditionType.GREEN_READY, False, "NodesNotReady", "; ".join(waiting))
        work.wake(min(deadline, work.now + POLL))
        work.wait("; ".join(waiting))
        return
    pools = [rotation.model_copy(update={"new_nodes": new_nodes[rotation.new]}) for rotation in state.pools]
    count = sum(len(nodes) for nodes in new_nodes.values())
    work.condition(ConditionType.GREEN_READY, True, "NodesReady", f"{count} new node(s) Ready")
    work.event("NodesReady", f"{count} new node(s) Ready in {', '.join(new_nodes)}")
    following = RotationStage.CHECKING_LOAD_BALANCERS if work.spec.pools.load_balancers else RotationStage.CORDONING
    _stage(work, state.model_copy(update={"pools": pools}), following)


def _checking_load_balancers(work: Pass, state: NodePoolsStatus) -> None:
    found = work.observed.attachment
    if found is None:  # not looked at in this pass (the stage began in it)
        work.wake(work.now)
        work.done = True
        return
    if found:
        deadline = (state.since or work.now) + duration(work.spec.pools.nodes_timeout)
        summary = "; ".join(found[:5]) + (f" (and {len(found) - 5} more)" if len(found) > 5 else "")
        if work.now >= deadline:
            _fail(work, "NotAttached", f"new nodes are not attached to the load balancers after "
                  f"{work.spec.pools.nodes_timeout}: {summary}. Nothing was cordoned; fix the registration and "
                  "annotate bluegreen.io/retry")
            return
        work.update(node_pools=state.model_copy(update={"load_balancers": summary}))
        work.wake(min(deadline, work.now + LOAD_BALANCER_POLL))
        work.wait(f"waiting for the load balancers to know the new nodes: {summary}")
        return
    names = ", ".join(lb.name for lb in work.spec.pools.load_balancers)
    work.event("NodesAttached", f"every new node is registered and healthy in {names}")
    _stage(work, state.model_copy(update={"load_balancers": f"every new node is registered and healthy in "
                                                            f"{names}"}), RotationStage.CORDONING)


def _cordoning(work: Pass, state: NodePoolsStatus) -> None:
    # The old pools' nodes as they are now (a node added since the start is drained too).
    pools = []
    for rotation in state.pools:
        seen = work.observed.pools.get(rotation.old)
        old_nodes = [node.name for node in seen.nodes if node.exists] if seen is not None else []
        pools.append(rotation.model_copy(update={"old_nodes": old_nodes}))
    state = state.model_copy(update={"pools": pools, "nodes_total": sum(len(p.old_nodes) for p in pools)})
    nodes = _nodes(work)
    schedulable = [name for name in state.old_nodes if name in nodes and nodes[name].schedulable]
    if schedulable:
        work.update(node_pools=state)
        work.act(CordonNodes(nodes=tuple(schedulable)))
        work.wake(work.now + POLL)
        work.wait(f"cordoning {len(schedulable)} old node(s): {_names(schedulable)}")
        return
    work.event("NodesCordoned", f"{state.nodes_total} old node(s) cordoned: {_names(state.old_nodes)}")
    _next_node(work, state)


def _draining(work: Pass, state: NodePoolsStatus) -> None:
    node = state.old_nodes[state.nodes_drained]
    current = state.current if state.current is not None and state.current.node == node else None
    label = f"node {state.nodes_drained + 1}/{state.nodes_total} ({node})"
    if current is not None and current.outcome == "Done":
        _stage(work, state.model_copy(update={"blocking_pod": None}), RotationStage.WAITING_FOR_REPLACEMENTS)
        work.update(message=f"{label} is empty: waiting for its pods' replacements on new nodes")
        return
    if current is None or current.outcome in {"Evicted", "PodGone"}:
        work.act(DrainNode(node=node))
        work.wake(work.now)
        work.wait(f"draining {label}" + (f": {current.message}" if current is not None else ""))
        return
    if current.outcome == "WaitingForTermination":
        work.act(DrainNode(node=node))
        work.wake(work.now + TERMINATION_POLL)
        work.wait(f"draining {label}: {current.message}")
        return
    if current.outcome == "BlockedByPolicy":
        work.act(DrainNode(node=node))
        work.condition(ConditionType.NODES_DRAINED, False, "DrainBlockedByPolicy", current.message)
        work.wake(work.now + POLICY_RETRY)
        work.wait(f"draining {label} is held: {current.message}")
        return
    # BlockedByBudget: ask again after what the API server suggests; report once it lasts too long.
    retry = datetime.timedelta(seconds=current.retry_after_seconds) if current.retry_after_seconds else BLOCKED_RETRY
    work.wake(work.now + min(max(retry, datetime.timedelta(seconds=1)), BLOCKED_RETRY * 6))
    since = current.since or work.now
    drain = work.spec.pools.drain
    deadline = since + duration(drain.budget_timeout)
    if work.now < deadline:
        work.act(DrainNode(node=node))
        work.wake(deadline)  # reported when it is due, not at the next retry after it
        work.wait(f"draining {label} waits for a PodDisruptionBudget: {state.blocking_pod}")
        return
    blocked_for = format_duration(work.now - since)
    message = f"{label}: a PodDisruptionBudget has refused evictions for {blocked_for}: {state.blocking_pod}"
    if drain.on_budget_timeout == BudgetTimeoutAction.ABORT:  # no further eviction: the rotation stops here
        work.condition(ConditionType.NODES_DRAINED, False, "DrainBlocked", message)
        work.event("DrainBlocked", f"{message}; spec.nodePools.drain.onBudgetTimeout is Abort", warning=True)
        abort(work)
        work.update(message=f"{message}: aborting (onBudgetTimeout: Abort), the old nodes are made schedulable "
                            "again")
        return
    work.act(DrainNode(node=node))
    if not state.blocked_reported:
        work.event("DrainBlocked", f"{message}; still asking (annotate bluegreen.io/abort to stop and "
                   "uncordon)", warning=True)
        work.update(node_pools=state.model_copy(update={"blocked_reported": True}))
    work.condition(ConditionType.NODES_DRAINED, False, "DrainBlocked", message)
    work.wait(f"{message}; still asking")


def _waiting_for_replacements(work: Pass, state: NodePoolsStatus) -> None:
    node = state.old_nodes[state.nodes_drained]
    seen = work.observed.replacements
    if seen is None:
        work.wake(work.now)
        work.done = True
        return
    ready, why = seen
    if not ready:
        since = state.since or work.now
        timeout = duration(work.spec.pools.drain.replacement_timeout)
        if work.now - since >= timeout:
            message = (f"the pods evicted from {node} are not back on new nodes after "
                       f"{work.spec.pools.drain.replacement_timeout}: {why}")
            if not state.blocked_reported:
                work.event("ReplacementsNotReady", f"{message}; still waiting (is the new pool big enough?)",
                           warning=True)
                work.update(node_pools=state.model_copy(update={"blocked_reported": True}))
            work.condition(ConditionType.NODES_DRAINED, False, "ReplacementsNotReady", message)
        work.wake(work.now + POLL)
        work.wait(f"node {node} is empty; waiting for its pods on new nodes: {why}")
        return
    drained = state.nodes_drained + 1
    work.event("NodeDrained", f"node {drained}/{state.nodes_total} ({node}) drained; its pods run on new nodes: "
               f"{why}")
    work.condition(ConditionType.NODES_DRAINED, drained == state.nodes_total, "Draining" if drained <
                   state.nodes_total else "Drained", f"{drained} of {state.nodes_total} old node(s) drained")
    state = state.model_copy(update={"nodes_drained": drained, "drained": [*state.drained, node], "current": None,
                                     "blocking_pod": None, "blocked_reported": False})
    pause = duration(work.spec.pools.drain.pause_between_nodes)
    if pause and drained < state.nodes_total:
        _stage(work, state.model_copy(update={"pause_until": work.now + pause}), RotationStage.PAUSING)
        work.wake(work.now + pause)
        work.wait(f"{drained} of {state.nodes_total} old node(s) drained; pausing "
                  f"{work.spec.pools.drain.pause_between_nodes} before the next")
        work.done = True
        return
    _next_node(work, state)


def _pausing(work: Pass, state: NodePoolsStatus) -> None:
    until = state.pause_until or work.now
    if work.now < until:
        work.wake(until)
        work.wait(f"{state.nodes_drained} of {state.nodes_total} old node(s) drained; next node at "
                  f"{until.isoformat()}")
        return
    _next_node(work, state.model_copy(update={"pause_until": None}))


def _scaling_down(work: Pass, state: NodePoolsStatus) -> None:
    waiting = []
    for rotation in state.pools:
        seen = work.observed.pools.get(rotation.old)
        if seen is None:
            continue  # removed from the definition by someone: nothing left to scale
        if seen.replicas != 0:
            work.act(ScalePool(name=rotation.old, replicas=0))
            waiting.append(f"{rotation.old}: scaling to 0")
        elif seen.machines:
            waiting.append(f"{rotation.old}: {seen.machines} machine(s) still going")
    if waiting:
        work.wake(work.now + POLL)
        work.wait("; ".join(waiting))
        return
    _stage(work, state, RotationStage.DONE)
    pools = ", ".join(f"{rotation.old} -> {rotation.new}" for rotation in state.pools)
    kept = ", ".join(rotation.old for rotation in state.pools)
    message = (f"rotation complete: {pools}; {state.nodes_total} node(s) drained, {state.evictions_total} pod(s) "
               f"evicted; {kept} kept at 0 replicas for the next rotation")
    work.condition(ConditionType.NODES_DRAINED, True, "Drained", f"{state.nodes_total} old node(s) drained")
    work.goto(Phase.COMPLETED, message)
    work.done = True


def _finished(work: Pass, state: NodePoolsStatus) -> None:
    work.done = True


_STAGES = {
    RotationStage.CREATING_POOLS: _creating_pools,
    RotationStage.CHECKING_LOAD_BALANCERS: _checking_load_balancers,
    RotationStage.CORDONING: _cordoning,
    RotationStage.DRAINING: _draining,
    RotationStage.WAITING_FOR_REPLACEMENTS: _waiting_for_replacements,
    RotationStage.PAUSING: _pausing,
    RotationStage.SCALING_DOWN: _scaling_down,
    RotationStage.DONE: _finished,
    RotationStage.UNCORDONING: _finished,
    RotationStage.ABORTED: _finished,
}


# --- helpers ----------------------------------------------------------------------------------------------

def _stage(work: Pass, state: NodePoolsStatus, stage: RotationStage) -> None:
    work.update(node_pools=state.model_copy(update={"stage": stage, "since": work.now}))


def _next_node(work: Pass, state: NodePoolsStatus) -> None:
    if state.nodes_drained >= state.nodes_total:
        _stage(work, state, RotationStage.SCALING_DOWN)
    else:
        _stage(work, state.model_copy(update={"current": None, "blocking_pod": None, "blocked_reported": False}),
               RotationStage.DRAINING)


NAMES_SHOWN = 10  # in messages and Events; status.nodePools lists every node


def _names(nodes: Sequence[str]) -> str:
    shown = ", ".join(nodes[:NAMES_SHOWN])
    return shown + (f" and {len(nodes) - NAMES_SHOWN} more" if len(nodes) > NAMES_SHOWN else "")


def _nodes(work: Pass) -> dict[str, NodeObservation]:
    """Every observed node that exists, by name (old and new pools alike)."""
    return {node.name: node for pool in work.observed.pools.values() for node in pool.nodes if node.exists}


def _fail(work: Pass, reason: str, message: str) -> None:
    work.condition(ConditionType.PROGRESSING, False, reason, message)
    work.goto(Phase.FAILED, message, warning=True)
    work.done = True


def record_drain(status: ClusterUpgradeStatus, *, drain: DrainState, evicted: EvictionEntry | None,
                 blocking_pod: str | None) -> ClusterUpgradeStatus:
    """One drain pass's outcome into status.nodePools: the node's state, the journal, the pod blocking."""
    state = status.node_pools
    if state is None:
        return status
    evictions: Sequence[EvictionEntry] = state.evictions
    total = state.evictions_total
    if evicted is not None:
        evictions = _bounded([*evictions, evicted], keep_node=drain.node)
        total += 1
    return status.model_copy(update={"node_pools": state.model_copy(update={
        "current": drain, "evictions": list(evictions), "evictions_total": total, "blocking_pod": blocking_pod,
    })})


def _bounded(evictions: list[EvictionEntry], *, keep_node: str) -> list[EvictionEntry]:
    """The last EVICTIONS_LIMIT entries; those of the node being drained are always kept (its replacements are
    judged from them)."""
    excess = len(evictions) - EVICTIONS_LIMIT
    if excess <= 0:
        return evictions
    kept: list[EvictionEntry] = []
    for entry in evictions:
        if excess > 0 and entry.node != keep_node:
            excess -= 1
            continue
        kept.append(entry)
    return kept

"""What ``get`` and ``plan`` show of a NodePools upgrade: worker pools rotated inside one cluster.

A NodePools upgrade has no green cluster, no workloads to copy and no traffic
to move: ``spec.workloads`` and ``spec.traffic`` may be unset and
``status.green`` is None. Everything it does is in ``status.nodePools``
(the stage, the pools, the nodes drained, the pod blocking, the eviction
journal), so the views read that and never the blue/green parts.

The plan is built here from spec and status, as the in-place one is in
:mod:`bluegreen.cli.sections`: rows of :class:`bluegreen.engine.plan.PlannedAction`
with a state, in the stages of :mod:`bluegreen.engine.nodepools`. The only
minimum the operator itself sets is ``drain.pauseBetweenNodes``; how long nodes
take to come up, to be registered, to be drained and their pods to come back
is the world's.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from bluegreen.api import spec as api
from bluegreen.api.status import (
    ClusterUpgradeStatus,
    DrainState,
    EvictionEntry,
    NodePoolsStatus,
    Phase,
    PoolRotation,
    RotationStage,
)
from bluegreen.cli.sections import WIDTH, when
from bluegreen.cli.text import Style, age, one_line, table, wrap
from bluegreen.engine import plan as planner
from bluegreen.engine.plan import ZERO, PlannedAction

EVICTIONS_SHOWN = 5
NODES_NAMED = 20
# The stages a rotation walks forward, in order (the drain stages repeat per node).
_FORWARD = (RotationStage.CREATING_POOLS, RotationStage.CHECKING_LOAD_BALANCERS, RotationStage.CORDONING,
            RotationStage.DRAINING, RotationStage.WAITING_FOR_REPLACEMENTS, RotationStage.PAUSING,
            RotationStage.SCALING_DOWN, RotationStage.DONE)
_PER_NODE = frozenset({RotationStage.DRAINING, RotationStage.WAITING_FOR_REPLACEMENTS, RotationStage.PAUSING})
_ABORTED = frozenset({RotationStage.UNCORDONING, RotationStage.ABORTED})
_BLOCKED = frozenset({"BlockedByBudget", "BlockedByPolicy"})

ROLLBACK = ("on abort (bluegreen.io/abort, or onBudgetTimeout Abort): draining stops and the old nodes are made "
            "schedulable again; nothing is deleted or scaled, the new pools stay; retry goes on from the new "
            "pools' check")


def rotates_nodes(spec: api.ClusterUpgradeSpec | None, status: ClusterUpgradeStatus) -> bool:
    """A NodePools upgrade: worker pools rotated inside the cluster, no green cluster, no traffic."""
    if status.node_pools is not None or Phase.ROTATING in (status.phase, status.held_phase):
        return True
    return spec is not None and spec.strategy == api.Strategy.NODE_POOLS


def clusters(spec: api.ClusterUpgradeSpec | None, status: ClusterUpgradeStatus) -> str:
    """``get``'s Clusters line: the one cluster and its pools, old -> new, at the workers' target version."""
    name = status.blue.name if status.blue else (spec.cluster.name if spec else "?")
    version = f" ({status.blue.version})" if status.blue and status.blue.version else ""
    target = f" to {spec.target.kubernetes_version}" if spec else ""
    state = status.node_pools
    if state is not None and state.pools:
        pools = ", ".join(f"{rotation.old} -> {rotation.new}" for rotation in state.pools)
    elif spec is not None and spec.node_pools is not None:
        pools = ", ".join(pool.name for pool in spec.pools.pools)
    else:
        pools = "?"
    return f"{name}{version}, worker pools {pools}{target}"


def plan_title(spec: api.ClusterUpgradeSpec) -> str:
    """What the plan's first line says the upgrade does, after the cluster's name."""
    return f"worker pools {', '.join(pool.name for pool in spec.pools.pools)}"


# --- get ----------------------------------------------------------------------------------------------------


def blocking(
    spec: api.ClusterUpgradeSpec | None, status: ClusterUpgradeStatus, *, style: Style,
    now: datetime.datetime | None,
) -> list[str]:
    """``get``'s ``Blocking:`` line, under the phase: the pod whose eviction is refused, for how long, and what
    happens at the budget timeout. Red once the block was reported (it outlasted budgetTimeout)."""
    state = status.node_pools
    if state is None or not state.blocking_pod:
        return []
    text = one_line(state.blocking_pod)
    current = state.current
    if current is not None and current.outcome == "BlockedByBudget":
        facts = []
        if current.since is not None:
            facts.append(f"for {_for(current.since, now=now)}")
        if spec is not None and spec.node_pools is not None:
            drain = spec.pools.drain
            then = "Abort: the old nodes are made schedulable again" \
                if drain.on_budget_timeout == api.BudgetTimeoutAction.ABORT else "Wait: reported, still asking"
            facts.append(f"budgetTimeout {drain.budget_timeout}, then {then}")
        if facts:
            text += f" ({'; '.join(facts)})"
    colour = "red" if state.blocked_reported else "yellow"
    return [style.paint(line, colour) for line in wrap(f"Blocking:  {text}", width=WIDTH, hanging=11)]


def progress(
    spec: api.ClusterUpgradeSpec | None, status: ClusterUpgradeStatus, *, style: Style,
    now: datetime.datetime | None, evictions: int = EVICTIONS_SHOWN,
) -> list[str]:
    """``get``'s ``Rotation:`` section: the stage, the pools, the load balancers, the drained nodes, the node being
    drained with its last outcome, and the last ``evictions`` entries of the eviction journal."""
    state = status.node_pools
    if state is None:
        return ["", f"Rotation:  {_not_started(spec)}"]
    lines = ["", f"Rotation:  {_stage_summary(state, status, style=style, now=now)}"]
    if state.pools:
        rows = [[rotation.pool, rotation.old, rotation.new, str(rotation.replicas), str(len(rotation.old_nodes)),
                 _new_nodes(rotation, state)] for rotation in state.pools]
        lines += table(rows, header=["POOL", "OLD", "NEW", "REPLICAS", "OLD NODES", "NEW NODES"])
    lines += _load_balancers(spec, state)
    lines += wrap(f"Drained:   {_drained(state)}", width=WIDTH, indent=2, hanging=11)
    lines += _current(state, style=style, now=now)
    lines += _evictions(state, shown=evictions, now=now)
    return lines


def _not_started(spec: api.ClusterUpgradeSpec | None) -> str:
    if spec is None or spec.node_pools is None:
        return "not started"
    names = ", ".join(pool.name for pool in spec.pools.pools)
    return f"not started; pools {names} are rotated once preflight has found each one's live entry"


def _stage_summary(
    state: NodePoolsStatus, status: ClusterUpgradeStatus, *, style: Style, now: datetime.datetime | None,
) -> str:
    stage, done, total = state.stage, state.nodes_drained, state.nodes_total
    node = _node_being_drained(state)
    what = {
        RotationStage.CREATING_POOLS: "waiting for the new pools' nodes to be Ready",
        RotationStage.CHECKING_LOAD_BALANCERS: "waiting for the load balancers to know every new node",
        RotationStage.CORDONING: f"cordoning the {total} old node(s)",
        RotationStage.DRAINING: f"node {done + 1} of {total}" + (f" ({node})" if node else ""),
        RotationStage.WAITING_FOR_REPLACEMENTS: f"node {done + 1} of {total}" + (f" ({node})" if node else "")
        + " is empty; waiting for its pods on new nodes",
        RotationStage.PAUSING: f"{done} of {total} node(s) drained; next node {_next_at(state, now=now)}",
        RotationStage.SCALING_DOWN: "every old node drained; scaling the old pools to 0",
        RotationStage.DONE: f"{total} node(s) drained, {state.evictions_total} pod(s) evicted",
        RotationStage.UNCORDONING: f"aborted after {done} of {total} node(s); uncordoning the old nodes",
        RotationStage.ABORTED: f"aborted after {done} of {total} node(s); the old nodes are schedulable again",
    }[stage]
    since = f", for {_for(state.since, now=now)}" if state.since is not None and stage not in (
        RotationStage.DONE, RotationStage.ABORTED) else ""
    text = f"{style.bold(stage.value)}: {what}{since}"
    if status.phase == Phase.FAILED:
        text += style.paint(" (failed here)", "red")
    elif status.phase == Phase.PAUSED:
        text += style.paint(" (paused)", "yellow")
    return text


def _next_at(state: NodePoolsStatus, *, now: datetime.datetime | None) -> str:
    if state.pause_until is None:
        return "after the pause"
    if now is None:
        return f"at {when(state.pause_until, now=None)}"
    return f"in {age(state.pause_until - now)}"


def _new_nodes(rotation: PoolRotation, state: NodePoolsStatus) -> str:
    if rotation.new_nodes:
        return f"{len(rotation.new_nodes)}/{rotation.replicas} Ready"
    if state.stage == RotationStage.CREATING_POOLS:
        return "coming up"
    return "-"


def _load_balancers(spec: api.ClusterUpgradeSpec | None, state: NodePoolsStatus) -> list[str]:
    named = spec.pools.load_balancers if spec is not None and spec.node_pools is not None else []
    if state.load_balancers:
        text = state.load_balancers
    elif named:
        text = f"{', '.join(lb.name for lb in named)}: not checked yet"
    else:
        return []
    return wrap(f"Load balancers: {one_line(text)}", width=WIDTH, indent=2, hanging=16)


def _drained(state: NodePoolsStatus) -> str:
    text = f"{state.nodes_drained} of {state.nodes_total} old node(s)"
    if not state.drained:
        return text
    named = state.drained[:NODES_NAMED]
    more = f" and {len(state.drained) - len(named)} more" if len(state.drained) > len(named) else ""
    return f"{text}: {', '.join(named)}{more}"


def _node_being_drained(state: NodePoolsStatus) -> str | None:
    if state.stage not in _PER_NODE or state.stage == RotationStage.PAUSING:
        return None
    old = state.old_nodes
    return old[state.nodes_drained] if state.nodes_drained < len(old) else None


def _current(state: NodePoolsStatus, *, style: Style, now: datetime.datetime | None) -> list[str]:
    """The node being drained and its last drain pass (status.nodePools.current)."""
    node = _node_being_drained(state)
    found: DrainState | None = state.current
    if node is None and found is None:
        return []
    if found is None or (node is not None and found.node != node):
        return [f"  Draining:  {node}: no pass yet"]
    outcome = style.paint(found.outcome, "yellow" if found.outcome in _BLOCKED else None)
    parts = [f"{found.remaining} pod(s) left"]
    if found.outcome == "BlockedByBudget" and found.since is not None:
        parts.append(f"refused for {_for(found.since, now=now)}")
    if found.retry_after_seconds:
        parts.append(f"asked again after {found.retry_after_seconds:g}s")
    title = "Draining:  " if found.node == node else "Last:      "
    plain = wrap(f"{title}{found.node}: {found.outcome}, {', '.join(parts)}"
                 + (f": {one_line(found.message)}" if found.message else ""), width=WIDTH, indent=2, hanging=11)
    return [plain[0].replace(found.outcome, outcome, 1), *plain[1:]]


def _evictions(state: NodePoolsStatus, *, shown: int, now: datetime.datetime | None) -> list[str]:
    if not state.evictions_total and not state.evictions:
        return ["  Evictions: none yet"]
    total = max(state.evictions_total, len(state.evictions))
    last: Sequence[EvictionEntry] = state.evictions[-shown:] if shown > 0 else []
    title = f"  Evictions: {total} in all" + (f"; the last {len(last)}:" if len(last) < total else ":")
    rows = [[when(entry.at, now=now), f"{entry.pod.namespace}/{entry.pod.name}", entry.node,
             f"{entry.controller.kind} {entry.controller.name}"] for entry in last]
    return [title, *table(rows, header=["WHEN", "POD", "NODE", "CONTROLLER"], indent=4, width=WIDTH)]


def _for(since: datetime.datetime | None, *, now: datetime.datetime | None) -> str:
    """How long since ``since``; the moment itself without a clock (a plan printed from a file)."""
    if since is None:
        return "-"
    if now is None:
        return f"since {when(since, now=None)}"
    return age(now - since)


# --- plan ---------------------------------------------------------------------------------------------------


def plan(spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus | None) -> list[tuple[PlannedAction, str]]:
    """Every action of a NodePools rotation in the engine's order, with its state from status.nodePools.

    The pools' names and nodes come from status once preflight has chosen them; before, the rows say how
    they will be chosen. Per-node stages are listed once, for every old node, as the engine repeats them.
    """
    pools, drain = spec.pools, spec.pools.drain
    provider, target = spec.cluster.provider.value, spec.target.kubernetes_version
    state = status.node_pools if status is not None else None
    rotations = state.pools if state is not None else []
    completed = status is not None and status.phase == Phase.COMPLETED
    preflight_state = "done" if completed or state is not None else ""
    rows: list[tuple[PlannedAction, str]] = []
    if spec.paused and not preflight_state:
        rows.append((PlannedAction(Phase.PREFLIGHT, "held: spec.paused is true", None,
                                   "nothing moves until `kubectl bluegreen resume`"), ""))
    rows.append((PlannedAction(Phase.PREFLIGHT, f"check cluster {spec.cluster.namespace}/{spec.cluster.name} "
                                                f"({provider}) exists, is ready and reports its version", ZERO),
                 preflight_state))
    if rotations:
        rows += [(PlannedAction(Phase.PREFLIGHT, f"pool {rotation.pool}: {rotation.old} ({len(rotation.old_nodes)} "
                                                 f"node(s)) is replaced by {rotation.new}", ZERO), preflight_state)
                 for rotation in rotations]
    else:
        for pool in pools.pools:
            family = pool.family
            rows.append((PlannedAction(
                Phase.PREFLIGHT, f"pool {pool.name}: find its live entry, the one of {family}, {family}-blue, "
                                 f"{family}-green with replicas", ZERO,
                "exactly one may have replicas; the new pool is the other of -blue/-green"), ""))
    rows.append((PlannedAction(Phase.PREFLIGHT, f"check {provider} can make each new pool at {target}", ZERO,
                               "the class or machine config exists; workers within the version skew"),
                 preflight_state))
    rows += [(action, preflight_state)
             for action in planner.gate(Phase.PREFLIGHT, spec.analysis, api.WebhookType.CONFIRM_ROLLOUT)]

    def at(stage: RotationStage) -> str:
        return _stage_state(stage, state, status, completed=completed)

    timeout = f"fails after {pools.nodes_timeout} (nodesTimeout)"
    ready = f"until its nodes are Ready, as long as {provider} takes; {timeout}"
    if rotations:
        rows += [(PlannedAction(Phase.ROTATING, f"create pool {rotation.new} beside {rotation.old}: "
                                                f"{rotation.replicas} node(s) at {target}"
                                                f"{_changes(spec, rotation.pool)}", None, ready),
                  at(RotationStage.CREATING_POOLS)) for rotation in rotations]
    else:
        rows += [(PlannedAction(Phase.ROTATING, f"create the new pool beside {pool.name}'s live entry, as many "
                                                f"nodes, at {target}{_changes(spec, pool.name)}", None, ready), "")
                 for pool in pools.pools]
    if pools.load_balancers:
        names = ", ".join(lb.name for lb in pools.load_balancers)
        rows.append((PlannedAction(Phase.ROTATING, f"wait until every new node is registered and healthy in {names}",
                                   None, f"no pod moves before; {timeout}"),
                     at(RotationStage.CHECKING_LOAD_BALANCERS)))
    old_nodes = state.old_nodes if state is not None else []
    count = len(old_nodes) or (state.nodes_total if state is not None else 0)
    rows.append((PlannedAction(Phase.ROTATING, f"cordon every old node{_named(old_nodes)}", ZERO,
                               "so no evicted pod lands on another old node"), at(RotationStage.CORDONING)))
    each = f"the {count} old node(s)" if count else "the old nodes"
    rows.append((PlannedAction(Phase.ROTATING, f"drain {each} one at a time: evict each one's pods through the "
                                               "Eviction API", None, _drain_note(drain)),
                 at(RotationStage.DRAINING)))
    rows.append((PlannedAction(Phase.ROTATING, "  after each node: wait until its evicted pods' replacements are "
                                               "Running and Ready on new nodes", None,
                               f"reported after {drain.replacement_timeout} (replacementTimeout); the drain keeps "
                               "waiting"), at(RotationStage.WAITING_FOR_REPLACEMENTS)))
    pause = api.duration(drain.pause_between_nodes)
    if pause:
        least = pause * (count - 1) if count else None
        note = f"{count - 1} pause(s)" if count else "after every node but the last (pauseBetweenNodes)"
        rows.append((PlannedAction(Phase.ROTATING, f"  between nodes: pause {drain.pause_between_nodes}", least,
                                   note), at(RotationStage.PAUSING)))
    if rotations:
        rows += [(PlannedAction(Phase.ROTATING, f"scale {rotation.old} to 0 replicas, kept for the next rotation",
                                None, f"until its machines are gone, as long as {provider} takes"),
                  at(RotationStage.SCALING_DOWN)) for rotation in rotations]
    else:
        rows.append((PlannedAction(Phase.ROTATING, "scale the old entries to 0 replicas, kept for the next rotation",
                                   None, f"until their machines are gone, as long as {provider} takes"), ""))
    new = ", ".join(rotation.new for rotation in rotations) if rotations else "the new pools"
    rows.append((PlannedAction(Phase.COMPLETED, f"done: {spec.cluster.name}'s workers run {target} in {new}", ZERO),
                 "done" if completed else ""))
    if state is not None and state.stage in _ABORTED:
        rows.append((PlannedAction(Phase.ROLLING_BACK, f"aborted: uncordon the old nodes ({state.nodes_drained} of "
                                                       f"{state.nodes_total} were drained)", ZERO, "nothing is "
                                                       "deleted or scaled"),
                     "> current" if state.stage == RotationStage.UNCORDONING else "done"))
    return rows


def _stage_state(
    stage: RotationStage, state: NodePoolsStatus | None, status: ClusterUpgradeStatus | None, *, completed: bool,
) -> str:
    if completed:
        return "done"
    if state is None or status is None or state.stage in _ABORTED:
        return ""
    here = {Phase.FAILED: "failed", Phase.PAUSED: "paused"}.get(status.phase, "current")
    done, total = state.nodes_drained, state.nodes_total
    if stage in _PER_NODE and state.stage in _PER_NODE:
        if stage != state.stage:
            return f"{done}/{total} drained" if stage == RotationStage.DRAINING else ""
        label = f"{done}/{total} drained" if stage == RotationStage.PAUSING else f"node {done + 1}/{total}"
        return f"> {label}" if here == "current" else f"{here}: {label}"
    position, current = _FORWARD.index(stage), _FORWARD.index(state.stage)
    if position < current:
        return "done"
    return f"> {here}" if position == current else ""


def _changes(spec: api.ClusterUpgradeSpec, name: str) -> str:
    pool = next((pool for pool in spec.pools.pools if pool.name == name), None)
    if pool is None:
        return ""
    changes = []
    if pool.class_:
        changes.append(f"class {pool.class_}")
    if pool.machine_config is not None:
        if pool.machine_config.name:
            changes.append(f"machine config {pool.machine_config.name}")
        elif pool.machine_config.overrides:
            changes.append("the old machine config cloned with overrides")
    if pool.overrides:
        changes.append("overrides")
    return f" with {', '.join(changes)}" if changes else ""


def _named(nodes: Sequence[str]) -> str:
    if not nodes:
        return ""
    named = nodes[:NODES_NAMED]
    more = f" and {len(nodes) - len(named)} more" if len(nodes) > len(named) else ""
    return f" ({len(nodes)}): {', '.join(named)}{more}"


def _drain_note(drain: api.DrainSpec) -> str:
    if drain.on_budget_timeout == api.BudgetTimeoutAction.ABORT:
        then = "aborts (old nodes uncordoned)"
    else:
        then = "is reported (NodesDrained=False, DrainBlocked) and asked again"
    grace = f"; gracePeriodSeconds {drain.grace_period_seconds}" if drain.grace_period_seconds is not None else ""
    return (f"DaemonSet and mirror pods stay; emptyDir pods: {drain.local_storage.value}; a PodDisruptionBudget "
            f"refusal is asked again, after {drain.budget_timeout} (budgetTimeout) it {then}{grace}")

"""The NodePools strategy's decisions, pass by pass, against a small in-memory cluster of pools and nodes."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from bluegreen.api import spec as api
from bluegreen.api.status import (
    ClusterUpgradeStatus,
    ConditionType,
    DrainState,
    EvictionEntry,
    Phase,
    RotationStage,
)
from bluegreen.engine import decide
from bluegreen.engine.nodepools import record_drain
from bluegreen.engine.types import (
    ANNOTATION_ABORT,
    ANNOTATION_RETRY,
    ClusterObservation,
    CordonNodes,
    Decision,
    DrainNode,
    EnsurePool,
    NodeObservation,
    Observed,
    PoolObservation,
    RemoveAnnotation,
    ScalePool,
    WorkloadsObservation,
)

T0 = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)


def make_spec(**node_pools: Any) -> api.ClusterUpgradeSpec:
    raw: dict[str, Any] = {
        "strategy": "NodePools",
        "cluster": {"provider": "capi", "name": "prod", "namespace": "fleet"},
        "target": {"kubernetesVersion": "1.30"},
        "nodePools": {"pools": [{"name": "md-0", "class": "worker-v2"}], **node_pools},
    }
    return api.parse_spec(raw)


@dataclasses.dataclass
class Node:
    name: str
    ready: bool = True
    schedulable: bool = True


@dataclasses.dataclass
class Pool:
    replicas: int
    nodes: list[Node]


class Cluster:
    """Pools and nodes as the providers and the workload cluster would report them; drains follow a script."""

    def __init__(self, spec: api.ClusterUpgradeSpec, *, pools: dict[str, int] | None = None) -> None:
        self.spec = spec
        self.pools = {name: Pool(replicas, [Node(f"{name}-{index}") for index in range(replicas)])
                      for name, replicas in (pools or {"md-0": 3}).items()}
        self.status = ClusterUpgradeStatus()
        self.annotations: dict[str, str] = {}
        self.now = T0
        self.log: list[Decision] = []
        self.actions: list[object] = []
        self.new_nodes_ready = True
        self.attachment: tuple[str, ...] = ()
        self.replacements = (True, "Deployment shop/web: 3 of 3 Ready on new nodes")
        # node -> outcomes of successive drain passes (the last repeats); default: one eviction, then Done
        self.drains: dict[str, list[dict[str, Any]]] = {}
        self.evicted_per_node = 1

    def observe(self) -> Observed:
        pools = {name: PoolObservation(name=name, replicas=pool.replicas, machines=len(pool.nodes), nodes=tuple(
            NodeObservation(name=node.name, ready=node.ready, schedulable=node.schedulable) for node in pool.nodes))
            for name, pool in self.pools.items()}
        state = self.status.node_pools
        stage = state.stage if state is not None else None
        return Observed(
            generation=1, annotations=dict(self.annotations),
            blue=ClusterObservation(name="prod", exists=True, ready=True, version="v1.30.4"),
            green=ClusterObservation(name="prod-green", exists=False), workloads=WorkloadsObservation(),
            pools=pools,
            attachment=self.attachment if stage == RotationStage.CHECKING_LOAD_BALANCERS else None,
            replacements=self.replacements if stage == RotationStage.WAITING_FOR_REPLACEMENTS else None,
        )

    def step(self) -> Decision:
        decision = decide(self.spec, self.status, self.observe(), self.now, owner="fleet.nodes")
        self.log.append(decision)
        status = decision.status
        for action in decision.actions:
            self.actions.append(action)
            status = self.apply(action, status)
        self.status = status
        return decision

    def apply(self, action: object, status: ClusterUpgradeStatus) -> ClusterUpgradeStatus:
        match action:
            case RemoveAnnotation(key=key):
                self.annotations.pop(key, None)
            case EnsurePool(name=name, replicas=replicas):
                pool = self.pools.setdefault(name, Pool(0, []))
                pool.replicas = replicas
                while len(pool.nodes) < replicas:
                    pool.nodes.append(Node(f"{name}-{len(pool.nodes)}", ready=self.new_nodes_ready))
            case ScalePool(name=name, replicas=replicas):
                self.pools[name].replicas = replicas
                del self.pools[name].nodes[replicas:]
            case CordonNodes(nodes=nodes, unschedulable=unschedulable):
                for pool in self.pools.values():
                    for node in pool.nodes:
                        if node.name in nodes:
                            node.schedulable = not unschedulable
            case DrainNode(node=node):
                return self.drain(node, status)
        return status

    def drain(self, node: str, status: ClusterUpgradeStatus) -> ClusterUpgradeStatus:
        script = self.drains.setdefault(node, [{"outcome": "Evicted"}] * self.evicted_per_node +
                                        [{"outcome": "Done"}])
        outcome = script.pop(0) if len(script) > 1 else script[0]
        evicted = None
        if outcome["outcome"] == "Evicted":
            evicted = EvictionEntry.model_validate({
                "pod": {"namespace": "shop", "name": f"web-{node}", "uid": "u"}, "node": node,
                "controller": {"kind": "ReplicaSet", "namespace": "shop", "name": "web-1"},
                "at": self.now.isoformat(), "readyBefore": 3, "readyElsewhereBefore": 0})
        blocking = outcome.get("blocking")
        return record_drain(status, drain=DrainState(node=node, message=outcome.get("message", ""),
                                                     **{k: v for k, v in outcome.items()
                                                        if k in {"outcome", "since", "pod", "retry_after_seconds"}}),
                            evicted=evicted, blocking_pod=blocking)

    def run(self, limit: int = 80) -> None:
        """Pass after pass while the engine asks for the next at once (it would be woken so)."""
        for _ in range(limit):
            decision = self.step()
            if decision.wake_at is None or decision.wake_at > self.now:
                return
        raise AssertionError(f"no rest after {limit} passes; last status: {self.status.message}")

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)

    def of(self, kind: type) -> list[Any]:
        return [action for action in self.actions if isinstance(action, kind)]

    def events(self, reason: str) -> list[str]:
        return [event.message for decision in self.log for event in decision.events if event.reason == reason]

    def run_to(self, stage: RotationStage | None = None, *, phase: Phase | None = None, limit: int = 400) -> None:
        """Pass after pass (time moving on by 2 s whenever the engine rests) until the stage or phase is reached."""
        for _ in range(limit):
            decision = self.step()
            state = self.status.node_pools
            if (phase is not None and self.status.phase == phase) or (
                    stage is not None and state is not None and state.stage == stage):
                return
            if decision.wake_at is None or decision.wake_at > self.now:
                self.advance(2)
        raise AssertionError(f"never reached {stage or phase}; at {self.status.phase} {self.status.message}")


def condition(cluster: Cluster, type_: ConditionType) -> tuple[str, str, str]:
    found = cluster.status.condition(type_)
    assert found is not None, f"no condition {type_}"
    return found.status, found.reason, found.message


def test_a_rotation_makes_the_new_pool_cordons_every_old_node_then_drains_them_one_at_a_time() -> None:
    cluster = Cluster(make_spec())
    cluster.run_to(phase=Phase.COMPLETED)
    ensure = cluster.of(EnsurePool)
    assert ensure[0] == EnsurePool(pool="md-0", source="md-0", name="md-0-green", replicas=3)
    # every old node cordoned before the first pod moves, and the drains go node after node
    first_drain = next(i for i, a in enumerate(cluster.actions) if isinstance(a, DrainNode))
    cordoned = {n for a in cluster.actions[:first_drain] if isinstance(a, CordonNodes) for n in a.nodes}
    assert cordoned == {"md-0-0", "md-0-1", "md-0-2"}
    order = [a.node for a in cluster.of(DrainNode)]
    assert order == sorted(order), "one node after the other, never back"
    assert sorted(set(order)) == ["md-0-0", "md-0-1", "md-0-2"]
    assert cluster.of(ScalePool) == [ScalePool(name="md-0", replicas=0)]
    assert cluster.pools["md-0"].replicas == 0, "the old pool is kept at 0, not removed"
    state = cluster.status.node_pools
    assert state is not None
    assert (state.stage, state.nodes_drained, state.nodes_total) == (RotationStage.DONE, 3, 3)
    assert state.drained == ["md-0-0", "md-0-1", "md-0-2"]
    assert [e.pod.name for e in state.evictions] == ["web-md-0-0", "web-md-0-1", "web-md-0-2"]
    assert "md-0 -> md-0-green" in cluster.status.message and "kept at 0 replicas" in cluster.status.message
    assert condition(cluster, ConditionType.NODES_DRAINED)[:2] == ("True", "Drained")


def test_the_next_node_waits_for_the_evicted_pods_to_be_ready_on_new_nodes() -> None:
    cluster = Cluster(make_spec())
    cluster.run_to(RotationStage.WAITING_FOR_REPLACEMENTS)
    cluster.replacements = (False, "ReplicaSet shop/web-1: 2 of 3 Ready on new nodes")
    for _ in range(5):
        cluster.advance(2)
        cluster.run()
    assert {a.node for a in cluster.of(DrainNode)} == {"md-0-0"}, "no second node while replacements are missing"
    assert "2 of 3 Ready" in cluster.status.message
    cluster.replacements = (True, "ReplicaSet shop/web-1: 3 of 3 Ready on new nodes")
    cluster.run_to(phase=Phase.COMPLETED)


def test_replacements_late_past_the_timeout_are_reported_once_and_still_awaited() -> None:
    cluster = Cluster(make_spec(drain={"replacementTimeout": "1m"}))
    cluster.run_to(RotationStage.WAITING_FOR_REPLACEMENTS)
    cluster.replacements = (False, "ReplicaSet shop/web-1: 2 of 3 Ready on new nodes")
    for _ in range(40):
        cluster.advance(5)
        cluster.run()
    assert len(cluster.events("ReplacementsNotReady")) == 1
    assert condition(cluster, ConditionType.NODES_DRAINED)[1] == "ReplacementsNotReady"
    assert cluster.status.phase == Phase.ROTATING


def test_names_alternate_between_rotations() -> None:
    cluster = Cluster(make_spec(), pools={"md-0": 0, "md-0-green": 2})
    cluster.run_to(phase=Phase.COMPLETED)
    assert cluster.of(EnsurePool)[0] == EnsurePool(pool="md-0", source="md-0-green", name="md-0-blue", replicas=2)
    again = Cluster(make_spec(), pools={"md-0-blue": 2, "md-0-green": 0})
    again.run_to(phase=Phase.COMPLETED)
    assert again.of(EnsurePool)[0].name == "md-0-green", "the spare pool of the last rotation is reused"


@pytest.mark.parametrize(("pools", "words"), [
    ({"md-0": 3, "md-0-green": 3}, "md-0 and md-0-green both have replicas"),
    ({"md-1": 3}, "no worker pool md-0, md-0-blue or md-0-green; its pools are: md-1"),
    ({"md-0": 0}, "md-0 has 0 replicas"),
])
def test_pools_that_cannot_be_rotated_block_before_anything_changes(pools: dict[str, int], words: str) -> None:
    cluster = Cluster(make_spec(), pools=pools)
    cluster.run()
    assert cluster.status.phase == Phase.BLOCKED
    assert words in condition(cluster, ConditionType.PREFLIGHT_PASSED)[2]
    assert cluster.actions == []


def test_new_nodes_that_never_become_ready_fail_the_rotation_before_any_cordon() -> None:
    cluster = Cluster(make_spec(nodesTimeout="5m"))
    cluster.new_nodes_ready = False
    cluster.run_to(phase=Phase.FAILED, limit=400)
    assert cluster.of(CordonNodes) == [] and cluster.of(DrainNode) == []
    assert "0 of 3 node(s) Ready" in cluster.status.message


def test_the_load_balancers_must_know_every_new_node_before_a_cordon() -> None:
    spec = make_spec(loadBalancers=[{"haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "nodes"}}])
    cluster = Cluster(spec)
    cluster.attachment = ("haproxy nodes: md-0-green-2 (10.0.0.7) is not a server of the backend",)
    cluster.run_to(RotationStage.CHECKING_LOAD_BALANCERS)
    for _ in range(5):
        cluster.advance(3)
        cluster.run()
    assert cluster.of(CordonNodes) == []
    assert "md-0-green-2 (10.0.0.7) is not a server" in cluster.status.message
    cluster.attachment = ()
    cluster.run_to(phase=Phase.COMPLETED)
    assert cluster.events("NodesAttached")


def test_a_budget_that_blocks_too_long_is_reported_and_the_drain_goes_on_when_it_allows() -> None:
    cluster = Cluster(make_spec(drain={"budgetTimeout": "1m"}))
    blocked = {"outcome": "BlockedByBudget", "since": T0.isoformat(), "message": "refused",
               "blocking": "shop/web-md-0-0: PodDisruptionBudget shop/web allows no disruption"}
    cluster.drains["md-0-0"] = [blocked]
    cluster.run_to(RotationStage.DRAINING)
    for _ in range(30):
        cluster.advance(5)
        cluster.run()
    state = cluster.status.node_pools
    assert state is not None and state.blocking_pod == blocked["blocking"]
    assert condition(cluster, ConditionType.NODES_DRAINED)[1] == "DrainBlocked"
    assert len(cluster.events("DrainBlocked")) == 1, "reported once, not every pass"
    assert cluster.status.phase == Phase.ROTATING
    cluster.drains["md-0-0"] = [{"outcome": "Evicted"}, {"outcome": "Done"}]
    cluster.run_to(phase=Phase.COMPLETED)
    assert cluster.status.node_pools is not None and cluster.status.node_pools.blocking_pod is None


def test_on_budget_timeout_abort_uncordons_instead_of_waiting() -> None:
    cluster = Cluster(make_spec(drain={"budgetTimeout": "1m", "onBudgetTimeout": "Abort"}))
    cluster.drains["md-0-0"] = [{"outcome": "BlockedByBudget", "since": T0.isoformat(), "blocking": "shop/x"}]
    cluster.run_to(phase=Phase.ROLLED_BACK, limit=200)
    assert all(node.schedulable for node in cluster.pools["md-0"].nodes)
    assert cluster.of(ScalePool) == []


def test_abort_mid_drain_uncordons_the_old_nodes_and_deletes_nothing_then_retry_goes_on() -> None:
    cluster = Cluster(make_spec())
    cluster.evicted_per_node = 3
    cluster.run_to(RotationStage.DRAINING)
    cluster.step()
    drains_before = len(cluster.of(DrainNode))
    cluster.annotations[ANNOTATION_ABORT] = "1"
    cluster.run()
    assert cluster.status.phase == Phase.ROLLING_BACK
    cluster.run_to(phase=Phase.ROLLED_BACK)
    assert len(cluster.of(DrainNode)) == drains_before, "no eviction after the abort"
    assert all(node.schedulable for node in cluster.pools["md-0"].nodes)
    assert cluster.of(ScalePool) == [] and cluster.pools["md-0-green"].replicas == 3, "nothing deleted or scaled"
    assert cluster.status.node_pools is not None and cluster.status.node_pools.stage == RotationStage.ABORTED
    assert "schedulable again" in cluster.status.message
    cluster.annotations[ANNOTATION_RETRY] = "1"
    cluster.run_to(phase=Phase.COMPLETED)
    assert len(cluster.of(EnsurePool)) == 1, "the new pool was there already"


def test_pause_between_nodes() -> None:
    cluster = Cluster(make_spec(drain={"pauseBetweenNodes": "10m"}))
    cluster.run_to(RotationStage.PAUSING)
    assert {a.node for a in cluster.of(DrainNode)} == {"md-0-0"}
    cluster.advance(9 * 60)
    cluster.run()
    assert {a.node for a in cluster.of(DrainNode)} == {"md-0-0"}, "still pausing"
    cluster.advance(61)
    cluster.run()
    assert "md-0-1" in {a.node for a in cluster.of(DrainNode)}


def test_spec_paused_holds_the_rotation_where_it_is() -> None:
    cluster = Cluster(make_spec())
    cluster.run_to(RotationStage.DRAINING)
    cluster.spec = cluster.spec.model_copy(update={"paused": True})
    cluster.run()
    assert cluster.status.phase == Phase.PAUSED
    count = len(cluster.of(DrainNode))
    cluster.advance(60)
    cluster.run()
    assert len(cluster.of(DrainNode)) == count
    cluster.spec = cluster.spec.model_copy(update={"paused": False})
    cluster.run_to(phase=Phase.COMPLETED)


def test_messages_and_events_name_ten_nodes_at_most_while_status_lists_them_all() -> None:
    cluster = Cluster(make_spec(), pools={"md-0": 25})
    cluster.run_to(RotationStage.DRAINING)
    [cordoned] = cluster.events("NodesCordoned")
    assert cordoned.startswith("25 old node(s) cordoned: md-0-0, md-0-1,") and cordoned.endswith("and 15 more")
    state = cluster.status.node_pools
    assert state is not None and len(state.old_nodes) == 25


def test_a_blocked_drain_is_looked_at_again_when_the_budget_timeout_falls_due() -> None:
    cluster = Cluster(make_spec(drain={"budgetTimeout": "7s"}))
    cluster.run_to(RotationStage.DRAINING)
    since = cluster.now
    cluster.drains["md-0-0"] = [{"outcome": "BlockedByBudget", "since": since.isoformat(), "blocking": "shop/x",
                                 "retry_after_seconds": 30}]
    cluster.step()  # the eviction refused, the server saying: ask again in 30 s
    decision = cluster.step()  # the engine looks at the refusal
    assert decision.wake_at == since + datetime.timedelta(seconds=7), "reported when due, not 30 s later"

"""plan_node: which pods of a node are evicted, in what order, which are left, what blocks (kubectl drain's rules)."""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.nodepools.plan import LocalStoragePolicy, PodRef, SkipReason, plan_node
from tests.unit.nodepools.pods import NODE, node, pod

EVICT = LocalStoragePolicy.EVICT
BLOCK = LocalStoragePolicy.BLOCK


@pytest.mark.parametrize(("the_pod", "reason"), [
    (pod("agent", owner=("DaemonSet", "node-agent")), SkipReason.DAEMON_SET),
    (pod("kube-proxy-old-1", namespace="kube-system", mirror=True), SkipReason.MIRROR),
    (pod("static-with-emptydir", mirror=True, empty_dir=True), SkipReason.MIRROR),
    (pod("done", phase="Succeeded", ready=False), SkipReason.FINISHED),
    (pod("crashed", phase="Failed", ready=False, owner=None), SkipReason.FINISHED),
    (pod("leaving", terminating=True), SkipReason.TERMINATING),
    (pod("leaving-bare", terminating=True, owner=None), SkipReason.TERMINATING),
    (pod("daemon-with-emptydir", owner=("DaemonSet", "logs"), empty_dir=True), SkipReason.DAEMON_SET),
], ids=lambda value: value if isinstance(value, SkipReason) else value["metadata"]["name"])
@pytest.mark.parametrize("policy", [EVICT, BLOCK])
def test_pods_a_drain_leaves_are_skipped_with_their_reason(
        the_pod: dict[str, Any], reason: SkipReason, policy: LocalStoragePolicy) -> None:
    plan = plan_node(node(), [the_pod], local_storage=policy)
    assert plan.evict == ()
    assert plan.blocked == ()
    assert [(str(skipped.pod), skipped.reason) for skipped in plan.skipped] == [
        (f"{the_pod['metadata']['namespace']}/{the_pod['metadata']['name']}", reason)]


@pytest.mark.parametrize("owner", [("ReplicaSet", "web-7d9"), ("StatefulSet", "db"), ("Job", "report"),
                                   ("ReplicationController", "legacy"), ("Rollout", "custom-controller")])
def test_a_pod_with_any_controller_is_evicted(owner: tuple[str, str]) -> None:
    plan = plan_node(node(), [pod("p", owner=owner)], local_storage=BLOCK)
    assert plan.evict == (PodRef("shop", "p"),)
    assert not plan.is_blocked


def test_local_storage_is_evicted_under_evict() -> None:
    plan = plan_node(node(), [pod("cache-0", empty_dir=True)], local_storage=EVICT)
    assert [str(ref) for ref in plan.evict] == ["shop/cache-0"]
    assert not plan.is_blocked


def test_local_storage_blocks_under_block_naming_the_pod_volume_and_field() -> None:
    plan = plan_node(node(), [pod("cache-0", empty_dir=True), pod("web-1")], local_storage=BLOCK)
    assert plan.is_blocked
    assert [str(blocked.pod) for blocked in plan.blocked] == ["shop/cache-0"]
    message = plan.blocked_message
    assert "shop/cache-0" in message
    assert "(emptyDir cache)" in message  # the configMap volume is not local storage
    assert "spec.nodePools.localStorage: Evict" in message
    assert "--delete-emptydir-data" in message
    assert [str(ref) for ref in plan.evict] == ["shop/web-1"]  # listed, but a blocked node evicts nothing


@pytest.mark.parametrize("policy", [EVICT, BLOCK])
def test_a_bare_pod_always_blocks_and_says_kubectl_would_need_force(policy: LocalStoragePolicy) -> None:
    plan = plan_node(node(), [pod("debug", owner=None)], local_storage=policy)
    assert plan.evict == ()
    assert [str(blocked.pod) for blocked in plan.blocked] == ["shop/debug"]
    assert "shop/debug has no controller" in plan.blocked_message
    assert "--force" in plan.blocked_message


def test_a_pod_whose_owner_is_not_its_controller_is_bare() -> None:
    loose = pod("loose")
    loose["metadata"]["ownerReferences"][0]["controller"] = False
    assert plan_node(node(), [loose], local_storage=EVICT).is_blocked


def test_every_blocking_pod_is_named() -> None:
    plan = plan_node(node(), [pod("b", owner=None), pod("a", empty_dir=True)], local_storage=BLOCK)
    assert [str(blocked.pod) for blocked in plan.blocked] == ["shop/a", "shop/b"]
    assert "shop/a" in plan.blocked_message
    assert "shop/b" in plan.blocked_message


def test_pods_on_other_nodes_are_not_part_of_the_plan() -> None:
    plan = plan_node(node(), [pod("here"), pod("there", node="old-2"), pod("agent-there", node="old-2",
                                                                          owner=None)], local_storage=BLOCK)
    assert plan.evict == (PodRef("shop", "here"),)
    assert plan.skipped == ()
    assert plan.blocked == ()


def test_order_lower_priority_first_then_not_ready_then_by_namespace_and_name() -> None:
    pods = [
        pod("z-important", priority=1000),
        pod("b-web"),
        pod("a-web", namespace="zoo"),
        pod("c-broken", ready=False),
        pod("y-batch", priority=-10),
        pod("a-web"),
    ]
    plan = plan_node(node(), pods, local_storage=EVICT)
    assert [str(ref) for ref in plan.evict] == [
        "shop/y-batch", "shop/c-broken", "shop/a-web", "shop/b-web", "zoo/a-web", "shop/z-important"]
    assert plan_node(node(), list(reversed(pods)), local_storage=EVICT).evict == plan.evict


def test_status_form_is_camel_case_and_complete() -> None:
    plan = plan_node(node(), [pod("web-1"), pod("agent", owner=("DaemonSet", "a")), pod("debug", owner=None)],
                     local_storage=EVICT)
    status = plan.to_status()
    assert status["node"] == NODE
    assert status["evict"] == ["shop/web-1"]
    assert status["skipped"] == [{"pod": "shop/agent", "reason": "DaemonSet"}]
    assert status["blocked"][0]["pod"] == "shop/debug"

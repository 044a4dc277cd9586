"""NodePools through the real operator process: worker pools rotated inside one emulated cluster.

The world simulates the rotated cluster's nodes (kubelets, a scheduler, the
Deployment/ReplicaSet/DaemonSet controllers, PodDisruptionBudget status and the
Eviction API), the machines the provider makes for each worker pool, and a load
balancer controller that registers Ready nodes in a real HAProxy backend. The
workload is created in the cluster directly, as Flux would have put it there.

What these tests watch is what an operator of the cluster would: the pods of a
Deployment through a watch on the cluster, so every change of readiness is seen,
not sampled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness, workload
from tests.integration.conftest import CLUSTER_UPGRADES, Operator, apply, phase_is, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.nodepools, pytest.mark.without_prometheus,
              pytest.mark.world_args("--nodes", "3")]

NODES = Resource("", "v1", "nodes", namespaced=False)
PODS = Resource("", "v1", "pods")
PDBS = Resource("policy", "v1", "poddisruptionbudgets")
CLUSTERS = Resource("cluster.x-k8s.io", "v1beta2", "clusters")
NEW_CLASS = "default-worker-2026-11"


@pytest.fixture
async def cluster(management: KubeClient) -> AsyncIterator[KubeClient]:
    """The rotated cluster, through its kubeconfig Secret as the operator reads it."""
    client = await workload.cluster_client(management, namespace="fleet", name="prod-blue")
    yield client
    await client.close()


def manifest(world: harness.WorldProcess, *, name: str = "rotate-workers", **node_pools: Any) -> dict[str, Any]:
    pool: dict[str, Any] = {"name": "md-0", "class": NEW_CLASS}
    return {
        "apiVersion": "bluegreen.io/v1alpha1", "kind": "ClusterUpgrade",
        "metadata": {"name": name, "namespace": "fleet"},
        "spec": {
            "strategy": "NodePools",
            "cluster": {"provider": "capi", "name": world.info["blue"], "namespace": "fleet"},
            "target": {"kubernetesVersion": "1.30"},
            "nodePools": {"pools": [pool], "nodesTimeout": "2m", **node_pools},
        },
    }


def haproxy_nodes(world: harness.WorldProcess) -> dict[str, Any]:
    return {"haproxy": {"runtimeAPI": world.info["haproxy"]["runtime_api"],
                        "backend": world.info["haproxy"]["nodes_backend"]}}


async def add_worker_class(management: KubeClient) -> None:
    await workload.add_worker_class(management, NEW_CLASS)


async def deploy(cluster: KubeClient, *, replicas: int, min_available: int) -> None:
    await workload.deploy_web(cluster, replicas=replicas, min_available=min_available)


ready_web = workload.ready_pods


class ReadyLow:
    """The fewest Ready web pods seen after every change a watch reports, from when all were Ready."""

    def __init__(self) -> None:
        self.lowest: int | None = None
        self.changes = 0


@contextlib.asynccontextmanager
async def watching_ready(cluster: KubeClient, *, replicas: int) -> AsyncIterator[ReadyLow]:
    low = ReadyLow()
    pods: dict[str, dict[str, Any]] = {}
    synced = asyncio.Event()

    async def follow() -> None:
        async for event_type, pod in cluster.watch(PODS, namespace="shop"):
            key = pod["metadata"]["name"]
            if event_type == "DELETED":
                pods.pop(key, None)
            else:
                pods[key] = pod
            count = len(ready_web(list(pods.values())))
            if not synced.is_set():  # the watch's first events replay the pods one by one
                if count == replicas:
                    synced.set()
                continue
            low.changes += 1
            low.lowest = count if low.lowest is None else min(low.lowest, count)

    task = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(synced.wait(), timeout=10)
        yield low
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def node_pools(body: dict[str, Any]) -> dict[str, Any]:
    return (body.get("status") or {}).get("nodePools") or {}


async def topology_pools(management: KubeClient) -> dict[str, int]:
    cluster = await management.get(CLUSTERS, namespace="fleet", name="prod-blue")
    assert cluster is not None
    return {entry["name"]: entry["replicas"] for entry in cluster["spec"]["topology"]["workers"]["machineDeployments"]}


async def nodes_by_name(cluster: KubeClient) -> dict[str, dict[str, Any]]:
    return {node["metadata"]["name"]: node for node in await cluster.list(NODES)}


async def test_a_rotation_of_three_nodes_never_takes_the_workload_below_its_budget(
    world: harness.WorldProcess, operator: Operator, management: KubeClient, cluster: KubeClient,
) -> None:
    await add_worker_class(management)
    old_nodes = sorted(await nodes_by_name(cluster))
    assert len(old_nodes) == 3
    await deploy(cluster, replicas=6, min_available=5)
    await world.control("POST", "/nodes/lb", {"paused": True})  # the load balancer has not seen new nodes yet
    upgrade = manifest(world, loadBalancers=[haproxy_nodes(world)])
    async with watching_ready(cluster, replicas=6) as low:
        apply(world, upgrade)
        body = await wait_for(management, upgrade, lambda b: node_pools(b).get("stage") == "CheckingLoadBalancers",
                              timeout=60, operator=operator, what="the load balancer check")
        await asyncio.sleep(2)
        nodes = await nodes_by_name(cluster)
        assert not any((nodes[name].get("spec") or {}).get("unschedulable") for name in old_nodes), \
            "nothing is cordoned while the load balancer does not know the new nodes"
        body = await wait_for(management, upgrade, lambda b: "not" in node_pools(b).get("loadBalancers", ""),
                              timeout=15, operator=operator, what="the check's finding")
        assert world.info["haproxy"]["nodes_backend"] in node_pools(body)["loadBalancers"]
        await world.control("POST", "/nodes/lb", {"paused": False})
        body = await wait_for(management, upgrade, phase_is("Completed", "Failed", "RolledBack"), timeout=120,
                              operator=operator, what="the rotation's end")
    status = body["status"]
    assert status["phase"] == "Completed", status["message"]
    assert low.lowest is not None and low.changes > 10
    assert low.lowest >= 5, f"the web Deployment went down to {low.lowest} Ready pods, below minAvailable 5"
    rotation = status["nodePools"]
    assert (rotation["nodesDrained"], rotation["nodesTotal"]) == (3, 3)
    assert sorted(rotation["drained"]) == old_nodes
    assert rotation["evictionsTotal"] == 6 and len(rotation["evictions"]) == 6
    assert {entry["pod"]["namespace"] for entry in rotation["evictions"]} == {"shop"}, "DaemonSet pods stay"
    assert await topology_pools(management) == {"md-0": 0, "md-0-green": 3}, "the old pool is kept at 0"
    nodes = await nodes_by_name(cluster)
    assert not set(old_nodes) & set(nodes), "the old pool's machines and nodes are gone"
    web = ready_web(await cluster.list(PODS, namespace="shop"))
    assert len(web) == 6 and {pod["spec"]["nodeName"] for pod in web} <= set(rotation["pools"][0]["newNodes"])
    drained = harness.kubectl(world.kubeconfig, "get", "events", "-n", "fleet", "--field-selector",
                              "reason=NodeDrained", "-o", "jsonpath={.items[*].message}")
    assert all(f"({name})" in drained for name in old_nodes), drained


async def test_a_budget_that_blocks_makes_the_rotation_wait_and_say_so_then_it_proceeds(
    world: harness.WorldProcess, operator: Operator, management: KubeClient, cluster: KubeClient,
) -> None:
    await add_worker_class(management)
    await deploy(cluster, replicas=3, min_available=3)  # no disruption allowed at all
    upgrade = manifest(world, drain={"budgetTimeout": "3s"})
    apply(world, upgrade)
    body = await wait_for(management, upgrade, lambda b: bool(node_pools(b).get("blockingPod")), timeout=60,
                          operator=operator, what="the blocked drain")
    assert "PodDisruptionBudget shop/web" in node_pools(body)["blockingPod"]
    body = await wait_for(
        management, upgrade,
        lambda b: any(c["type"] == "NodesDrained" and c["reason"] == "DrainBlocked"
                      for c in (b.get("status") or {}).get("conditions") or []),
        timeout=30, operator=operator, what="the DrainBlocked condition")
    assert body["status"]["phase"] == "Rotating"
    assert node_pools(body)["nodesDrained"] == 0
    reasons = harness.kubectl(world.kubeconfig, "get", "events", "-n", "fleet",
                              "--field-selector", "reason=DrainBlocked", "-o", "jsonpath={.items[*].message}")
    assert "PodDisruptionBudget" in reasons
    await cluster.patch(PDBS, namespace="shop", name="web", body={"spec": {"minAvailable": 2}})
    body = await wait_for(management, upgrade, phase_is("Completed", "Failed"), timeout=120, operator=operator,
                          what="the rotation's end once the budget allows")
    assert body["status"]["phase"] == "Completed", body["status"]["message"]
    assert "blockingPod" not in node_pools(body)


async def test_abort_mid_drain_leaves_the_old_nodes_schedulable_and_deletes_nothing(
    world: harness.WorldProcess, operator: Operator, management: KubeClient, cluster: KubeClient,
) -> None:
    await add_worker_class(management)
    old_nodes = sorted(await nodes_by_name(cluster))
    await deploy(cluster, replicas=3, min_available=3)
    upgrade = manifest(world)
    apply(world, upgrade)
    await wait_for(management, upgrade, lambda b: bool(node_pools(b).get("blockingPod")), timeout=60,
                   operator=operator, what="a drain held by the budget")
    nodes = await nodes_by_name(cluster)
    assert all((nodes[name].get("spec") or {}).get("unschedulable") for name in old_nodes), "all old cordoned"
    harness.kubectl(world.kubeconfig, "annotate", "clusterupgrade", "-n", "fleet", "rotate-workers",
                    "bluegreen.io/abort=now")
    body = await wait_for(management, upgrade, phase_is("RolledBack", "Failed"), timeout=60, operator=operator,
                          what="the abort")
    assert body["status"]["phase"] == "RolledBack", body["status"]["message"]
    assert node_pools(body)["stage"] == "Aborted"
    nodes = await nodes_by_name(cluster)
    assert set(old_nodes) <= set(nodes), "no old node was removed"
    assert not any((nodes[name].get("spec") or {}).get("unschedulable") for name in old_nodes)
    assert await topology_pools(management) == {"md-0": 3, "md-0-green": 3}, "nothing scaled or deleted"
    assert len(ready_web(await cluster.list(PODS, namespace="shop"))) == 3
    body = await management.get(CLUSTER_UPGRADES, namespace="fleet", name="rotate-workers") or {}
    assert "bluegreen.io/abort" not in (body["metadata"].get("annotations") or {})


EKSA_CLUSTERS = Resource("anywhere.eks.amazonaws.com", "v1alpha1", "clusters")
VSPHERE_MACHINES = Resource("anywhere.eks.amazonaws.com", "v1alpha1", "vspheremachineconfigs")
NEW_TEMPLATE = "/Datacenter/vm/bottlerocket-kube-v1-30-2026-11"


@pytest.mark.world_args("--provider", "eksa")
async def test_an_eksa_worker_group_is_rotated_into_its_own_machine_config(
    world: harness.WorldProcess, operator: Operator, management: KubeClient,
) -> None:
    namespace, blue = world.info["namespace"], world.info["blue"]
    cluster = await workload.cluster_client(management, namespace="eksa-system", name=blue)
    try:
        old_nodes = sorted(await nodes_by_name(cluster))
        assert len(old_nodes) == 3
        await deploy(cluster, replicas=3, min_available=2)
        upgrade = manifest(world)
        upgrade["metadata"]["namespace"] = namespace
        upgrade["spec"]["cluster"] = {"provider": "eksa", "name": blue, "namespace": namespace}
        upgrade["spec"]["nodePools"]["pools"] = [
            {"name": "md-0", "machineConfig": {"overrides": {"spec": {"template": NEW_TEMPLATE}}}}]
        apply(world, upgrade)
        body = await wait_for(management, upgrade, phase_is("Completed", "Failed", "Blocked"), timeout=120,
                              operator=operator, what="the EKS-A rotation's end")
        assert body["status"]["phase"] == "Completed", body["status"]["message"]
        definition = await management.get(EKSA_CLUSTERS, namespace=namespace, name=blue)
        assert definition is not None
        groups = {group["name"]: group for group in definition["spec"]["workerNodeGroupConfigurations"]}
        assert (groups["md-0"]["count"], groups["md-0-green"]["count"]) == (0, 3)
        config = groups["md-0-green"]["machineGroupRef"]["name"]
        assert config != groups["md-0"]["machineGroupRef"]["name"]
        copy = await management.get(VSPHERE_MACHINES, namespace=namespace, name=config)
        assert copy is not None and copy["spec"]["template"] == NEW_TEMPLATE
        nodes = await nodes_by_name(cluster)
        assert not set(old_nodes) & set(nodes) and len(nodes) == 3
        assert len(ready_web(await cluster.list(PODS, namespace="shop"))) == 3
    finally:
        await cluster.close()


async def test_a_killed_operator_goes_on_with_the_drain_from_status_evicting_nothing_twice(
    world: harness.WorldProcess, operator: Operator, management: KubeClient, cluster: KubeClient,
) -> None:
    await add_worker_class(management)
    await deploy(cluster, replicas=3, min_available=3)
    upgrade = manifest(world)
    apply(world, upgrade)
    await wait_for(management, upgrade, lambda b: bool(node_pools(b).get("blockingPod")), timeout=60,
                   operator=operator, what="a drain held by the budget")
    operator.kill()  # SIGKILL: no chance to write anything more
    await cluster.patch(PDBS, namespace="shop", name="web", body={"spec": {"minAvailable": 2}})
    operator.start()
    body = await wait_for(management, upgrade, phase_is("Completed", "Failed"), timeout=120, operator=operator,
                          what="the rotation's end after a restart")
    assert body["status"]["phase"] == "Completed", body["status"]["message"]
    rotation = node_pools(body)
    evicted = [(entry["pod"]["name"], entry["pod"].get("uid")) for entry in rotation["evictions"]]
    assert len(evicted) == len(set(evicted)) == rotation["evictionsTotal"] == 3, evicted
    assert sorted({entry["node"] for entry in rotation["evictions"]}) == sorted(rotation["drained"])

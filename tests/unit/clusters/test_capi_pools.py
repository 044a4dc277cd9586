"""Cluster API worker pools (NodePools) against the emulator: topology machineDeployments copied, reused,
scaled, their machines counted, and what stops a pool from being made, in both API versions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api.spec import NodePool
from bluegreen.clusters import capi
from bluegreen.clusters.base import ClusterProviderError, WorkerPool
from bluegreen.kube import client as kubeclient
from bluegreen.sim import capi as sim_capi
from bluegreen.sim.kube import KubeEmulator

NAMESPACE = "fleet"
CLUSTER = "prod"


def machines_resource(version: str) -> str:
    return f"cluster.x-k8s.io/{version}/machines"


@pytest.fixture(params=["v1beta2", "v1beta1"])
def api_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def management(api_version: str) -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="management")
    sim_capi.install(emulator, api_version=api_version)
    # The sim may declare Machines itself; declaring a resource again only replaces its description.
    emulator.add_resource(group="cluster.x-k8s.io", version=api_version, plural="machines", kind="Machine")
    emulator.create("v1/namespaces", {"metadata": {"name": NAMESPACE}})
    sim_capi.seed_cluster(emulator, namespace=NAMESPACE, name=CLUSTER, version="v1.30.4", api_version=api_version)
    emulator.patch(f"cluster.x-k8s.io/{api_version}/clusterclasses", NAMESPACE, "quick-start", {"spec": {
        "workers": {"machineDeployments": [{"class": "default-worker"}, {"class": "big-worker"}]}}})
    set_entries(emulator, api_version, [
        {"class": "default-worker", "name": "md-0", "replicas": 3,
         "metadata": {"labels": {"tier": "web"}}, "failureDomain": "az-1",
         "variables": {"overrides": [{"name": "instanceType", "value": "m5.large"}]}},
        {"class": "default-worker", "name": "batch", "replicas": 1},
    ])
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def client(management: KubeEmulator) -> AsyncIterator[kubeclient.KubeClient]:
    async with kubeclient.KubeClient.from_kubeconfig(management.kubeconfig()) as client:
        yield client


@pytest.fixture
def provider(client: kubeclient.KubeClient) -> capi.CapiClusterProvider:
    return capi.CapiClusterProvider(client=client)


def set_entries(emulator: KubeEmulator, api_version: str, entries: list[dict[str, Any]]) -> None:
    emulator.patch(sim_capi.cluster_resource(api_version), NAMESPACE, CLUSTER,
                   {"spec": {"topology": {"workers": {"machineDeployments": entries}}}})


def entries_of(emulator: KubeEmulator, api_version: str) -> list[dict[str, Any]]:
    cluster = emulator.get(sim_capi.cluster_resource(api_version), NAMESPACE, CLUSTER)
    assert cluster is not None
    return list(cluster["spec"]["topology"]["workers"]["machineDeployments"])


def entry(emulator: KubeEmulator, api_version: str, name: str) -> dict[str, Any]:
    return next(item for item in entries_of(emulator, api_version) if item["name"] == name)


def add_machine(emulator: KubeEmulator, api_version: str, name: str, *, deployment: str, cluster: str = CLUSTER,
                node: str | None = None, deleting: bool = False) -> None:
    resource = machines_resource(api_version)
    emulator.create(resource, {
        "apiVersion": f"cluster.x-k8s.io/{api_version}", "kind": "Machine",
        "metadata": {"name": name, "namespace": NAMESPACE,
                     "labels": {"cluster.x-k8s.io/cluster-name": cluster,
                                "topology.cluster.x-k8s.io/deployment-name": deployment},
                     "finalizers": ["machine.cluster.x-k8s.io"] if deleting else []},
        "spec": {"clusterName": cluster},
    })
    if node is not None:
        emulator.patch(resource, NAMESPACE, name, {"status": {"phase": "Running", "nodeRef": {"name": node}}},
                       subresource="status")
    if deleting:
        emulator.delete(resource, NAMESPACE, name)


def pool(**fields: Any) -> NodePool:
    return NodePool.model_validate({"name": "md-0", **fields})


async def test_a_new_pool_is_a_copy_of_the_old_entry_with_the_class_and_overrides_and_is_made_once(
        provider: capi.CapiClusterProvider, management: KubeEmulator, api_version: str) -> None:
    wanted = pool(**{"class": "big-worker", "overrides": {
        "failureDomain": "az-2", "metadata": {"labels": {"generation": "2"}}}})

    detail = await provider.ensure_pool(namespace=NAMESPACE, name=CLUSTER, pool=wanted, source="md-0",
                                        new="md-0-green", version="1.30", replicas=3)

    assert detail == ("added pool md-0-green to spec.topology.workers.machineDeployments of Cluster fleet/prod "
                      "(class big-worker, 3 replicas), copied from md-0")
    assert [item["name"] for item in entries_of(management, api_version)] == ["md-0", "batch", "md-0-green"]
    assert entry(management, api_version, "md-0-green") == {
        "class": "big-worker", "name": "md-0-green", "replicas": 3, "failureDomain": "az-2",
        "metadata": {"labels": {"tier": "web", "generation": "2"}},
        "variables": {"overrides": [{"name": "instanceType", "value": "m5.large"}]},
    }
    assert entry(management, api_version, "md-0")["class"] == "default-worker"
    assert await provider.ensure_pool(namespace=NAMESPACE, name=CLUSTER, pool=wanted, source="md-0",
                                      new="md-0-green", version="v1.30.4", replicas=3) is None


async def test_the_spare_pool_of_an_earlier_rotation_is_rewritten_where_it_stands(
        provider: capi.CapiClusterProvider, management: KubeEmulator, api_version: str) -> None:
    set_entries(management, api_version, [
        {"class": "big-worker", "name": "md-0-green", "replicas": 0, "failureDomain": "az-9"},
        {"class": "default-worker", "name": "md-0-blue", "replicas": 2},
    ])

    detail = await provider.ensure_pool(namespace=NAMESPACE, name=CLUSTER, pool=pool(), source="md-0-blue",
                                        new="md-0-green", version="1.30", replicas=2)

    assert detail is not None and detail.startswith("rewrote pool md-0-green")
    assert entries_of(management, api_version) == [
        {"class": "default-worker", "name": "md-0-green", "replicas": 2},
        {"class": "default-worker", "name": "md-0-blue", "replicas": 2},
    ]


async def test_scaling_a_pool_sets_its_replicas_once(
        provider: capi.CapiClusterProvider, management: KubeEmulator, api_version: str) -> None:
    detail = await provider.scale_pool(namespace=NAMESPACE, name=CLUSTER, pool="md-0", replicas=0)

    assert detail == ("scaled pool md-0 of Cluster fleet/prod from 3 to 0 replicas "
                      "(spec.topology.workers.machineDeployments[].replicas)")
    assert entry(management, api_version, "md-0")["replicas"] == 0
    assert entry(management, api_version, "batch")["replicas"] == 1
    assert await provider.scale_pool(namespace=NAMESPACE, name=CLUSTER, pool="md-0", replicas=0) is None
    with pytest.raises(ClusterProviderError, match=r"no entry named md-9 \(entries: md-0, batch\)"):
        await provider.scale_pool(namespace=NAMESPACE, name=CLUSTER, pool="md-9", replicas=0)


async def test_worker_pools_count_the_machines_of_each_entry_and_name_their_nodes(
        provider: capi.CapiClusterProvider, management: KubeEmulator, api_version: str) -> None:
    add_machine(management, api_version, "prod-md-0-a", deployment="md-0", node="node-a")
    add_machine(management, api_version, "prod-md-0-b", deployment="md-0")  # no Node yet
    add_machine(management, api_version, "prod-md-0-c", deployment="md-0", node="node-c", deleting=True)
    add_machine(management, api_version, "prod-batch-a", deployment="batch", node="node-batch")
    add_machine(management, api_version, "other-md-0-a", deployment="md-0", cluster="other", node="node-other")

    pools = await provider.worker_pools(namespace=NAMESPACE, name=CLUSTER)

    assert pools == {
        "md-0": WorkerPool(name="md-0", replicas=3, machines=3, nodes=("node-a", "node-c"),
                           template="default-worker"),
        "batch": WorkerPool(name="batch", replicas=1, machines=1, nodes=("node-batch",), template="default-worker"),
    }
    assert await provider.worker_pools(namespace=NAMESPACE, name="gone") == {}


async def test_a_pool_is_made_at_the_cluster_minor_only(provider: capi.CapiClusterProvider) -> None:
    problems = await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER, pool=pool(), source="md-0",
                                            new="md-0-green", version="1.31")

    assert len(problems) == 1
    assert "runs v1.30.4 (spec.topology.version)" in problems[0]
    assert "no version of its own" in problems[0]
    assert "strategy InPlace" in problems[0] and "BlueGreen" in problems[0]
    assert await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER, pool=pool(), source="md-0",
                                        new="md-0-green", version="v1.30.9") == []
    with pytest.raises(ClusterProviderError, match="no version of its own"):
        await provider.ensure_pool(namespace=NAMESPACE, name=CLUSTER, pool=pool(), source="md-0", new="md-0-green",
                                   version="1.31", replicas=3)


async def test_a_missing_source_entry_is_named_with_the_entries_there_are(
        provider: capi.CapiClusterProvider) -> None:
    problems = await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER, pool=pool(name="web"), source="web",
                                            new="web-green", version="1.30")

    assert problems == ["Cluster fleet/prod: spec.topology.workers.machineDeployments has no entry named web "
                        "(entries: md-0, batch); check spec.nodePools.pools[].name"]


async def test_a_class_the_cluster_class_lacks_is_refused_naming_those_it_has(
        provider: capi.CapiClusterProvider, management: KubeEmulator, api_version: str) -> None:
    problems = await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER, pool=pool(**{"class": "gpu-worker"}),
                                            source="md-0", new="md-0-green", version="1.30")

    assert len(problems) == 1
    assert "machineDeployment class 'gpu-worker'" in problems[0]
    assert "ClusterClass fleet/quick-start" in problems[0]
    assert "default-worker, big-worker" in problems[0]
    assert await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER, pool=pool(**{"class": "big-worker"}),
                                        source="md-0", new="md-0-green", version="1.30") == []
    # A ClusterClass that cannot be read is left to the topology controller's own validation.
    management.delete(f"cluster.x-k8s.io/{api_version}/clusterclasses", NAMESPACE, "quick-start")
    assert await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER, pool=pool(**{"class": "gpu-worker"}),
                                        source="md-0", new="md-0-green", version="1.30") == []


async def test_a_cluster_without_a_topology_has_no_pools_to_rotate(
        provider: capi.CapiClusterProvider, management: KubeEmulator, api_version: str) -> None:
    management.patch(sim_capi.cluster_resource(api_version), NAMESPACE, CLUSTER, {"spec": {"topology": None}})

    problems = await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER, pool=pool(), source="md-0",
                                            new="md-0-green", version="1.30")

    assert len(problems) == 1 and "has no spec.topology with a ClusterClass" in problems[0]
    assert await provider.worker_pools(namespace=NAMESPACE, name=CLUSTER) == {}


async def test_overrides_may_not_rename_or_resize_and_an_autoscaled_pool_is_refused(
        provider: capi.CapiClusterProvider, management: KubeEmulator, api_version: str) -> None:
    problems = await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER,
                                            pool=pool(overrides={"name": "x", "replicas": 5}), source="md-0",
                                            new="md-0-green", version="1.30")

    assert [problem.split(":")[0] for problem in problems] == [
        "spec.nodePools.pools[name=md-0].overrides.name", "spec.nodePools.pools[name=md-0].overrides.replicas"]

    set_entries(management, api_version, [{"class": "default-worker", "name": "md-0", "metadata": {"annotations": {
        capi.AUTOSCALER_MIN_SIZE: "1", capi.AUTOSCALER_MAX_SIZE: "5"}}}])
    problems = await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER, pool=pool(), source="md-0",
                                            new="md-0-green", version="1.30")
    assert len(problems) == 1 and "scaled by the cluster autoscaler" in problems[0]
    unscaled = pool(overrides={"metadata": {"annotations": {capi.AUTOSCALER_MIN_SIZE: None,
                                                            capi.AUTOSCALER_MAX_SIZE: None}}})
    assert await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER, pool=unscaled, source="md-0",
                                        new="md-0-green", version="1.30") == []


async def test_a_missing_cluster_is_an_error_that_says_what_to_check(provider: capi.CapiClusterProvider) -> None:
    assert (await provider.pool_problems(namespace=NAMESPACE, name="gone", pool=pool(), source="md-0",
                                         new="md-0-green", version="1.30")
            == ["Cluster fleet/gone does not exist; check spec.cluster.name and spec.cluster.namespace"])
    with pytest.raises(ClusterProviderError, match=r"Cluster fleet/gone does not exist; check spec\.cluster\.name"):
        await provider.ensure_pool(namespace=NAMESPACE, name="gone", pool=pool(), source="md-0", new="md-0-green",
                                   version="1.30", replicas=1)
    with pytest.raises(ClusterProviderError, match="Cluster fleet/gone does not exist"):
        await provider.scale_pool(namespace=NAMESPACE, name="gone", pool="md-0", replicas=0)


async def test_a_change_made_since_the_read_is_a_conflict_not_overwritten(
        management: KubeEmulator, api_version: str) -> None:
    class Interleaved(kubeclient.KubeClient):
        async def patch(self, resource: kubeclient.Resource, **kwargs: Any) -> dict[str, Any]:
            # Someone else scales batch between bluegreen's read and its write.
            set_entries(management, api_version, [*entries_of(management, api_version)[:1],
                                                  {"class": "default-worker", "name": "batch", "replicas": 7}])
            return await super().patch(resource, **kwargs)

    async with Interleaved.from_kubeconfig(management.kubeconfig()) as client:
        provider = capi.CapiClusterProvider(client=client)
        with pytest.raises(kubeclient.ConflictError):
            await provider.scale_pool(namespace=NAMESPACE, name=CLUSTER, pool="md-0", replicas=0)

    assert entry(management, api_version, "batch")["replicas"] == 7
    assert entry(management, api_version, "md-0")["replicas"] == 3

"""EKS Anywhere worker pools (NodePools) against the emulator: worker groups copied with their own or another
machine config, reused, scaled, their machines counted, version pins, and what stops a group from being made."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api.spec import NodePool
from bluegreen.clusters import eksa
from bluegreen.clusters.base import ClusterProviderError, WorkerPool
from bluegreen.engine.types import LABEL_UPGRADE
from bluegreen.kube import client as kubeclient
from bluegreen.kube import objects
from bluegreen.sim import eksa as sim_eksa
from bluegreen.sim.kube import KubeEmulator

pytestmark = pytest.mark.eksa

NAMESPACE = "fleet"
CLUSTER = "prod"
MACHINES = "cluster.x-k8s.io/v1beta1/machines"
VSPHERE = sim_eksa.resource("VSphereMachineConfig")


@pytest.fixture
async def management() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="management")
    sim_eksa.install(emulator)
    # The sim may declare Machines itself; declaring a resource again only replaces its description.
    emulator.add_resource(group="cluster.x-k8s.io", version="v1beta1", plural="machines", kind="Machine")
    sim_eksa.seed_cluster(emulator, namespace=NAMESPACE, name=CLUSTER, version="1.30", worker_groups=("md-0", "batch"),
                          labels={LABEL_UPGRADE: "fleet.prod-from-blue"})
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def provider(management: KubeEmulator) -> AsyncIterator[eksa.EksaClusterProvider]:
    async with kubeclient.KubeClient.from_kubeconfig(management.kubeconfig()) as client:
        yield eksa.EksaClusterProvider(client=client)


def groups_of(emulator: KubeEmulator) -> list[dict[str, Any]]:
    cluster = emulator.get(sim_eksa.cluster_resource(), NAMESPACE, CLUSTER)
    assert cluster is not None
    return list(cluster["spec"]["workerNodeGroupConfigurations"])


def group(emulator: KubeEmulator, name: str) -> dict[str, Any]:
    return next(item for item in groups_of(emulator) if item["name"] == name)


def set_groups(emulator: KubeEmulator, groups: list[dict[str, Any]]) -> None:
    emulator.patch(sim_eksa.cluster_resource(), NAMESPACE, CLUSTER, {"spec": {"workerNodeGroupConfigurations": groups}})


def vsphere_group(name: str, config: str, count: int = 2, **extra: Any) -> dict[str, Any]:
    return {"name": name, "count": count, "machineGroupRef": {"kind": "VSphereMachineConfig", "name": config}, **extra}


def pool(**fields: Any) -> NodePool:
    return NodePool.model_validate({"name": "md-0", **fields})


async def ensure(provider: eksa.EksaClusterProvider, wanted: NodePool, *, source: str = "md-0",
                 new: str = "md-0-green", version: str = "1.30", replicas: int = 2) -> str | None:
    return await provider.ensure_pool(namespace=NAMESPACE, name=CLUSTER, pool=wanted, source=source, new=new,
                                      version=version, replicas=replicas)


async def problems_of(provider: eksa.EksaClusterProvider, wanted: NodePool, *, source: str = "md-0",
                      new: str = "md-0-green", version: str = "1.30") -> list[str]:
    return await provider.pool_problems(namespace=NAMESPACE, name=CLUSTER, pool=wanted, source=source, new=new,
                                        version=version)


async def test_a_new_group_copies_the_old_one_with_its_machine_config_and_is_made_once(
        provider: eksa.EksaClusterProvider, management: KubeEmulator) -> None:
    set_groups(management, [vsphere_group("md-0", "prod-md-0", taints=[{"key": "web", "effect": "NoSchedule"}]),
                            vsphere_group("batch", "prod-batch", count=1)])
    wanted = pool(overrides={"labels": {"generation": "2"}})

    detail = await ensure(provider, wanted, replicas=3)

    assert detail == ("added worker group md-0-green to spec.workerNodeGroupConfigurations of Cluster fleet/prod "
                      "(VSphereMachineConfig prod-md-0, count 3), copied from md-0")
    assert [item["name"] for item in groups_of(management)] == ["md-0", "batch", "md-0-green"]
    assert group(management, "md-0-green") == vsphere_group(
        "md-0-green", "prod-md-0", count=3, taints=[{"key": "web", "effect": "NoSchedule"}],
        labels={"generation": "2"})
    assert await ensure(provider, wanted, replicas=3) is None


async def test_machine_config_overrides_clone_the_old_groups_config_for_the_new_group(
        provider: eksa.EksaClusterProvider, management: KubeEmulator) -> None:
    management.patch(VSPHERE, NAMESPACE, "prod-md-0", {"metadata": {
        "labels": {"tier": "web"}, "annotations": {"anywhere.eks.amazonaws.com/paused": "true"}}})
    source = management.get(VSPHERE, NAMESPACE, "prod-md-0")
    assert source is not None
    wanted = pool(machineConfig={"overrides": {"spec": {"template": "/dc/vm/ubuntu-kube-v1.30-2", "numCPUs": 8}}})

    detail = await ensure(provider, wanted)

    assert detail == ("added worker group md-0-green to spec.workerNodeGroupConfigurations of Cluster fleet/prod "
                      "(VSphereMachineConfig prod-md-0-green, count 2), copied from md-0; "
                      "created VSphereMachineConfig fleet/prod-md-0-green, a copy of prod-md-0")
    clone = management.get(VSPHERE, NAMESPACE, "prod-md-0-green")
    assert clone is not None
    assert clone["spec"] == {**source["spec"], "template": "/dc/vm/ubuntu-kube-v1.30-2", "numCPUs": 8}
    assert objects.labels(clone) == {"tier": "web", LABEL_UPGRADE: "fleet.prod-from-blue"}
    assert clone["metadata"]["annotations"] == {objects.CLONED_FROM: "prod-md-0"}
    assert group(management, "md-0-green")["machineGroupRef"] == {"kind": "VSphereMachineConfig",
                                                                  "name": "prod-md-0-green"}
    assert group(management, "md-0")["machineGroupRef"]["name"] == "prod-md-0"
    assert await ensure(provider, wanted) is None

    # The next rotation's config for the spare group: the copy is updated, not made again.
    changed = pool(machineConfig={"overrides": {"spec": {"template": "/dc/vm/ubuntu-kube-v1.30-3"}}})
    assert (await ensure(provider, changed)
            == "updated VSphereMachineConfig fleet/prod-md-0-green to a copy of prod-md-0")
    clone = management.get(VSPHERE, NAMESPACE, "prod-md-0-green")
    assert clone is not None
    assert clone["spec"] == {**source["spec"], "template": "/dc/vm/ubuntu-kube-v1.30-3"}


async def test_a_named_machine_config_is_used_as_it_is_and_must_exist(
        provider: eksa.EksaClusterProvider, management: KubeEmulator) -> None:
    management.create(VSPHERE, {"apiVersion": eksa.API_VERSION, "kind": "VSphereMachineConfig",
                                "metadata": {"name": "big-workers", "namespace": NAMESPACE},
                                "spec": {"numCPUs": 16, "memoryMiB": 65536}})

    assert await problems_of(provider, pool(machineConfig={"name": "big-workers"})) == []
    await ensure(provider, pool(machineConfig={"name": "big-workers"}))

    assert group(management, "md-0-green")["machineGroupRef"] == {"kind": "VSphereMachineConfig",
                                                                  "name": "big-workers"}
    assert management.get(VSPHERE, NAMESPACE, "big-workers")["spec"] == {  # type: ignore[index]
        "numCPUs": 16, "memoryMiB": 65536}
    missing = pool(machineConfig={"name": "huge-workers"})
    assert await problems_of(provider, missing) == [
        "spec.nodePools.pools[name=md-0].machineConfig.name: VSphereMachineConfig fleet/huge-workers does not "
        "exist (the new group's config must be of the old group's kind, VSphereMachineConfig); create it or correct "
        "the name"]
    with pytest.raises(ClusterProviderError, match="huge-workers does not exist"):
        await ensure(provider, missing)


async def test_a_config_where_the_copy_goes_that_bluegreen_did_not_make_or_another_group_uses_is_refused(
        provider: eksa.EksaClusterProvider, management: KubeEmulator) -> None:
    wanted = pool(machineConfig={"overrides": {"spec": {"numCPUs": 8}}})
    management.create(VSPHERE, {"apiVersion": eksa.API_VERSION, "kind": "VSphereMachineConfig",
                                "metadata": {"name": "prod-md-0-green", "namespace": NAMESPACE}, "spec": {}})

    problems = await problems_of(provider, wanted)

    assert len(problems) == 1
    assert "VSphereMachineConfig fleet/prod-md-0-green already exists and was not made by bluegreen" in problems[0]
    with pytest.raises(ClusterProviderError, match="not made by bluegreen"):
        await ensure(provider, wanted)
    assert management.get(VSPHERE, NAMESPACE, "prod-md-0-green")["spec"] == {}  # type: ignore[index]

    set_groups(management, [vsphere_group("md-0", "prod-md-0"), vsphere_group("batch", "prod-md-0-green")])
    problems = await problems_of(provider, wanted)
    assert len(problems) == 1
    assert "is used by spec.workerNodeGroupConfigurations[1].machineGroupRef" in problems[0]


@pytest.mark.parametrize(("target", "pinned"), [("1.30", None), ("v1.30.2", None), ("1.29", "1.29"),
                                                ("v1.28.5", "1.28")])
async def test_the_new_group_pins_its_version_only_below_the_clusters_minor(
        provider: eksa.EksaClusterProvider, management: KubeEmulator, target: str, pinned: str | None) -> None:
    set_groups(management, [vsphere_group("md-0", "prod-md-0", kubernetesVersion="1.29")])

    assert await problems_of(provider, pool(), version=target) == []
    await ensure(provider, pool(), version=target)

    assert group(management, "md-0-green").get("kubernetesVersion") == pinned
    assert (await provider.worker_pools(namespace=NAMESPACE, name=CLUSTER))["md-0-green"].version == pinned


@pytest.mark.parametrize(("target", "why"), [("1.31", "newer than the control plane"),
                                             ("1.27", "3 minors behind")])
async def test_a_version_ahead_of_the_cluster_or_three_minors_behind_is_refused(
        provider: eksa.EksaClusterProvider, target: str, why: str) -> None:
    problems = await problems_of(provider, pool(), version=target)

    assert len(problems) == 1
    assert "runs 1.30 (spec.kubernetesVersion)" in problems[0] and why in problems[0]
    assert "two minors behind the cluster, never ahead" in problems[0]
    with pytest.raises(ClusterProviderError, match=why):
        await ensure(provider, pool(), version=target)


async def test_an_autoscaled_source_group_and_overrides_of_what_bluegreen_sets_are_refused(
        provider: eksa.EksaClusterProvider, management: KubeEmulator) -> None:
    set_groups(management, [vsphere_group("md-0", "prod-md-0",
                                          autoscalingConfiguration={"minCount": 1, "maxCount": 5})])

    problems = await problems_of(provider, pool(overrides={"count": 1, "kubernetesVersion": "1.29",
                                                           "machineGroupRef": {"name": "x"}}))

    assert [problem.split(":")[0] for problem in problems] == [
        "spec.nodePools.pools[name=md-0].overrides.count",
        "spec.nodePools.pools[name=md-0].overrides.machineGroupRef",
        "spec.nodePools.pools[name=md-0].overrides.kubernetesVersion",
        "Cluster fleet/prod"]
    assert "has autoscalingConfiguration" in problems[3] and "scale the old one to 0" in problems[3]


async def test_a_missing_source_group_is_named_with_the_groups_there_are(
        provider: eksa.EksaClusterProvider) -> None:
    assert await problems_of(provider, pool(name="web"), source="web", new="web-green") == [
        "Cluster fleet/prod: spec.workerNodeGroupConfigurations has no worker group named web (groups: md-0, batch); "
        "check spec.nodePools.pools[].name"]


async def test_a_machine_config_for_a_group_without_one_is_refused(
        provider: eksa.EksaClusterProvider, management: KubeEmulator) -> None:
    set_groups(management, [{"name": "md-0", "count": 2}])

    problems = await problems_of(provider, pool(machineConfig={"name": "big-workers"}))

    assert problems == ["spec.nodePools.pools[name=md-0].machineConfig: worker group md-0 has no machineGroupRef "
                        "(VSphereDatacenterConfig groups have no machine config); remove machineConfig"]


async def test_the_spare_group_is_rewritten_in_place_and_a_group_scales_to_zero(
        provider: eksa.EksaClusterProvider, management: KubeEmulator) -> None:
    set_groups(management, [vsphere_group("md-0-green", "prod-md-0-green", count=0, labels={"old": "yes"}),
                            vsphere_group("md-0-blue", "prod-md-0-blue", count=3)])

    detail = await ensure(provider, pool(), source="md-0-blue", new="md-0-green", replicas=3)

    assert detail is not None and detail.startswith("rewrote worker group md-0-green")
    assert groups_of(management) == [vsphere_group("md-0-green", "prod-md-0-blue", count=3),
                                     vsphere_group("md-0-blue", "prod-md-0-blue", count=3)]
    assert (await provider.scale_pool(namespace=NAMESPACE, name=CLUSTER, pool="md-0-blue", replicas=0)
            == "scaled worker group md-0-blue of Cluster fleet/prod from count 3 to 0 "
               "(spec.workerNodeGroupConfigurations[].count)")
    assert group(management, "md-0-blue")["count"] == 0
    assert await provider.scale_pool(namespace=NAMESPACE, name=CLUSTER, pool="md-0-blue", replicas=0) is None
    with pytest.raises(ClusterProviderError, match="no worker group named md-9"):
        await provider.scale_pool(namespace=NAMESPACE, name=CLUSTER, pool="md-9", replicas=0)


async def test_worker_pools_count_the_machines_of_each_group_in_eksa_system(
        provider: eksa.EksaClusterProvider, management: KubeEmulator) -> None:
    def machine(name: str, deployment: str, *, cluster: str = CLUSTER, namespace: str = "eksa-system",
                node: str | None = None, deleting: bool = False) -> None:
        management.create(MACHINES, {"metadata": {
            "name": name, "namespace": namespace, "finalizers": ["machine.cluster.x-k8s.io"] if deleting else [],
            "labels": {"cluster.x-k8s.io/cluster-name": cluster, "cluster.x-k8s.io/deployment-name": deployment}}})
        if node:
            management.patch(MACHINES, namespace, name, {"status": {"nodeRef": {"name": node}}}, subresource="status")
        if deleting:
            management.delete(MACHINES, namespace, name)

    machine("prod-md-0-1", "prod-md-0", node="n1")
    machine("prod-md-0-2", "prod-md-0", node="n2", deleting=True)
    machine("prod-md-0-3", "prod-md-0")
    machine("prod-batch-1", "prod-batch", node="b1")
    machine("other-md-0-1", "other-md-0", cluster="other", node="o1")
    machine("stray-md-0-1", "prod-md-0", namespace=NAMESPACE, node="s1")

    pools = await provider.worker_pools(namespace=NAMESPACE, name=CLUSTER)

    assert pools == {
        "md-0": WorkerPool(name="md-0", replicas=2, machines=3, nodes=("n1", "n2"),
                           template="VSphereMachineConfig/prod-md-0"),
        "batch": WorkerPool(name="batch", replicas=2, machines=1, nodes=("b1",),
                            template="VSphereMachineConfig/prod-batch"),
    }
    assert await provider.worker_pools(namespace=NAMESPACE, name="gone") == {}


async def test_a_missing_cluster_is_an_error_that_says_what_to_check(provider: eksa.EksaClusterProvider) -> None:
    with pytest.raises(ClusterProviderError, match=r"Cluster fleet/gone does not exist; check spec\.cluster\.name"):
        await provider.ensure_pool(namespace=NAMESPACE, name="gone", pool=pool(), source="md-0", new="md-0-green",
                                   version="1.30", replicas=1)
    with pytest.raises(ClusterProviderError, match="Cluster fleet/gone does not exist"):
        await provider.scale_pool(namespace=NAMESPACE, name="gone", pool="md-0", replicas=0)


async def test_a_change_made_since_the_read_is_a_conflict_not_overwritten(management: KubeEmulator) -> None:
    class Interleaved(kubeclient.KubeClient):
        async def patch(self, resource: kubeclient.Resource, **kwargs: Any) -> dict[str, Any]:
            # eksctl (or GitOps) changes the batch group between bluegreen's read and its write.
            set_groups(management, [group(management, "md-0"), vsphere_group("batch", "prod-batch", count=7)])
            return await super().patch(resource, **kwargs)

    async with Interleaved.from_kubeconfig(management.kubeconfig()) as client:
        with pytest.raises(kubeclient.ConflictError):
            await eksa.EksaClusterProvider(client=client).scale_pool(namespace=NAMESPACE, name=CLUSTER, pool="md-0",
                                                                     replicas=0)

    assert group(management, "batch")["count"] == 7
    assert group(management, "md-0")["count"] == 2

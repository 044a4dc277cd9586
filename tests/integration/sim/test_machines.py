"""The simulated Cluster API and EKS-A controllers run worker pools: Machines on management, Nodes in the cluster."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.sim import capi, eksa, machines, nodes
from bluegreen.sim.kube import KubeEmulator
from bluegreen.sim.kube_store import KubeApiError
from tests.fixtures.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.nodepools]

NAMESPACE = "fleet"
PROVIDER_ID = re.compile(r"^aws:///us-west-2a/i-[0-9a-f]{17}$")
INTERNAL_IP = re.compile(r"^127\.0\.[0-9]{1,3}\.[0-9]{1,3}$")




class Recorder:
    """Every event of a resource from now on, in order: what happened between two looks is not lost."""

    def __init__(self, emulator: KubeEmulator, resource: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._watch = emulator.watch(resource)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        async for event in self._watch:
            self.events.append(event)

    def of(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        return [(kind, obj) for kind, obj in self.events if obj["metadata"]["name"] == name]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._watch.aclose()  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def recording(emulator: KubeEmulator, resource: str) -> AsyncIterator[Recorder]:
    recorder = Recorder(emulator, resource)
    try:
        yield recorder
    finally:
        await recorder.close()


def running(machine: dict[str, Any]) -> bool:
    return (machine.get("status") or {}).get("phase") == "Running"


def check_machines_and_nodes_agree(found: list[dict[str, Any]], workload: KubeEmulator) -> None:
    """Whenever one looks: a machine has a nodeRef exactly when it runs and its Node exists."""
    for machine in found:
        status = machine.get("status") or {}
        node = workload.get("v1/nodes", None, machine["metadata"]["name"])
        if machine["metadata"].get("deletionTimestamp"):
            continue
        if status.get("nodeRef"):
            assert status["phase"] == "Running" and node is not None, machine
        else:
            assert status.get("phase") == "Provisioning" and node is None, machine


# --- Cluster API --------------------------------------------------------------------------------


class CapiWorld:
    def __init__(self, management: KubeEmulator, controller: capi.CapiController, api_version: str) -> None:
        self.management = management
        self.controller = controller
        self.api_version = api_version
        self.resource = machines.machine_resource(api_version)

    def machines(self, cluster: str = "prod-blue", entry: str | None = None) -> list[dict[str, Any]]:
        selector = f"cluster.x-k8s.io/cluster-name={cluster}"
        if entry is not None:
            selector += f",topology.cluster.x-k8s.io/deployment-name={entry}"
        return self.management.list(self.resource, NAMESPACE, label_selector=selector)

    def set_workers(self, cluster: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        resource = capi.cluster_resource(self.api_version)
        return self.management.patch(resource, NAMESPACE, cluster,
                                     {"spec": {"topology": {"workers": {"machineDeployments": entries}}}})


@pytest.fixture(params=["v1beta2", "v1beta1"])
async def capi_world(request: pytest.FixtureRequest) -> AsyncIterator[CapiWorld]:
    api_version = str(request.param)
    management = KubeEmulator(name="management", kubernetes_version="1.31")
    await management.start()
    capi.install(management, api_version=api_version)
    management.create("v1/namespaces", {"metadata": {"name": NAMESPACE}})
    capi.seed_cluster(management, namespace=NAMESPACE, name="prod-blue", version="v1.30.4",
                      api_version=api_version, worker_replicas=3)
    controller = capi.CapiController(management=management, api_version=api_version, provision_delay=0.05,
                                     delete_delay=0.05, simulate_nodes=True, machine_delay=0.05)
    await controller.start()
    try:
        await asyncio.wait_for(controller.wait_ready(NAMESPACE, "prod-blue"), 10)
        yield CapiWorld(management, controller, api_version)
    finally:
        await controller.stop()
        await management.stop()


def md(name: str, replicas: int, cls: str = "default-worker") -> dict[str, Any]:
    return {"class": cls, "name": name, "replicas": replicas}


async def test_an_adopted_capi_cluster_has_its_workers_running_at_once(capi_world: CapiWorld) -> None:
    workload = capi_world.controller.clusters["prod-blue"]
    found = capi_world.machines()
    assert len(found) == 3
    for machine in found:
        meta, spec, status = machine["metadata"], machine["spec"], machine["status"]
        assert meta["labels"] == {"cluster.x-k8s.io/cluster-name": "prod-blue",
                                  "topology.cluster.x-k8s.io/deployment-name": "md-0"}
        assert re.fullmatch(r"prod-blue-md-0-[a-z0-9]{5}", meta["name"])
        assert "ownerReferences" not in meta
        assert (spec["clusterName"], spec["version"]) == ("prod-blue", "v1.30.4")
        assert status["phase"] == "Running"
        if capi_world.api_version == "v1beta1":
            assert status["nodeRef"] == {"apiVersion": "v1", "kind": "Node", "name": meta["name"]}
        else:
            assert status["nodeRef"] == {"name": meta["name"]}
        node = workload.get("v1/nodes", None, meta["name"])
        assert node is not None and nodes.node_ready(node)
        assert node["metadata"]["labels"][nodes.POOL_LABEL] == "md-0"
        assert node["spec"]["providerID"] == spec["providerID"]
        assert PROVIDER_ID.match(node["spec"]["providerID"])
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.30.4"
    addresses = [next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
                 for node in workload.list("v1/nodes")]
    assert len(set(addresses)) == 3 and all(INTERNAL_IP.match(address) for address in addresses)


async def test_capi_pools_follow_the_topology(capi_world: CapiWorld) -> None:
    management = capi_world.management
    workload = capi_world.controller.clusters["prod-blue"]
    async with recording(management, capi_world.resource) as machine_events, \
            recording(workload, "v1/nodes") as node_events:
        capi_world.set_workers("prod-blue", [md("md-0", 3), md("md-0-green", 3)])
        await eventually(lambda: len(capi_world.machines(entry="md-0-green")) == 3, what="3 new machines")
        check_machines_and_nodes_agree(capi_world.machines(), workload)
        await eventually(lambda: all(map(running, capi_world.machines())), what="6 machines running")
        await eventually(lambda: sum(nodes.node_ready(n) for n in workload.list("v1/nodes")) == 6,
                         what="6 nodes Ready")
        green = {m["metadata"]["name"] for m in capi_world.machines(entry="md-0-green")}
        assert {n["metadata"]["name"] for n in workload.list("v1/nodes", label_selector="bluegreen.io/pool=md-0-green")
                } == green
        for name in green:
            phases = [(obj.get("status") or {}).get("phase") for _, obj in machine_events.of(name)]
            assert phases[0] is None and "Provisioning" in phases and phases[-1] == "Running"

        # One more md-0 machine is the newest: scaling back to 3 takes it, not one of the first three.
        first = {m["metadata"]["name"] for m in capi_world.machines(entry="md-0")}
        capi_world.set_workers("prod-blue", [md("md-0", 4), md("md-0-green", 3)])
        await eventually(lambda: len(capi_world.machines(entry="md-0")) == 4, what="a 4th md-0 machine")
        [newest] = {m["metadata"]["name"] for m in capi_world.machines(entry="md-0")} - first
        await eventually(lambda: workload.get("v1/nodes", None, newest), what="its node")
        capi_world.set_workers("prod-blue", [md("md-0", 3), md("md-0-green", 3)])
        await eventually(lambda: newest not in {m["metadata"]["name"] for m in capi_world.machines()},
                         what="the newest machine gone")
        assert {m["metadata"]["name"] for m in capi_world.machines(entry="md-0")} == first
        assert workload.get("v1/nodes", None, newest) is None
        kinds = [(kind, (obj.get("status") or {}).get("phase"), bool(obj["metadata"].get("deletionTimestamp")))
                 for kind, obj in machine_events.of(newest)]
        assert ("MODIFIED", "Deleting", True) in kinds and kinds[-1][0] == "DELETED"
        assert [kind for kind, _ in node_events.of(newest)][-1] == "DELETED"

        # Scaling md-0 to 0 takes all of its machines and nodes, newest first; the new pool stays.
        by_age = [m["metadata"]["name"] for m in capi_world.machines(entry="md-0")]
        capi_world.set_workers("prod-blue", [md("md-0", 0), md("md-0-green", 3)])
        await eventually(lambda: not capi_world.machines(entry="md-0"), what="md-0 empty")
        assert not workload.list("v1/nodes", label_selector="bluegreen.io/pool=md-0")
        assert {n["metadata"]["name"] for n in workload.list("v1/nodes")} == green
        assert {m["metadata"]["name"] for m in capi_world.machines()} == green
        assert set(by_age) == first

        # An entry removed from the topology loses its machines too.
        capi_world.set_workers("prod-blue", [md("md-0", 0)])
        await eventually(lambda: not capi_world.machines(), what="no machines")
        assert workload.list("v1/nodes") == []


async def test_capi_scale_down_takes_machines_marked_for_deletion_then_the_newest(capi_world: CapiWorld) -> None:
    workload = capi_world.controller.clusters["prod-blue"]
    marked = capi_world.machines(entry="md-0")[0]["metadata"]["name"]
    capi_world.management.patch(capi_world.resource, NAMESPACE, marked,
                                {"metadata": {"annotations": {machines.DELETE_ANNOTATION: "yes"}}})
    before = {m["metadata"]["name"] for m in capi_world.machines()}
    capi_world.set_workers("prod-blue", [md("md-0", 2)])
    await eventually(lambda: len(capi_world.machines()) == 2, what="scaled to 2")
    assert {m["metadata"]["name"] for m in capi_world.machines()} == before - {marked}
    assert workload.get("v1/nodes", None, marked) is None


async def test_a_machine_deleted_by_hand_is_replaced(capi_world: CapiWorld) -> None:
    workload = capi_world.controller.clusters["prod-blue"]
    victim = capi_world.machines()[1]["metadata"]["name"]
    capi_world.management.delete(capi_world.resource, NAMESPACE, victim)
    await eventually(lambda: victim not in {m["metadata"]["name"] for m in capi_world.machines()},
                     what="the machine gone")
    await eventually(lambda: len(capi_world.machines()) == 3 and all(map(running, capi_world.machines())),
                     what="a replacement running")
    assert workload.get("v1/nodes", None, victim) is None
    assert len(workload.list("v1/nodes")) == 3


async def test_a_new_capi_cluster_provisions_its_workers_and_deleting_it_removes_them(capi_world: CapiWorld) -> None:
    management = capi_world.management
    manifest = capi.cluster_manifest(namespace=NAMESPACE, name="prod-green", version="v1.31.1",
                                     api_version=capi_world.api_version, worker_replicas=2)
    management.create(capi.cluster_resource(capi_world.api_version), manifest)
    green = await asyncio.wait_for(capi_world.controller.wait_ready(NAMESPACE, "prod-green"), 10)
    await eventually(lambda: len(capi_world.machines("prod-green")) == 2
                     and all(map(running, capi_world.machines("prod-green"))), what="green's machines")
    await eventually(lambda: sum(nodes.node_ready(n) for n in green.list("v1/nodes")) == 2, what="green's nodes")
    assert {m["spec"]["version"] for m in capi_world.machines("prod-green")} == {"v1.31.1"}
    assert len(capi_world.machines("prod-blue")) == 3  # each cluster's pools are its own

    management.delete(capi.cluster_resource(capi_world.api_version), NAMESPACE, "prod-green")
    await eventually(lambda: management.get(capi.cluster_resource(capi_world.api_version), NAMESPACE,
                                            "prod-green") is None, what="green deleted")
    assert capi_world.machines("prod-green") == []
    assert len(capi_world.machines("prod-blue")) == 3


async def test_capi_webhook_refuses_duplicate_and_unknown_machine_deployments(capi_world: CapiWorld) -> None:
    with pytest.raises(KubeApiError) as duplicate:
        capi_world.set_workers("prod-blue", [md("md-0", 3), md("md-0", 1)])
    assert duplicate.value.status == 422
    assert 'MachineDeployment with name "md-0" is defined more than once' in duplicate.value.message
    with pytest.raises(KubeApiError) as unknown:
        capi_world.set_workers("prod-blue", [md("md-0", 3), md("md-1", 1, cls="gpu-worker")])
    assert unknown.value.status == 422
    assert ('spec.topology.workers.machineDeployments[1].class: Invalid value: "gpu-worker"'
            in unknown.value.message)
    assert 'does not exist in ClusterClass "quick-start"' in unknown.value.message
    assert len(capi_world.machines()) == 3


# --- EKS Anywhere -------------------------------------------------------------------------------


class EksaWorld:
    resource = machines.machine_resource("v1beta1")

    def __init__(self, management: KubeEmulator, controller: eksa.EksaController) -> None:
        self.management = management
        self.controller = controller

    def machines(self, cluster: str = "prod-blue", group: str | None = None) -> list[dict[str, Any]]:
        selector = f"cluster.x-k8s.io/cluster-name={cluster}"
        if group is not None:
            selector += f",cluster.x-k8s.io/deployment-name={cluster}-{group}"
        return self.management.list(self.resource, "eksa-system", label_selector=selector)

    def cluster(self) -> dict[str, Any]:
        found = self.management.get(eksa.cluster_resource(), NAMESPACE, "prod-blue")
        assert found is not None
        return found

    def set_groups(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        return self.management.patch(eksa.cluster_resource(), NAMESPACE, "prod-blue",
                                     {"spec": {"workerNodeGroupConfigurations": groups}})

    def add_machine_config(self, name: str) -> None:
        self.management.create(eksa.resource("VSphereMachineConfig"), {
            "apiVersion": eksa.API_VERSION, "kind": "VSphereMachineConfig",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": dict(eksa.PROVIDERS["vsphere"].machine_spec)})


@pytest.fixture
async def eksa_world() -> AsyncIterator[EksaWorld]:
    management = KubeEmulator(name="management", kubernetes_version="1.31")
    await management.start()
    eksa.install(management)
    eksa.seed_cluster(management, namespace=NAMESPACE, name="prod-blue", version="1.30", worker_count=3)
    controller = eksa.EksaController(management=management, provision_delay=0.05, delete_delay=0.05,
                                     simulate_nodes=True, machine_delay=0.05)
    await controller.start()
    try:
        await asyncio.wait_for(controller.wait_ready(NAMESPACE, "prod-blue"), 10)
        yield EksaWorld(management, controller)
    finally:
        await controller.stop()
        await management.stop()


def group(name: str, count: int, config: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "count": count, "machineGroupRef": {"kind": "VSphereMachineConfig", "name": config},
            **extra}


async def test_eksa_worker_groups_get_machines_and_nodes(eksa_world: EksaWorld) -> None:
    workload = eksa_world.controller.clusters["prod-blue"]
    found = eksa_world.machines()
    assert len(found) == 3 and all(map(running, found))
    for machine in found:
        meta = machine["metadata"]
        assert meta["namespace"] == "eksa-system"
        assert meta["labels"] == {"cluster.x-k8s.io/cluster-name": "prod-blue",
                                  "cluster.x-k8s.io/deployment-name": "prod-blue-md-0"}
        assert re.fullmatch(r"prod-blue-md-0-[a-z0-9]{5}", meta["name"])
        assert machine["status"]["nodeRef"] == {"apiVersion": "v1", "kind": "Node", "name": meta["name"]}
        assert (machine["spec"]["clusterName"], machine["spec"]["version"]) == ("prod-blue", "v1.30.0")
    assert sorted(n["metadata"]["name"] for n in workload.list("v1/nodes") if nodes.node_ready(n)) == sorted(
        m["metadata"]["name"] for m in found)

    # A second group with its own machine config, pinned one minor below the cluster, brings 3 more.
    eksa_world.add_machine_config("prod-blue-md-0-green")
    eksa_world.set_groups([group("md-0", 3, "prod-blue-md-0"),
                           group("md-0-green", 3, "prod-blue-md-0-green", kubernetesVersion="1.29")])
    await eventually(lambda: len(eksa_world.machines(group="md-0-green")) == 3, what="3 new machines")
    check_machines_and_nodes_agree(eksa_world.machines(), workload)
    await eventually(lambda: sum(nodes.node_ready(n) for n in workload.list(
        "v1/nodes", label_selector="bluegreen.io/pool=md-0-green")) == 3, what="3 new nodes Ready")
    green = eksa_world.machines(group="md-0-green")
    assert {m["spec"]["version"] for m in green} == {"v1.29.0"}
    assert {workload.get("v1/nodes", None, m["metadata"]["name"])["status"]["nodeInfo"]["kubeletVersion"]  # type: ignore[index]
            for m in green} == {"v1.29.0"}

    # The old group scaled to 0 loses its machines and nodes.
    eksa_world.set_groups([group("md-0", 0, "prod-blue-md-0"),
                           group("md-0-green", 3, "prod-blue-md-0-green", kubernetesVersion="1.29")])
    await eventually(lambda: not eksa_world.machines(group="md-0"), what="md-0 empty")
    assert {n["metadata"]["name"] for n in workload.list("v1/nodes")} == {m["metadata"]["name"] for m in green}


async def test_eksa_group_naming_a_missing_machine_config_is_a_failure_and_keeps_the_machines(
        eksa_world: EksaWorld) -> None:
    before = {m["metadata"]["name"] for m in eksa_world.machines()}
    eksa_world.set_groups([group("md-0", 3, "prod-blue-md-0"), group("md-1", 2, "no-such-config")])
    await eventually(lambda: (eksa_world.cluster().get("status") or {}).get("failureMessage"), what="failure")
    message = eksa_world.cluster()["status"]["failureMessage"]
    assert 'VSphereMachineConfig.anywhere.eks.amazonaws.com "no-such-config" not found' in message
    assert "workerNodeGroupConfigurations[1].machineGroupRef" in message
    await eksa_world.controller.idle()
    assert {m["metadata"]["name"] for m in eksa_world.machines()} == before
    # Creating the config fixes it: the group gets its machines.
    eksa_world.add_machine_config("no-such-config")
    await eventually(lambda: len(eksa_world.machines(group="md-1")) == 2, what="md-1's machines")


@pytest.mark.parametrize(("pinned", "expected"), [
    ("1.31", 'spec.workerNodeGroupConfigurations[1].kubernetesVersion: Invalid value: "1.31": a worker node '
             "group cannot run a newer Kubernetes version than the cluster (1.30)"),
    ("1.27", 'spec.workerNodeGroupConfigurations[1].kubernetesVersion: Invalid value: "1.27": a worker node '
             "group may lag the cluster's kubernetesVersion (1.30) by at most 2 minor versions, not 3"),
])
async def test_eksa_webhook_refuses_worker_versions_outside_the_skew(eksa_world: EksaWorld, pinned: str,
                                                                     expected: str) -> None:
    with pytest.raises(KubeApiError) as refused:
        eksa_world.set_groups([group("md-0", 3, "prod-blue-md-0"),
                               group("md-1", 1, "prod-blue-md-0", kubernetesVersion=pinned)])
    assert refused.value.status == 422
    assert refused.value.message.endswith(expected)
    assert len(eksa_world.cluster()["spec"]["workerNodeGroupConfigurations"]) == 1


async def test_eksa_webhook_allows_two_minors_behind_and_refuses_duplicate_groups(eksa_world: EksaWorld) -> None:
    eksa_world.set_groups([group("md-0", 3, "prod-blue-md-0"),
                           group("md-1", 1, "prod-blue-md-0", kubernetesVersion="1.28")])
    await eventually(lambda: len(eksa_world.machines(group="md-1")) == 1, what="md-1's machine")
    with pytest.raises(KubeApiError) as duplicate:
        eksa_world.set_groups([group("md-0", 3, "prod-blue-md-0"), group("md-0", 1, "prod-blue-md-0")])
    assert duplicate.value.status == 422
    assert 'worker node group names must be unique: "md-0" is used more than once' in duplicate.value.message


# --- the address pool ---------------------------------------------------------------------------


def test_internal_ips_are_unique_and_stay_in_loopback() -> None:
    seen = [machines.next_internal_ip() for _ in range(600)]
    assert len(set(seen)) == 600
    assert all(INTERNAL_IP.match(address) for address in seen)
    assert all(0 < int(address.rsplit(".", 1)[1]) < 255 for address in seen)

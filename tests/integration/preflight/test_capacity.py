"""The capacity check against an emulated blue the size of a small production cluster.

Three control-plane nodes with their static pods, four workers (one cordoned), a
DaemonSet on every node, Deployments with sidecars and init containers, finished
Jobs and a Pending pod; 1,200 pods in all, so the pods are read in several pages.
The expected sums are worked out here from the objects created, not by the code
under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api.status import CapacityVerdict
from bluegreen.clusters.base import WorkerCapacity
from bluegreen.kube.client import KubeClient
from bluegreen.preflight import capacity
from bluegreen.sim.kube import KubeEmulator

pytestmark = [pytest.mark.integration, pytest.mark.preflight]

GiB = 2 ** 30
MiB = 2 ** 20
CONTROL_PLANE = ("cp-1", "cp-2", "cp-3")
WORKERS = ("w-1", "w-2", "w-3", "w-4")
CORDONED = "w-4"
WEB_REPLICAS = 1_170  # 250m/256Mi + a 50m/64Mi sidecar each
# Per worker: 8 CPU, 32 GiB machine; the kubelet keeps 300m and 1.5 GiB back.
MACHINE_CPU, MACHINE_MEMORY = 8_000, 32 * GiB
RESERVED_CPU, RESERVED_MEMORY = 300, 3 * GiB // 2


def pod(name: str, *, node: str | None, namespace: str = "shop", containers: list[dict[str, Any]],
        init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": containers}
    if init:
        spec["initContainers"] = init
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def box(name: str, cpu: str, memory: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:1.36", "resources": {"requests": {"cpu": cpu, "memory": memory}},
            **extra}


def run(cluster: KubeEmulator, obj: dict[str, Any], *, phase: str = "Running") -> None:
    cluster.create("v1/pods", obj)
    cluster.patch("v1/pods", obj["metadata"]["namespace"], obj["metadata"]["name"], {"status": {"phase": phase}},
                  subresource="status")


@pytest.fixture
async def blue() -> AsyncIterator[KubeEmulator]:
    cluster = KubeEmulator(name="prod-blue", kubernetes_version="1.30")
    await cluster.start()
    try:
        for namespace in ("shop", "monitoring"):
            cluster.create("v1/namespaces", {"metadata": {"name": namespace}})
        for name in CONTROL_PLANE:
            cluster.create("v1/nodes", {
                "metadata": {"name": name, "labels": {"node-role.kubernetes.io/control-plane": ""}},
                "status": {"capacity": {"cpu": "4", "memory": "16Gi"},
                           "allocatable": {"cpu": "3500m", "memory": "14Gi"}}})
            run(cluster, pod(f"etcd-{name}", node=name, namespace="kube-system",
                             containers=[box("etcd", "100m", "100Mi")]))
            run(cluster, pod(f"kube-apiserver-{name}", node=name, namespace="kube-system",
                             containers=[box("kube-apiserver", "250m", "512Mi")]))
        for name in WORKERS:
            cluster.create("v1/nodes", {
                "metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": "m5.2xlarge"}},
                "spec": {"unschedulable": name == CORDONED},
                "status": {"capacity": {"cpu": "8", "memory": "32Gi"},
                           "allocatable": {"cpu": "7700m", "memory": "30720Mi"}}})
        for name in (*CONTROL_PLANE, *WORKERS):  # a DaemonSet: one copy per node
            run(cluster, pod(f"node-exporter-{name}", node=name, namespace="monitoring",
                             containers=[box("exporter", "100m", "128Mi")]))
        for index in range(WEB_REPLICAS):
            run(cluster, pod(f"web-{index:04}", node=WORKERS[index % len(WORKERS)], containers=[
                box("web", "250m", "256Mi")], init=[box("proxy", "50m", "64Mi", restartPolicy="Always")]))
        # A migration init container bigger than its app: the pod counts 2 CPU, 1 GiB.
        run(cluster, pod("catalog-0", node="w-1", containers=[box("catalog", "500m", "1Gi")],
                         init=[box("migrate", "2", "512Mi")]))
        run(cluster, pod("search-0", node=None, containers=[box("search", "1", "4Gi")]), phase="Pending")
        for index in range(15):  # finished Jobs hold nothing
            run(cluster, pod(f"report-{index}", node="w-2", containers=[box("report", "4", "16Gi")]),
                phase="Succeeded" if index % 2 else "Failed")
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
async def client(blue: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(blue.kubeconfig()) as client:
        yield client


EXPECTED_CPU = len(WORKERS) * 100 + WEB_REPLICAS * (250 + 50) + 2_000 + 1_000
EXPECTED_MEMORY = len(WORKERS) * 128 * MiB + WEB_REPLICAS * (256 + 64) * MiB + GiB + 4 * GiB
SCHEDULABLE = len(WORKERS) - 1


async def test_blue_requests_and_allocatable_are_summed_over_pages(blue: KubeEmulator, client: KubeClient) -> None:
    green = WorkerCapacity(nodes=60, cpu_millis=60 * MACHINE_CPU, memory_bytes=60 * MACHINE_MEMORY,
                           detail="60 x m5.2xlarge")

    status = await capacity.check_capacity(green=green, blue=client)

    assert (status.blue_requested_cpu_millis, status.blue_requested_memory_bytes) == (EXPECTED_CPU, EXPECTED_MEMORY)
    assert (status.blue_allocatable_cpu_millis, status.blue_allocatable_memory_bytes) == (
        SCHEDULABLE * 7_700, SCHEDULABLE * 30 * GiB)
    assert status.verdict == CapacityVerdict.ENOUGH
    on_workers = len(WORKERS) + WEB_REPLICAS + 2  # node-exporters, web, catalog, the Pending search
    assert "1 cordoned, not counted" in status.message
    assert f"1 of {on_workers} pods are not scheduled yet" in status.message
    pods = 3 * 2 + 7 + WEB_REPLICAS + 2 + 15
    assert blue.request_counts[("list", "", "pods")] == -(-pods // capacity.PAGE_SIZE) > 1


async def test_green_with_the_machines_blue_uses_but_too_few_of_them_is_too_small(client: KubeClient) -> None:
    # Blue's pods ask for 354.4 CPU; 40 of blue's machines give 40 x 7.7 = 308 CPU to pods.
    green = WorkerCapacity(nodes=40, cpu_millis=40 * MACHINE_CPU, memory_bytes=40 * MACHINE_MEMORY,
                           detail="40 x m5.2xlarge")

    status = await capacity.check_capacity(green=green, blue=client)

    usable_cpu = 40 * (MACHINE_CPU - RESERVED_CPU)
    assert status.verdict == CapacityVerdict.TOO_SMALL
    short = (EXPECTED_CPU - usable_cpu) / 1000
    assert f"short by {short:g} CPU" in status.message
    assert "spec.target.overrides" in status.message


async def test_green_of_unknown_size_is_unknown_and_still_reports_blue(client: KubeClient) -> None:
    green = WorkerCapacity(nodes=4, cpu_millis=None, memory_bytes=None,
                           detail="DockerMachineTemplate prod-md-0 states no size")

    status = await capacity.check_capacity(green=green, blue=client)

    assert status.verdict == CapacityVerdict.UNKNOWN
    assert "DockerMachineTemplate prod-md-0 states no size" in status.message
    assert status.blue_requested_cpu_millis == EXPECTED_CPU

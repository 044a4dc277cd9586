"""The capacity check: pods' effective requests, the verdict and its message, and blue read from an emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api.status import CapacityVerdict
from bluegreen.clusters.base import WorkerCapacity
from bluegreen.kube.client import KubeClient
from bluegreen.preflight import capacity
from bluegreen.preflight.capacity import BlueUsage, Resources, judge, pod_requests
from bluegreen.sim.kube import KubeEmulator

GiB = 2 ** 30
MiB = 2 ** 20


def container(name: str, *, requests: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
              restart_policy: str | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    entry: dict[str, Any] = {"name": name, "image": "busybox:1.36", "resources": resources}
    if restart_policy:
        entry["restartPolicy"] = restart_policy
    return entry


def pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = (), **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": "web-1"},
            "spec": {"containers": list(containers), "initContainers": list(init), **spec}}


# --- a pod's effective request ---------------------------------------------------------------------


def test_containers_add_up_exactly_in_every_unit() -> None:
    found = pod_requests(pod(container("a", requests={"cpu": "0.1", "memory": "1.5Gi"}),
                             container("b", requests={"cpu": "200m", "memory": "512Mi"}),
                             container("c", requests={"cpu": 1, "memory": "1e9"}),
                             container("d", requests={"cpu": "1500u", "memory": "1M"})))
    assert found == Resources(cpu_millis=100 + 200 + 1000 + 2, memory_bytes=2 * GiB + 10 ** 9 + 10 ** 6)


def test_the_largest_init_container_counts_when_it_is_bigger_than_the_containers() -> None:
    found = pod_requests(pod(container("app", requests={"cpu": "500m", "memory": "1Gi"}),
                             init=(container("migrate", requests={"cpu": "2", "memory": "256Mi"}),
                                   container("warm", requests={"cpu": "1", "memory": "3Gi"}))))
    # Per resource: CPU from the first init container, memory from the second.
    assert found == Resources(cpu_millis=2000, memory_bytes=3 * GiB)


def test_sidecars_run_with_the_containers_and_with_the_init_containers_after_them() -> None:
    found = pod_requests(pod(
        container("app", requests={"cpu": "1", "memory": "1Gi"}),
        init=(container("setup", requests={"cpu": "1500m"}),
              container("proxy", requests={"cpu": "250m", "memory": "128Mi"}, restart_policy="Always"),
              container("seed", requests={"cpu": "2", "memory": "128Mi"})),
    ))
    # Running: app + proxy = 1250m; "seed" starts with proxy beside it: 2250m; "setup" ran alone: 1500m.
    assert found == Resources(cpu_millis=2250, memory_bytes=GiB + 128 * MiB)


def test_overhead_is_added_and_a_limit_without_a_request_is_the_request() -> None:
    found = pod_requests(pod(container("app", limits={"cpu": "1", "memory": "2Gi"}),
                             container("log", requests={"cpu": "100m"}, limits={"cpu": "1", "memory": "64Mi"}),
                             overhead={"cpu": "250m", "memory": "120Mi"}))
    assert found == Resources(cpu_millis=1000 + 100 + 250, memory_bytes=2 * GiB + 64 * MiB + 120 * MiB)


def test_a_pod_level_request_replaces_the_containers_for_its_resource_only() -> None:
    found = pod_requests(pod(container("app", requests={"cpu": "3", "memory": "1Gi"}),
                             resources={"requests": {"cpu": "2"}}))
    assert found == Resources(cpu_millis=2000, memory_bytes=GiB)


def test_a_pod_without_requests_requests_nothing() -> None:
    assert pod_requests(pod(container("app"))) == Resources()


def test_a_quantity_that_does_not_parse_names_the_pod_and_container() -> None:
    with pytest.raises(ValueError, match="pod shop/web-1 container app"):
        pod_requests(pod(container("app", requests={"cpu": "lots"})))


# --- the verdict -----------------------------------------------------------------------------------


BLUE_ALLOCATABLE = Resources(16_000, 64 * GiB)
NO_RESERVATION = Resources(0, 0)


def blue_usage(*, requested: Resources, allocatable: Resources = BLUE_ALLOCATABLE,
               reserved: Resources | None = NO_RESERVATION, workers: int = 4, cordoned: int = 0,
               unscheduled: int = 0) -> BlueUsage:
    return BlueUsage(workers=workers, cordoned=cordoned, allocatable=allocatable, reserved_per_worker=reserved,
                     requested=requested, pods=40, unscheduled_pods=unscheduled)


def green(nodes: int, cpu_millis: int | None, memory_bytes: int | None,
          detail: str = "3 x m5.xlarge") -> WorkerCapacity:
    return WorkerCapacity(nodes=nodes, cpu_millis=cpu_millis, memory_bytes=memory_bytes, detail=detail)


def test_green_that_holds_blue_requests_is_enough_and_says_the_spare_room() -> None:
    status = judge(green=green(3, 12_000, 48 * GiB), blue=blue_usage(requested=Resources(7_500, 20 * GiB)))

    assert status.verdict == CapacityVerdict.ENOUGH
    assert "12 CPU, 48 GiB" in status.message and "7.5 CPU, 20 GiB" in status.message
    assert "4.5 CPU, 28 GiB to spare" in status.message
    assert "16 CPU, 64 GiB allocatable" in status.message
    assert (status.green_cpu_millis, status.green_memory_bytes) == (12_000, 48 * GiB)
    assert (status.blue_requested_cpu_millis, status.blue_requested_memory_bytes) == (7_500, 20 * GiB)
    assert (status.blue_allocatable_cpu_millis, status.blue_allocatable_memory_bytes) == (16_000, 64 * GiB)


def test_green_smaller_than_blue_allocatable_but_above_its_requests_is_still_enough() -> None:
    status = judge(green=green(2, 4_000, 16 * GiB), blue=blue_usage(requested=Resources(3_000, 10 * GiB)))
    assert status.verdict == CapacityVerdict.ENOUGH


def test_green_short_of_cpu_is_too_small_and_the_message_says_by_how_much_and_the_fix() -> None:
    status = judge(green=green(2, 6_000, 32 * GiB), blue=blue_usage(requested=Resources(7_500, 20 * GiB)))

    assert status.verdict == CapacityVerdict.TOO_SMALL
    assert "6 CPU, 32 GiB" in status.message and "7.5 CPU, 20 GiB" in status.message
    assert "short by 1.5 CPU" in status.message and "memory" not in status.message.split("short by")[1].split(".")[0]
    assert "spec.target.overrides" in status.message
    assert "add workers or use bigger machines" in status.message


def test_green_short_of_both_names_both_shortfalls() -> None:
    status = judge(green=green(1, 2_000, 4 * GiB), blue=blue_usage(requested=Resources(2_500, 4 * GiB + 300 * MiB)))
    assert status.verdict == CapacityVerdict.TOO_SMALL
    assert "short by 0.5 CPU and 300 MiB of memory" in status.message


def test_a_tiny_shortfall_is_rounded_up_never_shown_as_zero() -> None:
    status = judge(green=green(1, 2_000, 4 * GiB), blue=blue_usage(requested=Resources(2_001, GiB)))
    assert status.verdict == CapacityVerdict.TOO_SMALL
    assert "short by 0.01 CPU" in status.message


def test_what_blue_kubelets_reserve_per_node_is_taken_off_green_machines() -> None:
    # 3 x 4 CPU machines hold 12 CPU; blue's kubelets keep 200m each back, so pods get 11.4 CPU.
    usage = blue_usage(requested=Resources(11_500, 8 * GiB), reserved=Resources(200, 512 * MiB))
    status = judge(green=green(3, 12_000, 48 * GiB), blue=usage)

    assert status.verdict == CapacityVerdict.TOO_SMALL
    assert "about 11.4 CPU, 46.5 GiB after what blue's kubelets reserve" in status.message
    assert "short by 0.1 CPU" in status.message
    assert status.green_cpu_millis == 12_000  # the figure is the machine size; the estimate is in the message


def test_green_without_machine_sizes_is_unknown_naming_the_side_and_why() -> None:
    status = judge(green=green(3, None, None, detail="DockerMachineTemplate prod-md-0 states no size"),
                   blue=blue_usage(requested=Resources(7_500, 20 * GiB)))

    assert status.verdict == CapacityVerdict.UNKNOWN
    assert "green's CPU and memory cannot be told: DockerMachineTemplate prod-md-0 states no size" in status.message
    assert "7.5 CPU, 20 GiB" in status.message
    assert status.green_cpu_millis is None and status.blue_requested_cpu_millis == 7_500


def test_a_known_shortfall_wins_over_an_unknown_size() -> None:
    status = judge(green=green(1, 1_000, None, detail="memory not stated"),
                   blue=blue_usage(requested=Resources(2_000, GiB)))
    assert status.verdict == CapacityVerdict.TOO_SMALL
    assert "memory unknown: memory not stated" in status.message


def test_cordoned_and_unscheduled_are_mentioned() -> None:
    status = judge(green=green(3, 12_000, 48 * GiB),
                   blue=blue_usage(requested=Resources(1_000, GiB), cordoned=1, unscheduled=2))
    assert "1 cordoned, not counted" in status.message
    assert "2 of 40 pods are not scheduled yet and count too" in status.message


# --- blue, read through the API ----------------------------------------------------------------------


@pytest.fixture
async def blue() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="prod-blue", kubernetes_version="1.30")
    await emulator.start()
    emulator.create("v1/namespaces", {"metadata": {"name": "shop"}})
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def client(blue: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(blue.kubeconfig()) as client:
        yield client


def add_node(cluster: KubeEmulator, name: str, *, cpu: str, memory: str, allocatable_cpu: str,
             allocatable_memory: str, control_plane: bool = False, unschedulable: bool = False) -> None:
    labels = {"node-role.kubernetes.io/control-plane": ""} if control_plane else {}
    cluster.create("v1/nodes", {
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": unschedulable},
        "status": {"capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                   "allocatable": {"cpu": allocatable_cpu, "memory": allocatable_memory, "pods": "110"}},
    })


def add_pod(cluster: KubeEmulator, name: str, *, cpu: str, memory: str, node: str | None,
            phase: str = "Running", namespace: str = "shop") -> None:
    spec: dict[str, Any] = {"containers": [container("main", requests={"cpu": cpu, "memory": memory})]}
    if node:
        spec["nodeName"] = node
    cluster.create("v1/pods", {"metadata": {"name": name, "namespace": namespace}, "spec": spec})
    cluster.patch("v1/pods", namespace, name, {"status": {"phase": phase}}, subresource="status")


async def test_blue_counts_workers_and_their_live_pods_only(blue: KubeEmulator, client: KubeClient) -> None:
    add_node(blue, "cp-1", cpu="4", memory="8Gi", allocatable_cpu="3800m", allocatable_memory="7Gi",
             control_plane=True)
    add_node(blue, "w-1", cpu="4", memory="16Gi", allocatable_cpu="3900m", allocatable_memory="15Gi")
    add_node(blue, "w-2", cpu="4", memory="16Gi", allocatable_cpu="3700m", allocatable_memory="15Gi")
    add_node(blue, "w-3", cpu="4", memory="16Gi", allocatable_cpu="3800m", allocatable_memory="15Gi",
             unschedulable=True)
    add_pod(blue, "etcd", cpu="1", memory="2Gi", node="cp-1", namespace="kube-system")
    add_pod(blue, "web-1", cpu="500m", memory="1Gi", node="w-1")
    add_pod(blue, "web-2", cpu="500m", memory="1Gi", node="w-3")
    add_pod(blue, "web-3", cpu="250m", memory="512Mi", node=None, phase="Pending")
    add_pod(blue, "backup-done", cpu="4", memory="8Gi", node="w-2", phase="Succeeded")
    add_pod(blue, "crashed", cpu="4", memory="8Gi", node="w-2", phase="Failed")

    usage = await capacity.measure_blue(client)

    assert usage.requested == Resources(1_250, 2 * GiB + 512 * MiB)
    assert (usage.workers, usage.cordoned, usage.pods, usage.unscheduled_pods) == (3, 1, 3, 1)
    assert usage.allocatable == Resources(3_900 + 3_700, 30 * GiB)
    # capacity - allocatable over the three workers: (100 + 300 + 200) / 3 m, 1 GiB each.
    assert usage.reserved_per_worker == Resources(200, GiB)


async def test_blue_pods_are_read_a_page_at_a_time(blue: KubeEmulator, client: KubeClient,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "PAGE_SIZE", 2)
    add_node(blue, "w-1", cpu="8", memory="32Gi", allocatable_cpu="8", allocatable_memory="32Gi")
    for index in range(5):
        add_pod(blue, f"web-{index}", cpu="100m", memory="100Mi", node="w-1")

    usage = await capacity.measure_blue(client)

    assert usage.requested == Resources(500, 500 * MiB)
    assert blue.request_counts[("list", "", "pods")] == 3


async def test_blue_unreadable_is_unknown_naming_blue(client: KubeClient, blue: KubeEmulator) -> None:
    await blue.stop()
    status = await capacity.check_capacity(green=green(3, 12_000, 48 * GiB), blue=client)

    assert status.verdict == CapacityVerdict.UNKNOWN
    assert status.message.startswith("blue's size could not be read:")
    assert status.green_cpu_millis == 12_000 and status.blue_requested_cpu_millis is None

"""sim.node_lb: a workload cluster's Ready nodes become servers of a real HAProxy, deleted ones go to maintenance."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bluegreen.api import spec
from bluegreen.nodepools.attachment import unattached
from bluegreen.sim import haproxy as sim_haproxy
from bluegreen.sim import node_lb, nodes
from bluegreen.sim.kube import KubeEmulator
from tests.fixtures.node_haproxy import eventually, node, slots

pytestmark = [pytest.mark.integration, pytest.mark.nodepools]

NODES = "v1/nodes"


@pytest.fixture
async def workload() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="workload", kubernetes_version="1.30")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


def balancer(process: sim_haproxy.HAProxyProcess) -> spec.NodeLoadBalancer:
    return spec.NodeLoadBalancer.model_validate({"haproxy": {"runtimeAPI": process.runtime_api, "backend": "nodes"}})


async def served(process: sim_haproxy.HAProxyProcess) -> dict[str, str]:
    """Address -> slot of every slot that is UP and out of maintenance."""
    return {address: name for name, (address, op_state, admin_state) in (await slots(process)).items()
            if op_state == "2" and not int(admin_state) & 0x01}


async def test_ready_nodes_are_registered_and_deleted_ones_go_to_maintenance(
    workload: KubeEmulator, node_haproxy: sim_haproxy.HAProxyProcess,
) -> None:
    node_lb.attach(workload, runtime_api=node_haproxy.runtime_api)
    workload.create(NODES, node("green-1", ip="127.0.1.11"))
    workload.create(NODES, node("green-2", ip="127.0.1.12"))
    listed = workload.list(NODES)

    await eventually(lambda: _none_left(node_haproxy, listed), what="both nodes attached")
    registered = await served(node_haproxy)
    assert set(registered) == {"127.0.1.11", "127.0.1.12"}
    slot = registered["127.0.1.11"]

    workload.delete(NODES, None, "green-1")

    await eventually(lambda: _in_maintenance(node_haproxy, slot), what="green-1's slot in maintenance")
    assert set(await served(node_haproxy)) == {"127.0.1.12"}
    assert await unattached([balancer(node_haproxy)], listed) == (
        f"haproxy nodes: node green-1 (127.0.1.11): server nodes/{slot} is in maintenance (MAINT)",)


async def test_a_node_is_registered_once_it_is_ready(
    workload: KubeEmulator, node_haproxy: sim_haproxy.HAProxyProcess,
) -> None:
    controller = node_lb.attach(workload, runtime_api=node_haproxy.runtime_api, register_delay=0.1)
    workload.create(NODES, node("green-1", ip="127.0.1.11", ready=False))
    workload.create(NODES, node("green-2", ip="127.0.1.12"))
    await eventually(lambda: _served_has(node_haproxy, "127.0.1.12"), what="green-2 registered")
    await controller.idle()
    assert "127.0.1.11" not in await served(node_haproxy)

    workload.patch(NODES, None, "green-1", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                   subresource="status")

    await eventually(lambda: _served_has(node_haproxy, "127.0.1.11"), what="green-1 registered")


async def test_a_paused_controller_registers_nothing_until_resumed(
    workload: KubeEmulator, node_haproxy: sim_haproxy.HAProxyProcess,
) -> None:
    controller = node_lb.attach(workload, runtime_api=node_haproxy.runtime_api)
    workload.create(NODES, node("old-1", ip="127.0.1.1"))
    await eventually(lambda: _served_has(node_haproxy, "127.0.1.1"), what="old-1 registered")
    controller.paused = True

    workload.create(NODES, node("green-1", ip="127.0.1.11"))
    workload.delete(NODES, None, "old-1")
    # Removals go on while paused; the pass that removes old-1 has seen green-1 too.
    await eventually(lambda: _served_is(node_haproxy, set()), what="old-1 removed")
    await controller.idle()
    assert await unattached([balancer(node_haproxy)], workload.list(NODES)) == (
        "haproxy nodes: node green-1 (127.0.1.11) is not a server of backend nodes",)

    controller.paused = False

    await eventually(lambda: _served_is(node_haproxy, {"127.0.1.11"}), what="green-1 registered after resuming")


async def test_a_node_waits_for_a_free_slot(workload: KubeEmulator, node_haproxy: sim_haproxy.HAProxyProcess) -> None:
    controller = node_lb.attach(workload, runtime_api=node_haproxy.runtime_api)
    for index in range(1, node_haproxy.node_slots + 1):
        workload.create(NODES, node(f"old-{index}", ip=f"127.0.1.{index}"))
    await eventually(lambda: _served_count(node_haproxy, node_haproxy.node_slots), what="every slot taken")

    workload.create(NODES, node("green-1", ip="127.0.1.11"))
    await eventually(lambda: _async(controller.unplaced == ("green-1",)), what="green-1 waiting for a slot")
    workload.delete(NODES, None, "old-2")

    await eventually(lambda: _served_has(node_haproxy, "127.0.1.11"), what="green-1 in old-2's slot")
    assert "127.0.1.2" not in await served(node_haproxy)
    assert controller.unplaced == ()


async def test_nodes_of_the_cluster_simulator_are_registered(
    workload: KubeEmulator, node_haproxy: sim_haproxy.HAProxyProcess,
) -> None:
    simulator = nodes.attach(workload)
    node_lb.attach(workload, runtime_api=node_haproxy.runtime_api)
    names = simulator.add_nodes("workers-green", 2)
    for index, name in enumerate(names, start=21):
        # add_nodes gives no address (yet): the kubelet's addresses, as it would report them.
        workload.patch(NODES, None, name, {"status": {"addresses": [{"type": "InternalIP",
                                                                     "address": f"127.0.1.{index}"}]}},
                       subresource="status")

    await eventually(lambda: _served_is(node_haproxy, {"127.0.1.21", "127.0.1.22"}), what="both nodes registered")
    assert await unattached([balancer(node_haproxy)], workload.list(NODES)) == ()


async def _none_left(process: sim_haproxy.HAProxyProcess, listed: list[dict[str, object]]) -> bool:
    return await unattached([balancer(process)], listed) == ()


async def _in_maintenance(process: sim_haproxy.HAProxyProcess, slot: str) -> bool:
    return bool(int((await slots(process))[slot][2]) & 0x01)


async def _served_has(process: sim_haproxy.HAProxyProcess, address: str) -> bool:
    return address in await served(process)


async def _served_is(process: sim_haproxy.HAProxyProcess, addresses: set[str]) -> bool:
    return set(await served(process)) == addresses


async def _served_count(process: sim_haproxy.HAProxyProcess, count: int) -> bool:
    return len(await served(process)) == count


async def _async(value: bool) -> bool:
    return value

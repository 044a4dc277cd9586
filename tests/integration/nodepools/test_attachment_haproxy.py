"""Attachment to an HAProxy backend, asked of a real haproxy: a server with the node's InternalIP must be UP."""

from __future__ import annotations

import socket

import pytest

from bluegreen.api import spec
from bluegreen.nodepools.attachment import LoadBalancerError, unattached
from bluegreen.sim import haproxy as sim_haproxy
from tests.fixtures.node_haproxy import node, set_slot, slots

pytestmark = [pytest.mark.integration, pytest.mark.nodepools]


def balancer(runtime_api: str, *, backend: str = "nodes") -> spec.NodeLoadBalancer:
    return spec.NodeLoadBalancer.model_validate({"haproxy": {"runtimeAPI": runtime_api, "backend": backend}})


NEW_NODES = [node("green-1", ip="127.0.1.11"), node("green-2", ip="127.0.1.12")]


async def test_nodes_with_an_up_and_ready_server_are_attached(node_haproxy: sim_haproxy.HAProxyProcess) -> None:
    await set_slot(node_haproxy, "node2", "127.0.1.11")
    await set_slot(node_haproxy, "node3", "127.0.1.12")

    assert await unattached([balancer(node_haproxy.runtime_api)], NEW_NODES) == ()


async def test_the_slots_start_disabled_so_no_node_is_attached(node_haproxy: sim_haproxy.HAProxyProcess) -> None:
    assert {state[2] for state in (await slots(node_haproxy)).values()} == {"5"}  # forced + configured MAINT

    lines = await unattached([balancer(node_haproxy.runtime_api)], NEW_NODES)

    assert lines == (
        "haproxy nodes: node green-1 (127.0.1.11) is not a server of backend nodes",
        "haproxy nodes: node green-2 (127.0.1.12) is not a server of backend nodes",
    )


@pytest.mark.parametrize(("state", "health", "reason"), [
    ("maint", None, "in maintenance (MAINT)"),
    ("drain", None, "draining (DRAIN)"),
    ("ready", "down", "DOWN (health checks failing)"),
    ("ready", "stopping", "soft-stopping (NOLB)"),
])
async def test_a_server_that_takes_no_traffic_is_named_with_its_state(
    node_haproxy: sim_haproxy.HAProxyProcess, state: str, health: str | None, reason: str
) -> None:
    await set_slot(node_haproxy, "node1", "127.0.1.11")
    await set_slot(node_haproxy, "node3", "127.0.1.12", state=state)
    if health is not None:
        assert not (await node_haproxy.command(f"set server nodes/node3 health {health}")).strip()

    lines = await unattached([balancer(node_haproxy.runtime_api)], NEW_NODES)

    assert lines == (f"haproxy nodes: node green-2 (127.0.1.12): server nodes/node3 is {reason}",)


async def test_one_ready_server_of_several_with_the_address_is_enough(
    node_haproxy: sim_haproxy.HAProxyProcess,
) -> None:
    await set_slot(node_haproxy, "node1", "127.0.1.11", state="maint")
    await set_slot(node_haproxy, "node2", "127.0.1.11")

    assert await unattached([balancer(node_haproxy.runtime_api)], NEW_NODES[:1]) == ()


async def test_a_node_without_an_internal_ip_is_named(node_haproxy: sim_haproxy.HAProxyProcess) -> None:
    lines = await unattached([balancer(node_haproxy.runtime_api)], [node("green-3", ip=None)])

    assert len(lines) == 1
    assert "node green-3 has no InternalIP" in lines[0]


async def test_the_unix_socket_answers_like_tcp(node_haproxy: sim_haproxy.HAProxyProcess) -> None:
    await set_slot(node_haproxy, "node1", "127.0.1.11")

    lines = await unattached([balancer(node_haproxy.runtime_api_unix)], NEW_NODES)

    assert lines == ("haproxy nodes: node green-2 (127.0.1.12) is not a server of backend nodes",)


async def test_an_unknown_backend_is_an_error_in_haproxys_words(node_haproxy: sim_haproxy.HAProxyProcess) -> None:
    with pytest.raises(LoadBalancerError, match=r"^haproxy workers: .*show servers state workers.*Can't find backend"):
        await unattached([balancer(node_haproxy.runtime_api, backend="workers")], NEW_NODES)


async def test_an_unreachable_runtime_api_is_an_error_naming_the_load_balancer() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"tcp://127.0.0.1:{probe.getsockname()[1]}"

    with pytest.raises(LoadBalancerError, match=r"^haproxy nodes: cannot reach .* Connection refused") as caught:
        await unattached([balancer(closed)], NEW_NODES)
    assert caught.value.load_balancer == "haproxy nodes"


async def test_no_load_balancer_means_nothing_to_wait_for() -> None:
    assert await unattached([], NEW_NODES) == ()


async def test_the_nodes_backend_only_adds_to_the_worlds_configuration(
    node_haproxy: sim_haproxy.HAProxyProcess,
) -> None:
    with_slots = node_haproxy.config_path.read_text()
    node_haproxy.node_slots = 0
    without = node_haproxy.render_config()

    assert with_slots.startswith(without)
    assert "server-template" not in without
    assert [line.strip() for line in with_slots[len(without):].strip().splitlines()] == [
        "backend nodes", "balance roundrobin", "server-template node 1-3 127.0.0.1:30080 disabled",
    ]


async def test_a_runtime_api_socket_at_operator_level_is_enough(node_haproxy: sim_haproxy.HAProxyProcess) -> None:
    await set_slot(node_haproxy, "node1", "127.0.1.11")

    lines = await unattached([balancer(node_haproxy.runtime_api_operator)], NEW_NODES)

    assert lines == ("haproxy nodes: node green-2 (127.0.1.12) is not a server of backend nodes",)

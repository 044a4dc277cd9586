"""The dead-man's switch: with traffic split and the operator dead, a failing green costs users nothing.

Given an upgrade holding green at 50 % (a pause for a human) through the
world's HAProxy, whose servers carry health checks (``check inter 500ms fall 2``)
and whose backend retries a refused connection elsewhere (``retries 3``,
``option redispatch``, ``retry-on conn-failure empty-response``), when the
operator is killed with SIGKILL and is not restarted, and then green's cluster
goes away (its Cluster is deleted, and the world stops green's ingress with it),
then HAProxy alone takes green out: green's weight stays 50 (nobody changed it),
green's server goes DOWN, every request is answered by blue, none fails, even
inside the detection window, where requests sent to green are redispatched.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bluegreen.kube.client import KubeClient
from bluegreen.sim import harness
from bluegreen.traffic import haproxy_runtime
from tests.integration.conftest import Operator, apply, upgrade_manifest, wait_for

# Traffic shares, latencies or timings are measured: run with the machine to itself (conftest).
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.without_prometheus, pytest.mark.alone]


def green_held_at_50(body: dict[str, object]) -> bool:
    status = body.get("status") or {}
    assert isinstance(status, dict)
    return status.get("phase") == "Paused" and status.get("weights") == {"blue": 50, "green": 50, "verified": True}


async def test_haproxy_sends_everyone_to_blue_when_green_fails_with_the_operator_dead(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    proxy = world.info["haproxy"]
    backend, green_server = proxy["backend"], proxy["green_server"]
    runtime = haproxy_runtime.RuntimeAPI(proxy["runtime_api"], timeout=5.0)

    async def green() -> haproxy_runtime.ServerState:
        servers = {server.name: server for server in await runtime.servers(backend)}
        return servers[green_server]

    # Given green at 50 %, held there by a pause without duration
    manifest = upgrade_manifest(world)
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    apply(world, manifest)
    await wait_for(management, manifest, green_held_at_50, timeout=90, operator=operator, what="green held at 50 %")
    # When the operator dies and stays dead
    operator.kill()
    split_from = time.time()
    await asyncio.sleep(2)
    split = await world.traffic(since=split_from)
    assert split["by_cluster"].get("prod-green", 0) > 0 and split["by_cluster"].get("prod-blue", 0) > 0, split
    assert (await green()).why_not_health_checked() is None, "the operator only shifted to a health-checked green"
    # and green's cluster goes away
    failed_at = time.time()
    harness.kubectl(world.kubeconfig, "delete", "clusters.cluster.x-k8s.io", "prod-green", "-n", "fleet",
                    "--wait=false")
    deadline = time.monotonic() + 15
    while (await green()).op_state != haproxy_runtime.OP_STOPPED:
        assert time.monotonic() < deadline, f"HAProxy never marked green DOWN: {await green()}"
        await asyncio.sleep(0.05)
    down_at = time.time()
    await asyncio.sleep(3)
    end = time.time()
    # Then HAProxy took green out by itself: its weight is untouched, its server DOWN
    server = await green()
    assert server.weight == 50 and server.why_no_traffic() == "DOWN (health checks failing)", server
    # and no request failed, inside the detection window or after it, and blue answered everything after it
    window = await world.traffic(since=failed_at, until=down_at)
    after = await world.traffic(since=down_at + 0.25, until=end)
    assert window["failed"] == 0, f"{window['failed']} failed during HAProxy's detection window: {window}"
    assert after["failed"] == 0 and after["by_cluster"].get("prod-green", 0) == 0, after
    assert after["by_cluster"].get("prod-blue", 0) >= 50, f"too few requests after detection to judge: {after}"
    assert (await world.traffic())["failed"] == 0
    # and the ClusterUpgrade still says what the dead operator last wrote: nothing acted but HAProxy
    body = await wait_for(management, manifest, lambda _: True, timeout=5)
    assert green_held_at_50(body), body.get("status")
    print(f"detection window {down_at - failed_at:.2f}s: {window['requests']} requests, {window['failed']} failed; "
          f"after: {after['requests']} requests, all to blue")

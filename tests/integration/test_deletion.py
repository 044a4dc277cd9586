"""Deleting a ClusterUpgrade mid-way, through the operator process, with real requests through real HAProxy.

Given an upgrade holding green at 50 % (a pause for a human), when the ClusterUpgrade is deleted, then
under spec.onDelete Rollback traffic goes back to blue without a failed request, green's Cluster and
Kustomizations are deleted, blue is intact and the ClusterUpgrade goes, even when the operator is
killed in the middle of the cleanup; under Leave, nothing changes but the ClusterUpgrade going.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bluegreen.api import spec as api
from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness
from tests.integration.conftest import Operator, apply, phase_is, upgrade_manifest, wait_for

# Traffic shares, latencies or timings are measured: run with the machine to itself (conftest).
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.without_prometheus, pytest.mark.alone]

CLUSTER_UPGRADES = Resource(api.GROUP, api.VERSION, api.PLURAL)
KUSTOMIZATIONS = Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")


def held_at_50(world: harness.WorldProcess, **spec: Any) -> dict[str, Any]:
    manifest = upgrade_manifest(world, **spec)
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 10}, {"setWeight": 25}, {"setWeight": 50}, {"pause": {}},
                                            {"setWeight": 100}]
    return manifest


async def reach_50(world: harness.WorldProcess, management: KubeClient, operator: Operator,
                   manifest: dict[str, Any]) -> None:
    apply(world, manifest)
    await wait_for(management, manifest, phase_is("Paused"), timeout=60, operator=operator, what="green held at 50%")


async def cluster_names(world: harness.WorldProcess) -> set[str]:
    return {cluster["name"] for cluster in (await world.control("GET", "/clusters"))["clusters"]}


async def kustomizations(management: KubeClient, cluster: str) -> list[dict[str, Any]]:
    return await management.list(KUSTOMIZATIONS, namespace="fleet", label_selector={"bluegreen.io/cluster": cluster})


def delete(world: harness.WorldProcess) -> None:
    harness.kubectl(world.kubeconfig, "delete", "clusterupgrade", "demo", "-n", "fleet", "--wait=false")


async def gone(management: KubeClient, *, timeout: float, operator: Operator,
               seen: list[dict[str, Any]] | None = None) -> float:
    """Wait until the ClusterUpgrade no longer exists; ``seen`` collects its statuses meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = await management.get(CLUSTER_UPGRADES, namespace="fleet", name="demo")
        if body is None:
            return time.time()
        if seen is not None:
            seen.append(body.get("status") or {})
        await asyncio.sleep(0.2)
    body = await management.get(CLUSTER_UPGRADES, namespace="fleet", name="demo") or {}
    raise AssertionError(f"the ClusterUpgrade is still there: {body.get('metadata')}\n{body.get('status')}\n"
                         f"{operator.log()[-4000:]}")


async def test_rollback_on_delete_survives_a_kill_mid_cleanup_and_leaves_blue_serving_everything(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given green at 50 %, and a gradual way back so that the cleanup takes a few seconds
    manifest = held_at_50(world, onDelete="Rollback", rollback={"mode": "Gradual", "stepInterval": "2s"})
    await reach_50(world, management, operator, manifest)
    blue_kustomizations = await kustomizations(management, "prod-blue")
    assert "prod-green" in await cluster_names(world) and await kustomizations(management, "prod-green")
    # When the ClusterUpgrade is deleted, and the operator is killed while traffic is on its way back
    delete(world)
    seen: list[dict[str, Any]] = []
    cleaning = await wait_for(management, manifest, lambda b: (b.get("status") or {}).get("phase") == "Deleting"
                              and b["status"]["weights"]["green"] < 50, timeout=30, operator=operator,
                              what="the cleanup to start moving traffic back")
    seen.append(cleaning["status"])
    operator.kill()
    await asyncio.sleep(0.5)
    operator.start()
    # Then a new operator process finishes the cleanup from status, and the ClusterUpgrade goes
    released = await gone(management, timeout=60, operator=operator, seen=seen)
    greens = [status["weights"]["green"] for status in seen if status.get("phase") == "Deleting"]
    assert greens == sorted(greens, reverse=True), f"traffic only ever moved back: {greens}"
    assert {status["deletion"]["fromPhase"] for status in seen if status.get("deletion")} == {"Shifting"}
    # and blue serves everything, with not one failed request
    await asyncio.sleep(1.5)
    after = await world.control("GET", f"/traffic?since={released}")
    assert after["by_cluster"].get("prod-blue", 0) > 0 and after["by_cluster"].get("prod-green", 0) == 0, after
    assert (await world.control("GET", "/traffic"))["failed"] == 0
    # and green's Cluster and Kustomizations are gone, blue's are as they were
    names = await cluster_names(world)
    assert "prod-green" not in names and "prod-blue" in names
    assert await kustomizations(management, "prod-green") == []
    assert [k["metadata"]["name"] for k in await kustomizations(management, "prod-blue")] == \
        [k["metadata"]["name"] for k in blue_kustomizations]
    assert "finalizer bluegreen.io/cleanup removed" in operator.log()


async def test_leave_on_delete_changes_nothing(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given green at 50 % under spec.onDelete Leave
    manifest = held_at_50(world, onDelete="Leave")
    await reach_50(world, management, operator, manifest)
    # When the ClusterUpgrade is deleted
    delete(world)
    released = await gone(management, timeout=20, operator=operator)
    # Then traffic is still split, green and its Kustomizations stay, blue too
    await asyncio.sleep(2)
    after = await world.control("GET", f"/traffic?since={released}")
    answered = sum(after["by_cluster"].values())
    assert answered >= 20, after
    green_share = 100 * after["by_cluster"].get("prod-green", 0) / answered
    assert 35 <= green_share <= 65, f"green still answers about half: {after}"
    assert await cluster_names(world) >= {"prod-blue", "prod-green"}
    assert await kustomizations(management, "prod-green") and await kustomizations(management, "prod-blue")
    assert (await world.control("GET", "/traffic"))["failed"] == 0

"""Which built-in group/versions the emulated API server serves follows its Kubernetes version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bluegreen.kube.client import KubeClient, NotFoundError, Resource
from bluegreen.sim.kube import KubeEmulator

FLOWCONTROL = "flowcontrol.apiserver.k8s.io"
PDBS_V1BETA1 = Resource("policy", "v1beta1", "poddisruptionbudgets")
PDBS_V1 = Resource("policy", "v1", "poddisruptionbudgets")


@pytest.fixture
async def emulator() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="test", kubernetes_version="1.24")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def client(emulator: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(emulator.kubeconfig()) as kube:
        yield kube


async def _versions(client: KubeClient, group: str) -> list[str]:
    """The group's served versions, preferred first, from its discovery document."""
    async with aiohttp.ClientSession() as http, http.get(f"{client.server}/apis/{group}") as response:
        if response.status == 404:
            return []
        body = await response.json()
    return [entry["version"] for entry in body["versions"]]


async def _kinds(client: KubeClient, group_version: str) -> set[str]:
    return {entry["kind"] for entry in await client.resources(group_version) or () if "/" not in entry["name"]}


@pytest.mark.parametrize(("version", "policy", "batch", "autoscaling", "flowcontrol"), [
    ("1.24", ["v1", "v1beta1"], ["v1", "v1beta1"], ["v2", "v1", "v2beta2", "v2beta1"], ["v1beta2", "v1beta1"]),
    ("1.25", ["v1"], ["v1"], ["v2", "v1", "v2beta2"], ["v1beta2", "v1beta1"]),
    ("1.32", ["v1"], ["v1"], ["v2", "v1"], ["v1"]),
])
async def test_discovery_by_kubernetes_version(
        emulator: KubeEmulator, client: KubeClient, version: str, policy: list[str], batch: list[str],
        autoscaling: list[str], flowcontrol: list[str]) -> None:
    emulator.kubernetes_version = version

    assert await _versions(client, "policy") == policy
    assert await _versions(client, "batch") == batch
    assert await _versions(client, "autoscaling") == autoscaling
    assert await _versions(client, FLOWCONTROL) == flowcontrol
    assert await _kinds(client, f"{FLOWCONTROL}/{flowcontrol[0]}") == {"FlowSchema", "PriorityLevelConfiguration"}
    assert "Ingress" in await _kinds(client, "networking.k8s.io/v1")
    assert (await client.server_version())["gitVersion"].startswith(f"v{version}.")


@pytest.mark.parametrize(("version", "expected"), [
    ("1.22", ["v1beta1"]), ("1.23", ["v1beta2", "v1beta1"]), ("1.26", ["v1beta3", "v1beta2"]),
    ("1.28", ["v1beta3", "v1beta2"]), ("1.29", ["v1", "v1beta3"]), ("1.31", ["v1", "v1beta3"]),
])
async def test_flowcontrol_windows(emulator: KubeEmulator, client: KubeClient, version: str,
                                   expected: list[str]) -> None:
    emulator.kubernetes_version = f"v{version}.4"
    assert await _versions(client, FLOWCONTROL) == expected


def _pdb(api_version: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}


async def test_one_object_is_served_at_every_served_version(client: KubeClient) -> None:
    await client.create(PDBS_V1BETA1, _pdb("policy/v1beta1"))

    through_v1 = await client.get(PDBS_V1, namespace="default", name="web")
    through_v1beta1 = await client.list(PDBS_V1BETA1)

    assert through_v1 is not None and through_v1["apiVersion"] == "policy/v1"
    assert [(obj["apiVersion"], obj["metadata"]["name"]) for obj in through_v1beta1] == [("policy/v1beta1", "web")]


async def test_an_upgrade_stops_serving_removed_versions_and_keeps_the_objects(
        emulator: KubeEmulator, client: KubeClient) -> None:
    await client.create(PDBS_V1BETA1, _pdb("policy/v1beta1"))

    emulator.kubernetes_version = "1.25"

    assert await client.resources("policy/v1beta1") is None
    with pytest.raises(NotFoundError):
        await client.list(PDBS_V1BETA1)
    with pytest.raises(NotFoundError):
        await client.create(PDBS_V1BETA1, dict(_pdb("policy/v1beta1"), metadata={"name": "db", "namespace": "default"}))
    assert [obj["metadata"]["name"] for obj in await client.list(PDBS_V1)] == ["web"]
    assert emulator.get("policy/v1/poddisruptionbudgets", "default", "web") is not None
    with pytest.raises(Exception, match="could not find the requested resource"):
        emulator.list("policy/v1beta1/poddisruptionbudgets")


async def test_a_watch_through_a_version_no_longer_served_ends(emulator: KubeEmulator, client: KubeClient) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def watch() -> None:
        async for event in client.watch(PDBS_V1BETA1, timeout_seconds=30):
            events.append(event)

    task = asyncio.create_task(watch())
    await client.create(PDBS_V1, _pdb("policy/v1"))
    for _ in range(100):
        if events:
            break
        await asyncio.sleep(0.01)
    emulator.kubernetes_version = "1.25"
    await asyncio.wait_for(task, 5)
    assert [(kind, obj["apiVersion"]) for kind, obj in events] == [("ADDED", "policy/v1beta1")]

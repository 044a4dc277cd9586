"""cordon/uncordon against an emulated API server: a merge patch of spec.unschedulable, only when it differs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bluegreen.kube.client import KubeClient, NotFoundError
from bluegreen.nodepools.drain import cordon, uncordon
from bluegreen.sim.kube import KubeEmulator


@pytest.fixture
async def cluster() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="workers", kubernetes_version="1.31")
    await emulator.start()
    emulator.create("v1/nodes", {"metadata": {"name": "old-1", "labels": {"pool": "blue"}}})
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def client(cluster: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(cluster.kubeconfig()) as client:
        yield client


def unschedulable(cluster: KubeEmulator) -> object:
    found = cluster.get("v1/nodes", None, "old-1")
    assert found is not None
    return found.get("spec", {}).get("unschedulable")


def node_writes(cluster: KubeEmulator) -> int:
    return cluster.request_counts[("patch", "", "nodes")]


async def test_cordon_marks_the_node_unschedulable_once(cluster: KubeEmulator, client: KubeClient) -> None:
    assert await cordon(client, "old-1") is True
    assert unschedulable(cluster) is True
    assert node_writes(cluster) == 1
    assert await cordon(client, "old-1") is False
    assert unschedulable(cluster) is True
    assert node_writes(cluster) == 1


async def test_uncordon_makes_it_schedulable_again_and_leaves_the_rest(
        cluster: KubeEmulator, client: KubeClient) -> None:
    await cordon(client, "old-1")
    assert await uncordon(client, "old-1") is True
    assert not unschedulable(cluster)
    assert await cordon(client, "old-1", unschedulable=False) is False
    found = cluster.get("v1/nodes", None, "old-1")
    assert found is not None and found["metadata"]["labels"] == {"pool": "blue"}


async def test_a_missing_node_is_not_found(client: KubeClient) -> None:
    with pytest.raises(NotFoundError, match="old-9"):
        await cordon(client, "old-9")

"""Cluster API Machines behind worker pools: the served version, node names in creation order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.clusters import machines
from bluegreen.clusters.base import ClusterProviderError
from bluegreen.kube import client as kubeclient
from bluegreen.sim.kube import KubeEmulator


def machine(name: str, created: str, node: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created},
            "status": {"nodeRef": {"name": node}} if node else {"phase": "Provisioning"}}


def test_node_names_follow_the_machines_creation_then_name_and_skip_machines_without_a_node() -> None:
    found = [machine("md-0-zzz", "2026-03-01T10:00:00Z", "node-1"),
             machine("md-0-bbb", "2026-03-01T10:00:05Z", "node-3"),
             machine("md-0-aaa", "2026-03-01T10:00:05Z", "node-2"),
             machine("md-0-new", "2026-03-01T10:00:09Z")]

    assert machines.node_names(reversed(found)) == ("node-1", "node-2", "node-3")


@pytest.fixture
async def emulator() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="management")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.mark.parametrize("served", [("v1beta2",), ("v1beta1",), ("v1beta1", "v1beta2")])
async def test_machines_are_read_at_the_served_version_v1beta2_first(emulator: KubeEmulator,
                                                                     served: tuple[str, ...]) -> None:
    for version in served:
        emulator.add_resource(group="cluster.x-k8s.io", version=version, plural="machines", kind="Machine")
    emulator.create(f"cluster.x-k8s.io/{served[0]}/machines", {"metadata": {
        "name": "m-1", "namespace": "default", "labels": {"cluster.x-k8s.io/cluster-name": "prod"}}})

    async with kubeclient.KubeClient.from_kubeconfig(emulator.kubeconfig()) as client:
        lister = machines.Machines(client=client)
        found = await lister.select(namespace="default", selector={"cluster.x-k8s.io/cluster-name": "prod"})

        assert await lister.api_version() == ("v1beta2" if "v1beta2" in served else "v1beta1")
        assert [item["metadata"]["name"] for item in found] == ["m-1"]
        assert await lister.select(namespace="default", selector={"cluster.x-k8s.io/cluster-name": "other"}) == []


async def test_a_management_cluster_without_machines_is_an_error_asked_again_later(emulator: KubeEmulator) -> None:
    async with kubeclient.KubeClient.from_kubeconfig(emulator.kubeconfig()) as client:
        lister = machines.Machines(client=client)
        with pytest.raises(ClusterProviderError, match="serves no Cluster API Machines"):
            await lister.api_version()

        emulator.add_resource(group="cluster.x-k8s.io", version="v1beta1", plural="machines", kind="Machine")
        assert await lister.api_version() == "v1beta1"

"""The simulated StatefulSet/Deployment controller: status follows spec.replicas one pod at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import workloads_ctl
from bluegreen.sim.kube import KubeEmulator
from tests.fixtures.fleet import eventually


@pytest.fixture
async def cluster() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="prod-blue", kubernetes_version="1.31")
    await emulator.start()
    workloads_ctl.attach(emulator, pod_delay=0.01)
    try:
        yield emulator
    finally:
        await emulator.stop()


def manifest(kind: str, replicas: int) -> dict[str, Any]:
    labels = {"app": "es"}
    spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": labels},
                            "template": {"metadata": {"labels": labels},
                                         "spec": {"containers": [{"name": "es", "image": "es:8"}]}}}
    if kind == "StatefulSet":
        spec["serviceName"] = "es"
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "es", "namespace": "default"}, "spec": spec}


async def follow(watch: AsyncIterator[tuple[str, dict[str, Any]]], seen: list[tuple[int, int]]) -> None:
    async for _, obj in watch:
        status = obj.get("status") or {}
        step = (int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0))
        if not seen or seen[-1] != step:
            seen.append(step)


async def settled(cluster: KubeEmulator, resource: str, replicas: int) -> bool:
    found = cluster.get(resource, "default", "es") or {}
    status = found.get("status") or {}
    return (status.get("observedGeneration") == found["metadata"]["generation"]
            and (status.get("replicas"), status.get("readyReplicas")) == (replicas, replicas))


@pytest.mark.parametrize(("kind", "resource"), [("StatefulSet", workloads_ctl.STATEFULSETS),
                                                ("Deployment", workloads_ctl.DEPLOYMENTS)])
async def test_replicas_come_one_ready_pod_at_a_time_and_go_the_same_way(
        cluster: KubeEmulator, kind: str, resource: str) -> None:
    seen: list[tuple[int, int]] = []
    watcher = asyncio.create_task(follow(cluster.watch(resource), seen))  # watching before the create
    try:
        cluster.create(resource, manifest(kind, 3))
        await eventually(lambda: settled(cluster, resource, 3), what="3 ready")
        async with KubeClient.from_kubeconfig(cluster.kubeconfig()) as client:
            await client.patch(Resource("apps", "v1", resource.rsplit("/", 1)[1]), namespace="default", name="es",
                               body={"spec": {"replicas": 0}}, subresource="scale")
        await eventually(lambda: settled(cluster, resource, 0), what="none left")
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    assert seen == [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3),
                    (3, 2), (2, 2), (2, 1), (1, 1), (1, 0), (0, 0)]

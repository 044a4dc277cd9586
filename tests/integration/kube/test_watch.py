"""The client's watch and the per-upgrade remote watches, against real emulators over HTTP."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest
import yaml

from bluegreen.kube import client as kubeclient
from bluegreen.kube.remote import RemoteClients
from bluegreen.remote_watch import RemoteWatches
from bluegreen.sim.kube import KubeEmulator
from bluegreen.workloads.base import RemoteWatch

pytestmark = pytest.mark.integration

CONFIGMAPS = kubeclient.Resource("", "v1", "configmaps")


@pytest.fixture
async def emulators() -> AsyncIterator[tuple[KubeEmulator, KubeEmulator]]:
    management, workload = KubeEmulator(name="management"), KubeEmulator(name="green")
    await management.start()
    await workload.start()
    try:
        yield management, workload
    finally:
        await workload.stop()
        await management.stop()


def configmap(name: str, value: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"v": value}}


async def test_watch_sends_current_objects_then_changes_in_order(
    emulators: tuple[KubeEmulator, KubeEmulator]
) -> None:
    _, workload = emulators
    workload.create("v1/configmaps", configmap("before", "1"))
    async with kubeclient.KubeClient.from_kubeconfig(workload.kubeconfig()) as client:
        seen: list[tuple[str, str, str]] = []

        async def follow() -> None:
            async for kind, obj in client.watch(CONFIGMAPS, namespace="default", timeout_seconds=5):
                if kind == "BOOKMARK":
                    continue
                seen.append((kind, obj["metadata"]["name"], obj["data"]["v"]))
                if len(seen) == 3:
                    return

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        await client.create(CONFIGMAPS, configmap("after", "1"), namespace="default")
        await client.patch(CONFIGMAPS, namespace="default", name="after", body={"data": {"v": "2"}})
        await asyncio.wait_for(task, timeout=5)
    assert seen == [("ADDED", "before", "1"), ("ADDED", "after", "1"), ("MODIFIED", "after", "2")]


async def test_remote_watches_wake_on_a_change_in_a_workload_cluster(
    emulators: tuple[KubeEmulator, KubeEmulator]
) -> None:
    management, workload = emulators
    secret = base64.b64encode(yaml.safe_dump(workload.kubeconfig()).encode()).decode()
    management.create("v1/secrets", {"metadata": {"name": "green-kubeconfig", "namespace": "default"},
                                     "data": {"value": secret}})
    wake = asyncio.Event()
    async with kubeclient.KubeClient.from_kubeconfig(management.kubeconfig()) as client:
        remote = RemoteClients(client)
        watches = RemoteWatches(remote, wake, label="test")
        target = RemoteWatch(kubeconfig=("default", "green-kubeconfig", "value"), resource=CONFIGMAPS,
                             namespace="default")
        try:
            watches.ensure([target])
            await asyncio.sleep(0.5)  # the stream is open: the initial (empty) state has been sent
            wake.clear()
            workload.create("v1/configmaps", configmap("applied-by-flux", "1"))
            await asyncio.wait_for(wake.wait(), timeout=5)
            # no longer wanted: stopped, and a change wakes nobody
            watches.ensure([])
            await asyncio.sleep(0.2)
            wake.clear()
            workload.patch("v1/configmaps", "default", "applied-by-flux", {"data": {"v": "2"}})
            await asyncio.sleep(0.5)
            assert not wake.is_set()
        finally:
            await watches.close()
            await remote.close()

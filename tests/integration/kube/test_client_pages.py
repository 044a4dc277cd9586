"""KubeClient.pages against the strict API emulator: a list read a page at a time, with a field selector."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim.kube import KubeEmulator

pytestmark = pytest.mark.integration

PODS = Resource("", "v1", "pods")


@pytest.fixture
async def emulator() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="test")
    await emulator.start()
    try:
        for index in range(7):
            name = f"pod-{index}"
            emulator.create("v1/pods", {"metadata": {"name": name, "namespace": "default"},
                                        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}})
            emulator.patch("v1/pods", "default", name,
                           {"status": {"phase": "Succeeded" if index % 3 == 0 else "Running"}}, subresource="status")
        yield emulator
    finally:
        await emulator.stop()


async def test_pages_hold_at_most_limit_items_and_together_all(emulator: KubeEmulator) -> None:
    async with KubeClient.from_kubeconfig(emulator.kubeconfig()) as client:
        pages = [page async for page in client.pages(PODS, namespace="default", limit=3)]
        everything = await client.list(PODS, namespace="default")

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [pod["metadata"]["name"] for page in pages for pod in page] == [
        pod["metadata"]["name"] for pod in everything]
    assert {(pod["apiVersion"], pod["kind"]) for page in pages for pod in page} == {("v1", "Pod")}


async def test_a_field_selector_is_applied_by_the_server(emulator: KubeEmulator) -> None:
    async with KubeClient.from_kubeconfig(emulator.kubeconfig()) as client:
        pages = [page async for page in client.pages(PODS, field_selector="status.phase!=Succeeded", limit=2)]

    assert sorted(pod["metadata"]["name"] for page in pages for pod in page) == [
        "pod-1", "pod-2", "pod-4", "pod-5"]

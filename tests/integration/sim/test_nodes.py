"""The emulated world's side of node drains: the Eviction API, PDB status, scheduler, kubelets, kubectl drain."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from bluegreen.kube.client import ApiError, EvictionBlockedError, KubeClient, NotFoundError
from bluegreen.sim import nodes
from bluegreen.sim.kube import KubeEmulator
from tests.fixtures.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.nodepools]

PDBS = "policy/v1/poddisruptionbudgets"




@pytest.fixture
async def cluster() -> AsyncIterator[tuple[KubeEmulator, nodes.ClusterSimulator]]:
    emulator = KubeEmulator(name="workload", kubernetes_version="1.30")
    await emulator.start()
    try:
        yield emulator, nodes.attach(emulator, pods_per_node=5)
    finally:
        await emulator.stop()


def deployment(name: str, replicas: int, *, empty_dir: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "web", "image": "nginx"}]}
    if empty_dir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def pods_of(emulator: KubeEmulator, app: str) -> list[dict[str, Any]]:
    return emulator.list("v1/pods", "default", label_selector=f"app={app}")


def ready_pods(emulator: KubeEmulator, app: str) -> list[dict[str, Any]]:
    return [pod for pod in pods_of(emulator, app) if not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", ()))]


def pdb(emulator: KubeEmulator, name: str) -> dict[str, Any]:
    obj = emulator.get(PDBS, "default", name)
    assert obj is not None
    return obj


async def ready_cluster(emulator: KubeEmulator, sim: nodes.ClusterSimulator, *, replicas: int = 3,
                        min_available: int | str = 2) -> None:
    sim.add_nodes("blue", 3)
    emulator.create("apps/v1/deployments", deployment("web", replicas))
    emulator.create(PDBS, {"metadata": {"name": "web", "namespace": "default"},
                           "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}}})
    await eventually(lambda: len(ready_pods(emulator, "web")) == replicas, what="replicas ready")
    await eventually(lambda: pdb(emulator, "web").get("status", {}).get("currentHealthy") == replicas,
                     what="PDB status")


async def test_pdb_status_follows_pods(cluster: tuple[KubeEmulator, nodes.ClusterSimulator]) -> None:
    emulator, sim = cluster
    await ready_cluster(emulator, sim, min_available="50%")
    status = pdb(emulator, "web")["status"]
    assert (status["expectedPods"], status["desiredHealthy"], status["currentHealthy"]) == (3, 2, 3)
    assert status["disruptionsAllowed"] == 1
    assert status["observedGeneration"] == pdb(emulator, "web")["metadata"]["generation"]
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("DisruptionAllowed", "True", "SufficientPods")]
    emulator.patch(PDBS, "default", "web", {"spec": {"minAvailable": None, "maxUnavailable": 0}})
    await eventually(lambda: pdb(emulator, "web")["status"]["desiredHealthy"] == 3, what="maxUnavailable 0")
    status = pdb(emulator, "web")["status"]
    assert status["disruptionsAllowed"] == 0
    assert status["conditions"][0]["reason"] == "InsufficientPods"


async def test_eviction_over_http(cluster: tuple[KubeEmulator, nodes.ClusterSimulator]) -> None:
    emulator, sim = cluster
    await ready_cluster(emulator, sim)
    first, second, _ = sorted(pod["metadata"]["name"] for pod in pods_of(emulator, "web"))
    async with KubeClient.from_kubeconfig(emulator.kubeconfig()) as client:
        await client.evict("default", first)
        evicted = emulator.get("v1/pods", "default", first)
        assert evicted is None or evicted["metadata"].get("deletionTimestamp")
        # The eviction spent the budget's only disruption: a second one at once is refused.
        with pytest.raises(EvictionBlockedError) as blocked:
            await client.evict("default", second)
        assert blocked.value.status == 429
        assert blocked.value.message == "Cannot evict pod as it would violate the pod's disruption budget."
        assert blocked.value.causes and blocked.value.causes[0].startswith("The disruption budget web needs 2 healthy")
        untouched = emulator.get("v1/pods", "default", second)
        assert untouched is not None and untouched["metadata"].get("deletionTimestamp") is None
        with pytest.raises(NotFoundError):
            await client.evict("default", "no-such-pod")
        # Once the replacement is Ready the budget allows one again.
        await eventually(lambda: pdb(emulator, "web")["status"]["disruptionsAllowed"] == 1, what="budget back")
        await client.evict("default", second)

        emulator.create(PDBS, {"metadata": {"name": "web-too", "namespace": "default"},
                               "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}})
        victim = ready_pods(emulator, "web")[0]["metadata"]["name"]
        with pytest.raises(ApiError) as several:
            await client.evict("default", victim)
        assert several.value.status == 500
        assert several.value.message == ("This pod has more than one PodDisruptionBudget, which the eviction "
                                         "subresource does not support.")


async def test_evicted_pod_replaced_on_another_schedulable_node(
        cluster: tuple[KubeEmulator, nodes.ClusterSimulator]) -> None:
    emulator, sim = cluster
    await ready_cluster(emulator, sim)
    pod = pods_of(emulator, "web")[0]
    drained = pod["spec"]["nodeName"]
    blue = [node["metadata"]["name"] for node in emulator.list("v1/nodes")]
    cordoned = next(name for name in blue if name != drained)
    for name in (drained, cordoned):
        emulator.patch("v1/nodes", None, name, {"spec": {"unschedulable": True}})
    before = {p["metadata"]["name"] for p in pods_of(emulator, "web")}
    emulator.evict("default", pod["metadata"]["name"])
    await eventually(lambda: emulator.get("v1/pods", "default", pod["metadata"]["name"]) is None,
                     what="evicted pod gone")
    await eventually(lambda: len(ready_pods(emulator, "web")) == 3, what="replacement ready")
    placed = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in ready_pods(emulator, "web")}
    replacements = set(placed) - before
    assert len(replacements) == 1
    open_node = next(name for name in blue if name not in (drained, cordoned))
    assert placed[replacements.pop()] == open_node

    # Cordoned nodes keep what they run but get nothing new.
    emulator.patch("apps/v1/deployments", "default", "web", {"spec": {"replicas": 6}})
    await eventually(lambda: len(ready_pods(emulator, "web")) == 6, what="scaled up")
    hosts = {p["spec"]["nodeName"] for p in ready_pods(emulator, "web") if p["metadata"]["name"] not in before}
    assert hosts == {open_node}


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
async def test_kubectl_drain(cluster: tuple[KubeEmulator, nodes.ClusterSimulator], tmp_path: pathlib.Path) -> None:
    emulator, sim = cluster
    await ready_cluster(emulator, sim, min_available=2)
    emulator.create("apps/v1/deployments", deployment("scratch", 1, empty_dir=True))
    emulator.create("apps/v1/daemonsets", {
        "metadata": {"name": "agent", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"containers": [{"name": "agent", "image": "agent"}]}}}})
    await eventually(lambda: len(ready_pods(emulator, "scratch")) == 1, what="scratch ready")
    node = ready_pods(emulator, "scratch")[0]["spec"]["nodeName"]
    sim.add_mirror_pod(node, "etcd")
    await eventually(lambda: len([p for p in emulator.list("v1/pods", "kube-system")
                                  if p.get("status", {}).get("phase") == "Running"]) == 4, what="system pods")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(emulator.kubeconfig()))
    assert KUBECTL is not None
    process = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), "drain", node, "--ignore-daemonsets",
        "--delete-emptydir-data", "--timeout=60s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert f"node/{node} drained" in text
    drained = emulator.get("v1/nodes", None, node)
    assert drained is not None and drained["spec"]["unschedulable"] is True
    left = [p for p in emulator.list("v1/pods") if p["spec"].get("nodeName") == node]
    kinds = sorted((p["metadata"].get("ownerReferences") or [{}])[0].get("kind") for p in left)
    assert kinds == ["DaemonSet", "Node"]  # the agent and the mirror pod stay
    await eventually(lambda: len(ready_pods(emulator, "web")) == 3, what="web back to 3")
    assert all(p["spec"]["nodeName"] != node for p in ready_pods(emulator, "web"))


async def test_policy_v1beta1_eviction_on_old_cluster() -> None:
    emulator = KubeEmulator(name="old", kubernetes_version="1.24")
    await emulator.start()
    try:
        emulator.create("v1/pods", {"metadata": {"name": "lone", "namespace": "default", "labels": {"a": "b"}},
                                    "spec": {"containers": [{"name": "c", "image": "i"}]}})
        async with KubeClient.from_kubeconfig(emulator.kubeconfig()) as client:
            body = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "lone"}}
            await client._send("POST", "/api/v1/namespaces/default/pods/lone/eviction", body=body)
        assert emulator.get("v1/pods", "default", "lone") is None
    finally:
        await emulator.stop()
    emulator = KubeEmulator(name="new", kubernetes_version="1.25")
    await emulator.start()
    try:
        emulator.create("v1/pods", {"metadata": {"name": "lone", "namespace": "default"},
                                    "spec": {"containers": [{"name": "c", "image": "i"}]}})
        async with KubeClient.from_kubeconfig(emulator.kubeconfig()) as client:
            body = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "lone"}}
            with pytest.raises(ApiError) as refused:
                await client._send("POST", "/api/v1/namespaces/default/pods/lone/eviction", body=body)
            assert refused.value.status == 400
    finally:
        await emulator.stop()

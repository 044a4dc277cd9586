"""The live scan against the strict API emulator serving old group/versions next to the current ones.

The emulator serves only current versions by default; each test registers the
removed versions a 1.24 cluster still serves (``add_resource`` with the same
group and plural shares storage with the current version, as on a real server).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest

from bluegreen.kube.client import ApiError, KubeClient, Resource
from bluegreen.preflight.live import scan_live
from bluegreen.sim.kube import KubeEmulator

CRONJOBS_V1BETA1 = Resource("batch", "v1beta1", "cronjobs")
CRONJOBS_V1 = Resource("batch", "v1", "cronjobs")
PDBS_V1BETA1 = Resource("policy", "v1beta1", "poddisruptionbudgets")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@pytest.fixture
async def blue() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="blue", kubernetes_version="1.24")
    emulator.add_resource(group="batch", version="v1beta1", plural="cronjobs", kind="CronJob")
    emulator.add_resource(group="policy", version="v1beta1", plural="poddisruptionbudgets",
                          kind="PodDisruptionBudget")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def client(blue: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(blue.kubeconfig()) as kube:
        yield kube


def _cronjob(name: str, api_version: str) -> dict[str, Any]:
    # As Flux leaves it: labels of its own, no last-applied annotation.
    return {"apiVersion": api_version, "kind": "CronJob",
            "metadata": {"name": name, "namespace": "default", "labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}


async def _seed(client: KubeClient) -> None:
    await client.create(CRONJOBS_V1BETA1, _cronjob("report", "batch/v1beta1"))
    await client.create(Resource("", "v1", "namespaces", namespaced=False), {"metadata": {"name": "shop"}})
    await client.create(PDBS_V1BETA1, {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
                                       "metadata": {"name": "web", "namespace": "shop"},
                                       "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}})
    await client.create(DEPLOYMENTS, {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "metadata": {"name": "web", "namespace": "shop"},
                                      "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                                          "metadata": {"labels": {"app": "web"}},
                                          "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})


async def test_objects_served_at_removed_versions_are_found_without_last_applied(client: KubeClient) -> None:
    await _seed(client)
    stored = await client.get(CRONJOBS_V1BETA1, namespace="default", name="report")
    assert stored is not None and LAST_APPLIED not in (stored["metadata"].get("annotations") or {})

    findings = await scan_live(client, cluster="blue", current="1.24", target="1.25")

    summary = sorted((f.kind, f.namespace, f.name, f.api_version, f.removed_in, f.replacement, f.where)
                     for f in findings)
    assert summary == [
        ("CronJob", "default", "report", "batch/v1beta1", "1.25", "batch/v1", "live on blue"),
        ("PodDisruptionBudget", "shop", "web", "policy/v1beta1", "1.25", "policy/v1", "live on blue"),
    ]


async def test_object_written_at_the_new_version_is_reported_while_the_old_one_is_served(client: KubeClient) -> None:
    # Documented behaviour: storage is per resource, so the old version lists it too.
    await client.create(CRONJOBS_V1, _cronjob("nightly", "batch/v1"))

    findings = await scan_live(client, cluster="blue", current="1.24", target="1.25")

    assert [(f.name, f.api_version) for f in findings] == [("nightly", "batch/v1beta1")]


async def test_removals_outside_the_window_are_not_reported(client: KubeClient) -> None:
    await _seed(client)
    assert await scan_live(client, cluster="blue", current="1.25", target="1.26") == []
    assert await scan_live(client, cluster="blue", current="1.23", target="1.24") == []


async def test_cluster_not_serving_removed_versions_has_no_findings() -> None:
    emulator = KubeEmulator(name="plain", kubernetes_version="1.25")
    await emulator.start()
    try:
        async with KubeClient.from_kubeconfig(emulator.kubeconfig()) as kube:
            await kube.create(CRONJOBS_V1, _cronjob("nightly", "batch/v1"))
            assert await scan_live(kube, cluster="plain", current="1.24", target="1.26") == []
    finally:
        await emulator.stop()


async def test_a_failed_list_is_raised_not_taken_for_no_findings(blue: KubeEmulator, client: KubeClient) -> None:
    await _seed(client)
    blue.faults["list", kmock.resource("policy", "v1beta1", "poddisruptionbudgets")] << 500
    with pytest.raises(ApiError):
        await scan_live(client, cluster="blue", current="1.24", target="1.25")


async def test_finding_status_form(client: KubeClient) -> None:
    await _seed(client)
    findings = await scan_live(client, cluster="blue", current="1.24", target="1.25")
    by_kind = {f.kind: f.to_status() for f in findings}
    assert by_kind["PodDisruptionBudget"] == {
        "kind": "PodDisruptionBudget", "namespace": "shop", "name": "web", "apiVersion": "policy/v1beta1",
        "removedIn": "1.25", "replacement": "policy/v1", "where": "live on blue"}

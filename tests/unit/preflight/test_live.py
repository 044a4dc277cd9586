"""The live scan against the strict API emulator, which serves removed group/versions as a real
server of its Kubernetes version does (one storage, every served version) and records
``metadata.managedFields`` with each writer's manager and request apiVersion.
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
HPAS = {version: Resource("autoscaling", version, "horizontalpodautoscalers") for version in ("v2beta1", "v2beta2")}
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@pytest.fixture
async def blue() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="blue", kubernetes_version="1.24")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def flux(blue: KubeEmulator) -> AsyncIterator[KubeClient]:
    """Writes as Flux's kustomize-controller does."""
    async with KubeClient.from_kubeconfig(blue.kubeconfig(), field_manager="kustomize-controller") as kube:
        yield kube


@pytest.fixture
async def client(blue: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(blue.kubeconfig(), field_manager="bluegreen") as kube:
        yield kube


def _cronjob(name: str, api_version: str) -> dict[str, Any]:
    # As Flux leaves it: labels of its own, no last-applied annotation.
    return {"apiVersion": api_version, "kind": "CronJob",
            "metadata": {"name": name, "namespace": "default", "labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}


def _pdb(api_version: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}


async def _seed(flux: KubeClient) -> None:
    await flux.create(CRONJOBS_V1BETA1, _cronjob("report", "batch/v1beta1"))
    await flux.create(CRONJOBS_V1, _cronjob("nightly", "batch/v1"))
    await flux.create(NAMESPACES, {"metadata": {"name": "shop"}})
    await flux.create(PDBS_V1BETA1, _pdb("policy/v1beta1"))


def _summary(findings: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((f.kind, f.namespace, f.name, f.api_version, f.removed_in, f.replacement, f.where) for f in findings)


async def test_only_objects_written_through_a_removed_version_are_reported(flux: KubeClient,
                                                                          client: KubeClient) -> None:
    await _seed(flux)
    stored = await client.get(CRONJOBS_V1BETA1, namespace="default", name="nightly")
    # nightly is reachable through batch/v1beta1 too, and carries no last-applied annotation ...
    assert stored is not None and LAST_APPLIED not in (stored["metadata"].get("annotations") or {})

    findings = await scan_live(client, cluster="blue", current="1.24", target="1.25")

    # ... but it was written through batch/v1, so only report is.
    assert _summary(findings) == [
        ("CronJob", "default", "report", "batch/v1beta1", "1.25", "batch/v1",
         "live on blue, written through batch/v1beta1 by kustomize-controller"),
        ("PodDisruptionBudget", "shop", "web", "policy/v1beta1", "1.25", "policy/v1",
         "live on blue, written through policy/v1beta1 by kustomize-controller"),
    ]


async def test_a_later_write_through_another_version_is_told_apart(flux: KubeClient, client: KubeClient) -> None:
    # An HPA written through v2beta1 and then changed through v2beta2: one finding per version written,
    # though the object is listed once.
    hpa = {"apiVersion": "autoscaling/v2beta1", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"minReplicas": 1, "maxReplicas": 3,
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}}
    await flux.create(HPAS["v2beta1"], hpa)
    await flux.patch(HPAS["v2beta2"], namespace="default", name="web", body={"spec": {"maxReplicas": 5}})

    findings = await scan_live(client, cluster="blue", current="1.24", target="1.26")

    assert [(f.name, f.api_version, f.where) for f in findings] == [
        ("web", "autoscaling/v2beta1", "live on blue, written through autoscaling/v2beta1 by kustomize-controller"),
        ("web", "autoscaling/v2beta2", "live on blue, written through autoscaling/v2beta2 by kustomize-controller"),
    ]


async def test_an_object_without_managed_fields_is_reported_as_undecidable(flux: KubeClient,
                                                                           client: KubeClient) -> None:
    await flux.create(CRONJOBS_V1, _cronjob("nightly", "batch/v1"))
    # The documented way to strip them: a patch setting managedFields to [{}].
    await flux.patch(CRONJOBS_V1, namespace="default", name="nightly",
                     body={"metadata": {"managedFields": [{}]}})

    findings = await scan_live(client, cluster="blue", current="1.24", target="1.25")

    assert [(f.name, f.api_version, f.where) for f in findings] == [
        ("nightly", "batch/v1beta1",
         "live on blue, no managedFields: cannot tell whether it was written through batch/v1beta1")]


async def test_removals_outside_the_window_are_not_reported(flux: KubeClient, client: KubeClient) -> None:
    await _seed(flux)
    assert await scan_live(client, cluster="blue", current="1.25", target="1.26") == []
    assert await scan_live(client, cluster="blue", current="1.23", target="1.24") == []


async def test_the_scan_reads_through_the_replacement_version(blue: KubeEmulator, flux: KubeClient,
                                                              client: KubeClient) -> None:
    # Listing through the removed version would itself count as a deprecated-API request.
    await _seed(flux)
    blue.faults["list", kmock.resource("policy", "v1beta1", "poddisruptionbudgets")] << 500
    blue.faults["list", kmock.resource("batch", "v1beta1", "cronjobs")] << 500
    findings = await scan_live(client, cluster="blue", current="1.24", target="1.25")
    assert {f.name for f in findings} == {"report", "web"}


async def test_a_failed_list_is_raised_not_taken_for_no_findings(blue: KubeEmulator, flux: KubeClient,
                                                                 client: KubeClient) -> None:
    await _seed(flux)
    blue.faults["list", kmock.resource("policy", "v1", "poddisruptionbudgets")] << 500
    with pytest.raises(ApiError):
        await scan_live(client, cluster="blue", current="1.24", target="1.25")


async def test_finding_status_form(flux: KubeClient, client: KubeClient) -> None:
    await _seed(flux)
    findings = await scan_live(client, cluster="blue", current="1.24", target="1.25")
    by_kind = {f.kind: f.to_status() for f in findings}
    assert by_kind["PodDisruptionBudget"] == {
        "kind": "PodDisruptionBudget", "namespace": "shop", "name": "web", "apiVersion": "policy/v1beta1",
        "removedIn": "1.25", "replacement": "policy/v1",
        "where": "live on blue, written through policy/v1beta1 by kustomize-controller"}

"""The simulated in-cluster Flux against a real repository: what it applies, reports and prunes.

Given a cluster whose Flux syncs ``clusters/prod-blue/`` of the environment
repository, when commits add, change and remove manifests and directories,
then the cluster's objects and Flux's status follow them as Flux's would.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.sim import gitserver
from bluegreen.sim.flux_incluster import InClusterFlux
from bluegreen.sim.kube import KubeEmulator
from tests.fixtures.fleet import eventually

pytestmark = pytest.mark.eksa

KUSTOMIZATIONS = "kustomize.toolkit.fluxcd.io/v1/kustomizations"
SOURCES = "source.toolkit.fluxcd.io/v1/gitrepositories"
BLUE = "prod-blue"


@pytest.fixture
async def server(tmp_path: pathlib.Path) -> AsyncIterator[gitserver.GitServer]:
    repository = gitserver.GitServer(state_dir=tmp_path / "git", clusters=(BLUE,))
    repository.create()
    yield repository


@pytest.fixture
async def cluster() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name=BLUE)
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def flux(cluster: KubeEmulator, server: gitserver.GitServer) -> AsyncIterator[InClusterFlux]:
    # A long interval: each test drives the passes itself with reconcile().
    in_cluster = InClusterFlux(emulator=cluster, cluster=BLUE, repo_url=server.file_url, interval=3600)
    await in_cluster.start()
    await in_cluster.reconcile()
    yield in_cluster
    await in_cluster.stop()


def ready(cluster: KubeEmulator, name: str) -> tuple[str, str, str | None]:
    kustomization = cluster.get(KUSTOMIZATIONS, "flux-system", name)
    assert kustomization is not None
    status: dict[str, Any] = kustomization["status"]
    condition = next(item for item in status["conditions"] if item["type"] == "Ready")
    assert status["observedGeneration"] == kustomization["metadata"]["generation"]
    return condition["status"], condition["reason"], status.get("lastAppliedRevision")


async def test_each_directory_is_a_kustomization_ready_at_the_fetched_commit(
    cluster: KubeEmulator, server: gitserver.GitServer, flux: InClusterFlux
) -> None:
    revision = f"main@sha1:{server.head()}"

    assert sorted(item["metadata"]["name"] for item in cluster.list(KUSTOMIZATIONS, "flux-system")) == [
        "apps", "flux-system", "infra"]
    for name in ("apps", "flux-system", "infra"):
        assert ready(cluster, name) == ("True", "ReconciliationSucceeded", revision)
    apps = cluster.get(KUSTOMIZATIONS, "flux-system", "apps")
    assert apps is not None and apps["spec"]["path"] == f"./clusters/{BLUE}/apps"
    source = cluster.get(SOURCES, "flux-system", "flux-system")
    assert source is not None and source["status"]["artifact"]["revision"] == revision
    # and the manifests landed: namespaces, a Deployment, a Service, the mapping
    mapping = cluster.get("v1/configmaps", "podinfo", "workload-mapping")
    assert mapping is not None and mapping["data"]["hostname"] == f"podinfo.{BLUE}.example.com"
    assert mapping["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "apps"
    assert cluster.get("apps/v1/deployments", "podinfo", "podinfo") is not None
    assert cluster.get("v1/services", "podinfo", "podinfo") is not None
    assert cluster.get("v1/configmaps", "ingress", "ingress-config") is not None


async def test_changed_files_are_patched_and_removed_files_pruned(
    cluster: KubeEmulator, server: gitserver.GitServer, flux: InClusterFlux
) -> None:
    mapping_path = f"clusters/{BLUE}/apps/workload-mapping.yaml"
    edited = server.read(mapping_path).replace("prefix: /", "prefix: /v2")
    server.commit_as_someone_else({mapping_path: edited, f"clusters/{BLUE}/apps/service.yaml": None})

    await flux.reconcile()

    mapping = cluster.get("v1/configmaps", "podinfo", "workload-mapping")
    assert mapping is not None and mapping["data"]["prefix"] == "/v2"
    assert cluster.get("v1/services", "podinfo", "podinfo") is None
    assert ready(cluster, "apps") == ("True", "ReconciliationSucceeded", f"main@sha1:{server.head()}")


async def test_a_removed_directory_takes_its_kustomization_and_objects(
    cluster: KubeEmulator, server: gitserver.GitServer, flux: InClusterFlux
) -> None:
    server.commit_as_someone_else({path: None for path in gitserver.environment_files(BLUE) if "/infra/" in path})

    await flux.reconcile()

    assert cluster.get(KUSTOMIZATIONS, "flux-system", "infra") is None
    assert cluster.get("v1/configmaps", "ingress", "ingress-config") is None
    assert cluster.get(KUSTOMIZATIONS, "flux-system", "apps") is not None


async def test_failing_health_checks_keep_the_last_applied_revision(
    cluster: KubeEmulator, server: gitserver.GitServer, flux: InClusterFlux
) -> None:
    first = f"main@sha1:{server.head()}"
    flux.set_failing(True)
    extra = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: podinfo}\n"
    server.commit_as_someone_else({f"clusters/{BLUE}/apps/extra.yaml": extra})

    await flux.reconcile()

    assert ready(cluster, "apps") == ("False", "HealthCheckFailed", first)
    flux.set_failing(False)
    await flux.reconcile()
    assert ready(cluster, "apps") == ("True", "ReconciliationSucceeded", f"main@sha1:{server.head()}")


async def test_a_kind_the_cluster_does_not_serve_fails_like_flux(
    cluster: KubeEmulator, server: gitserver.GitServer, flux: InClusterFlux
) -> None:
    server.commit_as_someone_else({f"clusters/{BLUE}/apps/mapping.yaml": "apiVersion: getambassador.io/v3alpha1\n"
                                                                          "kind: Mapping\nmetadata: {name: app}\n"})

    await flux.reconcile()

    kustomization = cluster.get(KUSTOMIZATIONS, "flux-system", "apps")
    assert kustomization is not None
    condition = kustomization["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "ReconciliationFailed")
    assert 'no matches for kind "Mapping" in version "getambassador.io/v3alpha1"' in condition["message"]


async def test_a_reconcile_request_is_handled_before_the_interval(
    cluster: KubeEmulator, server: gitserver.GitServer, flux: InClusterFlux
) -> None:
    passes = flux.passes
    cluster.patch(SOURCES, "flux-system", "flux-system",
                  {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "now-1"}}})

    async def handled() -> bool:
        source = cluster.get(SOURCES, "flux-system", "flux-system") or {}
        return flux.passes > passes and source.get("status", {}).get("lastHandledReconcileAt") == "now-1"

    await eventually(handled, what="the requested reconcile (the interval is an hour)")


async def test_bootstrap_s_kustomization_waits_for_the_cluster_s_directory(
    server: gitserver.GitServer, cluster: KubeEmulator
) -> None:
    # Given a new cluster whose directory nobody has committed yet
    in_cluster = InClusterFlux(emulator=cluster, cluster="prod-green", repo_url=server.file_url, interval=3600)
    await in_cluster.start()
    try:
        await in_cluster.reconcile()
        kustomizations = cluster.list(KUSTOMIZATIONS, "flux-system")
        assert [item["metadata"]["name"] for item in kustomizations] == ["flux-system"]
        assert kustomizations[0]["spec"]["path"] == "./clusters/prod-green"
        status, reason, applied = ready(cluster, "flux-system")
        assert (status, reason, applied) == ("False", "BuildFailed", None)

        # When its directory is committed
        server.commit_as_someone_else({"clusters/prod-green/apps/config.yaml": "apiVersion: v1\nkind: ConfigMap\n"
                                                                               "metadata: {name: app}\n"})
        await in_cluster.reconcile()

        revision = f"main@sha1:{server.head()}"
        assert ready(cluster, "flux-system") == ("True", "ReconciliationSucceeded", revision)
        assert ready(cluster, "apps") == ("True", "ReconciliationSucceeded", revision)
        assert cluster.get("v1/configmaps", "default", "app") is not None
    finally:
        await in_cluster.stop()

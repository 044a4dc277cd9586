"""The stateful-workload scan against the strict API emulator, over HTTP with the operator's own client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.kube.client import KubeClient, UnreachableError
from bluegreen.preflight import stateful
from bluegreen.preflight.stateful import StatefulWorkload
from bluegreen.sim.kube import KubeEmulator

LABELS = {"app": "x"}
POD_TEMPLATE = {"metadata": {"labels": LABELS},
                "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}


@pytest.fixture
async def blue() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="prod-blue", kubernetes_version="1.30")
    await emulator.start()
    emulator.create("v1/namespaces", {"metadata": {"name": "data"}})
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def client(blue: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(blue.kubeconfig()) as client:
        yield client


def claim(name: str, *, size: str | None = None, storage_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"]}
    if size:
        spec["resources"] = {"requests": {"storage": size}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def statefulset(namespace: str, name: str, *claims: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"serviceName": name, "replicas": 1, "selector": {"matchLabels": LABELS},
                            "template": POD_TEMPLATE}
    if claims:
        spec["volumeClaimTemplates"] = list(claims)
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def cronjob(namespace: str, name: str, *, schedule: str = "*/5 * * * *", suspend: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"schedule": schedule, "suspend": suspend,
                     "jobTemplate": {"spec": {"template": {"spec": {
                         "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]}}}}}}


def deployment(namespace: str, name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": LABELS}, "template": POD_TEMPLATE}}


def keys(workloads: list[StatefulWorkload]) -> list[tuple[str, str, str]]:
    return [(w.kind, w.namespace, w.name) for w in workloads]


async def test_an_empty_cluster_has_nothing_stateful(client: KubeClient) -> None:
    found = await stateful.scan_stateful(client)
    assert (found.workloads, found.missing) == ([], [])


async def test_statefulsets_with_claims_are_listed_with_their_claims_and_classes(
        blue: KubeEmulator, client: KubeClient) -> None:
    blue.create("apps/v1/statefulsets", statefulset(
        "data", "elasticsearch", claim("data", size="100Gi", storage_class="gp3-block"), claim("logs")))
    blue.create("apps/v1/statefulsets", statefulset("default", "stateless-web"))

    found = await stateful.scan_stateful(client)

    assert keys(found.workloads) == [("StatefulSet", "data", "elasticsearch")]
    reason = found.workloads[0].reason
    assert "data (100Gi, storage class gp3-block)" in reason
    assert "logs (default storage class)" in reason


async def test_cronjobs_are_listed_because_they_would_run_twice(blue: KubeEmulator, client: KubeClient) -> None:
    blue.create("batch/v1/cronjobs", cronjob("default", "nightly-backup", schedule="0 2 * * *"))
    blue.create("batch/v1/cronjobs", cronjob("data", "reindex", suspend=True))

    found = await stateful.scan_stateful(client)

    assert keys(found.workloads) == [("CronJob", "data", "reindex"), ("CronJob", "default", "nightly-backup")]
    reindex, backup = found.workloads
    assert "both clusters at once" in backup.reason and "'0 2 * * *'" in backup.reason
    assert "suspended here" in reindex.reason
    assert "suspended" not in backup.reason


async def test_kube_system_is_skipped(blue: KubeEmulator, client: KubeClient) -> None:
    blue.create("apps/v1/statefulsets", statefulset("kube-system", "etcd-backup", claim("snapshots")))
    blue.create("batch/v1/cronjobs", cronjob("kube-system", "cleanup"))
    blue.create("batch/v1/cronjobs", cronjob("default", "report"))

    found = await stateful.scan_stateful(client)

    assert keys(found.workloads) == [("CronJob", "default", "report")]


async def test_declared_singletons_found_on_the_cluster_are_listed(blue: KubeEmulator, client: KubeClient) -> None:
    blue.create("apps/v1/deployments", deployment("default", "queue-consumer"))
    blue.create("apps/v1/deployments", deployment("default", "web"))

    found = await stateful.scan_stateful(client, singletons=[("Deployment", "default", "queue-consumer")])

    assert keys(found.workloads) == [("Deployment", "default", "queue-consumer")]
    assert "singleton" in found.workloads[0].reason
    assert found.missing == []


async def test_a_declared_singleton_even_in_kube_system_is_listed(blue: KubeEmulator, client: KubeClient) -> None:
    blue.create("apps/v1/deployments", deployment("kube-system", "leader"))

    found = await stateful.scan_stateful(client, singletons=[("Deployment", "kube-system", "leader")])

    assert keys(found.workloads) == [("Deployment", "kube-system", "leader")]


async def test_a_declared_singleton_that_is_absent_is_reported_separately(
        blue: KubeEmulator, client: KubeClient) -> None:
    blue.create("apps/v1/deployments", deployment("data", "consumer"))

    found = await stateful.scan_stateful(client, singletons=[
        ("Deployment", "default", "consumer"),  # wrong namespace
        ("CronJob", "data", "consumer"),  # wrong kind
    ])

    assert found.workloads == []
    assert keys(found.missing) == [("CronJob", "data", "consumer"), ("Deployment", "default", "consumer")]
    assert all("no " in item.reason and "check the kind, namespace and name" in item.reason for item in found.missing)


async def test_a_singleton_also_found_by_the_scan_is_listed_once_with_both_reasons(
        blue: KubeEmulator, client: KubeClient) -> None:
    blue.create("batch/v1/cronjobs", cronjob("default", "invoices"))

    found = await stateful.scan_stateful(client, singletons=[("CronJob", "default", "invoices")] * 2)

    assert keys(found.workloads) == [("CronJob", "default", "invoices")]
    assert "both clusters" in found.workloads[0].reason
    assert "singleton" in found.workloads[0].reason


async def test_results_are_sorted_by_kind_namespace_name(blue: KubeEmulator, client: KubeClient) -> None:
    blue.create("batch/v1/cronjobs", cronjob("default", "b"))
    blue.create("apps/v1/statefulsets", statefulset("data", "z", claim("d")))
    blue.create("apps/v1/statefulsets", statefulset("default", "a", claim("d")))
    blue.create("batch/v1/cronjobs", cronjob("data", "c"))
    blue.create("apps/v1/deployments", deployment("data", "m"))

    found = await stateful.scan_stateful(client, singletons=[("Deployment", "data", "m")])

    assert keys(found.workloads) == [
        ("CronJob", "data", "c"), ("CronJob", "default", "b"), ("Deployment", "data", "m"),
        ("StatefulSet", "data", "z"), ("StatefulSet", "default", "a"),
    ]


async def test_an_unknown_singleton_kind_is_refused_before_any_request(client: KubeClient) -> None:
    with pytest.raises(ValueError, match="singleton kind 'Lease' is not one of Deployment"):
        await stateful.scan_stateful(client, singletons=[("Lease", "default", "leader")])


async def test_an_unreachable_cluster_is_raised_not_reported_empty(blue: KubeEmulator) -> None:
    async with KubeClient.from_kubeconfig(blue.kubeconfig()) as client:
        await blue.stop()
        with pytest.raises(UnreachableError):
            await stateful.scan_stateful(client)

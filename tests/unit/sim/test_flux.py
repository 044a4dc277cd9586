"""The simulated Flux: sources, dependencies, kubeconfig Secrets, requested reconciles, health, pruning."""

from __future__ import annotations

import base64
from typing import Any

import yaml

from bluegreen.sim import flux
from tests.fixtures.fleet import BLUE, NAMESPACE, REVISION, Fleet, eventually, running_fleet


def ready_condition(fleet: Fleet, name: str) -> dict[str, Any]:
    kustomization = fleet.management.get(flux.KUSTOMIZATIONS, NAMESPACE, name) or {}
    for condition in (kustomization.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return dict(condition)
    return {}


async def reason_becomes(fleet: Fleet, name: str, reason: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        condition = ready_condition(fleet, name)
        return condition if condition.get("reason") == reason else None
    return await eventually(check, what=f"{name} Ready reason {reason}")


async def test_blue_s_kustomizations_apply_the_source_revision_to_blue() -> None:
    async with running_fleet() as fleet:
        await reason_becomes(fleet, f"apps-{BLUE}", "ReconciliationSucceeded")
        kustomization = fleet.management.get(flux.KUSTOMIZATIONS, NAMESPACE, f"apps-{BLUE}")
        assert kustomization is not None
        status = kustomization["status"]
        landed = fleet.capi.clusters[BLUE].get("v1/configmaps", "default", f"apps-{BLUE}")

        assert status["lastAppliedRevision"] == REVISION
        assert status["observedGeneration"] == kustomization["metadata"]["generation"]
        assert status["inventory"]["entries"] == [{"id": f"default_apps-{BLUE}__ConfigMap", "v": "v1"}]
        assert landed is not None and landed["data"]["revision"] == REVISION


async def test_a_requested_reconcile_is_echoed() -> None:
    async with running_fleet(kustomizations=("apps",)) as fleet:
        await reason_becomes(fleet, f"apps-{BLUE}", "ReconciliationSucceeded")

        fleet.management.patch(flux.KUSTOMIZATIONS, NAMESPACE, f"apps-{BLUE}",
                               {"metadata": {"annotations": {flux.REQUESTED_AT: "2026-11-22T10:00:00Z"}}})

        async def handled() -> bool:
            kustomization = fleet.management.get(flux.KUSTOMIZATIONS, NAMESPACE, f"apps-{BLUE}") or {}
            return (kustomization.get("status") or {}).get("lastHandledReconcileAt") == "2026-11-22T10:00:00Z"

        assert await eventually(handled, what="lastHandledReconcileAt echoes the request")


async def test_a_missing_source_fails_until_it_appears() -> None:
    async with running_fleet(kustomizations=()) as fleet:
        flux.seed_kustomization(fleet.management, namespace=NAMESPACE, name="late", source="later", path="./x",
                                cluster=BLUE)

        failed = await reason_becomes(fleet, "late", "ArtifactFailed")
        flux.seed_source(fleet.management, namespace=NAMESPACE, name="later", revision=REVISION)
        await reason_becomes(fleet, "late", "ReconciliationSucceeded")

        assert failed["status"] == "False"
        assert failed["message"] == f"Source 'GitRepository/{NAMESPACE}/later' not found"


async def test_depends_on_waits_for_the_dependency() -> None:
    async with running_fleet(kustomizations=()) as fleet:
        flux.seed_kustomization(fleet.management, namespace=NAMESPACE, name="apps", source="fleet-infra",
                                path="./apps", cluster=BLUE, depends_on=("infra",))

        waiting = await reason_becomes(fleet, "apps", "DependencyNotReady")
        flux.seed_kustomization(fleet.management, namespace=NAMESPACE, name="infra", source="fleet-infra",
                                path="./infra", cluster=BLUE)
        await reason_becomes(fleet, "apps", "ReconciliationSucceeded")

        assert waiting["message"] == f"dependency '{NAMESPACE}/infra' is not ready"


async def test_a_kubeconfig_with_an_exec_plugin_is_refused() -> None:
    async with running_fleet(kustomizations=()) as fleet:
        exec_config = {
            "current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
            "clusters": [{"name": "x", "cluster": {"server": "https://x.example"}}],
            "users": [{"name": "x", "user": {"exec": {"command": "aws"}}}],
        }
        fleet.management.create("v1/secrets", {"metadata": {"name": "exec-kubeconfig", "namespace": NAMESPACE},
                                               "data": {"value": base64.b64encode(
                                                   yaml.safe_dump(exec_config).encode()).decode()}})
        flux.seed_kustomization(fleet.management, namespace=NAMESPACE, name="execd", source="fleet-infra",
                                path="./x", cluster="exec")

        refused = await reason_becomes(fleet, "execd", "ReconciliationFailed")

        assert "exec plugin" in refused["message"]


async def test_an_unreachable_cluster_fails_and_a_failing_kustomization_can_be_named() -> None:
    async with running_fleet() as fleet:
        await reason_becomes(fleet, f"infra-{BLUE}", "ReconciliationSucceeded")

        fleet.flux.set_failing(f"infra-{BLUE}")
        failing = await reason_becomes(fleet, f"infra-{BLUE}", "HealthCheckFailed")
        await fleet.capi.clusters[BLUE].stop()
        fleet.management.patch(flux.KUSTOMIZATIONS, NAMESPACE, f"apps-{BLUE}", {"spec": {"path": "./apps2"}})
        unreachable = await reason_becomes(fleet, f"apps-{BLUE}", "ReconciliationFailed")
        await fleet.capi.clusters[BLUE].start()  # the fixture stops it

        assert f"ConfigMap/default/infra-{BLUE}" in failing["message"]
        assert "failed to reach the target cluster" in unreachable["message"]


async def test_deleting_a_kustomization_prunes_what_it_applied() -> None:
    async with running_fleet(kustomizations=("apps",)) as fleet:
        await reason_becomes(fleet, f"apps-{BLUE}", "ReconciliationSucceeded")
        blue_api = fleet.capi.clusters[BLUE]
        assert blue_api.get("v1/configmaps", "default", f"apps-{BLUE}") is not None

        fleet.management.delete(flux.KUSTOMIZATIONS, NAMESPACE, f"apps-{BLUE}")

        async def pruned() -> bool:
            gone = fleet.management.get(flux.KUSTOMIZATIONS, NAMESPACE, f"apps-{BLUE}") is None
            return gone and blue_api.get("v1/configmaps", "default", f"apps-{BLUE}") is None
        assert await eventually(pruned, what="Kustomization gone and its ConfigMap pruned")

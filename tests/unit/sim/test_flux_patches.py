"""The simulated Flux applies a Kustomization's spec.patches to what it renders, as kustomize-controller does."""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.sim import flux
from bluegreen.workloads import flux_holds
from tests.fixtures.fleet import BLUE, NAMESPACE, eventually, running_fleet
from tests.unit.sim.test_flux import reason_becomes


def statefulset(name: str, namespace: str = "search", replicas: int = 3) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "serviceName": name}}


RENDERED = [statefulset("es-data"), statefulset("es-data", namespace="logs"), statefulset("es-data-2"),
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "es-data", "namespace": "search"},
             "spec": {"replicas": 2}}]


def replicas(objects: list[dict[str, Any]]) -> list[int]:
    return [obj["spec"]["replicas"] for obj in objects]


def test_a_hold_sets_zero_on_exactly_its_target() -> None:
    hold = flux_holds.hold_patch(flux_holds.HoldTarget(kind="StatefulSet", namespace="search", name="es-data"))

    patched = flux.apply_patches(RENDERED, [hold])

    assert replicas(patched) == [0, 3, 3, 2]
    assert patched[0]["metadata"]["annotations"] == {flux_holds.ANNOTATION_HOLD: flux_holds.HOLD_MARK}
    assert patched[0]["metadata"]["name"] == "es-data" and patched[0]["spec"]["serviceName"] == "es-data"
    assert replicas(RENDERED) == [3, 3, 3, 2]  # what render returned is not changed


def test_a_cronjob_hold_suspends_that_cronjob_and_leaves_a_workload_of_the_same_name() -> None:
    cron_job = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "es-data", "namespace": "search"},
                "spec": {"schedule": "0 * * * *", "suspend": False}}
    hold = flux_holds.hold_patch(flux_holds.HoldTarget(kind="CronJob", namespace="search", name="es-data"))

    patched = flux.apply_patches([*RENDERED, cron_job], [hold])

    assert patched[-1]["spec"] == {"schedule": "0 * * * *", "suspend": True}
    assert replicas(patched[:-1]) == [3, 3, 3, 2]


def test_json6902_patches_and_regular_expression_targets_apply_in_order() -> None:
    patches = [
        {"patch": "- op: replace\n  path: /spec/replicas\n  value: 5\n", "target": {"kind": "StatefulSet",
                                                                                  "name": "es-data.*"}},
        {"patch": "spec:\n  replicas: 1\n", "target": {"group": "apps", "kind": "StatefulSet", "namespace": "logs"}},
    ]

    assert replicas(flux.apply_patches(RENDERED, patches)) == [5, 1, 5, 2]


def test_a_strategic_merge_patch_without_target_selects_by_its_own_kind_and_name() -> None:
    patch = {"patch": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: es-data\n  namespace: search\n"
                      "spec:\n  replicas: 7\n"}

    assert replicas(flux.apply_patches(RENDERED, [patch])) == [3, 3, 3, 7]


@pytest.mark.parametrize(("entry", "reason"), [
    ({"patch": "- op: remove\n  path: /spec/replicas\n"}, "a JSON6902 patch needs a target"),
    ({"patch": "spec: {replicas: 1}", "target": {"labelSelector": "app=es"}}, "selectors are not simulated"),
    ({"patch": "spec: [unclosed", "target": {"kind": "StatefulSet"}}, "the patch is not YAML"),
])
async def test_a_patch_the_simulation_cannot_apply_fails_the_kustomization(entry: dict[str, Any], reason: str) -> None:
    async with running_fleet() as fleet:
        name = f"apps-{BLUE}"
        await reason_becomes(fleet, name, "ReconciliationSucceeded")

        fleet.management.patch(flux.KUSTOMIZATIONS, NAMESPACE, name, {"spec": {"patches": [entry]}})

        condition = await reason_becomes(fleet, name, "BuildFailed")
        assert condition["message"].startswith("spec.patches[0]: ") and reason in condition["message"]


async def test_flux_applies_the_patched_object_to_the_cluster() -> None:
    async with running_fleet() as fleet:
        name = f"apps-{BLUE}"
        await reason_becomes(fleet, name, "ReconciliationSucceeded")
        patch = {"patch": "data:\n  held: 'yes'\n", "target": {"kind": "ConfigMap", "name": name}}

        fleet.management.patch(flux.KUSTOMIZATIONS, NAMESPACE, name, {"spec": {"patches": [patch]}})

        async def landed() -> bool:
            found = fleet.capi.clusters[BLUE].get("v1/configmaps", "default", name) or {}
            return (found.get("data") or {}).get("held") == "yes"

        assert await eventually(landed, what="the patched ConfigMap on blue")

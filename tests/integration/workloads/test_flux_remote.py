"""Flux remote mode end to end: the management emulator, simulated CAPI and Flux, the product's client.

Given blue with two Kustomizations applying to it through its kubeconfig
Secret, and a provisioned green, when green's copies are synced, then Flux
(simulated) applies the same revision to green's own API server, parity is
observed, failures show Flux's reason, and either side can be removed.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api.spec import FluxWorkloads
from bluegreen.clusters.capi import CapiClusterProvider
from bluegreen.engine.types import LABEL_UPGRADE, WorkloadsObservation
from bluegreen.sim import flux as sim_flux
from bluegreen.workloads.base import WorkloadSync
from bluegreen.workloads.flux_remote import (
    KUSTOMIZATIONS,
    LABEL_COPY_OF,
    SECRETS,
    FluxRemoteWorkloads,
    FluxSyncError,
)
from tests.fixtures.fleet import BLUE, GREEN, NAMESPACE, REVISION, Fleet, eventually, running_fleet

pytestmark = pytest.mark.integration

FLUX_NS = "flux-system"
NEW_REVISION = "main@sha1:2222222222222222222222222222222222222222"
SELECTOR = {"selector": {"matchLabels": {"bluegreen.io/cluster": BLUE}}}


def workloads(fleet: Fleet, namespace: str = NAMESPACE) -> FluxRemoteWorkloads:
    return FluxRemoteWorkloads(client=fleet.client, flux=FluxWorkloads.model_validate(SELECTOR),
                               namespace=namespace, labels={LABEL_UPGRADE: "fleet.prod-to-1-31"})


async def provision_green(fleet: Fleet) -> tuple[str, str, str]:
    provider = CapiClusterProvider(client=fleet.client)
    await provider.provision_green(namespace=NAMESPACE, blue_name=BLUE, green_name=GREEN, version="1.31",
                                   overrides={}, labels={})
    await fleet.capi.wait_ready(NAMESPACE, GREEN)
    return provider.kubeconfig_secret_ref(namespace=NAMESPACE, name=GREEN)


def in_parity(seen: WorkloadsObservation, revision: str = REVISION) -> bool:
    sides = (*seen.blue, *seen.green)
    return bool(seen.green) and not seen.green_missing and all(k.ready and k.revision == revision for k in sides)


async def observe_when(sync: WorkloadSync, predicate: Any, what: str) -> WorkloadsObservation:
    async def check() -> WorkloadsObservation | None:
        seen = await sync.observe(blue_name=BLUE, green_name=GREEN)
        return seen if predicate(seen) else None
    return await eventually(check, what=what)


def green_configmaps(fleet: Fleet) -> dict[str, dict[str, str]]:
    green_api = fleet.capi.clusters[GREEN]
    return {item["metadata"]["name"]: item["data"] for item in green_api.list("v1/configmaps", "default")
            if item["metadata"]["name"] != "kube-root-ca.crt"}


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    async with running_fleet() as running:
        yield running


async def test_blue_is_found_by_selector_and_green_is_reported_missing(fleet: Fleet) -> None:
    sync = workloads(fleet)

    seen = await observe_when(sync, lambda s: all(k.ready for k in s.blue), "blue's Kustomizations ready")

    assert [(k.name, k.revision, k.reason) for k in seen.blue] == [
        (f"apps-{BLUE}", REVISION, "ReconciliationSucceeded"), (f"infra-{BLUE}", REVISION, "ReconciliationSucceeded")]
    assert seen.green == ()
    assert seen.green_missing == (f"apps-{GREEN}", f"infra-{GREEN}")


async def test_green_copies_reach_parity_on_green_s_own_cluster(fleet: Fleet) -> None:
    sync: WorkloadSync = workloads(fleet)
    secret_ref = await provision_green(fleet)

    # When green's copies are synced (twice: the second time changes nothing)
    journal = await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)
    again = await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)

    # Then each copy points at green's kubeconfig and is labelled as green's
    assert journal == [f"created Kustomization {NAMESPACE}/apps-{GREEN} from apps-{BLUE}",
                       f"created Kustomization {NAMESPACE}/infra-{GREEN} from infra-{BLUE}"]
    assert again == []
    copy = fleet.management.get(sim_flux.KUSTOMIZATIONS, NAMESPACE, f"apps-{GREEN}")
    assert copy is not None
    assert copy["spec"]["kubeConfig"] == {"secretRef": {"name": f"{GREEN}-kubeconfig", "key": "value"}}
    assert copy["metadata"]["labels"]["bluegreen.io/cluster"] == GREEN
    assert copy["metadata"]["labels"][LABEL_COPY_OF] == f"apps-{BLUE}"
    # and Flux makes both sides Ready at the same revision
    seen = await observe_when(sync, in_parity, "parity")
    assert [(k.name, k.copy_of) for k in seen.green] == [(f"apps-{GREEN}", f"apps-{BLUE}"),
                                                         (f"infra-{GREEN}", f"infra-{BLUE}")]
    # and the workloads really landed on green's API server, rendered for green
    landed = green_configmaps(fleet)
    assert landed[f"apps-{GREEN}"]["revision"] == REVISION
    assert landed[f"apps-{GREEN}"]["substitute.cluster_name"] == GREEN


async def test_the_next_upgrade_selects_green_s_copies_as_its_blue(fleet: Fleet) -> None:
    secret_ref = await provision_green(fleet)
    await workloads(fleet).sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)

    next_upgrade = FluxRemoteWorkloads(
        client=fleet.client, flux=FluxWorkloads.model_validate({"selector": {"matchLabels": {
            "bluegreen.io/cluster": GREEN}}}), namespace=NAMESPACE, labels={})
    seen = await next_upgrade.observe(blue_name=GREEN, green_name=BLUE)

    assert [k.name for k in seen.blue] == [f"apps-{GREEN}", f"infra-{GREEN}"]


async def test_drift_on_a_copy_is_corrected(fleet: Fleet) -> None:
    sync = workloads(fleet)
    secret_ref = await provision_green(fleet)
    await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)
    fleet.management.patch(sim_flux.KUSTOMIZATIONS, NAMESPACE, f"apps-{GREEN}",
                           {"spec": {"path": "./elsewhere", "suspend": True}})

    journal = await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)

    copy = fleet.management.get(sim_flux.KUSTOMIZATIONS, NAMESPACE, f"apps-{GREEN}")
    assert copy is not None and (copy["spec"]["path"], copy["spec"]["suspend"]) == ("./apps", False)
    assert journal == [f"updated Kustomization {NAMESPACE}/apps-{GREEN}: spec drifted from apps-{BLUE}"]


async def test_a_copy_synced_before_green_s_kubeconfig_exists_says_so(fleet: Fleet) -> None:
    sync = workloads(fleet)
    fleet.capi.provision_delay = 30  # green stays Provisioning: no kubeconfig Secret yet
    provider = CapiClusterProvider(client=fleet.client)
    await provider.provision_green(namespace=NAMESPACE, blue_name=BLUE, green_name=GREEN, version="1.31",
                                   overrides={}, labels={})

    await sync.sync_green(blue_name=BLUE, green_name=GREEN,
                          kubeconfig_secret=provider.kubeconfig_secret_ref(namespace=NAMESPACE, name=GREEN))
    seen = await observe_when(sync, lambda s: len(s.green) == 2 and all(k.reason for k in s.green),
                              "green's copies report a reason")

    assert not any(k.ready for k in seen.green)
    assert {k.reason for k in seen.green} == {"ReconciliationFailed"}
    assert f"failed to get kubeconfig secret '{NAMESPACE}/{GREEN}-kubeconfig'" in seen.green[0].message


async def test_failing_health_checks_show_flux_s_reason_until_cleared(fleet: Fleet) -> None:
    sync = workloads(fleet)
    secret_ref = await provision_green(fleet)
    await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)
    await observe_when(sync, in_parity, "parity")

    fleet.flux.set_failing(GREEN)
    failing = await observe_when(sync, lambda s: all(k.reason == "HealthCheckFailed" for k in s.green),
                                 "green's health checks failing")
    fleet.flux.set_failing(GREEN, False)
    recovered = await observe_when(sync, in_parity, "parity again")

    assert not any(k.ready for k in failing.green)
    assert "health check failed" in failing.green[0].message
    assert all(k.ready for k in failing.blue), "blue's Kustomizations are not affected"
    assert all(k.ready for k in recovered.green)


async def test_a_new_commit_reaches_both_sides(fleet: Fleet) -> None:
    sync = workloads(fleet)
    secret_ref = await provision_green(fleet)
    await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)
    await observe_when(sync, in_parity, "parity")

    sim_flux.set_revision(fleet.management, namespace=NAMESPACE, name="fleet-infra", revision=NEW_REVISION)

    await observe_when(sync, lambda s: in_parity(s, NEW_REVISION), "parity at the new revision")
    assert green_configmaps(fleet)[f"infra-{GREEN}"]["revision"] == NEW_REVISION


async def test_deleting_green_removes_copies_and_green_s_workloads_but_not_blue(fleet: Fleet) -> None:
    sync = workloads(fleet)
    secret_ref = await provision_green(fleet)
    await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)
    await observe_when(sync, in_parity, "parity")

    journal = await sync.delete(side="green", blue_name=BLUE, green_name=GREEN)
    again = await sync.delete(side="green", blue_name=BLUE, green_name=GREEN)

    assert journal == [f"deleted Kustomization {NAMESPACE}/apps-{GREEN}",
                       f"deleted Kustomization {NAMESPACE}/infra-{GREEN}"]
    assert again == []
    seen = await observe_when(sync, lambda s: not s.green, "green's copies gone")
    assert len(seen.blue) == 2 and all(k.ready for k in seen.blue)

    async def pruned() -> bool:
        return not green_configmaps(fleet)
    await eventually(pruned, what="Flux pruned green's workloads")


async def test_deleting_blue_removes_blue_s_kustomizations_only(fleet: Fleet) -> None:
    sync = workloads(fleet)
    secret_ref = await provision_green(fleet)
    await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)

    journal = await sync.delete(side="blue", blue_name=BLUE, green_name=GREEN)

    assert journal == [f"deleted Kustomization {NAMESPACE}/apps-{BLUE}",
                       f"deleted Kustomization {NAMESPACE}/infra-{BLUE}"]
    seen = await observe_when(sync, lambda s: not s.blue, "blue's Kustomizations gone")
    assert len(seen.green) == 2


# --- Kustomizations in another namespace than the Cluster: the kubeconfig Secret is copied ---------


@pytest.fixture
async def split_fleet() -> AsyncIterator[Fleet]:
    async with running_fleet(flux_namespace=FLUX_NS) as running:
        # Blue's own Kustomizations need blue's kubeconfig next to them, as the user arranged.
        blue_secret = running.management.get("v1/secrets", NAMESPACE, f"{BLUE}-kubeconfig")
        assert blue_secret is not None
        running.management.create("v1/secrets", {"metadata": {"name": f"{BLUE}-kubeconfig", "namespace": FLUX_NS},
                                                 "data": blue_secret["data"]})
        yield running


async def test_green_s_kubeconfig_is_copied_next_to_the_kustomizations(split_fleet: Fleet) -> None:
    fleet = split_fleet
    sync = workloads(fleet, FLUX_NS)
    secret_ref = await provision_green(fleet)

    journal = await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)

    assert journal[0] == (f"copied {NAMESPACE}/{GREEN}-kubeconfig to Secret {FLUX_NS}/{GREEN}-kubeconfig "
                          "(Flux reads kubeconfigs from its own namespace)")
    copied = await fleet.client.get(SECRETS, namespace=FLUX_NS, name=f"{GREEN}-kubeconfig")
    original = await fleet.client.get(SECRETS, namespace=NAMESPACE, name=f"{GREEN}-kubeconfig")
    assert copied is not None and original is not None
    assert copied["data"]["value"] == original["data"]["value"]
    assert copied["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "bluegreen"
    await observe_when(sync, in_parity, "parity through the copied Secret")

    # When the original changes, the next sync carries the change over
    changed = base64.b64encode(b"apiVersion: v1\nkind: Config\n").decode()
    await fleet.client.patch(SECRETS, namespace=NAMESPACE, name=f"{GREEN}-kubeconfig",
                             body={"data": {"value": changed}})
    journal = await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)
    assert journal == [f"updated Secret {FLUX_NS}/{GREEN}-kubeconfig: {NAMESPACE}/{GREEN}-kubeconfig changed"]

    # And deleting green removes the copy too
    journal = await sync.delete(side="green", blue_name=BLUE, green_name=GREEN)
    assert journal[-1] == f"deleted Secret {FLUX_NS}/{GREEN}-kubeconfig (copy of green's kubeconfig)"
    assert await fleet.client.get(SECRETS, namespace=FLUX_NS, name=f"{GREEN}-kubeconfig") is None
    assert await fleet.client.get(SECRETS, namespace=NAMESPACE, name=f"{GREEN}-kubeconfig") is not None


async def test_a_foreign_secret_of_the_same_name_is_not_overwritten(split_fleet: Fleet) -> None:
    fleet = split_fleet
    sync = workloads(fleet, FLUX_NS)
    secret_ref = await provision_green(fleet)
    await fleet.client.create(SECRETS, {"metadata": {"name": f"{GREEN}-kubeconfig"}, "data": {"value": "eA=="}},
                              namespace=FLUX_NS)

    with pytest.raises(FluxSyncError, match="was not created by bluegreen"):
        await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)

    foreign = await fleet.client.get(SECRETS, namespace=FLUX_NS, name=f"{GREEN}-kubeconfig")
    assert foreign is not None and foreign["data"] == {"value": "eA=="}
    assert await fleet.client.list(KUSTOMIZATIONS, namespace=FLUX_NS, label_selector=LABEL_COPY_OF) == []


async def test_a_foreign_kustomization_with_the_copy_s_name_is_refused(fleet: Fleet) -> None:
    sync = workloads(fleet)
    secret_ref = await provision_green(fleet)
    fleet.management.create(sim_flux.KUSTOMIZATIONS, sim_flux.kustomization_manifest(
        namespace=NAMESPACE, name=f"apps-{GREEN}", source="fleet-infra", path="./mine"))

    with pytest.raises(FluxSyncError, match=f"Kustomization {NAMESPACE}/apps-{GREEN} already exists"):
        await sync.sync_green(blue_name=BLUE, green_name=GREEN, kubeconfig_secret=secret_ref)

    mine = await fleet.client.get(KUSTOMIZATIONS, namespace=NAMESPACE, name=f"apps-{GREEN}")
    assert mine is not None and mine["spec"]["path"] == "./mine"



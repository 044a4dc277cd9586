"""The simulated EKS-A controller: readiness, failures EKS-A would report, version rolls, deletion, endpoints."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from bluegreen.kube import config
from bluegreen.sim import eksa
from tests.fixtures.eksa_fleet import BLUE_ENDPOINT, GREEN_ENDPOINT, EksaFleet, running_eksa_fleet
from tests.fixtures.fleet import BLUE, NAMESPACE, eventually

pytestmark = [pytest.mark.eksa, pytest.mark.integration]

CONDITIONS = ("ControlPlaneInitialized", "ControlPlaneReady", "DefaultCNIConfigured", "WorkersReady", "Ready")


def conditions(cluster: dict[str, Any]) -> dict[str, str]:
    return {item["type"]: item["status"] for item in (cluster.get("status") or {}).get("conditions") or ()}


def ready_condition(cluster: dict[str, Any]) -> dict[str, Any]:
    return next(item for item in cluster["status"]["conditions"] if item["type"] == "Ready")


def seed(fleet: EksaFleet, name: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("endpoint_host", GREEN_ENDPOINT)
    return eksa.seed_cluster(fleet.management, namespace=NAMESPACE, name=name, version=kwargs.pop("version", "1.31"),
                             **kwargs)


async def until_failed(fleet: EksaFleet, name: str) -> dict[str, Any]:
    async def failed() -> dict[str, Any] | None:
        cluster = fleet.cluster(name)
        return cluster if cluster and (cluster.get("status") or {}).get("failureMessage") else None

    return await eventually(failed, what=f"{name} has a failureMessage")


async def until_ready(fleet: EksaFleet, name: str) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        cluster = fleet.cluster(name)
        if cluster is None or conditions(cluster).get("Ready") != "True":
            return None
        return cluster if cluster["status"]["observedGeneration"] == cluster["metadata"]["generation"] else None

    return await eventually(ready, what=f"{name} Ready")


async def test_blue_is_adopted_ready_with_its_kubeconfig_in_eksa_system() -> None:
    async with running_eksa_fleet() as fleet:
        blue = fleet.cluster(BLUE)
        assert blue is not None
        secret = fleet.management.get("v1/secrets", "eksa-system", f"{BLUE}-kubeconfig")
        assert secret is not None
        connection = config.load_kubeconfig(yaml.safe_load(base64.b64decode(secret["data"]["value"])))
        blue_api = fleet.controller.clusters[BLUE]

        assert conditions(blue) == dict.fromkeys(CONDITIONS, "True")
        assert blue["status"]["observedGeneration"] == blue["metadata"]["generation"]
        assert "failureMessage" not in blue["status"]
        assert eksa.FINALIZER in blue["metadata"]["finalizers"]
        assert fleet.management.get("v1/secrets", NAMESPACE, f"{BLUE}-kubeconfig") is None
        assert (connection.server, connection.bearer_token()) == (blue_api.url, blue_api.token)
        assert blue_api.kubernetes_version == "1.30"
        assert fleet.ready == [BLUE]


async def test_a_missing_machine_config_is_a_failure_until_it_exists() -> None:
    async with running_eksa_fleet() as fleet:
        manifest = eksa.cluster_manifest(namespace=NAMESPACE, name="late", version="1.31",
                                         endpoint_host=GREEN_ENDPOINT, datacenter_name="vsphere-datacenter",
                                         control_plane_config=f"{BLUE}-cp", worker_configs={"md-0": "late-md-0"})
        fleet.management.create(eksa.cluster_resource(), manifest)

        failed = await until_failed(fleet, "late")
        assert 'VSphereMachineConfig.anywhere.eks.amazonaws.com "late-md-0" not found' in (
            failed["status"]["failureMessage"])
        assert ready_condition(failed)["status"] == "False"
        assert "late" not in fleet.controller.clusters

        fleet.management.create(eksa.resource("VSphereMachineConfig"), {
            "apiVersion": eksa.API_VERSION, "kind": "VSphereMachineConfig",
            "metadata": {"name": "late-md-0", "namespace": NAMESPACE}, "spec": {"numCPUs": 2}})

        recovered = await until_ready(fleet, "late")
        assert "failureMessage" not in recovered["status"]
        assert fleet.controller.clusters["late"].kubernetes_version == "1.31"


@pytest.mark.parametrize("version", [1.3, "v1.31.0", "1.31.2"])
async def test_a_version_eksa_would_not_take_is_a_failure(version: Any) -> None:
    async with running_eksa_fleet() as fleet:
        seed(fleet, "odd", version=version)

        failed = await until_failed(fleet, "odd")

        assert "unsupported kubernetesVersion" in failed["status"]["failureMessage"]


async def test_a_new_version_rolls_and_the_api_server_reports_it() -> None:
    async with running_eksa_fleet(provision_delay=0.5) as fleet:
        before = fleet.cluster(BLUE)
        assert before is not None

        fleet.management.patch(eksa.cluster_resource(), NAMESPACE, BLUE, {"spec": {"kubernetesVersion": "1.31"}})

        async def rolling() -> dict[str, Any] | None:
            cluster = fleet.cluster(BLUE)
            return cluster if cluster and conditions(cluster).get("Ready") == "False" else None

        during = await eventually(rolling, what="Ready=False while rolling")
        after = await until_ready(fleet, BLUE)

        assert ready_condition(during)["reason"] == "RollingUpgradeInProgress"
        assert during["status"]["observedGeneration"] == before["metadata"]["generation"] + 1
        assert after["status"]["observedGeneration"] == before["metadata"]["generation"] + 1
        assert fleet.controller.clusters[BLUE].kubernetes_version == "1.31"


async def test_deletion_tears_the_cluster_down_and_removes_its_kubeconfig() -> None:
    async with running_eksa_fleet() as fleet:
        fleet.controller.delete_delay = 0.3
        blue_api = fleet.controller.clusters[BLUE]

        fleet.management.delete(eksa.cluster_resource(), NAMESPACE, BLUE)

        async def deleting() -> dict[str, Any] | None:
            cluster = fleet.cluster(BLUE)
            return cluster if cluster and ready_condition(cluster).get("reason") == "Deleting" else None

        async def gone() -> bool:
            return fleet.cluster(BLUE) is None

        await eventually(deleting, what="Ready=False (Deleting)")
        await eventually(gone, what="Cluster removed")
        assert BLUE not in fleet.controller.clusters
        assert fleet.deleted == [BLUE]
        assert fleet.management.get("v1/secrets", "eksa-system", f"{BLUE}-kubeconfig") is None
        assert fleet.machine_config_names() == [f"{BLUE}-cp", f"{BLUE}-md-0"], "configs are the deleter's business"
        with pytest.raises(RuntimeError):
            _ = blue_api.url  # stopped


async def test_two_clusters_cannot_hold_one_endpoint() -> None:
    async with running_eksa_fleet() as fleet:
        seed(fleet, "copycat", endpoint_host=BLUE_ENDPOINT)

        failed = await until_failed(fleet, "copycat")
        assert failed["status"]["failureMessage"] == (
            f"cluster controlPlaneConfiguration.Endpoint.Host {BLUE_ENDPOINT} is already in use by cluster "
            f"{NAMESPACE}/{BLUE}")
        assert "copycat" not in fleet.controller.clusters

        # Once blue is gone, its address is free.
        fleet.management.delete(eksa.cluster_resource(), NAMESPACE, BLUE)
        await until_ready(fleet, "copycat")
        assert "copycat" in fleet.controller.clusters


@pytest.mark.parametrize(("host", "failure"), [
    (None, "Endpoint.Host is not set or is empty"),
    (GREEN_ENDPOINT, None),
])
async def test_vsphere_needs_an_endpoint(host: str | None, failure: str | None) -> None:
    async with running_eksa_fleet() as fleet:
        seed(fleet, "other", endpoint_host=host)

        if failure is None:
            await until_ready(fleet, "other")
        else:
            assert failure in (await until_failed(fleet, "other"))["status"]["failureMessage"]


async def test_a_docker_cluster_has_no_machine_configs_and_no_endpoint() -> None:
    async with running_eksa_fleet(datacenter="docker") as fleet:
        blue = fleet.cluster(BLUE)
        assert blue is not None

        assert "endpoint" not in blue["spec"]["controlPlaneConfiguration"]
        assert "machineGroupRef" not in blue["spec"]["controlPlaneConfiguration"]
        assert conditions(blue)["Ready"] == "True"

"""The simulated Cluster API controller: status shapes, kubeconfig Secrets, rollout, deletion."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from bluegreen.kube import config
from bluegreen.sim import capi
from tests.fixtures.fleet import BLUE, NAMESPACE, Fleet, eventually, running_fleet


def conditions(status: dict[str, Any], *path: str) -> dict[str, str]:
    node: Any = status
    for part in path:
        node = node[part]
    return {item["type"]: item["status"] for item in node["conditions"]}


@pytest.mark.parametrize("api_version", ["v1beta2", "v1beta1"])
async def test_blue_is_adopted_with_the_status_shape_of_its_version(api_version: str) -> None:
    async with running_fleet(api_version=api_version, kustomizations=()) as fleet:
        blue = fleet.cluster(BLUE)
        assert blue is not None
        status = blue["status"]

        assert status["phase"] == "Provisioned"
        assert status["observedGeneration"] == blue["metadata"]["generation"]
        assert capi.FINALIZER in blue["metadata"]["finalizers"]
        if api_version == "v1beta2":
            assert conditions(status)["Available"] == "True"
            assert conditions(status, "deprecated", "v1beta1")["Ready"] == "True"
            assert status["initialization"] == {"infrastructureProvisioned": True, "controlPlaneInitialized": True}
        else:
            assert conditions(status)["Ready"] == "True"
            assert conditions(status, "v1beta2")["Available"] == "True"
            assert status["controlPlaneReady"] is True


async def test_the_kubeconfig_secret_reaches_the_cluster_s_own_api_server() -> None:
    async with running_fleet(kustomizations=()) as fleet:
        secret = fleet.management.get("v1/secrets", NAMESPACE, f"{BLUE}-kubeconfig")
        assert secret is not None
        document = yaml.safe_load(base64.b64decode(secret["data"]["value"]))
        connection = config.load_kubeconfig(document)
        blue_api = fleet.capi.clusters[BLUE]

        assert secret["metadata"]["labels"] == {capi.CLUSTER_NAME_LABEL: BLUE}
        assert secret["metadata"]["ownerReferences"][0]["kind"] == "Cluster"
        assert connection.server == blue_api.url
        assert connection.bearer_token() == blue_api.token
        assert blue_api.kubernetes_version == "v1.30.4"


async def _phase(fleet: Fleet, name: str) -> str | None:
    cluster = fleet.cluster(name)
    return None if cluster is None else (cluster.get("status") or {}).get("phase")


async def test_a_new_version_rolls_out_and_the_api_server_reports_it() -> None:
    async with running_fleet(kustomizations=()) as fleet:
        fleet.capi.rollout_delay = 0.5
        resource = capi.cluster_resource("v1beta2")

        fleet.management.patch(resource, NAMESPACE, BLUE, {"spec": {"topology": {"version": "v1.31.0"}}})

        async def rolling_out() -> dict[str, Any] | None:
            cluster = fleet.cluster(BLUE)
            found = conditions(cluster["status"]) if cluster else {}
            return cluster if found.get("RollingOut") == "True" else None

        async def rolled_out() -> dict[str, Any] | None:
            cluster = fleet.cluster(BLUE)
            if cluster is None:
                return None
            done = conditions(cluster["status"]).get("RollingOut") == "False"
            current = cluster["status"]["observedGeneration"] == cluster["metadata"]["generation"]
            return cluster if done and current else None

        during = await eventually(rolling_out, what="RollingOut=True")
        await eventually(rolled_out, what="RollingOut=False")

        assert conditions(during["status"])["Available"] == "True"
        assert fleet.capi.clusters[BLUE].kubernetes_version == "v1.31.0"


async def test_deletion_shows_deleting_then_removes_the_cluster_and_its_api_server() -> None:
    async with running_fleet(kustomizations=()) as fleet:
        fleet.capi.delete_delay = 0.3
        blue_api = fleet.capi.clusters[BLUE]
        fleet.management.delete(capi.cluster_resource("v1beta2"), NAMESPACE, BLUE)

        async def deleting() -> bool:
            return await _phase(fleet, BLUE) == "Deleting"

        async def gone() -> bool:
            return fleet.cluster(BLUE) is None

        await eventually(deleting, what="phase Deleting")
        await eventually(gone, what="Cluster removed")

        assert BLUE not in fleet.capi.clusters
        assert fleet.deleted == [BLUE]
        assert fleet.management.get("v1/secrets", NAMESPACE, f"{BLUE}-kubeconfig") is None
        with pytest.raises(RuntimeError):
            _ = blue_api.url  # stopped


async def test_a_cluster_deleted_while_provisioning_never_comes_up() -> None:
    async with running_fleet(kustomizations=()) as fleet:
        fleet.capi.provision_delay = 0.3
        capi.seed_cluster(fleet.management, namespace=NAMESPACE, name="short-lived", version="v1.31.0")

        async def provisioning() -> bool:
            return await _phase(fleet, "short-lived") == "Provisioning"

        await eventually(provisioning, what="phase Provisioning")
        fleet.management.delete(capi.cluster_resource("v1beta2"), NAMESPACE, "short-lived")

        async def gone() -> bool:
            return fleet.cluster("short-lived") is None

        await eventually(gone, what="Cluster removed")
        await fleet.capi.idle()
        assert "short-lived" not in fleet.capi.clusters
        assert "short-lived" not in fleet.ready

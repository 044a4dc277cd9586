"""The EKS Anywhere provider end to end against the management emulator and the simulated EKS-A controller.

Given blue (a vSphere EKS-A workload cluster with its machine configs, adopted
and Ready), when green is provisioned through the provider, then green's
Cluster and machine configs are clones at the target version, green becomes
ready with its own API server and a kubeconfig Secret in eksa-system, and
retiring a cluster deletes what bluegreen created for it, never what another
cluster shares.
"""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.clusters.base import ClusterProviderError
from bluegreen.clusters.eksa import EksaClusterProvider
from bluegreen.engine.types import LABEL_UPGRADE, ClusterObservation
from bluegreen.kube import remote
from bluegreen.sim import eksa as sim_eksa
from tests.fixtures.eksa_fleet import BLUE_ENDPOINT, GREEN_ENDPOINT, EksaFleet, running_eksa_fleet
from tests.fixtures.fleet import BLUE, GREEN, NAMESPACE, eventually

pytestmark = [pytest.mark.eksa, pytest.mark.integration]

OWNER = "fleet.prod-to-1-31"
FIELD = "spec.target.overrides.controlPlaneConfiguration.endpoint.host"
NEW_ENDPOINT: dict[str, Any] = {"controlPlaneConfiguration": {"endpoint": {"host": GREEN_ENDPOINT}}}


async def provision(provider: EksaClusterProvider, *, green: str = GREEN, blue: str = BLUE,
                    overrides: dict[str, Any] | None = None) -> str | None:
    return await provider.provision_green(
        namespace=NAMESPACE, blue_name=blue, green_name=green, version="1.31",
        overrides=NEW_ENDPOINT if overrides is None else overrides, labels={LABEL_UPGRADE: OWNER},
    )


async def preflight(provider: EksaClusterProvider, overrides: dict[str, Any]) -> list[str]:
    return await provider.preflight(namespace=NAMESPACE, blue_name=BLUE, green_name=GREEN, overrides=overrides)


async def ready(provider: EksaClusterProvider, name: str) -> ClusterObservation:
    async def check() -> ClusterObservation | None:
        seen = await provider.observe(namespace=NAMESPACE, name=name)
        return seen if seen.ready and seen.kubeconfig_secret else None

    return await eventually(check, what=f"{name} ready")


def resource_versions(fleet: EksaFleet) -> dict[str, str]:
    """Machine configs by resourceVersion, Clusters by generation (their status keeps moving)."""
    configs = fleet.management.list(sim_eksa.resource("VSphereMachineConfig"), NAMESPACE)
    clusters = fleet.management.list(sim_eksa.cluster_resource(), NAMESPACE)
    return {**{f"config/{item['metadata']['name']}": item["metadata"]["resourceVersion"] for item in configs},
            **{f"cluster/{item['metadata']['name']}": str(item["metadata"]["generation"]) for item in clusters}}


async def gone(fleet: EksaFleet, name: str) -> None:
    async def check() -> bool:
        return fleet.cluster(name) is None

    await eventually(check, what=f"{name} gone")


async def test_blue_is_seen_ready_at_its_version_with_its_kubeconfig() -> None:
    async with running_eksa_fleet() as fleet:
        blue = await EksaClusterProvider(client=fleet.client).observe(namespace=NAMESPACE, name=BLUE)

        assert (blue.exists, blue.ready, blue.failed, blue.version) == (True, True, False, "1.30")
        assert blue.kubeconfig_secret == f"{BLUE}-kubeconfig"
        assert blue.managed_by is None


async def test_green_is_cloned_with_its_machine_configs_and_comes_up_at_the_target_version() -> None:
    async with running_eksa_fleet() as fleet:
        provider = EksaClusterProvider(client=fleet.client)
        blue_object = fleet.cluster(BLUE)
        assert blue_object is not None

        detail = await provision(provider)

        assert detail == (f"created Cluster {NAMESPACE}/{GREEN} at 1.31, cloned from {BLUE}, with "
                          f"VSphereMachineConfig {GREEN}-cp, VSphereMachineConfig {GREEN}-md-0")
        green_object = fleet.cluster(GREEN)
        assert green_object is not None
        spec = green_object["spec"]
        assert spec["kubernetesVersion"] == "1.31" and isinstance(spec["kubernetesVersion"], str)
        assert spec["controlPlaneConfiguration"]["endpoint"] == {"host": GREEN_ENDPOINT}
        assert spec["controlPlaneConfiguration"]["machineGroupRef"]["name"] == f"{GREEN}-cp"
        assert spec["workerNodeGroupConfigurations"][0]["machineGroupRef"]["name"] == f"{GREEN}-md-0"
        for field in ("datacenterRef", "managementCluster", "gitOpsRef", "eksaVersion", "clusterNetwork"):
            assert spec[field] == blue_object["spec"][field], field
        assert green_object["metadata"]["labels"] == {"env": "prod", "bluegreen.io/cluster": GREEN,
                                                      LABEL_UPGRADE: OWNER}
        for role in ("cp", "md-0"):
            copy, original = fleet.machine_config(f"{GREEN}-{role}"), fleet.machine_config(f"{BLUE}-{role}")
            assert copy is not None and original is not None
            assert copy["spec"] == original["spec"]
            assert copy["metadata"]["labels"] == {LABEL_UPGRADE: OWNER}

        green = await ready(provider, GREEN)
        assert (green.version, green.managed_by, green.kubeconfig_secret) == ("1.31", OWNER, f"{GREEN}-kubeconfig")
        remotes = remote.RemoteClients(fleet.client)
        try:
            namespace, secret, key = provider.kubeconfig_secret_ref(namespace=NAMESPACE, name=GREEN)
            green_api = await remotes.client(namespace=namespace, name=secret, key=key)
            assert (await green_api.server_version())["gitVersion"] == "v1.31.0"
        finally:
            await remotes.close()
        assert (await provider.observe(namespace=NAMESPACE, name=BLUE)).ready


async def test_provisioning_again_changes_nothing() -> None:
    async with running_eksa_fleet() as fleet:
        provider = EksaClusterProvider(client=fleet.client)
        await provision(provider)
        await ready(provider, GREEN)
        versions_before = resource_versions(fleet)

        again = await provision(provider)

        assert again is None
        assert fleet.machine_config_names() == sorted([f"{BLUE}-cp", f"{BLUE}-md-0", f"{GREEN}-cp", f"{GREEN}-md-0"])
        assert resource_versions(fleet) == versions_before


async def test_a_half_done_provisioning_is_finished_and_a_stranger_s_config_is_refused() -> None:
    async with running_eksa_fleet() as fleet:
        provider = EksaClusterProvider(client=fleet.client)
        resource = sim_eksa.resource("VSphereMachineConfig")
        # An earlier pass created green's control-plane config, then the operator restarted.
        fleet.management.create(resource, {
            "apiVersion": sim_eksa.API_VERSION, "kind": "VSphereMachineConfig",
            "metadata": {"name": f"{GREEN}-cp", "namespace": NAMESPACE, "labels": {LABEL_UPGRADE: OWNER}},
            "spec": {"numCPUs": 2}})

        detail = await provision(provider)

        assert detail is not None and detail.endswith(f"with VSphereMachineConfig {GREEN}-md-0")
        await ready(provider, GREEN)

        # A config of that name made by someone else is not taken over.
        fleet.management.create(resource, {
            "apiVersion": sim_eksa.API_VERSION, "kind": "VSphereMachineConfig",
            "metadata": {"name": "other-cp", "namespace": NAMESPACE}, "spec": {"numCPUs": 8}})
        with pytest.raises(ClusterProviderError, match="other-cp already exists and was not created by this upgrade"):
            await provision(provider, green="other", overrides={
                "controlPlaneConfiguration": {"endpoint": {"host": "198.51.100.99"}}})
        assert fleet.cluster("other") is None


async def test_a_shared_machine_config_is_cloned_once() -> None:
    async with running_eksa_fleet(shared_machine_config=True, external_etcd=True) as fleet:
        provider = EksaClusterProvider(client=fleet.client)

        await provision(provider)

        assert fleet.machine_config_names() == [f"{BLUE}-machines", f"{GREEN}-cp"]
        green_object = fleet.cluster(GREEN)
        assert green_object is not None
        spec = green_object["spec"]
        refs = [spec["controlPlaneConfiguration"], spec["externalEtcdConfiguration"],
                *spec["workerNodeGroupConfigurations"]]
        assert {ref["machineGroupRef"]["name"] for ref in refs} == {f"{GREEN}-cp"}
        await ready(provider, GREEN)


async def test_overrides_reach_green_s_spec() -> None:
    async with running_eksa_fleet() as fleet:
        provider = EksaClusterProvider(client=fleet.client)

        await provision(provider, overrides={"controlPlaneConfiguration": {"endpoint": {"host": GREEN_ENDPOINT},
                                                                           "count": 3}})

        green_object = fleet.cluster(GREEN)
        assert green_object is not None
        assert green_object["spec"]["controlPlaneConfiguration"]["count"] == 3


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, ["would share blue's control-plane endpoint '198.51.100.10'", FIELD]),
    ({"controlPlaneConfiguration": {"endpoint": {"host": BLUE_ENDPOINT}}}, ["would share blue's", FIELD]),
    (NEW_ENDPOINT, None),
])
async def test_preflight_asks_for_green_s_own_endpoint(overrides: dict[str, Any], expected: list[str] | None) -> None:
    async with running_eksa_fleet() as fleet:
        provider = EksaClusterProvider(client=fleet.client)

        problems = await preflight(provider, overrides)

        if expected is None:
            assert problems == []
        else:
            assert len(problems) == 1
            for text in expected:
                assert text in problems[0]


async def test_preflight_refuses_an_endpoint_another_cluster_holds() -> None:
    async with running_eksa_fleet() as fleet:
        sim_eksa.seed_cluster(fleet.management, namespace=NAMESPACE, name="neighbour", version="1.30",
                              endpoint_host=GREEN_ENDPOINT)
        provider = EksaClusterProvider(client=fleet.client)

        problems = await preflight(provider, NEW_ENDPOINT)

        assert problems == [f"{FIELD} is '{GREEN_ENDPOINT}', already the control-plane endpoint of Cluster "
                            f"{NAMESPACE}/neighbour; pick an address no cluster uses"]


async def test_preflight_reports_a_machine_config_blue_names_but_that_does_not_exist() -> None:
    async with running_eksa_fleet() as fleet:
        fleet.management.delete(sim_eksa.resource("VSphereMachineConfig"), NAMESPACE, f"{BLUE}-md-0")
        provider = EksaClusterProvider(client=fleet.client)

        problems = await preflight(provider, NEW_ENDPOINT)

        assert problems == [
            f"VSphereMachineConfig {NAMESPACE}/{BLUE}-md-0, named by Cluster {NAMESPACE}/{BLUE} at "
            "spec.workerNodeGroupConfigurations[0].machineGroupRef, does not exist; create it or correct the "
            "reference on blue"]
        with pytest.raises(ClusterProviderError, match=f"{BLUE}-md-0"):
            await provision(provider)
        assert fleet.cluster(GREEN) is None


async def test_preflight_reports_an_override_that_points_at_a_missing_config() -> None:
    async with running_eksa_fleet() as fleet:
        provider = EksaClusterProvider(client=fleet.client)
        overrides = {**NEW_ENDPOINT, "workerNodeGroupConfigurations": [
            {"name": "md-0", "count": 2, "machineGroupRef": {"kind": "VSphereMachineConfig", "name": "big"}}]}

        problems = await preflight(provider, overrides)

        assert problems == [
            "spec.target.overrides sets spec.workerNodeGroupConfigurations[0].machineGroupRef to "
            f"VSphereMachineConfig {NAMESPACE}/big, which does not exist; create it or drop that override"]


async def test_a_failure_message_surfaces_in_the_observation() -> None:
    async with running_eksa_fleet() as fleet:
        provider = EksaClusterProvider(client=fleet.client)
        # Preflight would have said so; provisioning anyway shows what the controller reports.
        await provision(provider, overrides={**NEW_ENDPOINT, "workerNodeGroupConfigurations": [
            {"name": "md-0", "count": 2, "machineGroupRef": {"kind": "VSphereMachineConfig", "name": "big"}}]})

        async def failed() -> ClusterObservation | None:
            seen = await provider.observe(namespace=NAMESPACE, name=GREEN)
            return seen if seen.failed else None

        green = await eventually(failed, what="green failed")

        assert not green.ready
        assert 'VSphereMachineConfig.anywhere.eks.amazonaws.com "big" not found' in green.reason
        assert green.reason.startswith("failure (ClusterInvalid): Dependent cluster objects don't exist")


async def test_provisioning_refuses_blue_s_endpoint() -> None:
    async with running_eksa_fleet() as fleet:
        with pytest.raises(ClusterProviderError, match="would share blue's control-plane endpoint"):
            await provision(EksaClusterProvider(client=fleet.client), overrides={})
        assert fleet.cluster(GREEN) is None
        assert fleet.machine_config_names() == [f"{BLUE}-cp", f"{BLUE}-md-0"]


async def test_retiring_a_cluster_deletes_what_bluegreen_made_and_keeps_what_is_shared() -> None:
    async with running_eksa_fleet() as fleet:
        provider = EksaClusterProvider(client=fleet.client)
        await provision(provider)
        await ready(provider, GREEN)
        # Another cluster uses green's worker config: it must outlive green.
        manifest = sim_eksa.cluster_manifest(
            namespace=NAMESPACE, name="neighbour", version="1.31", endpoint_host="198.51.100.20",
            datacenter_name="vsphere-datacenter", control_plane_config=f"{BLUE}-cp",
            worker_configs={"md-0": f"{GREEN}-md-0"})
        fleet.management.create(sim_eksa.cluster_resource(), manifest)

        # When green is retired (it is blue of the next upgrade)
        detail = await provider.delete(namespace=NAMESPACE, name=GREEN)
        again = await provider.delete(namespace=NAMESPACE, name=GREEN)
        await gone(fleet, GREEN)
        after = await provider.delete(namespace=NAMESPACE, name=GREEN)

        # Then the Cluster and green's own config are gone, the shared one is kept and the detail says why
        assert detail == (f"deleted Cluster {NAMESPACE}/{GREEN}; deleted VSphereMachineConfig {GREEN}-cp; kept "
                          f"VSphereMachineConfig {GREEN}-md-0 (also used by Cluster {NAMESPACE}/neighbour)")
        assert again is None
        assert after is None
        assert fleet.machine_config_names() == sorted([f"{BLUE}-cp", f"{BLUE}-md-0", f"{GREEN}-md-0"])
        assert fleet.deleted == [GREEN]
        assert GREEN not in fleet.controller.clusters
        gone_green = await provider.observe(namespace=NAMESPACE, name=GREEN)
        assert not gone_green.exists
        assert (await provider.observe(namespace=NAMESPACE, name=BLUE)).ready


async def test_retiring_the_original_blue_keeps_the_configs_a_person_wrote() -> None:
    async with running_eksa_fleet() as fleet:
        provider = EksaClusterProvider(client=fleet.client)

        detail = await provider.delete(namespace=NAMESPACE, name=BLUE)
        await gone(fleet, BLUE)

        assert detail == (f"deleted Cluster {NAMESPACE}/{BLUE}; kept VSphereMachineConfig {BLUE}-cp (not created "
                          f"by bluegreen), VSphereMachineConfig {BLUE}-md-0 (not created by bluegreen)")
        assert fleet.machine_config_names() == [f"{BLUE}-cp", f"{BLUE}-md-0"]
        assert fleet.deleted == [BLUE]
        assert (await provider.observe(namespace=NAMESPACE, name=BLUE)).kubeconfig_secret is None

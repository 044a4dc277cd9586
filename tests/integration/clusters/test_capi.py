"""The Cluster API provider end to end against the management emulator and the simulated CAPI controller.

Given blue (a ClusterClass Cluster, adopted and Ready), when green is
provisioned through the provider, then green's Cluster is a clone at the
target version, becomes ready with its own API server and kubeconfig Secret,
and can be deleted again; for both cluster.x-k8s.io v1beta2 and v1beta1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bluegreen.clusters.base import ClusterProvider, ClusterProviderError
from bluegreen.clusters.capi import CapiClusterProvider, topology_class
from bluegreen.engine.types import LABEL_UPGRADE, ClusterObservation
from bluegreen.kube import client as kubeclient
from bluegreen.kube import remote
from bluegreen.sim import capi as sim_capi
from bluegreen.sim.kube import KubeEmulator
from tests.fixtures.fleet import BLUE, GREEN, NAMESPACE, Fleet, eventually, running_fleet

pytestmark = pytest.mark.integration


@pytest.fixture(params=["v1beta2", "v1beta1"])
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    async with running_fleet(api_version=request.param, kustomizations=()) as running:
        yield running


async def provision(provider: ClusterProvider, **overrides: object) -> str | None:
    return await provider.provision_green(
        namespace=NAMESPACE, blue_name=BLUE, green_name=GREEN, version="1.31", overrides=dict(overrides),
        labels={LABEL_UPGRADE: "fleet.prod-to-1-31"},
    )


async def test_provider_detects_the_served_version_and_sees_blue_ready(fleet: Fleet) -> None:
    provider = CapiClusterProvider(client=fleet.client)

    blue = await provider.observe(namespace=NAMESPACE, name=BLUE)

    assert await provider.api_version() == fleet.api_version
    assert (blue.exists, blue.ready, blue.version) == (True, True, "v1.30.4")
    assert blue.kubeconfig_secret == f"{BLUE}-kubeconfig"


async def test_green_is_provisioned_as_a_clone_becomes_ready_and_is_deleted(fleet: Fleet) -> None:
    provider: ClusterProvider = CapiClusterProvider(client=fleet.client)

    # When green is provisioned
    detail = await provision(provider)
    again = await provision(provider)
    # Then its Cluster is blue's clone at the target version, owned by the upgrade
    assert detail == f"created Cluster {NAMESPACE}/{GREEN} at v1.31.0, cloned from {BLUE}"
    assert again is None, "provisioning is idempotent"
    green_object = fleet.cluster(GREEN)
    assert green_object is not None
    assert green_object["metadata"]["labels"] == {"env": "prod", "bluegreen.io/cluster": GREEN,
                                                  LABEL_UPGRADE: "fleet.prod-to-1-31"}
    assert topology_class(green_object) == "quick-start"
    # and it becomes ready, with its own API server at the new version and a kubeconfig Secret
    green = await eventually(lambda: _ready(provider, GREEN), what="green ready")
    assert (green.version, green.kubeconfig_secret, green.managed_by) == (
        "v1.31.0", f"{GREEN}-kubeconfig", "fleet.prod-to-1-31")
    remotes = remote.RemoteClients(fleet.client)
    namespace, secret, key = provider.kubeconfig_secret_ref(namespace=NAMESPACE, name=GREEN)
    green_api = await remotes.client(namespace=namespace, name=secret, key=key)
    assert (await green_api.server_version())["gitVersion"] == "v1.31.0"
    assert fleet.ready == [BLUE, GREEN]

    # When green is deleted
    deleted = await provider.delete(namespace=NAMESPACE, name=GREEN)
    deleted_again = await provider.delete(namespace=NAMESPACE, name=GREEN)
    # Then it goes away with its API server; blue is untouched
    assert deleted == f"deleted Cluster {NAMESPACE}/{GREEN}"
    assert deleted_again is None
    gone = await eventually(lambda: _gone(provider, GREEN), what="green gone")
    assert not gone.ready and gone.kubeconfig_secret is None
    with pytest.raises(kubeclient.UnreachableError):
        await green_api.server_version()
    assert fleet.deleted == [GREEN]
    assert (await provider.observe(namespace=NAMESPACE, name=BLUE)).ready
    await remotes.close()


async def test_a_cluster_being_deleted_is_reported_deleting(fleet: Fleet) -> None:
    provider = CapiClusterProvider(client=fleet.client)
    fleet.capi.delete_delay = 30  # keep it in Deleting while we look

    await provider.delete(namespace=NAMESPACE, name=BLUE)
    seen = await provider.observe(namespace=NAMESPACE, name=BLUE)

    assert seen.exists and seen.deleting and not seen.ready
    assert "being deleted" in seen.reason


async def test_overrides_reach_green_s_spec(fleet: Fleet) -> None:
    provider = CapiClusterProvider(client=fleet.client)

    await provision(provider, topology={"controlPlane": {"replicas": 3}})

    green_object = fleet.cluster(GREEN)
    assert green_object is not None
    assert green_object["spec"]["topology"]["controlPlane"] == {"replicas": 3}


async def test_a_cluster_without_topology_is_refused(fleet: Fleet) -> None:
    provider = CapiClusterProvider(client=fleet.client)
    resource = sim_capi.cluster_resource(fleet.api_version)
    fleet.management.create(resource, {
        "apiVersion": f"cluster.x-k8s.io/{fleet.api_version}", "kind": "Cluster",
        "metadata": {"name": "handmade", "namespace": NAMESPACE},
        "spec": {"controlPlaneRef": {"kind": "KubeadmControlPlane", "name": "handmade-cp"}},
    })

    with pytest.raises(ClusterProviderError, match=r"no spec.topology with a ClusterClass"):
        await provider.provision_green(namespace=NAMESPACE, blue_name="handmade", green_name="handmade-green",
                                       version="1.31", overrides={}, labels={})
    assert fleet.cluster("handmade-green") is None


async def test_a_missing_blue_is_refused_naming_the_fields(fleet: Fleet) -> None:
    provider = CapiClusterProvider(client=fleet.client)

    with pytest.raises(ClusterProviderError, match=r"spec.cluster.name and spec.cluster.namespace"):
        await provider.provision_green(namespace=NAMESPACE, blue_name="nope", green_name="nope-green",
                                       version="1.31", overrides={}, labels={})


async def test_v1beta2_is_preferred_when_both_are_served() -> None:
    async with running_fleet(api_version="v1beta2", also_serve=("v1beta1",), kustomizations=()) as fleet:
        assert await CapiClusterProvider(client=fleet.client).api_version() == "v1beta2"


async def test_without_cluster_api_the_provider_says_so() -> None:
    bare = KubeEmulator(name="bare")
    await bare.start()
    try:
        async with kubeclient.KubeClient.from_kubeconfig(bare.kubeconfig()) as client:
            with pytest.raises(ClusterProviderError, match="Cluster API is not installed"):
                await CapiClusterProvider(client=client).observe(namespace=NAMESPACE, name=BLUE)
    finally:
        await bare.stop()


async def _ready(provider: ClusterProvider, name: str) -> ClusterObservation | None:
    seen = await provider.observe(namespace=NAMESPACE, name=name)
    return seen if seen.ready and seen.kubeconfig_secret else None


async def _gone(provider: ClusterProvider, name: str) -> ClusterObservation | None:
    seen = await provider.observe(namespace=NAMESPACE, name=name)
    return seen if not seen.exists else None

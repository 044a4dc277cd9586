"""EKS Anywhere in place, end to end against the simulated controller and its emulated webhook.

Given an EKS-A cluster at 1.28 on a management cluster with a release whose
Bundles offer 1.28-1.32, when the provider asks for 1.29, 1.30 and 1.31 one
after the other, waiting as the engine does, then each rollout is seen
(Ready=False, RollingUpgradeInProgress) and the API server reports each version
after it, and observe reports the offered versions. Two minors at once and a
downgrade are refused, by the provider and, written directly, by the webhook.
Green's capacity comes from blue's worker groups and machine configs.
"""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.clusters.base import ClusterProviderError
from bluegreen.clusters.eksa import CLUSTERS, EksaClusterProvider
from bluegreen.engine.types import ClusterObservation
from bluegreen.kube import client as kubeclient
from bluegreen.sim import eksa as sim_eksa
from tests.fixtures.eksa_fleet import GREEN_ENDPOINT, EksaFleet, running_eksa_fleet
from tests.fixtures.fleet import BLUE, NAMESPACE, eventually

pytestmark = [pytest.mark.integration, pytest.mark.preflight, pytest.mark.eksa]

OLD = "prod-old"


async def settled(provider: EksaClusterProvider, version: str) -> ClusterObservation:
    async def check() -> ClusterObservation | None:
        seen = await provider.observe(namespace=NAMESPACE, name=OLD)
        return seen if seen.version == version and seen.ready and not seen.rolling_out else None

    return await eventually(check, what=f"{OLD} settled at {version}")


async def rolling(provider: EksaClusterProvider) -> ClusterObservation:
    async def check() -> ClusterObservation | None:
        seen = await provider.observe(namespace=NAMESPACE, name=OLD)
        return seen if seen.rolling_out else None

    return await eventually(check, what=f"{OLD} rolling out")


def seed_old(fleet: EksaFleet) -> None:
    sim_eksa.seed_release(fleet.management)
    sim_eksa.seed_cluster(fleet.management, namespace=NAMESPACE, name=OLD, version="1.28",
                          endpoint_host=GREEN_ENDPOINT)


async def test_three_minors_in_a_row_roll_out_one_at_a_time() -> None:
    async with running_eksa_fleet(provision_delay=0.3) as fleet:
        seed_old(fleet)
        provider = EksaClusterProvider(client=fleet.client)
        first = await settled(provider, "1.28")

        previous = first.version
        for minor in ("1.29", "1.30", "1.31"):
            detail = await provider.set_version(namespace=NAMESPACE, name=OLD, version=minor)
            during = await rolling(provider)
            again = await provider.set_version(namespace=NAMESPACE, name=OLD, version=minor)
            after = await settled(provider, minor)

            assert detail == f"set spec.kubernetesVersion of Cluster {NAMESPACE}/{OLD} from {previous} to {minor}"
            assert again is None
            assert (during.version, during.ready) == (minor, False)
            assert "RollingUpgradeInProgress" in during.reason
            assert after.version == minor
            assert fleet.controller.clusters[OLD].kubernetes_version == minor
            previous = minor

        assert first.offered_versions == sim_eksa.DEFAULT_KUBE_VERSIONS


async def test_two_minors_at_once_and_a_downgrade_are_refused_by_the_provider_and_the_webhook() -> None:
    async with running_eksa_fleet() as fleet:
        seed_old(fleet)
        provider = EksaClusterProvider(client=fleet.client)
        await settled(provider, "1.28")

        with pytest.raises(ClusterProviderError, match=r"spec\.kubernetesVersion"):
            await provider.set_version(namespace=NAMESPACE, name=OLD, version="1.30")
        with pytest.raises(ClusterProviderError, match="downgraded"):
            await provider.set_version(namespace=NAMESPACE, name=OLD, version="1.27")
        refusals: list[str] = []
        for version in ("1.30", "1.27"):
            with pytest.raises(kubeclient.InvalidError) as refused:
                await fleet.client.patch(CLUSTERS, namespace=NAMESPACE, name=OLD,
                                         body={"spec": {"kubernetesVersion": version}})
            refusals.append(str(refused.value))

        assert "only +1 minor version skew is supported, minor version skew detected 2" in refusals[0]
        assert "kubernetes version downgrade is not supported (1.28) -> (1.27)" in refusals[1]
        still = await provider.observe(namespace=NAMESPACE, name=OLD)
        assert (still.version, still.ready, still.failed) == ("1.28", True, False)


async def test_a_version_the_bundles_do_not_offer_is_a_failure_of_the_cluster() -> None:
    async with running_eksa_fleet() as fleet:
        sim_eksa.seed_release(fleet.management, kube_versions=("1.29", "1.30"))
        provider = EksaClusterProvider(client=fleet.client)
        fleet.management.patch(sim_eksa.cluster_resource(), NAMESPACE, BLUE, {"spec": {"kubernetesVersion": "1.31"}})

        async def failed() -> ClusterObservation | None:
            seen = await provider.observe(namespace=NAMESPACE, name=BLUE)
            return seen if seen.failed else None

        seen = await eventually(failed, what="blue failed")

        assert "not supported by bundles" in seen.reason
        assert seen.offered_versions == ("1.29", "1.30")
        assert not seen.rolling_out


async def test_green_capacity_is_counted_from_blue_machine_configs_and_the_overrides() -> None:
    async with running_eksa_fleet() as fleet:
        provider = EksaClusterProvider(client=fleet.client)
        group = dict((fleet.cluster(BLUE) or {})["spec"]["workerNodeGroupConfigurations"][0])
        overrides: dict[str, Any] = {"workerNodeGroupConfigurations": [{**group, "count": 4}]}

        as_blue = await provider.green_capacity(namespace=NAMESPACE, blue_name=BLUE, overrides={})
        bigger = await provider.green_capacity(namespace=NAMESPACE, blue_name=BLUE, overrides=overrides)

        # The simulated vSphere machine configs: 2 CPUs and 8192 MiB each, 2 workers in md-0.
        assert (as_blue.nodes, as_blue.cpu_millis, as_blue.memory_bytes) == (2, 4000, 16 * 2**30)
        assert (bigger.nodes, bigger.cpu_millis, bigger.memory_bytes) == (4, 8000, 32 * 2**30)


async def test_green_capacity_of_a_cloudstack_cluster_is_unknown_and_says_why() -> None:
    async with running_eksa_fleet(datacenter="cloudstack") as fleet:
        provider = EksaClusterProvider(client=fleet.client)

        capacity = await provider.green_capacity(namespace=NAMESPACE, blue_name=BLUE, overrides={})

        assert (capacity.nodes, capacity.cpu_millis, capacity.memory_bytes) == (2, None, None)
        assert "compute offering (m4-large)" in capacity.detail

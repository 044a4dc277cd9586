"""Cluster API in place, end to end against the simulated controller and its emulated webhook.

Given a topology Cluster at v1.28, when the provider asks for 1.29, 1.30 and
1.31 one after the other, waiting each time as the engine does (version asked,
ready, not rolling out), then each rollout is seen while it runs and the
cluster's API server reports each version after it. Two minors at once are
refused by the provider and, written directly, by the webhook; so is a minor
bump while the previous one still rolls out. Green's capacity is counted from
the autoscaler annotations with the overrides merged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bluegreen.clusters.base import ClusterProviderError
from bluegreen.clusters.capi import CAPACITY_CPU, CAPACITY_MEMORY, CapiClusterProvider, cluster_resource
from bluegreen.engine.types import ClusterObservation
from bluegreen.kube import client as kubeclient
from bluegreen.sim import capi as sim_capi
from tests.fixtures.fleet import BLUE, NAMESPACE, Fleet, eventually, running_fleet

pytestmark = [pytest.mark.integration, pytest.mark.preflight]

OLD = "prod-old"


@pytest.fixture(params=["v1beta2", "v1beta1"])
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    async with running_fleet(api_version=request.param, kustomizations=(), provision_delay=0.05) as running:
        running.capi.rollout_delay = 0.3
        sim_capi.seed_cluster(running.management, namespace=NAMESPACE, name=OLD, version="v1.28.3",
                              api_version=request.param)
        yield running


async def settled(provider: CapiClusterProvider, version: str) -> ClusterObservation:
    async def check() -> ClusterObservation | None:
        seen = await provider.observe(namespace=NAMESPACE, name=OLD)
        return seen if seen.version == version and seen.ready and not seen.rolling_out else None

    return await eventually(check, what=f"{OLD} settled at {version}")


async def rolling(provider: CapiClusterProvider) -> ClusterObservation:
    async def check() -> ClusterObservation | None:
        seen = await provider.observe(namespace=NAMESPACE, name=OLD)
        return seen if seen.rolling_out else None

    return await eventually(check, what=f"{OLD} rolling out")


async def test_three_minors_in_a_row_roll_out_one_at_a_time(fleet: Fleet) -> None:
    provider = CapiClusterProvider(client=fleet.client)
    await settled(provider, "v1.28.3")

    for minor, expected in (("1.29", "v1.29.0"), ("1.30", "v1.30.0"), ("1.31", "v1.31.0")):
        detail = await provider.set_version(namespace=NAMESPACE, name=OLD, version=minor)
        during = await rolling(provider)
        again = await provider.set_version(namespace=NAMESPACE, name=OLD, version=minor)
        after = await settled(provider, expected)

        assert detail is not None and detail.endswith(f"to {expected}")
        assert again is None, "asking again for the version the cluster asks for changes nothing"
        assert during.version == expected
        assert after.version == expected
        assert fleet.capi.clusters[OLD].kubernetes_version == expected


async def test_two_minors_at_once_are_refused_by_the_provider_and_by_the_webhook(fleet: Fleet) -> None:
    provider = CapiClusterProvider(client=fleet.client)
    await settled(provider, "v1.28.3")

    with pytest.raises(ClusterProviderError, match=r"spec\.topology\.version"):
        await provider.set_version(namespace=NAMESPACE, name=OLD, version="1.30")
    with pytest.raises(kubeclient.InvalidError) as refused:
        await fleet.client.patch(cluster_resource(fleet.api_version), namespace=NAMESPACE, name=OLD,
                                 body={"spec": {"topology": {"version": "v1.30.0"}}})

    assert 'version cannot be increased from "1.28.3" to "1.30.0"' in str(refused.value)
    assert (await provider.observe(namespace=NAMESPACE, name=OLD)).version == "v1.28.3"


async def test_the_webhook_refuses_a_minor_bump_while_the_last_one_rolls_out(fleet: Fleet) -> None:
    provider = CapiClusterProvider(client=fleet.client)
    await settled(provider, "v1.28.3")
    await provider.set_version(namespace=NAMESPACE, name=OLD, version="1.29")
    await rolling(provider)

    with pytest.raises(kubeclient.InvalidError, match="still completing a previous upgrade"):
        await fleet.client.patch(cluster_resource(fleet.api_version), namespace=NAMESPACE, name=OLD,
                                 body={"spec": {"topology": {"version": "v1.30.0"}}})
    await settled(provider, "v1.29.0")


async def test_green_capacity_is_blue_workers_with_the_overrides_merged(fleet: Fleet) -> None:
    provider = CapiClusterProvider(client=fleet.client)
    blue = fleet.cluster(BLUE)
    assert blue is not None
    workers = blue["spec"]["topology"]["workers"]
    workers["machineDeployments"][0]["metadata"] = {"annotations": {CAPACITY_CPU: "4", CAPACITY_MEMORY: "16Gi"}}
    fleet.management.patch(sim_capi.cluster_resource(fleet.api_version), NAMESPACE, BLUE,
                           {"spec": {"topology": {"workers": workers}}})
    bigger = {"machineDeployments": [{**workers["machineDeployments"][0], "replicas": 5}]}

    as_blue = await provider.green_capacity(namespace=NAMESPACE, blue_name=BLUE, overrides={})
    with_overrides = await provider.green_capacity(namespace=NAMESPACE, blue_name=BLUE,
                                                   overrides={"topology": {"workers": bigger}})

    assert (as_blue.nodes, as_blue.cpu_millis, as_blue.memory_bytes) == (2, 8000, 32 * 2**30)
    assert (with_overrides.nodes, with_overrides.cpu_millis) == (5, 20000)

"""The benchmarks' fleet world: many blue clusters, really provisioned and synced, and a count of who asked what."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yaml

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import flux
from bluegreen.sim.fleet import Fleet, FleetConfig

pytestmark = pytest.mark.integration

CLUSTERS = Resource("cluster.x-k8s.io", "v1beta2", "clusters")
KUSTOMIZATIONS = Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")


@pytest.fixture
async def fleet(tmp_path: pathlib.Path) -> AsyncIterator[Fleet]:
    started = Fleet(FleetConfig(provision_delay=0.1, flux_delay=0.05), state_dir=tmp_path)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


def ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def test_seeded_clusters_run_and_their_kustomizations_are_applied_to_them(fleet: Fleet) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fleet.control_url}/seed", json={"count": 3}) as response:
            assert response.status == 200
            assert (await response.json())["blue"] == ["u0000-blue", "u0001-blue", "u0002-blue"]
        async with session.post(f"{fleet.control_url}/seed", json={"count": 1}) as response:
            assert (await response.json())["blue"] == ["u0003-blue"], "numbering goes on"
    assert sorted(fleet.capi.clusters) == ["u0000-blue", "u0001-blue", "u0002-blue", "u0003-blue"]
    for name in fleet.capi.clusters:
        kustomization = fleet.management.get(flux.KUSTOMIZATIONS, "fleet", f"apps-{name}")
        assert kustomization is not None and ready(kustomization)
        assert kustomization["metadata"]["labels"] == {"bluegreen.io/cluster": name}
        applied = fleet.capi.clusters[name].get("v1/configmaps", "default", f"apps-{name}")
        assert applied is not None, "Flux applied to the cluster's own API server"


async def test_usage_counts_requests_by_client_on_the_management_and_the_clusters(fleet: Fleet) -> None:
    await fleet.seed(2)
    config = yaml.safe_load((fleet.state_dir / "management.kubeconfig").read_text())
    async with KubeClient.from_kubeconfig(config, user_agent="fleet-test/1") as client:
        assert len(await client.list(CLUSTERS, namespace="fleet")) == 2
        await client.get(KUSTOMIZATIONS, namespace="fleet", name="apps-u0000-blue")
    usage = fleet.usage()
    assert usage["management"]["fleet-test"] == 2
    assert "fleet-test" not in usage["clusters"]
    assert usage["clusters"]["bluegreen"] >= 2, "Flux's applies to each cluster (the sim's client)"


async def test_the_weights_posted_are_kept_by_upgrade(fleet: Fleet) -> None:
    async with aiohttp.ClientSession() as session:
        for name, green in (("u0000", 10), ("u0001", 50), ("u0000", 100)):
            body = {"blue": 100 - green, "green": green, "upgrade": {"namespace": "fleet", "name": name}}
            async with session.post(fleet.weights.url, json=body) as response:
                assert response.status == 200
        async with session.get(f"{fleet.control_url}/weights") as response:
            posts = await response.json()
    assert [post["green"] for post in posts["u0000"]] == [10, 100]
    assert [post["green"] for post in posts["u0001"]] == [50]

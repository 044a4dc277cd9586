"""The operator process serves its metrics on the port its environment names, as Prometheus scrapes them."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bluegreen.kube.client import KubeClient
from bluegreen.sim import harness
from tests.fixtures.ports import free_port
from tests.integration.conftest import Operator, apply, phase_is, upgrade_manifest, wait_for

pytestmark = pytest.mark.integration



class MetricsOperator(Operator):
    def __init__(self, world: harness.WorldProcess, log_dir: pathlib.Path, *, port: int) -> None:
        super().__init__(world, log_dir)
        self.port = port

    def start(self) -> None:
        self.process = harness.start_operator(self.world.kubeconfig, log_path=self.log_path, env={
            "BLUEGREEN_RETRY_BASE_SECONDS": "0.2",
            "BLUEGREEN_METRICS_HOST": "127.0.0.1",
            "BLUEGREEN_METRICS_PORT": str(self.port),
        })


@pytest.fixture
def metrics_operator(world: harness.WorldProcess, tmp_path: pathlib.Path) -> Iterator[MetricsOperator]:
    running = MetricsOperator(world, tmp_path, port=free_port())
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.without_prometheus
async def test_the_operator_serves_metrics_of_a_running_upgrade(
    world: harness.WorldProcess, metrics_operator: MetricsOperator, management: KubeClient
) -> None:
    # Given an upgrade held by a pause for a human at 25 %
    manifest = upgrade_manifest(world)
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]
    apply(world, manifest)
    await wait_for(management, manifest, phase_is("Paused"), timeout=60, operator=metrics_operator,
                   what="the pause for a human")
    # When Prometheus scrapes the operator's metrics port
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{metrics_operator.port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    # Then it reads the upgrade's phase and the weights its router was set to
    values = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
              for family in text_string_to_metric_families(text) for sample in family.samples}
    upgrade = (("name", "demo"), ("namespace", "fleet"))
    assert values[("bluegreen_upgrade_phase", (*upgrade, ("phase", "Paused")))] == 1
    assert values[("bluegreen_upgrade_phase", (*upgrade, ("phase", "Shifting")))] == 0
    router = next(r.get("name") for r in manifest["spec"]["traffic"]["routers"])
    weight = {side: values[("bluegreen_router_weight_percent", (*upgrade, ("router", router), ("side", side)))]
              for side in ("blue", "green")}
    assert weight == {"blue": 75, "green": 25}
    assert values[("bluegreen_reconcile_latency_seconds_count", ())] >= 1

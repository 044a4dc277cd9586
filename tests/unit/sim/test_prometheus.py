"""The test world's Prometheus: its configuration, a start that waits for every target, a target that comes later."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from bluegreen.sim.prometheus import PrometheusError, PrometheusServer, ScrapeTarget
from tests.fixtures.prometheus import PROMETHEUS_BINARY, Exporter, requires_prometheus


def test_the_configuration_scrapes_each_target_with_its_path_and_labels(tmp_path: pathlib.Path) -> None:
    server = PrometheusServer(state_dir=tmp_path, scrape_interval="2s", targets=[
        ScrapeTarget(job="haproxy", address="127.0.0.1:8404"),
        ScrapeTarget(job="ingress", address="127.0.0.1:8001", labels={"cluster": "prod-blue"}),
        ScrapeTarget(job="ingress", address="127.0.0.1:8002", labels={"cluster": "prod-green"}),
        ScrapeTarget(job="kopf", address="127.0.0.1:9000", metrics_path="/custom"),
    ])

    config = yaml.safe_load(server.render_config())

    assert config["global"] == {"scrape_interval": "2s", "scrape_timeout": "2s"}
    assert config["scrape_configs"] == [
        {"job_name": "haproxy", "metrics_path": "/metrics",
         "static_configs": [{"targets": ["127.0.0.1:8404"], "labels": {}}]},
        {"job_name": "ingress", "metrics_path": "/metrics",
         "static_configs": [{"targets": ["127.0.0.1:8001"], "labels": {"cluster": "prod-blue"}},
                            {"targets": ["127.0.0.1:8002"], "labels": {"cluster": "prod-green"}}]},
        {"job_name": "kopf", "metrics_path": "/custom",
         "static_configs": [{"targets": ["127.0.0.1:9000"], "labels": {}}]},
    ]


def test_one_job_cannot_have_two_paths(tmp_path: pathlib.Path) -> None:
    server = PrometheusServer(state_dir=tmp_path, targets=[
        ScrapeTarget(job="app", address="127.0.0.1:1", metrics_path="/a"),
        ScrapeTarget(job="app", address="127.0.0.1:2", metrics_path="/b"),
    ])

    with pytest.raises(PrometheusError, match=r"job\(s\) app have targets with different metrics paths"):
        server.render_config()


async def test_a_binary_that_exits_is_reported_with_its_output(tmp_path: pathlib.Path) -> None:
    server = PrometheusServer(state_dir=tmp_path, targets=[], binary="/bin/false", start_timeout=5)

    with pytest.raises(PrometheusError, match=r"prometheus exited at start"):
        await server.start()
    assert not server.running


@requires_prometheus
@pytest.mark.analysis
async def test_start_waits_for_every_target_and_a_down_target_comes_up_later(
    tmp_path: pathlib.Path, unused_tcp_port: int,
) -> None:
    blue = Exporter()
    green = Exporter(port=unused_tcp_port)  # nothing listens there until it starts, like green's ingress
    blue.set("ingress_up", 1)
    green.set("ingress_up", 1)
    await blue.start()
    server = PrometheusServer(state_dir=tmp_path, binary=PROMETHEUS_BINARY, targets=[
        ScrapeTarget(job="ingress-blue", address=blue.address),
        ScrapeTarget(job="ingress-green", address=green.address),
    ])
    try:
        await server.start()
        up = await server.query("up")
        assert {item["metric"]["job"]: item["value"][1] for item in up["result"]} == {
            "ingress-blue": "1", "ingress-green": "0"}
        assert len((await server.query("ingress_up"))["result"]) == 1

        await green.start()
        await server.wait_until_up("ingress-green")
        await server.wait_for('ingress_up{job="ingress-green"}')
        with pytest.raises(PrometheusError, match=r"refused \(bad_data\)"):
            await server.query("up(")
    finally:
        await server.stop()
        await server.stop()  # twice is fine
        await green.stop()
        await blue.stop()
    assert not server.running

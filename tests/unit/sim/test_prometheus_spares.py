"""Prometheus spares: started ahead on reserved ports, each handed out once, scraping a world as soon as it listens."""

from __future__ import annotations

import errno
import json
import pathlib
import socket
import time

import pytest

from bluegreen.sim import prometheus_spares, world
from bluegreen.sim.prometheus import PrometheusServer
from tests.fixtures.prometheus import PROMETHEUS_BINARY, Exporter, requires_prometheus

JOBS = (prometheus_spares.Job("blue"), prometheus_spares.Job("green", metrics_path="/stats"))


def test_a_reserved_port_is_bound_by_nobody_else_but_by_who_also_reuses_it() -> None:
    held = prometheus_spares.reserve_port()
    port = held.getsockname()[1]
    try:
        with socket.socket() as intruder, pytest.raises(OSError) as refused:
            intruder.bind(("127.0.0.1", port))
        assert refused.value.errno == errno.EADDRINUSE
        with socket.socket() as user:
            user.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            user.bind(("127.0.0.1", port))
            user.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                accepted, _ = user.accept()  # the listener gets the connection, not the holder
                accepted.close()
    finally:
        held.close()


@requires_prometheus
@pytest.mark.analysis
async def test_a_taken_spare_scrapes_its_targets_once_they_listen_and_the_next_one_is_another(
    tmp_path: pathlib.Path,
) -> None:
    spares = prometheus_spares.Spares(state_dir=tmp_path, binary=PROMETHEUS_BINARY)
    spare = spares.take(JOBS)
    blue = Exporter(port=spare.port("blue"), reuse_port=True)
    try:
        assert spare.alive
        described = json.loads(spare.write(tmp_path / "spare.json").read_text())
        assert described["url"] == spare.url and described["scrape_interval"] == "1s"
        assert prometheus_spares.ports_by_job(described) == {"blue": spare.port("blue"), "green": spare.port("green")}
        assert {(t["job"], t["metrics_path"]) for t in described["targets"]} == {("blue", "/metrics"),
                                                                                  ("green", "/stats")}
        # Given blue listens on its reserved port and green does not (yet)
        blue.set("side_info", 1, side="blue")
        await blue.start()
        listening = time.time()
        server = PrometheusServer.attach(url=spare.url, state_dir=tmp_path, targets=spare.targets)
        # When a world waits for the first scrapes since it listened
        await server.wait_scraped(since=listening)
        # Then blue's series is there and green reads down, each from a scrape begun after blue listened
        assert len((await server.query('side_info{job="blue"}'))["result"]) == 1
        up = {item["metric"]["job"]: item["value"][1] for item in (await server.query("up"))["result"]}
        assert up == {"blue": "1", "green": "0"}
        stamps = (await server.query("timestamp(up)"))["result"]
        assert all(float(item["value"][1]) > listening for item in stamps), stamps
        # and the next spare is another server on other ports
        following = spares.take(JOBS)
        assert following is not spare and following.url != spare.url
        assert {following.port(job.name) for job in JOBS}.isdisjoint({spare.port(job.name) for job in JOBS})
        following.stop()
        await server.stop()  # attached: it is not this handle's to stop
        assert spare.alive
    finally:
        await blue.stop()
        spare.stop()
        spares.close()
    assert not spare.alive
    with socket.socket() as again:
        again.bind(("127.0.0.1", spare.port("green")))  # given back


def test_a_world_refuses_a_spare_for_other_targets(tmp_path: pathlib.Path) -> None:
    other = {"url": "http://127.0.0.1:9", "scrape_interval": "1s", "state_dir": str(tmp_path),
             "targets": [{"job": "haproxy", "address": "127.0.0.1:10", "metrics_path": "/metrics"}]}
    path = tmp_path / "spare.json"
    path.write_text(json.dumps(other))

    with pytest.raises(ValueError, match=r"scrapes \['haproxy'\] every 1s; this world needs \['haproxy', "
                                         r"'ingress-blue', 'ingress-green'\] every 1s"):
        world.World(world.WorldConfig(prometheus_spare=path), state_dir=tmp_path / "world")


"""The emulated world's parts for analysis: Prometheus, faults on a running backend, gates.

One world (``bluegreen-sim up`` as a process, as tests and the demo run it)
serves the module; each test leaves the faults and gates as it found them.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Iterator

import aiohttp
import pytest

from bluegreen.sim import harness
from bluegreen.sim import prometheus_spares as sim_spares
from bluegreen.sim import world as sim_world

pytestmark = [pytest.mark.integration, pytest.mark.analysis]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory,
          prometheus_spares: sim_spares.Spares) -> Iterator[harness.WorldProcess]:
    started = harness.start_world(tmp_path_factory.mktemp("world"), args=("--provision-delay", "1"),
                                  prometheus_spare=prometheus_spares.take(sim_world.SCRAPE_JOBS))
    try:
        yield started
    finally:
        started.stop()


async def eventually(world: harness.WorldProcess, promql: str, *, within: float = 20.0) -> float:
    """The query's single value once Prometheus has one above zero."""
    deadline = time.monotonic() + within
    found: list[tuple[dict[str, str], float]] = []
    while time.monotonic() < deadline:
        found = await world.query(promql)
        if found and found[0][1] > 0:
            return found[0][1]
        await asyncio.sleep(0.5)
    raise AssertionError(f"{promql} had no value above 0 within {within:g}s: {found}")


async def test_prometheus_scrapes_haproxy_whose_servers_are_named_after_the_clusters(
    world: harness.WorldProcess,
) -> None:
    assert (world.info["haproxy"]["blue_server"], world.info["haproxy"]["green_server"]) == ("prod-blue", "prod-green")
    assert world.info["prometheus"]["scrape_interval"] == "1s"
    # The load generator's requests reach blue's server; Prometheus sees them under blue's cluster name.
    answered = await eventually(world, 'sum(haproxy_server_http_responses_total{proxy="app",server="prod-blue"})')
    assert answered > 0
    [(_, haproxy_up)] = await world.query('up{job="haproxy"}')
    assert haproxy_up == 1
    # Green's ingress is not up before its cluster is: a scrape target that is down, as a new ingress would be.
    [(_, green_up)] = await world.query('up{job="ingress-green"}')
    assert green_up == 0


async def test_a_fault_changes_a_running_backend_and_shows_in_clients_and_prometheus(
    world: harness.WorldProcess,
) -> None:
    changed = time.time()
    assert await world.set_fault("prod-blue", error_rate=0.5) == {"cluster": "prod-blue", "errorRate": 0.5,
                                                                  "latency": 0.0}
    try:
        await asyncio.sleep(3)  # every sample in the 2 s rate window is from after the change
        during = await world.traffic(since=changed + 0.25, samples=True)
        share = await eventually(
            world,
            'sum(rate(ingress_requests_total{cluster="prod-blue",code="5xx"}[2s]))'
            ' / sum(rate(ingress_requests_total{cluster="prod-blue"}[2s]))',
        )
    finally:
        await world.set_fault("prod-blue", error_rate=0.0)
    failures = [sample for sample in during["samples"] if sample["failure"]]
    assert during["requests"] >= 20
    assert {sample["failure"] for sample in failures} == {"HTTP 500"}
    assert abs(len(failures) / during["requests"] - 0.5) <= 0.1, during
    assert 0.3 <= share <= 0.7
    healed = time.time()
    await asyncio.sleep(1)
    assert (await world.traffic(since=healed + 0.25))["failed"] == 0


async def test_a_fault_for_a_cluster_the_world_does_not_have_is_refused_naming_those_it_has(
    world: harness.WorldProcess,
) -> None:
    with pytest.raises(aiohttp.ClientResponseError) as refused:
        await world.set_fault("prod-purple", error_rate=0.1)
    assert refused.value.status == 404
    with pytest.raises(aiohttp.ClientResponseError) as impossible:
        await world.set_fault("prod-green", error_rate=2.0)
    assert impossible.value.status == 400


async def test_a_gate_answers_the_status_last_set_and_keeps_what_it_was_sent(world: harness.WorldProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(world.gate_url("confirm"), json={"name": "demo", "phase": "Progressing"}) as answer:
            assert answer.status == 200, "a gate is open until told otherwise"
        await world.set_gate("confirm", status=500)
        async with session.post(world.gate_url("confirm"), json={"name": "demo"}) as answer:
            assert answer.status == 500
        async with session.get(world.gate_url("confirm")) as answer:
            assert answer.status == 500
        await world.set_gate("confirm", status=200)
        async with session.post(world.gate_url("confirm"), data="not json") as answer:
            assert answer.status == 200
    calls = await world.gate_calls("confirm")
    assert [(call["method"], call["payload"]) for call in calls] == [
        ("POST", {"name": "demo", "phase": "Progressing"}), ("POST", {"name": "demo"}), ("GET", ""),
        ("POST", "not json"),
    ]
    assert await world.gate_calls("never-called") == []


async def test_the_world_endpoint_says_where_everything_is(world: harness.WorldProcess) -> None:
    await world.set_gate("shown", status=503)
    described = await world.control("GET", "/world")
    assert described["prometheus"]["url"] == world.prometheus_url
    assert described["faults"] == {"prod-blue": {"errorRate": 0.0, "latency": 0.0},
                                   "prod-green": {"errorRate": 0.0, "latency": 0.0}}
    assert described["gates"]["shown"] == 503
    assert described["haproxy"]["frontend_url"] == world.info["haproxy"]["frontend_url"]


def test_a_world_without_prometheus_says_so(tmp_path: pathlib.Path) -> None:
    started = harness.start_world(tmp_path / "world", args=("--no-prometheus",))
    try:
        assert started.info["prometheus"] is None
        with pytest.raises(RuntimeError, match="--no-prometheus"):
            _ = started.prometheus_url
    finally:
        started.stop()

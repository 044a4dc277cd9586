"""The simulated ingress: who answers, on which port, and how badly when asked to."""

from __future__ import annotations

import time

import aiohttp
import pytest

from bluegreen.sim import backends


async def fetch(url: str) -> tuple[int, str, str | None]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text(), response.headers.get(backends.CLUSTER_HEADER)


async def test_answers_with_its_cluster_name() -> None:
    backend = backends.Backend(cluster="prod-green")
    await backend.start()
    try:
        assert await fetch(f"{backend.url}/any/path") == (200, "prod-green\n", "prod-green")
        assert backend.requests == 1
    finally:
        await backend.stop()


async def test_port_is_known_before_start_and_kept_across_restarts() -> None:
    backend = backends.Backend(cluster="green")
    port = backend.port
    assert backend.address == f"127.0.0.1:{port}"
    with pytest.raises(aiohttp.ClientConnectorError):
        await fetch(backend.url)

    for _ in range(2):
        await backend.start()
        assert await fetch(backend.url) == (200, "green\n", "green")
        await backend.stop()
        with pytest.raises(aiohttp.ClientConnectorError):
            await fetch(backend.url)
    assert backend.port == port


async def test_error_rate_fails_that_fraction_exactly_but_not_health_checks() -> None:
    backend = backends.Backend(cluster="green", error_rate=0.2)
    await backend.start()
    try:
        statuses = [(await fetch(backend.url))[0] for _ in range(20)]
        health = [(await fetch(f"{backend.url}{backends.HEALTH_PATH}"))[0] for _ in range(5)]
    finally:
        await backend.stop()

    assert statuses.count(500) == 4 and statuses.count(200) == 16
    assert health == [200] * 5
    assert backend.requests == 20 and backend.errors == 4


async def test_latency_is_added_to_answers() -> None:
    backend = backends.Backend(cluster="blue")
    await backend.start()
    try:
        backend.latency = 0.2
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.get(backend.url) as response:
                assert response.status == 200
            assert time.monotonic() - started >= 0.2
    finally:
        await backend.stop()


async def test_set_fault_changes_a_running_backend_from_the_next_request() -> None:
    backend = backends.Backend(cluster="prod-green")
    await backend.start()
    try:
        before = [(await fetch(backend.url))[0] for _ in range(4)]
        backend.set_fault(error_rate=0.5)
        during = [(await fetch(backend.url))[0] for _ in range(4)]
        backend.set_fault(error_rate=0.0)
        after = [(await fetch(backend.url))[0] for _ in range(4)]
    finally:
        await backend.stop()

    assert before == [200] * 4 and during.count(500) == 2 and after == [200] * 4
    assert backend.fault == {"errorRate": 0.0, "latency": 0.0}


async def test_set_fault_leaves_what_it_is_not_given() -> None:
    backend = backends.Backend(cluster="prod-green", error_rate=0.1)
    backend.set_fault(latency=0.05)
    assert backend.fault == {"errorRate": 0.1, "latency": 0.05}


@pytest.mark.parametrize(("error_rate", "latency", "says"), [(1.5, None, "between 0 and 1"), (-0.1, None, "between"),
                                                             (None, -1.0, "at least 0")])
def test_set_fault_refuses_impossible_values(error_rate: float | None, latency: float | None, says: str) -> None:
    backend = backends.Backend(cluster="prod-green")
    with pytest.raises(ValueError, match=says):
        backend.set_fault(error_rate=error_rate, latency=latency)


def samples(exposition: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in exposition.splitlines() if line and not line.startswith("#")}


async def test_serves_its_own_metrics_counting_answers_and_time_spent() -> None:
    backend = backends.Backend(cluster="prod-green", error_rate=0.25, latency=0.01)
    await backend.start()
    try:
        for _ in range(8):
            await fetch(backend.url)
        await fetch(f"{backend.url}{backends.HEALTH_PATH}")
        status, text, _ = await fetch(f"{backend.url}{backends.METRICS_PATH}")
    finally:
        await backend.stop()

    assert status == 200
    values = samples(text)
    assert values['ingress_requests_total{cluster="prod-green",code="2xx"}'] == 6
    assert values['ingress_requests_total{cluster="prod-green",code="5xx"}'] == 2
    assert values['ingress_request_duration_seconds_count{cluster="prod-green"}'] == 8, "health checks not counted"
    assert values['ingress_request_duration_seconds_sum{cluster="prod-green"}'] >= 8 * 0.01, "latency included"
    assert backend.requests == 8, "neither /healthz nor /metrics counts as a request"

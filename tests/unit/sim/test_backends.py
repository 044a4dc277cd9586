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

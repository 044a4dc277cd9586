"""The HAProxy harness itself: it starts for real, serves metrics, and says why when it cannot start."""

from __future__ import annotations

import os
import pathlib

import aiohttp
import pytest

from bluegreen.sim import backends
from bluegreen.sim import haproxy as sim_haproxy
from tests.fixtures import haproxy_world


async def get(url: str) -> tuple[int, str, str | None]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text(), response.headers.get(backends.CLUSTER_HEADER)


async def test_frontend_serves_blue_at_start(haproxy: sim_haproxy.HAProxyProcess) -> None:
    assert await get(haproxy.frontend_url) == (200, "blue\n", "blue")
    os.kill(haproxy.pid, 0)  # the process is there


async def test_metrics_are_served_by_the_prometheus_exporter(haproxy: sim_haproxy.HAProxyProcess) -> None:
    await get(haproxy.frontend_url)

    status, text, _ = await get(haproxy.metrics_url)

    assert status == 200
    assert 'haproxy_server_weight{proxy="app",server="green"} 0' in text
    assert 'haproxy_server_weight{proxy="app",server="blue"} 100' in text
    assert "haproxy_backend_http_responses_total" in text


async def test_server_names_and_backend_are_parameters(
    tmp_path: pathlib.Path, blue_backend: backends.Backend, green_backend: backends.Backend
) -> None:
    if not haproxy_world.HAVE_HAPROXY:
        pytest.skip(haproxy_world.MISSING_HAPROXY)
    process = sim_haproxy.HAProxyProcess(
        state_dir=tmp_path / "h", blue_address=blue_backend.address, green_address=green_backend.address,
        backend="edge", blue_server="prod-blue", green_server="prod-green", blue_weight=0, green_weight=100,
        binary=haproxy_world.HAPROXY_BINARY,
    )
    await process.start()
    try:
        assert await get(process.frontend_url) == (200, "green\n", "green")
        assert (await process.command("get weight edge/prod-green")).startswith("100 ")
        assert await process.server_status("prod-blue") == "UP"
    finally:
        await process.stop()
    await process.stop()  # twice is fine


async def test_a_bad_configuration_is_reported_with_haproxys_alerts(tmp_path: pathlib.Path) -> None:
    if not haproxy_world.HAVE_HAPROXY:
        pytest.skip(haproxy_world.MISSING_HAPROXY)
    process = sim_haproxy.HAProxyProcess(
        state_dir=tmp_path / "h", blue_address="127.0.0.1:notaport", green_address="127.0.0.1:1",
        binary=haproxy_world.HAPROXY_BINARY,
    )

    with pytest.raises(sim_haproxy.HAProxyError, match=r"(?s)exited at start.*ALERT.*notaport"):
        await process.start()


async def test_health_checks_take_a_dead_server_out(
    haproxy: sim_haproxy.HAProxyProcess, blue_backend: backends.Backend
) -> None:
    assert await haproxy.server_status("blue") == "UP"

    await blue_backend.stop()
    await haproxy.wait_for_status("blue", "DOWN")
    await blue_backend.start()
    await haproxy.wait_for_status("blue", "UP")

    assert await get(haproxy.frontend_url) == (200, "blue\n", "blue")


async def test_a_long_state_dir_still_gets_a_unix_socket(
    tmp_path: pathlib.Path, blue_backend: backends.Backend, green_backend: backends.Backend
) -> None:
    if not haproxy_world.HAVE_HAPROXY:
        pytest.skip(haproxy_world.MISSING_HAPROXY)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    process = sim_haproxy.HAProxyProcess(
        state_dir=deep, blue_address=blue_backend.address, green_address=green_backend.address,
        binary=haproxy_world.HAPROXY_BINARY,
    )
    await process.start()
    try:
        path = process.runtime_api_unix.removeprefix("unix://")
        assert len(path) < 108 and is_socket(path)
    finally:
        await process.stop()
    assert not is_socket(path)


def is_socket(path: str) -> bool:
    return pathlib.Path(path).is_socket()

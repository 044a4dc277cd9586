"""The HAProxy router refuses to give green traffic that nothing would take back without the operator.

Green's health check is the dead-man's switch: while traffic is split, HAProxy
itself takes a failing green out. These run a real haproxy whose green server
line has no ``check`` (or has one, disabled at runtime), and read what HAProxy
reports in ``show servers state``.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from bluegreen.api import spec
from bluegreen.sim import backends
from bluegreen.sim import haproxy as sim_haproxy
from bluegreen.traffic import base, haproxy, haproxy_runtime

pytestmark = [pytest.mark.routers, pytest.mark.reliability]


@pytest.fixture
async def unchecked(
    tmp_path: pathlib.Path, blue_backend: backends.Backend, green_backend: backends.Backend,
) -> AsyncIterator[sim_haproxy.HAProxyProcess]:
    """HAProxy whose green server has no health check."""
    process = sim_haproxy.HAProxyProcess(state_dir=tmp_path / "haproxy", blue_address=blue_backend.address,
                                         green_address=green_backend.address, green_check=False)
    await process.start()
    yield process
    await process.stop()


def router(process: sim_haproxy.HAProxyProcess, *,
           policy: spec.HealthCheckPolicy = spec.HealthCheckPolicy.REQUIRE) -> haproxy.HAProxyRouter:
    return haproxy.HAProxyRouter(name="edge", runtime_api=process.runtime_api, backend="app", blue_server="blue",
                                 green_server="green", green_health_check=policy)


async def weights(process: sim_haproxy.HAProxyProcess) -> tuple[str, str]:
    return ((await process.command("get weight app/blue")).split()[0],
            (await process.command("get weight app/green")).split()[0])


async def test_green_without_a_health_check_gets_no_traffic_and_the_refusal_names_server_and_fix(
    unchecked: sim_haproxy.HAProxyProcess,
) -> None:
    with pytest.raises(base.RouterError) as refused:
        await router(unchecked).set_weights(blue=50, green=50)

    message = str(refused.value)
    assert "HAProxy server app/green (green) is not health-checked (its server line has no `check`)" in message
    assert "Add `check` to that server line in backend app" in message
    assert "greenHealthCheck: Warn" in message
    assert await weights(unchecked) == ("100", "0"), "nothing was applied"


async def test_a_health_check_disabled_at_runtime_is_refused_too(haproxy: sim_haproxy.HAProxyProcess) -> None:
    assert await haproxy.command("disable health app/green") == "\n"

    with pytest.raises(base.RouterError, match=r"configured but disabled at runtime.*enable health app/green"):
        await router(haproxy).set_weights(blue=90, green=10)

    assert await haproxy.command("enable health app/green") == "\n"
    assert (await router(haproxy).set_weights(blue=90, green=10)).changed


async def test_taking_traffic_away_from_an_unchecked_green_is_never_refused(
    unchecked: sim_haproxy.HAProxyProcess,
) -> None:
    # Green holds traffic already (given by hand, or before its check was removed): a rollback must go through.
    for command in ("set weight app/green 50", "set weight app/blue 50"):
        assert await unchecked.command(command) == "\n"

    change = await router(unchecked).set_weights(blue=100, green=0)

    assert change.changed and "warning" not in change.detail
    assert await weights(unchecked) == ("100", "0")


async def test_warn_shifts_anyway_and_says_so_in_the_change(unchecked: sim_haproxy.HAProxyProcess) -> None:
    change = await router(unchecked, policy=spec.HealthCheckPolicy.WARN).set_weights(blue=75, green=25)

    assert change.changed
    assert "warning: HAProxy server app/green (green) is not health-checked" in change.detail
    assert "keeps sending it 25% of requests" in change.detail
    assert await weights(unchecked) == ("75", "25")


async def test_a_checked_green_shifts_without_a_warning(haproxy: sim_haproxy.HAProxyProcess) -> None:
    change = await router(haproxy).set_weights(blue=50, green=50)

    assert change.changed and "warning" not in change.detail


def test_the_check_state_is_read_from_haproxys_columns() -> None:
    header = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
              "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state\n")
    # As HAProxy 2.6 prints them: checked (6), no check (0), `disabled` server with a check (paused: 14).
    rows = ("2 app 1 blue 127.0.0.1 2 0 100 100 1 6 3 2 6\n2 app 2 green 127.0.0.1 2 0 0 0 1 0 0 0 0\n"
            "2 app 3 spare 127.0.0.1 0 5 0 0 1 1 0 0 14\n")
    parsed = haproxy_runtime.parse_servers_state(header + rows, backend="app")
    assert parsed is not None
    servers = {row["srv_name"]: haproxy_runtime.ServerState.of(row) for row in parsed}
    assert servers["blue"].why_not_health_checked() is None
    assert servers["green"].why_not_health_checked() == "not health-checked (its server line has no `check`)"
    assert servers["spare"].why_not_health_checked() is None
    without_column = haproxy_runtime.ServerState.of({"srv_name": "old", "srv_op_state": "2", "srv_admin_state": "0"})
    assert "no srv_check_state column" in (without_column.why_not_health_checked() or "")

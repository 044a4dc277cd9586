"""The HAProxy router against a real haproxy process, plus a scripted runtime API for what haproxy won't do on cue."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from bluegreen.sim import backends, load
from bluegreen.sim import haproxy as sim_haproxy
from bluegreen.traffic import base, haproxy

pytestmark = pytest.mark.routers


def make_router(process: sim_haproxy.HAProxyProcess, *, runtime_api: str | None = None, backend: str = "app",
                blue_server: str = "blue", green_server: str = "green") -> haproxy.HAProxyRouter:
    return haproxy.HAProxyRouter(
        name="edge",
        runtime_api=runtime_api or process.runtime_api,
        backend=backend,
        blue_server=blue_server,
        green_server=green_server,
    )


async def weights_in_haproxy(process: sim_haproxy.HAProxyProcess) -> tuple[str, str]:
    """Weights as HAProxy itself reports them, read without the router."""
    blue = await process.command("get weight app/blue")
    green = await process.command("get weight app/green")
    return blue.split()[0], green.split()[0]


async def test_sets_and_verifies_weights(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = make_router(haproxy)

    change = await router.set_weights(blue=90, green=10)

    assert change.changed
    assert "app/green 0->10" in change.detail and "app/blue 100->90" in change.detail
    assert await weights_in_haproxy(haproxy) == ("90", "10")
    assert await router.verify() == base.RouterWeights(blue=90, green=10)


async def test_repeating_the_same_weights_changes_nothing(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = make_router(haproxy)
    await router.set_weights(blue=50, green=50)

    change = await router.set_weights(blue=50, green=50)

    assert not change.changed
    assert await weights_in_haproxy(haproxy) == ("50", "50")


async def test_starting_weights_are_recognised_without_a_change(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = make_router(haproxy)

    assert await router.verify() == base.RouterWeights(blue=100, green=0)
    assert not (await router.set_weights(blue=100, green=0)).changed


@pytest.mark.parametrize("path", [[(0, 100), (100, 0)], [(50, 50), (0, 100), (50, 50), (100, 0)]])
async def test_weights_go_all_the_way_both_ways(
    haproxy: sim_haproxy.HAProxyProcess, path: list[tuple[int, int]]
) -> None:
    router = make_router(haproxy)
    for blue, green in path:
        assert (await router.set_weights(blue=blue, green=green)).changed
        assert await router.verify() == base.RouterWeights(blue=blue, green=green)
        assert await weights_in_haproxy(haproxy) == (str(blue), str(green))


async def test_unix_socket_works_like_tcp(haproxy: sim_haproxy.HAProxyProcess) -> None:
    assert haproxy.runtime_api_unix.startswith("unix:///")
    router = make_router(haproxy, runtime_api=haproxy.runtime_api_unix)

    assert (await router.set_weights(blue=25, green=75)).changed
    assert await router.verify() == base.RouterWeights(blue=25, green=75)
    assert await weights_in_haproxy(haproxy) == ("25", "75")


async def test_traffic_through_the_frontend_follows_the_weights(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = make_router(haproxy)
    await router.set_weights(blue=90, green=10)

    generator = load.LoadGenerator(url=haproxy.frontend_url, rate=1000, concurrency=8, total=400)
    summary = await generator.run()

    assert summary["requests"] == 400 and summary["failed"] == 0, summary
    assert 0.07 <= generator.share("green") <= 0.13, summary


async def test_unknown_backend_is_reported_in_haproxys_words(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = make_router(haproxy, backend="nosuch")

    with pytest.raises(base.RouterError, match="Can't find backend"):
        await router.set_weights(blue=90, green=10)
    with pytest.raises(base.RouterError, match="Can't find backend"):
        await router.verify()


async def test_unknown_server_is_named(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = make_router(haproxy, green_server="greem")

    with pytest.raises(base.RouterError, match=r"no server 'greem'.*it has: blue, green"):
        await router.set_weights(blue=90, green=10)
    assert await weights_in_haproxy(haproxy) == ("100", "0")


async def test_refused_set_weight_carries_haproxys_reply(haproxy: sim_haproxy.HAProxyProcess) -> None:
    # An operator-level socket may read the servers but not change them.
    router = make_router(haproxy, runtime_api=haproxy.runtime_api_operator)

    with pytest.raises(base.RouterError, match="Permission denied"):
        await router.set_weights(blue=90, green=10)
    assert await weights_in_haproxy(haproxy) == ("100", "0")


@pytest.mark.parametrize("state, words", [("drain", "DRAIN"), ("maint", "MAINT")])
async def test_verify_reports_a_weighted_server_that_takes_no_traffic(
    haproxy: sim_haproxy.HAProxyProcess, state: str, words: str
) -> None:
    router = make_router(haproxy)
    await router.set_weights(blue=90, green=10)
    assert await haproxy.command(f"set server app/green state {state}") == "\n"

    with pytest.raises(base.RouterError, match=rf"app/green has weight 10 but is .*{words}"):
        await router.verify()


async def test_verify_accepts_a_drained_server_at_weight_zero(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = make_router(haproxy)
    await haproxy.command("set server app/green state drain")

    assert await router.verify() == base.RouterWeights(blue=100, green=0)


async def test_verify_reports_a_weighted_server_that_is_down(
    haproxy: sim_haproxy.HAProxyProcess, green_backend: backends.Backend
) -> None:
    router = make_router(haproxy)
    await router.set_weights(blue=90, green=10)
    await green_backend.stop()
    await haproxy.wait_for_status("green", "DOWN")

    with pytest.raises(base.RouterError, match="app/green has weight 10 but is DOWN"):
        await router.verify()


async def test_verify_reports_both_servers_at_zero(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = make_router(haproxy)
    await haproxy.command("set weight app/blue 0")

    with pytest.raises(base.RouterError, match="both have weight 0"):
        await router.verify()


async def test_weights_must_be_percent_summing_to_100(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = make_router(haproxy)
    for blue, green in [(90, 20), (-10, 110), (0, 0)]:
        with pytest.raises(ValueError, match="summing to 100"):
            await router.set_weights(blue=blue, green=green)
    assert await weights_in_haproxy(haproxy) == ("100", "0")


async def test_finalize_puts_the_retired_server_in_maintenance_at_weight_0(
    haproxy: sim_haproxy.HAProxyProcess,
) -> None:
    router = make_router(haproxy)
    await router.set_weights(blue=0, green=100)

    first = await router.finalize(retired="blue", mode="Remove", original=None)
    second = await router.finalize(retired="blue", mode="Remove", original=None)

    assert first.endswith("blue retired: app/blue ready->maint")
    assert second.endswith("blue already at weight 0 in maintenance")
    assert await weights_in_haproxy(haproxy) == ("0", "100")
    assert await haproxy.server_status("blue") == "MAINT"
    assert await router.verify() == base.RouterWeights(blue=0, green=100)


async def test_finalize_refuses_while_the_retired_server_takes_traffic(haproxy: sim_haproxy.HAProxyProcess) -> None:
    router = make_router(haproxy)
    await router.set_weights(blue=1, green=99)

    with pytest.raises(base.RouterError, match=r"refusing to retire blue from HAProxy backend 'app' at .*: blue "
                                               r"still takes traffic \(blue app/blue weight 1 ready, green app/green "
                                               r"weight 99 ready\)"):
        await router.finalize(retired="blue", mode="Remove", original=None)
    assert await haproxy.server_status("blue") == "UP"


async def test_a_server_retired_earlier_is_made_ready_when_it_is_given_traffic_again(
    haproxy: sim_haproxy.HAProxyProcess,
) -> None:
    router = make_router(haproxy)
    await router.finalize(retired="green", mode="Remove", original=None)  # a rollback left it in maintenance
    assert await haproxy.server_status("green") == "MAINT"

    change = await router.set_weights(blue=50, green=50)

    assert change.detail == "app/green maint->ready, app/green 0->50, app/blue 100->50"
    assert (await haproxy.server_status("green")).split()[0] == "UP"  # checks resume: "UP 1/2" at first
    assert await router.verify() == base.RouterWeights(blue=50, green=50)


async def test_a_green_server_declared_disabled_serves_once_made_ready(
    tmp_path: pathlib.Path, blue_backend: backends.Backend, green_backend: backends.Backend,
) -> None:
    """HAProxy keeps the configured-maintenance bit (0x04) of a `disabled` server after `state ready`, and serves it:
    the router must read that server as ready, or it would report green at 0 % while it takes its share."""
    process = sim_haproxy.HAProxyProcess(state_dir=tmp_path / "haproxy", blue_address=blue_backend.address,
                                         green_address=green_backend.address, green_disabled=True)
    await process.start()
    try:
        router = make_router(process)
        assert await process.server_status("green") == "MAINT"

        change = await router.set_weights(blue=50, green=50)

        assert "app/green maint->ready" in change.detail
        rows = await process.command("show servers state app")
        green_admin = next(line.split()[6] for line in rows.splitlines() if " green " in f" {line} ")
        assert int(green_admin) & 0x04, "HAProxy keeps the configured-maintenance bit"
        assert await router.verify() == base.RouterWeights(blue=50, green=50)
    finally:
        await process.stop()


async def test_restore_puts_back_the_saved_weights_and_states(haproxy: sim_haproxy.HAProxyProcess) -> None:
    for command in ("set weight app/blue 3", "set server app/green state drain"):
        assert not (await haproxy.command(command)).strip()
    router = make_router(haproxy)
    saved = await router.save()
    assert saved == {"blue": {"weight": 3, "state": "ready"}, "green": {"weight": 0, "state": "drain"}}

    await router.set_weights(blue=50, green=50)
    await router.set_weights(blue=100, green=0)
    line = await router.finalize(retired="green", mode="Restore", original=saved)

    assert line.endswith("restored as saved: app/blue weight 100->3, app/green ready->drain")
    assert await router.save() == saved
    assert await weights_in_haproxy(haproxy) == ("3", "0")
    assert (await haproxy.server_status("green")).split()[0] == "DRAIN"


# --- Without haproxy: unreachable sockets, and a scripted runtime API --------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_tcp_socket_names_the_address() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    router = haproxy.HAProxyRouter(
        name="edge", runtime_api=address, backend="app", blue_server="blue", green_server="green"
    )

    refused = f"cannot reach the HAProxy runtime API at {address}: Connection refused"
    with pytest.raises(base.RouterError, match=refused):
        await router.verify()
    with pytest.raises(base.RouterError, match=address):
        await router.set_weights(blue=50, green=50)


async def test_missing_unix_socket_names_the_path(tmp_path: pathlib.Path) -> None:
    address = f"unix://{tmp_path}/nothing.sock"
    router = haproxy.HAProxyRouter(
        name="edge", runtime_api=address, backend="app", blue_server="blue", green_server="green"
    )

    with pytest.raises(base.RouterError, match=f"cannot reach the HAProxy runtime API at {address}: No such file"):
        await router.verify()


class ScriptedRuntimeAPI:
    """A TCP server speaking the runtime API's non-interactive mode, answering from Python.

    It keeps blue/green weights like HAProxy does and records every command, so
    tests can replay the states traffic went through between two commands.
    """

    HEADER = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
              "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state\n")

    def __init__(self, *, blue: int, green: int) -> None:
        self.weights = {"blue": blue, "green": green}
        self.history: list[dict[str, int]] = [dict(self.weights)]
        self.commands: list[str] = []
        self.set_weight_reply: Callable[[str], str] = lambda _server: "\n"
        self.silent = False
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"tcp://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command = (await reader.readline()).decode().strip()
        self.commands.append(command)
        if self.silent:
            with contextlib.suppress(ConnectionError):
                await reader.read()
        elif command == "show servers state app":
            rows = "".join(
                f"3 app {index} {name} 127.0.0.1 2 0 {weight} 100 5 6 3 2 6\n"  # health-checked, UP
                for index, (name, weight) in enumerate(self.weights.items(), start=1)
            )
            writer.write((self.HEADER + rows + "\n").encode())
        elif command.startswith("set weight app/"):
            server, weight = command.removeprefix("set weight app/").split()
            reply = self.set_weight_reply(server)
            if reply == "\n":
                self.weights[server] = int(weight)
                self.history.append(dict(self.weights))
            writer.write(reply.encode())
        else:
            writer.write(b"Unknown command.\n\n")
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., ScriptedRuntimeAPI]]:
    servers: list[ScriptedRuntimeAPI] = []

    def factory(*, blue: int = 100, green: int = 0) -> ScriptedRuntimeAPI:
        server = ScriptedRuntimeAPI(blue=blue, green=green)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()


def scripted_router(api: ScriptedRuntimeAPI, *, timeout: float = 5.0) -> haproxy.HAProxyRouter:
    return haproxy.HAProxyRouter(
        name="edge", runtime_api=api.address, backend="app", blue_server="blue", green_server="green",
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "start, target",
    [((100, 0), (90, 10)), ((90, 10), (50, 50)), ((50, 50), (0, 100)), ((0, 100), (100, 0)), ((100, 0), (0, 100)),
     ((10, 90), (90, 10))],
)
async def test_rising_side_is_raised_before_the_falling_side_is_lowered(
    scripted: Callable[..., ScriptedRuntimeAPI], start: tuple[int, int], target: tuple[int, int]
) -> None:
    api = scripted(blue=start[0], green=start[1])
    await api.start()

    await scripted_router(api).set_weights(blue=target[0], green=target[1])

    old, new = dict(zip(("blue", "green"), start, strict=True)), dict(zip(("blue", "green"), target, strict=True))
    rising = next(server for server in old if new[server] > old[server])
    assert api.history[1][rising] == new[rising], f"first change was not to {rising}: {api.history}"
    assert api.history[-1] == new
    for state in api.history:
        assert any(state.values()), f"both servers at 0 in {api.history}"
        for server, weight in state.items():
            if old[server] == 0 and new[server] == 0:
                assert weight == 0, f"{server} got traffic in {api.history}"
            assert weight >= min(old[server], new[server]), f"{server} went below both ends in {api.history}"


async def test_only_the_servers_that_differ_are_written(scripted: Callable[..., ScriptedRuntimeAPI]) -> None:
    api = scripted(blue=90, green=0)
    await api.start()

    change = await scripted_router(api).set_weights(blue=100, green=0)

    assert change.changed
    assert [command for command in api.commands if command.startswith("set")] == ["set weight app/blue 100"]


@pytest.mark.parametrize(
    "reply", ["No such server.\n\n", "Require 'backend/server'.\n\n", "Permission denied\n\n", "Unknown command.\n\n"]
)
async def test_any_text_in_reply_to_set_weight_is_an_error(
    scripted: Callable[..., ScriptedRuntimeAPI], reply: str
) -> None:
    api = scripted()
    api.set_weight_reply = lambda _server: reply
    await api.start()

    with pytest.raises(base.RouterError, match=reply.strip().rstrip(".")):
        await scripted_router(api).set_weights(blue=90, green=10)


async def test_a_refusal_after_a_first_success_says_what_was_applied(
    scripted: Callable[..., ScriptedRuntimeAPI],
) -> None:
    api = scripted()
    api.set_weight_reply = lambda server: "No such server.\n\n" if server == "blue" else "\n"
    await api.start()

    with pytest.raises(base.RouterError, match=r"No such server.*already applied: app/green 0->10"):
        await scripted_router(api).set_weights(blue=90, green=10)


async def test_a_runtime_api_that_never_answers_times_out(scripted: Callable[..., ScriptedRuntimeAPI]) -> None:
    api = scripted()
    api.silent = True
    await api.start()

    with pytest.raises(base.RouterError, match=rf"{api.address} did not answer 'show servers state app' within 0.2s"):
        await scripted_router(api, timeout=0.2).verify()


@pytest.mark.parametrize(
    "field, kwargs",
    [("backend", {"backend": "app; set weight app/blue 0"}), ("greenServer", {"green_server": "green x"}),
     ("runtime API", {"runtime_api": "http://localhost:9999"})],
)
def test_names_that_are_not_haproxy_names_are_refused(field: str, kwargs: dict[str, str]) -> None:
    arguments = {"name": "edge", "runtime_api": "tcp://127.0.0.1:1", "backend": "app",
                 "blue_server": "blue", "green_server": "green"} | kwargs
    with pytest.raises(ValueError, match=field):
        haproxy.HAProxyRouter(**arguments)  # type: ignore[arg-type]

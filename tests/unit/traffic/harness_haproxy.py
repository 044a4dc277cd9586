"""Contract-suite harness for the HAProxy router (see test_router_contract.py), against a real haproxy.

The router reaches HAProxy's runtime API through a relay that records each
command (the writes are the ``set`` commands) and, when failing, closes every
connection unanswered; ``effective``, ``snapshot`` and ``removed`` ask HAProxy
directly. Blue starts at weight 1, not bluegreen's 100, so that a restore has
something to put back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bluegreen.sim import haproxy as sim_haproxy
from bluegreen.traffic import haproxy as haproxy_router


class RuntimeAPIRelay:
    """A TCP relay for the runtime API's one-command connections."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("tcp://").rsplit(":", 1)
        self._upstream = (host, int(port))
        self.commands: list[str] = []
        self.refusing = False
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
        try:
            line = await reader.readline()
            self.commands.append(line.decode().strip())
            if self.refusing:
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
            try:
                upstream_writer.write(line)
                await upstream_writer.drain()
                writer.write(await upstream_reader.read())
                await writer.drain()
            finally:
                upstream_writer.close()
                with contextlib.suppress(OSError):
                    await upstream_writer.wait_closed()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class HAProxyHarness:
    def __init__(self, process: sim_haproxy.HAProxyProcess, relay: RuntimeAPIRelay) -> None:
        self.process = process
        self.relay = relay
        self.router = haproxy_router.HAProxyRouter(
            name="edge", runtime_api=relay.address, backend="app", blue_server="blue", green_server="green",
        )

    async def effective(self) -> tuple[int, int]:
        blue = int((await self.process.command("get weight app/blue")).split()[0])
        green = int((await self.process.command("get weight app/green")).split()[0])
        blue_percent = round(100 * blue / (blue + green))
        return blue_percent, 100 - blue_percent

    async def snapshot(self) -> dict[str, tuple[str, str, str]]:
        """Each server's ``show servers state`` row but for the columns that move by themselves (time, checks)."""
        reply = await self.process.command("show servers state app")
        columns = reply.splitlines()[1].removeprefix("# ").split()
        rows = [dict(zip(columns, line.split(), strict=False)) for line in reply.splitlines()[2:] if line.strip()]
        return {row["srv_name"]: (row["srv_uweight"], row["srv_iweight"], row["srv_admin_state"]) for row in rows}

    async def removed(self, side: str) -> bool:
        weight, _, admin_state = (await self.snapshot())[side]
        return int(weight) == 0 and bool(int(admin_state) & 0x01)  # forced maintenance

    def writes(self) -> int:
        return sum(command.startswith("set ") for command in self.relay.commands)

    async def fail(self) -> None:
        self.relay.refusing = True

    async def recover(self) -> None:
        self.relay.refusing = False


@pytest.fixture
async def haproxy_harness(haproxy: sim_haproxy.HAProxyProcess) -> AsyncIterator[HAProxyHarness]:
    assert not (await haproxy.command("set weight app/blue 1")).strip()
    relay = RuntimeAPIRelay(haproxy.runtime_api)
    await relay.start()
    yield HAProxyHarness(haproxy, relay)
    await relay.stop()

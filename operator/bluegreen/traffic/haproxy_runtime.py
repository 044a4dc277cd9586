"""HAProxy's runtime API as a client: one command per connection, and the ``show servers state`` table.

Two parts of bluegreen talk to HAProxy: the router (``traffic.haproxy``), which
moves weights between blue's and green's servers, and the NodePools attachment
check (``nodepools.attachment``), which reads whether each new worker node is a
server of a backend. Router modules may be imported only by the traffic
registry, so what they share lives here, outside the router.

Invariants:

- One command per connection (the runtime API's non-interactive mode: HAProxy
  answers and closes), each bounded by the timeout, on asyncio streams only.
- A failure to reach HAProxy, or no answer within the timeout, is a
  :class:`RuntimeAPIError` naming the socket; HAProxy's reply is returned as
  text, unjudged: what counts as a refusal depends on the command.
- :class:`ServerState` is the one reading of a server's admin and operational
  state both share.
- ``servers_state`` returns HAProxy's rows as column -> text, the columns named
  by the table's own header line (their set grows between HAProxy versions);
  a reply without that header (an unknown backend, a permission error) is an
  error in HAProxy's own words.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
from collections.abc import Mapping

from bluegreen.traffic import base


class RuntimeAPIError(base.RouterError):
    """The runtime API could not be reached, did not answer in time, or answered outside its format."""


@dataclasses.dataclass(frozen=True)
class _Endpoint:
    text: str
    unix_path: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> _Endpoint:
        if text.startswith("unix://") and len(text) > len("unix://"):
            return cls(text=text, unix_path=text.removeprefix("unix://"))
        match = re.fullmatch(r"tcp://([^:/]+):([0-9]+)", text)
        if match:
            return cls(text=text, host=match.group(1), port=int(match.group(2)))
        raise ValueError(
            f"runtime API address {text!r} is neither unix:///path/to/socket nor tcp://host:port"
        )

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix_path is not None:
            return await asyncio.open_unix_connection(self.unix_path)
        return await asyncio.open_connection(self.host, self.port)


class RuntimeAPI:
    """One HAProxy runtime API socket: ``unix:///path`` or ``tcp://host:port``."""

    def __init__(self, address: str, *, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError(f"the runtime API timeout must be positive, got {timeout}s")
        self._endpoint = _Endpoint.parse(address)
        self._timeout = timeout

    @property
    def address(self) -> str:
        return self._endpoint.text

    def __repr__(self) -> str:
        return f"RuntimeAPI({self._endpoint.text!r}, timeout={self._timeout:g})"

    async def command(self, command: str) -> str:
        """Send one command; HAProxy's whole reply."""
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await self._endpoint.open()
                try:
                    writer.write(command.encode() + b"\n")
                    await writer.drain()
                    reply = await reader.read()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except TimeoutError:
            raise RuntimeAPIError(
                f"HAProxy runtime API at {self._endpoint.text} did not answer {command!r} "
                f"within {self._timeout:g}s"
            ) from None
        except OSError as exc:
            # asyncio words a refusal "Connect call failed (addr)"; the errno says it better.
            reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
            raise RuntimeAPIError(
                f"cannot reach the HAProxy runtime API at {self._endpoint.text}: {reason}"
            ) from None
        return reply.decode("utf-8", errors="replace")

    async def servers(self, backend: str) -> list[ServerState]:
        """The servers of ``backend``; RuntimeAPIError if HAProxy answers something else than their table."""
        rows = await self.servers_state(backend)
        try:
            return [ServerState.of(row) for row in rows]
        except (KeyError, ValueError) as exc:
            raise RuntimeAPIError(f"HAProxy at {self._endpoint.text} answered 'show servers state {backend}' "
                                  f"in an unknown format ({exc!r})") from None

    async def servers_state(self, backend: str) -> list[dict[str, str]]:
        """``show servers state <backend>``: one row per server of ``backend``, column -> value as text."""
        command = f"show servers state {backend}"
        reply = await self.command(command)
        rows = parse_servers_state(reply, backend=backend)
        if rows is None:
            raise RuntimeAPIError(f"HAProxy at {self._endpoint.text} answered {command!r} with: {one_line(reply)}")
        return rows


def parse_servers_state(reply: str, *, backend: str) -> list[dict[str, str]] | None:
    """The rows of ``backend`` in a ``show servers state`` reply, or None if the reply is not that table.

    The table is a format version line, a ``# column column ...`` header, then one
    line of space-separated values per server (``-`` for an empty text field).
    """
    lines = reply.splitlines()
    if len(lines) < 2 or not lines[1].startswith("# "):
        return None
    columns = lines[1].removeprefix("# ").split()
    rows = []
    for line in lines[2:]:
        if not line.strip():
            continue
        row = dict(zip(columns, line.split(), strict=False))
        if row.get("be_name") == backend:
            rows.append(row)
    return rows


# Bits of ``srv_admin_state`` (HAProxy's enum srv_admin). HAProxy's own SRV_ADMF_MAINT is forced, inherited
# and DNS-resolution maintenance: configured maintenance (0x04, the ``disabled`` keyword) stays set once such
# a server is made ready at runtime, and HAProxy serves it then, so on its own it is no maintenance.
ADMIN_MAINT = 0x01 | 0x02 | 0x20
ADMIN_DRAIN = 0x08 | 0x10  # forced or inherited drain
ADMIN_FORCED = 0x01 | 0x08  # what ``set server ... state`` sets and clears
# Values of ``srv_op_state`` (HAProxy's enum srv_state).
OP_STOPPED, OP_STARTING, OP_RUNNING, OP_STOPPING = 0, 1, 2, 3
# Bits of ``srv_check_state`` (HAProxy's CHK_ST_*; the table shows the low four): a server line with ``check``
# is CONFIGURED, and ENABLED unless ``disable health`` (or a ``disabled`` server's pause) turned it off.
CHECK_CONFIGURED, CHECK_ENABLED = 0x02, 0x04
_OP_WORDS = {OP_STOPPED: "DOWN (health checks failing)", OP_STARTING: "starting",
             OP_RUNNING: "UP", OP_STOPPING: "soft-stopping (NOLB)"}

# Administrative states as ``set server <backend>/<server> state`` names them.
READY, DRAIN, MAINT = "ready", "drain", "maint"


@dataclasses.dataclass(frozen=True)
class ServerState:
    """One server as ``show servers state`` reports it."""

    name: str
    address: str
    port: str
    weight: int
    op_state: int
    admin_state: int
    check_state: int | None = None  # None: HAProxy's table has no srv_check_state column

    @classmethod
    def of(cls, row: Mapping[str, str]) -> ServerState:
        """From a row of :func:`parse_servers_state`; KeyError or ValueError if it is not one."""
        return cls(name=row["srv_name"], address=row.get("srv_addr", "-"), port=row.get("srv_port", "-"),
                   weight=int(row.get("srv_uweight", "0")), op_state=int(row["srv_op_state"]),
                   admin_state=int(row["srv_admin_state"]),
                   check_state=int(row["srv_check_state"]) if "srv_check_state" in row else None)

    @property
    def state(self) -> str:
        """The administrative state: maint, drain or ready."""
        if self.admin_state & ADMIN_MAINT:
            return MAINT
        return DRAIN if self.admin_state & ADMIN_DRAIN else READY

    def why_no_traffic(self) -> str | None:
        """Why this server takes no new requests whatever its weight, or None if it does (a server starting
        up after a slowstart takes some)."""
        if self.admin_state & ADMIN_MAINT:
            return "in maintenance (MAINT)"
        if self.admin_state & ADMIN_DRAIN:
            return "draining (DRAIN)"
        if self.op_state in {OP_STOPPED, OP_STOPPING}:
            return _OP_WORDS[self.op_state]
        return None

    def why_not_health_checked(self) -> str | None:
        """Why HAProxy would not notice by itself that this server failed, or None when its checks run."""
        if self.check_state is None:
            return "of unknown health-check state (HAProxy's 'show servers state' has no srv_check_state column)"
        if not self.check_state & CHECK_CONFIGURED:
            return "not health-checked (its server line has no `check`)"
        if not self.check_state & CHECK_ENABLED:
            return "not health-checked (its check is configured but disabled at runtime)"
        return None

    def why_not_up(self) -> str | None:
        """Why this server is not fully in service (UP and ready), or None when it is."""
        reason = self.why_no_traffic()
        if reason is None and self.op_state != OP_RUNNING:
            reason = _OP_WORDS.get(self.op_state, f"in operational state {self.op_state}")
        return reason


def one_line(reply: str) -> str:
    """HAProxy's reply on one line, cut at 300 characters, for a message."""
    text = " ".join(reply.split())
    return text[:300] + ("..." if len(text) > 300 else "") if text else "(empty reply)"

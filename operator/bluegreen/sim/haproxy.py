"""A real HAProxy process for the emulated world: the top-level load balancer.

Debian's haproxy package is installed but never started by the package; this
module writes a configuration into a state directory and runs ``haproxy -db``
(foreground, no daemon) on free ports of 127.0.0.1. Its shape is what a user
would run in front of two clusters:

- an HTTP frontend whose backend holds one server per cluster (blue at weight
  100, green at 0 to begin with);
- health checks, so a server that died gets no traffic, plus retries with
  redispatch, so a request sent to a server in the second before its checks
  fail is retried on the other one instead of failing the client;
- the runtime API at admin level on a TCP port and on a unix socket, plus one
  TCP socket at operator level (reads allowed, ``set weight`` refused);
- a stats frontend serving HAProxy's built-in Prometheus exporter on /metrics;
- optionally (``node_slots`` > 0) a backend of worker-node slots, as the load
  balancer in front of one cluster's NodePort has: ``server-template`` servers
  ``node1``..``nodeN``, all disabled (maintenance) at start, which a load
  balancer controller (``sim.node_lb``) fills at runtime with
  ``set server <backend>/<slot> addr <ip> port <port>`` and ``state ready``.
  They carry no health check, so a slot set ready is UP at once.

Only connection failures are retried, never HTTP 5xx: an unhealthy cluster's
errors must reach clients and metrics, or analysis could not see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import shutil
import socket
import tempfile

DEFAULT_BINARY = "/usr/sbin/haproxy"
_START_ATTEMPTS = 3
_BIND_FAILURE_MARKERS = ("cannot bind socket", "Address already in use")
# sun_path is 108 bytes on Linux; keep a margin.
_UNIX_PATH_MAX = 100


class HAProxyError(RuntimeError):
    """HAProxy did not start or did not answer; the message carries its stderr."""


class HAProxyProcess:
    """One haproxy process, its configuration and its ports."""

    def __init__(
        self,
        *,
        state_dir: pathlib.Path,
        blue_address: str,
        green_address: str,
        backend: str = "app",
        blue_server: str = "blue",
        green_server: str = "green",
        blue_weight: int = 100,
        green_weight: int = 0,
        check_interval: str = "500ms",
        binary: str = DEFAULT_BINARY,
        start_timeout: float = 10.0,
        api_timeout: float = 5.0,
        node_slots: int = 0,
        nodes_backend: str = "nodes",
        node_port: int = 30080,
        green_disabled: bool = False,
        green_check: bool = True,
        stats_port: int = 0,
    ) -> None:
        if node_slots < 0:
            raise ValueError(f"node_slots must be 0 or more, got {node_slots}")
        self.state_dir = state_dir
        self.blue_address = blue_address
        self.green_address = green_address
        self.backend = backend
        self.blue_server = blue_server
        self.green_server = green_server
        self.blue_weight = blue_weight
        self.green_weight = green_weight
        self.check_interval = check_interval
        self.binary = binary
        self.start_timeout = start_timeout
        self.api_timeout = api_timeout
        self.node_slots = node_slots
        self.nodes_backend = nodes_backend
        self.node_port = node_port
        # Green's server declared `disabled`, as a configuration written before green exists may have it.
        self.green_disabled = green_disabled
        # False: green's server line without `check`, the configuration bluegreen refuses to shift through.
        self.green_check = green_check
        # A port reserved for the stats frontend (0: any free one): where a Prometheus started before this
        # HAProxy already scrapes (sim.prometheus_spares). HAProxy binds with SO_REUSEPORT, as the holder does.
        self.stats_port = stats_port
        self._process: asyncio.subprocess.Process | None = None
        self._ports: dict[str, int] = {}
        self._socket_dir: pathlib.Path | None = None
        self._own_socket_dir = False

    @property
    def config_path(self) -> pathlib.Path:
        return self.state_dir / "haproxy.cfg"

    @property
    def log_path(self) -> pathlib.Path:
        """HAProxy's stdout and stderr (alerts, warnings, server state changes)."""
        return self.state_dir / "haproxy.log"

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def frontend_url(self) -> str:
        return f"http://127.0.0.1:{self._port('frontend')}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus exporter; HAProxy's HTML stats page is next to it at /stats."""
        return f"http://127.0.0.1:{self._port('stats')}/metrics"

    @property
    def stats_address(self) -> str:
        """``host:port`` of the stats frontend, as a Prometheus scrape target wants it."""
        return f"127.0.0.1:{self._port('stats')}"

    @property
    def runtime_api(self) -> str:
        return f"tcp://127.0.0.1:{self._port('admin')}"

    @property
    def runtime_api_unix(self) -> str:
        return f"unix://{self._unix_socket_path()}"

    @property
    def runtime_api_operator(self) -> str:
        """A runtime API socket at operator level: it may read, not change weights."""
        return f"tcp://127.0.0.1:{self._port('operator')}"

    async def start(self) -> None:
        """Start haproxy and return once its runtime API and frontend answer."""
        if self._process is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_socket_dir()
        for attempt in range(1, _START_ATTEMPTS + 1):
            self._ports = _free_ports("frontend", "admin", "operator", *([] if self.stats_port else ["stats"]))
            if self.stats_port:
                self._ports["stats"] = self.stats_port
            self.config_path.write_text(self.render_config())
            try:
                await self._spawn_and_wait()
                return
            except HAProxyError as exc:
                # Another process may have taken a port between our probe and haproxy's bind.
                if attempt == _START_ATTEMPTS or not any(m in str(exc) for m in _BIND_FAILURE_MARKERS):
                    await self.stop()
                    raise

    async def stop(self) -> None:
        """Stop haproxy (SIGTERM, then SIGKILL if it lingers); safe to call twice."""
        await self._terminate()
        if self._own_socket_dir and self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    async def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def command(self, command: str) -> str:
        """Run one runtime API command (admin level) and return HAProxy's reply."""
        async with asyncio.timeout(self.api_timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", self._port("admin"))
            try:
                writer.write(command.encode() + b"\n")
                await writer.drain()
                return (await reader.read()).decode()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def server_status(self, server: str) -> str:
        """The server's status as HAProxy's stats show it: UP, DOWN, MAINT, DRAIN, ``DOWN 1/2``..."""
        reply = await self.command(f"show stat {self.backend} 4 -1")
        lines = reply.splitlines()
        if not lines or not lines[0].startswith("# "):
            raise HAProxyError(f"unexpected reply to show stat: {reply!r}")
        columns = lines[0].removeprefix("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(columns, line.split(","), strict=False))
            if row.get("svname") == server:
                return row["status"]
        raise HAProxyError(f"no server {server!r} in backend {self.backend!r}")

    async def wait_for_status(self, server: str, status: str, *, within: float = 10.0) -> None:
        """Wait until health checks have put ``server`` in ``status`` (e.g. DOWN after its backend stopped)."""
        async with asyncio.timeout(within):
            while True:
                if (await self.server_status(server)).startswith(status):
                    return
                await asyncio.sleep(0.05)

    @property
    def node_slot_names(self) -> list[str]:
        """The servers of the nodes backend, as ``server-template`` names them."""
        return [f"node{index}" for index in range(1, self.node_slots + 1)]

    def render_config(self) -> str:
        check = f"check inter {self.check_interval} fall 2 rise 1"
        green_disabled = " disabled" if self.green_disabled else ""
        green_check = f" {check}" if self.green_check else ""
        return f"""\
# Written by bluegreen.sim.haproxy for the emulated world; regenerated at each start.
global
    maxconn 4096
    stats socket ipv4@127.0.0.1:{self._port('admin')} level admin
    stats socket {self._unix_socket_path()} mode 600 level admin
    stats socket ipv4@127.0.0.1:{self._port('operator')} level operator

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 30s
    timeout http-keep-alive 60s
    timeout check 1s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response junk-response

frontend web
    bind 127.0.0.1:{self._port('frontend')}
    default_backend {self.backend}

backend {self.backend}
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    server {self.blue_server} {self.blue_address} weight {self.blue_weight} {check}
    server {self.green_server} {self.green_address} weight {self.green_weight}{green_check}{green_disabled}

frontend stats
    bind 127.0.0.1:{self._port('stats')}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    stats enable
    stats uri /stats
    stats refresh 5s
""" + self._render_nodes_backend()

    def _render_nodes_backend(self) -> str:
        if not self.node_slots:
            return ""
        # The address is a placeholder until a slot is given a node: disabled servers take no traffic.
        return f"""
backend {self.nodes_backend}
    balance roundrobin
    server-template node 1-{self.node_slots} 127.0.0.1:{self.node_port} disabled
"""

    async def _spawn_and_wait(self) -> None:
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                self.binary, "-db", "-f", str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        while True:
            if self._process.returncode is not None:
                self._process = None
                raise HAProxyError(f"haproxy exited at start:\n{self._stderr()}")
            with contextlib.suppress(OSError, TimeoutError):
                if "Name: HAProxy" in await self.command("show info") and await _accepts(
                    self._port("frontend")
                ):
                    return
            if loop.time() > deadline:
                await self._terminate()
                raise HAProxyError(f"haproxy did not answer within {self.start_timeout:g}s:\n{self._stderr()}")
            await asyncio.sleep(0.05)

    def _stderr(self) -> str:
        try:
            return self.log_path.read_text(errors="replace").strip() or "(no output)"
        except OSError:
            return "(no output)"

    def _running(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise HAProxyError("haproxy is not running; call start() first")
        return self._process

    def _port(self, name: str) -> int:
        if name not in self._ports:
            raise HAProxyError("haproxy has no ports yet; call start() first")
        return self._ports[name]

    def _prepare_socket_dir(self) -> None:
        if self._socket_dir is not None:
            return
        if len(str(self.state_dir / "admin.sock")) <= _UNIX_PATH_MAX:
            self._socket_dir, self._own_socket_dir = self.state_dir, False
        else:
            self._socket_dir, self._own_socket_dir = pathlib.Path(tempfile.mkdtemp(prefix="bg-haproxy-")), True

    def _unix_socket_path(self) -> pathlib.Path:
        if self._socket_dir is None:
            raise HAProxyError("haproxy has no sockets yet; call start() first")
        return self._socket_dir / "admin.sock"


def _free_ports(*names: str) -> dict[str, int]:
    # Hold every probe socket until all are chosen so the ports differ.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in names]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return {name: sock.getsockname()[1] for name, sock in zip(names, sockets, strict=True)}
    finally:
        for sock in sockets:
            sock.close()


async def _accepts(port: int) -> bool:
    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout=1.0)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True

"""A real HTTP server standing for one cluster's ingress in the emulated world.

It answers every request with the cluster's name (in the body and in an
``X-Cluster`` header), so a client behind HAProxy can tell which side served it.

The port is reserved when the object is made, before the server runs: HAProxy's
configuration needs green's address before green exists. Until ``start`` the
reserved socket is bound but not listening, so connections are refused, as
they are for a cluster that is not there yet.

``error_rate`` and ``latency`` can be changed at any time to make the cluster
look unhealthy to analysis. Errors are spread evenly rather than drawn at
random (a rate of 0.1 fails exactly every tenth request), so tests can count
on them. Health checks (``/healthz``) are exempt from both: a slow or failing
application must show in the metrics, not make HAProxy take the server out.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

HEALTH_PATH = "/healthz"
CLUSTER_HEADER = "X-Cluster"


class Backend:
    """One cluster's ingress: ``start``/``stop`` as often as needed, always on the same port."""

    def __init__(self, *, cluster: str, port: int = 0, error_rate: float = 0.0, latency: float = 0.0) -> None:
        self.cluster = cluster
        self.error_rate = error_rate
        self.latency = latency
        self.requests = 0
        self.errors = 0
        self._error_debt = 0.0
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = _reserve(port)
        self._port: int = self._sock.getsockname()[1]

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` as HAProxy's ``server`` line wants it."""
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        if self._runner is not None:
            return
        sock = self._sock if self._sock is not None else _reserve(self._port)
        self._sock = None
        app = web.Application()
        app.router.add_get(HEALTH_PATH, self._health)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and drop open connections, like an ingress that went away."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={CLUSTER_HEADER: self.cluster})

    async def _serve(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        self._error_debt += max(0.0, min(1.0, self.error_rate))
        if self._error_debt >= 1.0 - 1e-9:
            self._error_debt -= 1.0
            self.errors += 1
            return web.Response(
                status=500, text=f"{self.cluster}: injected error\n", headers={CLUSTER_HEADER: self.cluster}
            )
        return web.Response(text=f"{self.cluster}\n", headers={CLUSTER_HEADER: self.cluster})


def _reserve(port: int) -> socket.socket:
    # SO_REUSEADDR lets a restarted backend take its port back while old
    # connections to it sit in TIME_WAIT.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock

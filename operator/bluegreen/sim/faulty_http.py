"""The part every stand-in HTTP receiver of the test world shares: a free port, TLS, injected faults.

``fail_next`` answers the next requests with a given status instead of serving
them (5xx to exercise retries, 4xx refusals); ``stall_next`` holds the next
requests for a while (timeouts). Subclasses add their routes and call
:meth:`injected` first in each handler.

This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl

import aiohttp.web


class FaultyHTTPServer:
    """An aiohttp server on 127.0.0.1 and a free port, over HTTPS with an ``ssl.SSLContext``."""

    NAME = "the server"  # for the error when used before start()
    FAULT_BODY = "simulated failure {status}"

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._faults: collections.deque[tuple[int, str]] = collections.deque()
        self._stalls: collections.deque[float] = collections.deque()
        self._runner: aiohttp.web.AppRunner | None = None
        self._port: int | None = None

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError(f"{self.NAME} is not started")
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    def fail_next(self, status: int, *, times: int = 1, body: str = "") -> None:
        """Answer the next ``times`` requests with ``status`` (and ``body``) instead of serving them."""
        for _ in range(times):
            self._faults.append((status, body or self.FAULT_BODY.format(status=status)))

    def stall_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` requests ``seconds`` before serving them."""
        self._stalls.extend([seconds] * times)

    def routes(self, app: aiohttp.web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = aiohttp.web.Application()
        self.routes(app)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await aiohttp.web.SockSite(self._runner, sock, ssl_context=self._ssl_context).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def injected(self) -> aiohttp.web.Response | None:
        """Stall if told to, then the injected answer if there is one (None: serve the request)."""
        if self._stalls:
            await asyncio.sleep(self._stalls.popleft())
        if self._faults:
            status, body = self._faults.popleft()
            return aiohttp.web.Response(status=status, text=body)
        return None

"""A stand-in for whatever a webhook router talks to (an F5 adapter, a home-made load balancer).

``POST /weights`` with ``{"blue": b, "green": g, ...}`` sets the weights (they
must be percent adding up to 100, or the answer is 400; ``"finalize": true``
marks the receiver finalized, any other POST clears that, as new weights
start a new upgrade); ``GET /weights`` answers
``{"blue": b, "green": g, "finalized": f}``. ``unavailable`` answers 503 to
everything until it is cleared. Every POST body is kept in ``posts`` and
every request's method, path and Authorization header in ``requests``, so
tests can check what was sent. With ``token`` set, a request without
``Authorization: Bearer <token>`` is answered 401. ``fail_next`` answers the
next requests with a given status instead (5xx to exercise retries, 4xx to
exercise refusals); ``stall_next`` holds the next requests for a while
(timeouts). Serve over HTTPS by passing an ``ssl.SSLContext``.

This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
from typing import Any

import aiohttp.web

from bluegreen.sim.faulty_http import FaultyHTTPServer

PATH = "/weights"


@dataclasses.dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    authorization: str | None


class WeightReceiver(FaultyHTTPServer):
    """An HTTP endpoint holding a blue/green split, on 127.0.0.1 and a free port."""

    NAME = "the weight receiver"
    FAULT_BODY = "simulated failure {status}\nsecond line"

    def __init__(self, *, token: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 blue: int = 100, green: int = 0) -> None:
        super().__init__(ssl_context=ssl_context)
        self.token = token
        self.blue = blue
        self.green = green
        self.finalized = False
        self.unavailable = False
        self.posts: list[dict[str, Any]] = []
        self.requests: list[SeenRequest] = []

    @property
    def url(self) -> str:
        return self.base_url + PATH

    def routes(self, app: aiohttp.web.Application) -> None:
        app.router.add_get(PATH, self._get)
        app.router.add_post(PATH, self._post)

    async def _gate(self, request: aiohttp.web.Request) -> aiohttp.web.Response | None:
        self.requests.append(SeenRequest(request.method, request.path, request.headers.get("Authorization")))
        injected = await self.injected()
        if injected is not None:
            return injected
        if self.unavailable:
            return aiohttp.web.Response(status=503, text="unavailable")
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return aiohttp.web.Response(status=401, text="missing or wrong bearer token")
        return None

    async def _get(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        return aiohttp.web.json_response({"blue": self.blue, "green": self.green, "finalized": self.finalized})

    async def _post(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.text())
        except ValueError:
            return aiohttp.web.Response(status=400, text="the body is not JSON")
        blue, green = (body.get("blue"), body.get("green")) if isinstance(body, dict) else (None, None)
        if not (isinstance(blue, int) and isinstance(green, int) and 0 <= blue <= 100 and 0 <= green <= 100
                and blue + green == 100):
            return aiohttp.web.Response(status=400, text="blue and green must be percent adding up to 100")
        self.posts.append(body)
        self.blue, self.green = blue, green
        self.finalized = body.get("finalize") is True
        return aiohttp.web.json_response({"changeId": f"change-{len(self.posts)}"})

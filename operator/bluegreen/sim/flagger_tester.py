"""A stand-in for flagger-loadtester, the receiver most Flagger webhooks point at.

It serves the loadtester's gate API as upstream documents and implements it
(fluxcd/flagger ``pkg/loadtester/server.go``), so that tests prove bluegreen's
analysis webhooks work with it unchanged:

- ``POST /gate/approve`` answers 200, ``POST /gate/halt`` 403: fixed gates.
- ``POST /gate/check`` answers 200 ``Approved`` when the gate of the payload's
  ``name.namespace`` is open and 403 ``Forbidden`` otherwise; gates start
  closed. ``POST /gate/open`` and ``/gate/close`` (a body with ``name`` and
  ``namespace``) answer 202 and open or close it.
- ``/rollback/check``, ``/rollback/open``, ``/rollback/close``: the same, for
  a separate ``rollback.name.namespace`` gate.
- ``POST /`` starts a load-test task from ``metadata`` (here: records its
  ``cmd``) and answers 202; a payload without metadata is answered 400
  ``metadata not found in payload``, as upstream does.

Payloads are decoded the way the Go loadtester decodes them into Flagger's
``CanaryWebhookPayload``: unknown keys are ignored, but ``name``,
``namespace``, ``phase`` and ``checksum`` must be strings and ``metadata`` an
object of strings, or the answer is 400. A receiver built on Flagger's types
would refuse anything else, which is the compatibility this stand-in checks.

Not in the loadtester: ``POST /events`` records the body and answers 200 (a
stand-in for an event receiver); ``fail_next`` and ``stall_next`` inject
faults into the next requests on any path; every request is kept in
``requests``. Serve over HTTPS by passing an ``ssl.SSLContext``.

This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
from typing import Any

import aiohttp.web

from bluegreen.sim.faulty_http import FaultyHTTPServer

_PAYLOAD_STRINGS = ("name", "namespace", "phase", "checksum")


@dataclasses.dataclass(frozen=True)
class SeenRequest:
    path: str
    body: dict[str, Any] | None  # None when the body was not a JSON object
    content_type: str


class FlaggerTester(FaultyHTTPServer):
    """flagger-loadtester's gate and task API on 127.0.0.1 and a free port."""

    NAME = "the flagger tester"

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(ssl_context=ssl_context)
        self.requests: list[SeenRequest] = []
        self.tasks: list[str] = []  # the cmd of every task started through POST /
        self._gates: dict[str, bool] = {}

    def url(self, path: str) -> str:
        return self.base_url + path

    def posted_to(self, path: str) -> list[dict[str, Any] | None]:
        return [seen.body for seen in self.requests if seen.path == path]

    def gate_is_open(self, *, name: str, namespace: str, rollback: bool = False) -> bool:
        return self._gates.get(_gate_key(name=name, namespace=namespace, rollback=rollback), False)

    def routes(self, app: aiohttp.web.Application) -> None:
        app.router.add_post("/gate/approve", self._approve)
        app.router.add_post("/gate/halt", self._halt)
        for prefix, rollback in (("/gate", False), ("/rollback", True)):
            app.router.add_post(f"{prefix}/check", self._check(rollback=rollback))
            app.router.add_post(f"{prefix}/open", self._set_gate(rollback=rollback, open_=True))
            app.router.add_post(f"{prefix}/close", self._set_gate(rollback=rollback, open_=False))
        app.router.add_post("/events", self._event)
        app.router.add_post("/", self._task)

    # --- handlers ----------------------------------------------------------------------------------

    async def _receive(self, request: aiohttp.web.Request) -> dict[str, Any] | aiohttp.web.Response:
        """The decoded payload, or the answer to give instead (a fault, or 400 for what Go would refuse)."""
        text = await request.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        self.requests.append(SeenRequest(path=request.path, body=body if isinstance(body, dict) else None,
                                         content_type=request.content_type))
        injected = await self.injected()
        if injected is not None:
            return injected
        problem = _go_decode_problem(body)
        if problem is not None:
            return aiohttp.web.Response(status=400, text=problem)
        assert isinstance(body, dict)
        return body

    async def _approve(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        received = await self._receive(request)
        if isinstance(received, aiohttp.web.Response):
            return received
        return aiohttp.web.Response(status=200, text="OK")

    async def _halt(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        received = await self._receive(request)
        if isinstance(received, aiohttp.web.Response):
            return received
        return aiohttp.web.Response(status=403, text="Forbidden")

    def _check(self, *, rollback: bool) -> Any:
        async def handler(request: aiohttp.web.Request) -> aiohttp.web.Response:
            received = await self._receive(request)
            if isinstance(received, aiohttp.web.Response):
                return received
            key = _gate_key(name=received.get("name", ""), namespace=received.get("namespace", ""),
                            rollback=rollback)
            if self._gates.get(key, False):
                return aiohttp.web.Response(status=200, text="Approved")
            return aiohttp.web.Response(status=403, text="Forbidden")
        return handler

    def _set_gate(self, *, rollback: bool, open_: bool) -> Any:
        async def handler(request: aiohttp.web.Request) -> aiohttp.web.Response:
            received = await self._receive(request)
            if isinstance(received, aiohttp.web.Response):
                return received
            key = _gate_key(name=received.get("name", ""), namespace=received.get("namespace", ""),
                            rollback=rollback)
            self._gates[key] = open_
            return aiohttp.web.Response(status=202)
        return handler

    async def _task(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        received = await self._receive(request)
        if isinstance(received, aiohttp.web.Response):
            return received
        metadata = received.get("metadata") or {}
        if not metadata:
            return aiohttp.web.Response(status=400, text="metadata not found in payload")
        self.tasks.append(metadata.get("cmd", ""))
        return aiohttp.web.Response(status=202)

    async def _event(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        received = await self._receive(request)
        if isinstance(received, aiohttp.web.Response):
            return received
        return aiohttp.web.Response(status=200)


def _gate_key(*, name: str, namespace: str, rollback: bool) -> str:
    key = f"{name}.{namespace}"
    return f"rollback.{key}" if rollback else key


def _go_decode_problem(body: Any) -> str | None:
    """Why Go's json.Unmarshal into CanaryWebhookPayload would fail on ``body``, if it would."""
    if not isinstance(body, dict):
        return "decoding the request body failed: not a JSON object"
    for field in _PAYLOAD_STRINGS:
        if field in body and body[field] is not None and not isinstance(body[field], str):
            return f"decoding the request body failed: {field} is not a string"
    metadata = body.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values())
    ):
        return "decoding the request body failed: metadata is not a map of strings"
    return None

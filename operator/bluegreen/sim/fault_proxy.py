"""Faults between the operator and what it talks to: an AWS API that errs or throttles, a socket that is gone.

Two small relays for the fault tests, each started on 127.0.0.1 and a free
port in front of a real server, so the product code under test talks to the
real thing through them and only the injected moments differ:

- :class:`FaultProxy` relays HTTP to moto's server (or any HTTP API) and, for
  the next N requests (optionally only those of one AWS operation), answers an
  AWS error instead, in the XML shape Route 53 and ELBv2 use
  (``<ErrorResponse><Error><Type/><Code/><Message/></Error>``), or holds the
  request for a while before relaying it. A held request is relayed after the
  hold: a client that gave up meanwhile saw a timeout while the change was
  still made, as with the real AWS. ``calls`` lists every operation received
  and ``relayed`` those that reached the server, so a test can tell how many
  writes arrived (boto3's own retries included).
- :class:`TcpGate` relays TCP (HAProxy's runtime API, Prometheus) and can be
  closed: connections are refused, and those open are cut, until it is opened
  again on the same port, as when a process or its socket is gone for a while
  and comes back.

This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import re
import socket
import urllib.parse
import uuid

import aiohttp
import aiohttp.web

# Route 53 is a REST API: its operations are told apart by method and path; the others (ELBv2, EC2) are
# query APIs naming the operation in the form's Action.
_ROUTE53_OPERATIONS = [
    ("POST", re.compile(r"^/2013-04-01/hostedzone/[^/]+/rrset/?$"), "ChangeResourceRecordSets"),
    ("GET", re.compile(r"^/2013-04-01/hostedzone/[^/]+/rrset/?$"), "ListResourceRecordSets"),
    ("GET", re.compile(r"^/2013-04-01/change/[^/]+$"), "GetChange"),
]
_ROUTE53_NAMESPACE = "https://route53.amazonaws.com/doc/2013-04-01/"
_ELBV2_NAMESPACE = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
_HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


def aws_operation(method: str, path: str, body: bytes) -> str:
    """The AWS operation a request calls: the query API's ``Action``, or Route 53's by method and path."""
    form = urllib.parse.parse_qs(body.decode("utf-8", errors="replace"))
    if "Action" in form:
        return form["Action"][0]
    bare = path.split("?", 1)[0]
    for verb, pattern, operation in _ROUTE53_OPERATIONS:
        if method == verb and pattern.match(bare):
            return operation
    return f"{method} {bare}"


def aws_error_body(*, code: str, message: str, route53: bool) -> str:
    """An AWS error as Route 53 (REST-XML) or ELBv2 (query) writes it; botocore reads Code and Message."""
    namespace = _ROUTE53_NAMESPACE if route53 else _ELBV2_NAMESPACE
    kind = "Receiver" if code in {"InternalError", "InternalFailure", "ServiceUnavailable"} else "Sender"
    return (f'<?xml version="1.0"?>\n<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")


@dataclasses.dataclass
class _Fault:
    operation: str | None  # None: any operation
    status: int | None  # None: only stall, then relay
    code: str
    message: str
    stall: float


class FaultProxy:
    """An HTTP relay to ``upstream`` that answers AWS errors or stalls for the next N requests."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: list[str] = []  # every operation received, in order
        self.relayed: list[str] = []  # the operations that reached the upstream server
        self.injected: list[tuple[str, int | None, str]] = []  # (operation, status, code) of each fault served
        self._faults: collections.deque[_Fault] = collections.deque()
        self._runner: aiohttp.web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port: int | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the fault proxy is not started")
        return f"http://127.0.0.1:{self._port}"

    def fail_next(self, status: int, code: str, *, times: int = 1, message: str = "",
                  operation: str | None = None) -> None:
        """Answer the next ``times`` requests (of ``operation``, or any) with AWS error ``code``."""
        text = message or f"{code} (injected by the fault proxy)"
        self._faults.extend(_Fault(operation, status, code, text, 0.0) for _ in range(times))

    def throttle_next(self, *, times: int = 1, operation: str | None = None) -> None:
        """AWS's throttling answer (400 Throttling, "Rate exceeded") to the next ``times`` requests."""
        self.fail_next(400, "Throttling", times=times, message="Rate exceeded", operation=operation)

    def stall_next(self, seconds: float, *, times: int = 1, operation: str | None = None) -> None:
        """Hold the next ``times`` requests ``seconds`` before relaying them."""
        self._faults.extend(_Fault(operation, None, "", "", seconds) for _ in range(times))

    @property
    def pending(self) -> int:
        """Faults not served yet."""
        return len(self._faults)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False)
        app = aiohttp.web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        self._port = listener.getsockname()[1]
        await aiohttp.web.SockSite(self._runner, listener).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _take(self, operation: str) -> _Fault | None:
        for fault in self._faults:
            if fault.operation in (None, operation):
                self._faults.remove(fault)
                return fault
        return None

    async def _relay(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        operation = aws_operation(request.method, request.path_qs, body)
        self.calls.append(operation)
        fault = self._take(operation)
        if fault is not None:
            self.injected.append((operation, fault.status, fault.code))
            if fault.stall:
                await asyncio.sleep(fault.stall)
            if fault.status is not None:
                route53 = request.path.startswith("/2013-04-01/")
                return aiohttp.web.Response(status=fault.status, content_type="text/xml", text=aws_error_body(
                    code=fault.code, message=fault.message, route53=route53))
        assert self._session is not None
        headers = {key: value for key, value in request.headers.items() if key.lower() not in _HOP_HEADERS}
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body,
                                         headers=headers) as upstream:
            reply = await upstream.read()
            reply_headers = {key: value for key, value in upstream.headers.items()
                             if key.lower() not in _HOP_HEADERS | {"content-encoding", "server", "date"}}
            self.relayed.append(operation)
            return aiohttp.web.Response(status=upstream.status, body=reply, headers=reply_headers)


class TcpGate:
    """A TCP relay to ``host:port`` that can be closed (refusing and cutting connections) and opened again."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.connections = 0  # connections relayed
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._open: set[asyncio.Task[None]] = set()

    @classmethod
    def to(cls, address: str) -> TcpGate:
        """A gate in front of ``tcp://host:port`` or ``http://host:port``."""
        parsed = urllib.parse.urlsplit(address)
        if parsed.hostname is None or parsed.port is None:
            raise ValueError(f"{address!r} has no host and port")
        return cls(parsed.hostname, parsed.port)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the gate is not started")
        return self._port

    @property
    def is_open(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        await self.open()

    async def open(self) -> None:
        """Listen (again, on the same port once started): connections go through from now on."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._port or 0, reuse_address=True)
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening (new connections are refused) and cut the connections under way."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for task in list(self._open):
            task.cancel()
        for task in list(self._open):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        self.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            self._open.discard(task)
            return
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            for stream in (writer, upstream_writer):
                stream.close()
            self._open.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass

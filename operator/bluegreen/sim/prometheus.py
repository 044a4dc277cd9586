"""A real Prometheus server for the emulated world and the tests (the Debian ``prometheus`` binary).

Debian's package is installed but never started by it; this module writes a
``prometheus.yml`` with static scrape targets into a state directory and runs
the server in the foreground on 127.0.0.1 with its storage in that directory,
so every world and every test gets its own, empty Prometheus.

Timing, measured on 2.42: Prometheus hands its first targets to the scrape
loops only after its service-discovery manager's fixed 5 s update period, so
``start`` takes about 5.5 s however short the scrape interval; the flag that
shortens this period does not exist in 2.42. After that, a series a target
starts exposing is queryable within one scrape interval. Callers who need
many Prometheus-backed checks should share one server.

``start`` returns once every target has been scraped once: a target that
answered has its series queryable; one that did not (a green ingress before
green exists) reads ``up == 0`` until it answers, as a new ingress would on a
real Prometheus. :meth:`PrometheusServer.wait_until_up` waits for a target
to answer.

A server can also be started ahead of its targets and used later by another
process (``sim.prometheus_spares``): :meth:`PrometheusServer.attach` gives a
handle on it that neither starts nor stops it, and
:meth:`PrometheusServer.wait_scraped` waits for a scrape that began after a
given moment, when the targets had begun to listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import pathlib
import socket
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

import aiohttp
import yaml

DEFAULT_BINARY = "/usr/bin/prometheus"
_START_ATTEMPTS = 3
_BIND_FAILURE_MARKERS = ("address already in use", "bind:")


class PrometheusError(RuntimeError):
    """Prometheus did not start, did not scrape, or refused a query; the message says which (with its log)."""


@dataclasses.dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint Prometheus scrapes: ``address`` is ``host:port``; ``labels`` are added to its series."""

    job: str
    address: str
    metrics_path: str = "/metrics"
    labels: dict[str, str] = dataclasses.field(default_factory=dict)


class PrometheusServer:
    """One prometheus process, its configuration, storage and port."""

    def __init__(
        self,
        *,
        state_dir: pathlib.Path,
        targets: Sequence[ScrapeTarget],
        scrape_interval: str = "1s",
        port: int = 0,
        binary: str = DEFAULT_BINARY,
        start_timeout: float = 30.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.state_dir = state_dir
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.binary = binary
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self._requested_port = port
        self._port: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._attached = False

    @classmethod
    def attach(cls, *, url: str, state_dir: pathlib.Path, targets: Sequence[ScrapeTarget],
               scrape_interval: str = "1s", start_timeout: float = 30.0) -> PrometheusServer:
        """A handle on a Prometheus another process started and stops: queries and waits, never start or stop."""
        port = urllib.parse.urlsplit(url).port
        if port is None:
            raise PrometheusError(f"{url!r} names no port")
        server = cls(state_dir=state_dir, targets=targets, scrape_interval=scrape_interval, port=port,
                     start_timeout=start_timeout)
        server._port, server._attached = port, True
        return server

    @property
    def config_path(self) -> pathlib.Path:
        return self.state_dir / "prometheus.yml"

    @property
    def log_path(self) -> pathlib.Path:
        return self.state_dir / "prometheus.log"

    @property
    def url(self) -> str:
        """Known before ``start`` when a port was given."""
        return f"http://127.0.0.1:{self._listen_port()}"

    @property
    def running(self) -> bool:
        return self._attached or (self._process is not None and self._process.returncode is None)

    def command_line(self) -> list[str]:
        """How the server is run (the port must be known); ``config_path`` must hold :meth:`render_config`."""
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.state_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self._listen_port()}",
            "--log.level=info",
        ]

    def render_config(self) -> str:
        jobs: dict[tuple[str, str], list[ScrapeTarget]] = {}
        for target in self.targets:
            jobs.setdefault((target.job, target.metrics_path), []).append(target)
        names = [job for job, _ in jobs]
        duplicated = sorted({job for job in names if names.count(job) > 1})
        if duplicated:
            raise PrometheusError(f"job(s) {', '.join(duplicated)} have targets with different metrics paths; "
                                  "give each path its own job")
        config = {
            "global": {"scrape_interval": self.scrape_interval, "scrape_timeout": self.scrape_interval},
            "scrape_configs": [
                {
                    "job_name": job,
                    "metrics_path": path,
                    "static_configs": [{"targets": [target.address], "labels": dict(target.labels)}
                                       for target in targets],
                }
                for (job, path), targets in jobs.items()
            ],
        }
        header = "# Written by bluegreen.sim.prometheus for the emulated world; regenerated at each start.\n"
        return header + yaml.safe_dump(config, sort_keys=False)

    def _listen_port(self) -> int:
        port = self._port or self._requested_port
        if not port:
            raise PrometheusError("prometheus has no port yet; call start() first")
        return port

    async def start(self) -> None:
        """Start Prometheus; return once it is ready and has scraped every target once."""
        if self._process is not None or self._attached:
            return
        since = time.time()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        for attempt in range(1, _START_ATTEMPTS + 1):
            self._port = self._requested_port or free_port()
            try:
                await self._spawn_and_wait_ready(deadline)
                break
            except PrometheusError as exc:
                # Another process may have taken the port between our probe and prometheus's bind.
                retry = not self._requested_port and any(m in str(exc).lower() for m in _BIND_FAILURE_MARKERS)
                if attempt == _START_ATTEMPTS or not retry:
                    raise
        try:
            await self._wait_scraped(since=since, deadline=deadline)
        except BaseException:
            await self.stop()
            raise

    async def wait_scraped(self, *, since: float) -> None:
        """Wait (up to ``start_timeout``) until every target has been scraped by a scrape that began at or
        after ``since`` (epoch seconds): what a target exposed then is queryable, and one that did not answer
        reads ``up == 0``."""
        await self._wait_scraped(since=since, deadline=asyncio.get_running_loop().time() + self.start_timeout)

    async def stop(self) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL after the grace period); safe to call twice. An attached
        server is left running: it is its owner's to stop."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=self.stop_grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def query(self, promql: str) -> dict[str, Any]:
        """An instant query's ``data`` (``resultType`` and ``result``); PrometheusError when it is refused."""
        reply = await self._get("/api/v1/query", params={"query": promql})
        if reply.get("status") != "success":
            raise PrometheusError(f"query {promql!r} refused ({reply.get('errorType')}): {reply.get('error')}")
        data = reply.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"query {promql!r}: reply without data: {reply!r}")
        return data

    async def wait_for(self, promql: str, *, within: float = 10.0) -> dict[str, Any]:
        """Poll ``promql`` until its result is not empty; its ``data``."""
        async with asyncio.timeout(within):
            while True:
                data = await self.query(promql)
                if data.get("result"):
                    return data
                await asyncio.sleep(0.05)

    async def wait_until_up(self, job: str, *, within: float = 10.0) -> None:
        """Wait until every target of ``job`` has answered a scrape (``up == 1``)."""
        expected = sum(1 for target in self.targets if target.job == job)
        async with asyncio.timeout(within):
            while True:
                data = await self.query(f'up{{job="{job}"}} == 1')
                if len(data.get("result") or []) >= expected:
                    return
                await asyncio.sleep(0.05)

    async def _spawn_and_wait_ready(self, deadline: float) -> None:
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self.command_line(), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )
        loop = asyncio.get_running_loop()
        while True:
            if self._process.returncode is not None:
                self._process = None
                raise PrometheusError(f"prometheus exited at start:\n{self._log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                if await self._ready():
                    return
            if loop.time() > deadline:
                await self.stop()
                raise PrometheusError(f"prometheus was not ready within {self.start_timeout:g}s:\n{self._log_tail()}")
            await asyncio.sleep(0.05)

    async def _ready(self) -> bool:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session, \
                session.get(f"{self.url}/-/ready") as response:
            return response.status == 200

    async def _wait_scraped(self, *, since: float, deadline: float) -> None:
        # ``up`` is written after a scrape's samples are committed, failed scrapes included, so once every
        # target has an ``up`` sample from a scrape begun since ``since`` (a sample's timestamp is when its
        # scrape began), whatever it exposed then is queryable.
        loop = asyncio.get_running_loop()
        wanted = {(target.labels.get("job", target.job), target.labels.get("instance", target.address))
                  for target in self.targets}
        seen: set[tuple[str, str]] = set()
        while True:
            if not self.running:
                raise PrometheusError(f"prometheus exited while starting:\n{self._log_tail()}")
            # Not ready yet (an attached server may have just been started) answers 503 with a text body.
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, ValueError):
                data = await self.query("timestamp(up)")
                seen = {(item["metric"].get("job", ""), item["metric"].get("instance", ""))
                        for item in data.get("result") or [] if _began_after(float(item["value"][1]), since)}
                if wanted <= seen:
                    return
            if loop.time() > deadline:
                missing = ", ".join(f"{job} at {address}" for job, address in sorted(wanted - seen))
                await self.stop()
                raise PrometheusError(f"prometheus did not scrape {missing} within {self.start_timeout:g}s:\n"
                                      f"{self._log_tail()}")
            await asyncio.sleep(0.05)

    async def _get(self, path: str, *, params: dict[str, str]) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0)) as session, \
                session.get(f"{self.url}{path}", params=params) as response:
            reply = await response.json(content_type=None)
        if not isinstance(reply, dict):
            raise PrometheusError(f"GET {path}: unexpected reply {reply!r}")
        return reply

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def _began_after(sample_time: float, since: float) -> bool:
    # Prometheus keeps a scrape's start truncated to the millisecond: strictly after since's millisecond
    # is surely after since, and a refused scrape from just before a target listened is never taken.
    return round(sample_time * 1000) > math.floor(since * 1000)


def free_port() -> int:
    """A port of 127.0.0.1 free now (nothing holds it after this returns)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

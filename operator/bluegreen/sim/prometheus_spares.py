"""Prometheus servers started ahead of the worlds that will use them, so a world does not wait ~5.5 s for one.

A Prometheus hands its first targets to its scrape loops only after its
discovery manager's fixed 5 s tick (see ``sim.prometheus``), however short the
scrape interval. A spare is a Prometheus started earlier, while the previous
test ran, whose targets are addresses reserved for the world that will take
it: ports this process holds, bound but never listening, until the world's
HAProxy and ingresses listen on them too (both sides set ``SO_REUSEPORT``; a
socket that does not listen takes no connection, and nobody else can bind the
port meanwhile). Scrapes of a port nobody listens on are refused (``up == 0``),
so by the time a world takes the spare its discovery tick is long past, and
the world's targets are scraped within one scrape interval of listening.

Each world still gets a Prometheus no other world has used: its storage holds
nothing of another test, only the refused scrapes of its own targets from
before they listened. A spare is handed out once; whoever takes it stops it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import socket
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from bluegreen.sim import prometheus

_RESERVE_ATTEMPTS = 20


@dataclasses.dataclass(frozen=True)
class Job:
    """A scrape job of the world-to-be: its one target's port is reserved by the spare."""

    name: str
    metrics_path: str = "/metrics"


def reserve_port() -> socket.socket:
    """A socket holding a free port of 127.0.0.1, bound with ``SO_REUSEPORT`` and never listening: only a
    process that also sets ``SO_REUSEPORT`` (HAProxy does by default) can bind the port while it is held."""
    for _ in range(_RESERVE_ATTEMPTS):
        # A probe without SO_REUSEPORT finds a port nobody holds, not even with SO_REUSEPORT.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            held.bind(("127.0.0.1", port))
        except OSError:  # taken between the probe and the bind
            held.close()
            continue
        return held
    raise OSError(f"no free port could be reserved in {_RESERVE_ATTEMPTS} attempts")


class Spare:
    """One Prometheus process scraping reserved ports, for the one world that will listen on them; started
    when made, without waiting for it to be ready (the world waits for its first scrapes)."""

    def __init__(self, *, state_dir: pathlib.Path, jobs: Sequence[Job], scrape_interval: str = "1s",
                 binary: str = prometheus.DEFAULT_BINARY) -> None:
        self._held = {job.name: reserve_port() for job in jobs}
        self._ports: dict[str, int] = {name: held.getsockname()[1] for name, held in self._held.items()}
        self.targets = [prometheus.ScrapeTarget(job=job.name, metrics_path=job.metrics_path,
                                                address=f"127.0.0.1:{self._ports[job.name]}")
                        for job in jobs]
        self.scrape_interval = scrape_interval
        self.server = prometheus.PrometheusServer(state_dir=state_dir, targets=self.targets, binary=binary,
                                                  scrape_interval=scrape_interval, port=prometheus.free_port())
        state_dir.mkdir(parents=True, exist_ok=True)
        self.server.config_path.write_text(self.server.render_config())
        with self.server.log_path.open("wb") as log:
            self._process = subprocess.Popen(self.server.command_line(), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def alive(self) -> bool:
        """False when the process is gone (it could not bind its own port, say): take another."""
        return self._process.poll() is None

    def port(self, job: str) -> int:
        """The port reserved for ``job``'s target: where it must listen (with ``SO_REUSEPORT``)."""
        return self._ports[job]

    def describe(self) -> dict[str, Any]:
        """What a world needs to use it (``bluegreen-sim up --prometheus-spare FILE``)."""
        return {"url": self.url, "scrape_interval": self.scrape_interval, "state_dir": str(self.server.state_dir),
                "targets": [{"job": target.job, "address": target.address, "metrics_path": target.metrics_path}
                            for target in self.targets]}

    def write(self, path: pathlib.Path) -> pathlib.Path:
        path.write_text(json.dumps(self.describe(), indent=2))
        return path

    def stop(self, *, grace: float = 5.0) -> None:
        """Stop Prometheus and give the ports back; safe to call twice."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for held in self._held.values():
            held.close()


class Spares:
    """At most one spare waiting per set of jobs: :meth:`take` hands it over and starts the next one, which
    has the time the taker's test runs to get past its discovery tick."""

    def __init__(self, *, state_dir: pathlib.Path, scrape_interval: str = "1s",
                 binary: str = prometheus.DEFAULT_BINARY) -> None:
        self.state_dir = state_dir
        self.scrape_interval = scrape_interval
        self.binary = binary
        self._waiting: dict[tuple[Job, ...], Spare] = {}
        self._made = 0

    def take(self, jobs: Sequence[Job]) -> Spare:
        """A running spare for ``jobs`` (started now if none waits, or the one waiting died); stop it after use."""
        key = tuple(jobs)
        spare = self._waiting.pop(key, None)
        if spare is None or not spare.alive:
            if spare is not None:
                spare.stop()
            spare = self._new(key)
        self._waiting[key] = self._new(key)
        return spare

    def close(self) -> None:
        for spare in self._waiting.values():
            spare.stop()
        self._waiting.clear()

    def _new(self, jobs: tuple[Job, ...]) -> Spare:
        self._made += 1
        return Spare(state_dir=self.state_dir / f"spare-{self._made}", jobs=jobs,
                     scrape_interval=self.scrape_interval, binary=self.binary)


def read(path: pathlib.Path) -> dict[str, Any]:
    """A spare's description as :meth:`Spare.write` wrote it, checked for what a world relies on."""
    described = json.loads(path.read_text())
    if not isinstance(described, dict) or not isinstance(described.get("targets"), list):
        raise ValueError(f"{path} does not describe a Prometheus spare: {described!r}")
    return described


def ports_by_job(described: Mapping[str, Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for target in described["targets"]:
        host, _, port = str(target["address"]).rpartition(":")
        if host != "127.0.0.1" or not port.isdigit():
            raise ValueError(f"a spare's target is on 127.0.0.1, not at {target['address']!r}")
        found[str(target["job"])] = int(port)
    return found

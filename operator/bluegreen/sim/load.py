"""Real client traffic for the emulated world: the requests that must not fail.

A :class:`LoadGenerator` sends HTTP GETs to the HAProxy frontend at a steady
rate while the operator moves weights, and remembers every request: when it
started, its status, which cluster answered (the ``X-Cluster`` header the
simulated ingresses set) or why it failed. Tests and the demo then ask how many
requests failed, or which share green served, over any time window.

It is bounded by construction: a run needs a total number of requests or a
duration (or both) and ends on its own; ``stop`` ends it early. Concurrency is
capped: when every slot is busy, the next request waits for a free one, so a
slow backend lowers the achieved rate instead of piling up requests.

Times are ``time.monotonic()`` seconds, the clock to use for ``since``/``until``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import time
from typing import Any

import aiohttp

from bluegreen.sim import backends


@dataclasses.dataclass(frozen=True)
class Sample:
    """One request: when it started, how long it took, and how it ended."""

    started: float
    elapsed: float
    status: int | None
    cluster: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def failure(self) -> str | None:
        """Why the request counts as failed (``HTTP 503``, ``ServerDisconnectedError``...), or None."""
        if self.error is not None:
            return self.error
        if not self.ok:
            return f"HTTP {self.status}"
        return None


class LoadGenerator:
    """Steady GET traffic to one URL, recorded request by request."""

    def __init__(
        self,
        *,
        url: str,
        rate: float = 50.0,
        concurrency: int = 10,
        total: int | None = None,
        duration: float | None = None,
        request_timeout: float = 5.0,
    ) -> None:
        if total is None and duration is None:
            raise ValueError("a LoadGenerator needs a total or a duration to stop by itself")
        if rate <= 0 or concurrency < 1:
            raise ValueError(f"rate must be positive and concurrency at least 1, got {rate} and {concurrency}")
        self.url = url
        self.rate = rate
        self.concurrency = concurrency
        self.total = total
        self.duration = duration
        self.request_timeout = request_timeout
        self._samples: list[Sample] = []
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def samples(self) -> list[Sample]:
        return list(self._samples)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Begin sending in the background; returns at once."""
        if self._task is not None:
            raise RuntimeError("this LoadGenerator has already run; make a new one")
        self._task = asyncio.create_task(self._run(), name=f"load {self.url}")

    async def wait(self) -> None:
        """Wait until the run ends by itself (total or duration reached)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        """Send no more requests, and wait for those in flight."""
        self._stopping.set()
        await self.wait()

    async def run(self) -> dict[str, Any]:
        """Start, wait for the end, and return the summary."""
        await self.start()
        await self.wait()
        return self.summary()

    def summary(self, *, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        """Counts over requests started in [since, until): requests, failed, by_cluster, failures by reason.

        ``by_cluster`` counts every answer that names a cluster, successful or not.
        """
        window = self._window(since, until)
        failures = collections.Counter(sample.failure for sample in window if sample.failure is not None)
        by_cluster = collections.Counter(sample.cluster for sample in window if sample.cluster is not None)
        return {
            "requests": len(window),
            "failed": sum(failures.values()),
            "by_cluster": dict(by_cluster),
            "failures": dict(failures),
        }

    def share(self, cluster: str, *, since: float | None = None, until: float | None = None) -> float:
        """The fraction of answers that came from ``cluster`` (0.0 when nothing answered)."""
        answered = [sample for sample in self._window(since, until) if sample.cluster is not None]
        if not answered:
            return 0.0
        return sum(1 for sample in answered if sample.cluster == cluster) / len(answered)

    def _window(self, since: float | None, until: float | None) -> list[Sample]:
        return [
            sample for sample in self._samples
            if (since is None or sample.started >= since) and (until is None or sample.started < until)
        ]

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        in_flight: set[asyncio.Task[None]] = set()
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            began = time.monotonic()
            for index in itertools.count():
                if self.total is not None and index >= self.total:
                    break
                due = began + index / self.rate
                if self.duration is not None and due >= began + self.duration:
                    break
                if await self._stopped_before(due):
                    break
                await slots.acquire()
                task = asyncio.create_task(self._request(session, slots))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.gather(*in_flight)

    async def _stopped_before(self, due: float) -> bool:
        delay = due - time.monotonic()
        if delay > 0:
            try:
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            except TimeoutError:
                pass
        return self._stopping.is_set()

    async def _request(self, session: aiohttp.ClientSession, slots: asyncio.Semaphore) -> None:
        started = time.monotonic()
        status: int | None = None
        cluster: str | None = None
        error: str | None = None
        try:
            async with session.get(self.url) as response:
                await response.read()
                status = response.status
                cluster = response.headers.get(backends.CLUSTER_HEADER)
        except TimeoutError:
            error = f"timeout after {self.request_timeout:g}s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            slots.release()
        self._samples.append(
            Sample(started=started, elapsed=time.monotonic() - started, status=status, cluster=cluster, error=error)
        )

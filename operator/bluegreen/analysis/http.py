"""HTTP probes as a metric provider: send a few requests to one side's own endpoint, report one number.

The way people check a green cluster by hand before it takes traffic,
``curl -H "Host: app.example.com" http://green-lb/``, repeated ``requests``
times: the URL addresses the side's own load balancer (with ``{{cluster}}``
in it), the ``host`` header names the public site it serves.

What one measurement reports (``measure``):

- ``successRate``: the share of requests (0..1) whose status is in
  ``successCodes`` (``200-399``, ``200-299,404``);
- ``latencyP50/P95/P99``: that percentile (nearest rank) of the response
  times of all requests, in seconds; ``latencyMax``: the slowest.

A request that times out, or cannot connect, has failed and counts with a
latency of ``timeout``: a side that does not answer must read as slow and
failing, not vanish from the figures. An untrusted TLS certificate, an
invalid URL or an unknown placeholder is different: no request says anything
about the side then, so the measurement raises
:class:`~bluegreen.analysis.base.MetricError` (Inconclusive) naming the fix.

Requests go out in batches of :data:`BATCH_SIZE` at a time, so a probe adds
a handful of concurrent requests to the side, not ``requests`` at once, and
one measurement lasts at most ``ceil(requests / BATCH_SIZE) * timeout``.
Redirects are not followed: a 3xx is an answer, judged by ``successCodes``.
With https and a ``host``, the TLS handshake names ``host`` (SNI, which an
ingress uses to pick the certificate) and the certificate is checked against
it, as ``curl --connect-to`` would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Sequence

import aiohttp

from bluegreen import httptext as transport
from bluegreen.analysis.base import MetricError
from bluegreen.analysis.placeholders import Placeholders
from bluegreen.api import durations, spec

logger = logging.getLogger(__name__)

BATCH_SIZE = 5
_PERCENTILES = {
    spec.ProbeMeasure.LATENCY_P50: 0.50,
    spec.ProbeMeasure.LATENCY_P95: 0.95,
    spec.ProbeMeasure.LATENCY_P99: 0.99,
    spec.ProbeMeasure.LATENCY_MAX: 1.0,
}


@dataclasses.dataclass(frozen=True)
class StatusCodes:
    """The status codes ``successCodes`` accepts, as inclusive ranges."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str) -> StatusCodes:
        """``"200-299,404"`` -> ranges 200..299 and 404..404; ValueError naming the part that is wrong."""
        ranges = []
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            try:
                first, last = int(low), int(high or low)
            except ValueError:
                raise ValueError(f"httpProbe.successCodes: {part!r} is not a code or a range such as 200-399") from None
            if not 100 <= first <= last <= 599:
                raise ValueError(f"httpProbe.successCodes: {part!r} is not a range of HTTP codes (100-599, low-high)")
            ranges.append((first, last))
        return cls(tuple(ranges))

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and any(first <= status <= last for first, last in self.ranges)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One request: whether it succeeded, how long it took, and what came back (a status or a problem)."""

    success: bool
    seconds: float
    detail: str


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``share`` of the values at or below it."""
    if not values:
        raise ValueError("no values")
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


def summarize(outcomes: Sequence[Outcome], measure: spec.ProbeMeasure) -> float:
    """The value ``measure`` asks for, over all outcomes."""
    if not outcomes:
        raise ValueError("no requests were made")
    if measure is spec.ProbeMeasure.SUCCESS_RATE:
        return sum(outcome.success for outcome in outcomes) / len(outcomes)
    return percentile([outcome.seconds for outcome in outcomes], _PERCENTILES[measure])


class HTTPProbeProvider:
    """``requests`` requests to a URL with a Host header, judged by status and timed."""

    def __init__(
        self,
        *,
        url: str,
        placeholders: Placeholders,
        host: str | None = None,
        method: str = "GET",
        requests: int = 10,
        timeout: float = 5.0,
        success_codes: str = "200-399",
        measure: spec.ProbeMeasure = spec.ProbeMeasure.SUCCESS_RATE,
        verify_tls: bool = True,
    ) -> None:
        if requests < 1:
            raise ValueError(f"httpProbe.requests must be at least 1, got {requests}")
        if timeout <= 0:
            raise ValueError(f"httpProbe.timeout must be positive, got {timeout}s")
        self._url = url
        self._host = host
        self._placeholders = placeholders
        self._method = method
        self._requests = requests
        self._timeout = timeout
        self._codes = StatusCodes.parse(success_codes)
        self._measure = measure
        self._verify_tls = verify_tls

    @classmethod
    def from_spec(cls, config: spec.HTTPProbe, *, placeholders: Placeholders) -> HTTPProbeProvider:
        return cls(
            url=config.url,
            placeholders=placeholders,
            host=config.host,
            method=config.method,
            requests=config.requests,
            timeout=durations.parse_duration(config.timeout).total_seconds(),
            success_codes=config.success_codes,
            measure=config.measure,
            verify_tls=not config.insecure_skip_tls_verify,
        )

    def __repr__(self) -> str:
        return (f"HTTPProbeProvider({self._method} {transport.safe_url(self._url)!r}, host={self._host!r}, "
                f"requests={self._requests}, measure={self._measure.value})")

    async def value(self, *, cluster: str) -> float | None:
        outcomes = await self.probe(cluster=cluster)
        return summarize(outcomes, self._measure)

    async def probe(self, *, cluster: str) -> list[Outcome]:
        """Every request's outcome, for the side named ``cluster``."""
        url = self._placeholders.render(self._url, cluster=cluster, field="httpProbe.url")
        host = self._placeholders.render(self._host, cluster=cluster, field="httpProbe.host") if self._host else None
        headers = {"Host": host} if host else {}
        # Keep-alive across a batch would let later requests skip the connect time; each request pays it,
        # as each new client of the side would.
        connector = aiohttp.TCPConnector(limit=BATCH_SIZE, force_close=True)
        outcomes: list[Outcome] = []
        async with aiohttp.ClientSession(connector=connector) as session:
            for start in range(0, self._requests, BATCH_SIZE):
                batch = range(start, min(start + BATCH_SIZE, self._requests))
                outcomes += await asyncio.gather(*(self._one(session, url, headers, host) for _ in batch))
        logger.debug("%s %s (host %s): %s", self._method, transport.safe_url(url), host,
                     ", ".join(outcome.detail for outcome in outcomes))
        return outcomes

    async def _one(self, session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                   host: str | None) -> Outcome:
        where = f"{self._method} {transport.safe_url(url)}"
        https = url.startswith("https://")
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(self._timeout),
                session.request(self._method, url, headers=headers, allow_redirects=False, ssl=self._verify_tls,
                                server_hostname=host if https else None) as response,
            ):
                await response.read()
                status = response.status
        except aiohttp.ClientConnectorCertificateError as exc:
            raise MetricError(f"{where}: {transport.untrusted_certificate(exc)}") from None
        except aiohttp.InvalidURL:
            raise MetricError(f"{where}: httpProbe.url is not a valid URL") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Outcome(success=False, seconds=self._timeout, detail=transport.problem(exc, timeout=self._timeout))
        seconds = min(time.perf_counter() - started, self._timeout)
        return Outcome(success=status in self._codes, seconds=seconds, detail=f"HTTP {status}")

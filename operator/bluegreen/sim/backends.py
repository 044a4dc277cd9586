"""A real HTTP server standing for one cluster's ingress in the emulated world.

It answers every request with the cluster's name (in the body and in an
``X-Cluster`` header), so a client behind HAProxy can tell which side served it.

The port is reserved when the object is made, before the server runs: HAProxy's
configuration needs green's address before green exists. Until ``start`` the
reserved socket is bound but not listening, so connections are refused, as
they are for a cluster that is not there yet.

``error_rate`` and ``latency`` can be changed at any time (``set_fault``) to
make the cluster look unhealthy to analysis. Errors are spread evenly rather
than drawn at random (a rate of 0.1 fails exactly every tenth request), so
tests can count on them. Health checks (``/healthz``) are exempt from both: a
slow or failing application must show in the metrics, not make HAProxy take
the server out.

Like an ingress controller, the backend also serves its own Prometheus metrics
on ``/metrics`` (requests by status class, and the time spent answering as a
sum and a count), labelled with its cluster's name. They exist because
HAProxy's exported averages cannot judge a new server: HAProxy averages
response times over a sliding window of the last 512 requests that starts
full of zeros, so green's average reads a fraction of its real latency until
it has served hundreds of requests. Rates of a sum and a count are exact over
any window. ``/healthz`` and ``/metrics`` are not counted.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import time

from aiohttp import web

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
CLUSTER_HEADER = "X-Cluster"


class Backend:
    """One cluster's ingress: ``start``/``stop`` as often as needed, always on the same port."""

    def __init__(self, *, cluster: str, port: int = 0, error_rate: float = 0.0, latency: float = 0.0,
                 reuse_port: bool = False) -> None:
        self.cluster = cluster
        self.error_rate = 0.0
        self.latency = 0.0
        self.set_fault(error_rate=error_rate, latency=latency)
        self.requests = 0
        self.errors = 0
        self._error_debt = 0.0
        self._by_class: collections.Counter[str] = collections.Counter()
        self._seconds_total = 0.0
        self._runner: web.AppRunner | None = None
        # True: ``port`` is held for this backend by whoever reserved it (sim.prometheus_spares), with
        # SO_REUSEPORT, which this backend's socket must set too to bind it.
        self._reuse_port = reuse_port
        self._sock: socket.socket | None = _reserve(port, reuse_port=reuse_port)
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

    def set_fault(self, *, error_rate: float | None = None, latency: float | None = None) -> None:
        """Change how badly the cluster answers from the next request on; None leaves a setting as it is."""
        if error_rate is not None:
            if not 0.0 <= error_rate <= 1.0:
                raise ValueError(f"error_rate is a share of requests between 0 and 1, got {error_rate}")
            # A new rate starts its own even spread rather than paying off the old one's remainder.
            self.error_rate, self._error_debt = error_rate, 0.0
        if latency is not None:
            if latency < 0:
                raise ValueError(f"latency is seconds added to each answer, at least 0, got {latency}")
            self.latency = latency

    @property
    def fault(self) -> dict[str, float]:
        return {"errorRate": self.error_rate, "latency": self.latency}

    async def start(self) -> None:
        if self._runner is not None:
            return
        sock = self._sock if self._sock is not None else _reserve(self._port, reuse_port=self._reuse_port)
        self._sock = None
        app = web.Application()
        app.router.add_get(HEALTH_PATH, self._health)
        app.router.add_get(METRICS_PATH, self._metrics)
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
        started = time.monotonic()
        self.requests += 1
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        self._error_debt += self.error_rate
        if self._error_debt >= 1.0 - 1e-9:
            self._error_debt -= 1.0
            self.errors += 1
            response = web.Response(
                status=500, text=f"{self.cluster}: injected error\n", headers={CLUSTER_HEADER: self.cluster}
            )
        else:
            response = web.Response(text=f"{self.cluster}\n", headers={CLUSTER_HEADER: self.cluster})
        self._by_class[f"{response.status // 100}xx"] += 1
        self._seconds_total += time.monotonic() - started
        return response

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.exposition(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    def exposition(self) -> str:
        """The metrics in Prometheus' text format (version 0.0.4)."""
        cluster = _label_value(self.cluster)
        lines = [
            "# HELP ingress_requests_total Requests answered, by status class.",
            "# TYPE ingress_requests_total counter",
            *(f'ingress_requests_total{{cluster="{cluster}",code="{code}"}} {self._by_class[code]}'
              for code in ("2xx", "5xx")),
            "# HELP ingress_request_duration_seconds Time spent answering requests.",
            "# TYPE ingress_request_duration_seconds summary",
            f'ingress_request_duration_seconds_sum{{cluster="{cluster}"}} {self._seconds_total!r}',
            f'ingress_request_duration_seconds_count{{cluster="{cluster}"}} {sum(self._by_class.values())}',
        ]
        return "\n".join(lines) + "\n"


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _reserve(port: int, *, reuse_port: bool) -> socket.socket:
    # SO_REUSEADDR lets a restarted backend take its port back while old
    # connections to it sit in TIME_WAIT.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock

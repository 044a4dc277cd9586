"""Start the emulated world and the operator as real processes, for tests, the demo and benchmarks.

The world (``bluegreen-sim up``) and the operator (``kopf run -m bluegreen.handlers``)
are separate processes, as they would be against a real management cluster:
the operator knows the world only through the kubeconfig the world writes.
Both are stopped (and, for the operator, may be killed with SIGKILL) from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import aiohttp

from bluegreen.sim import prometheus_spares

BIN = pathlib.Path(sys.executable).parent
IMAGE_SITE = pathlib.Path(__file__).resolve().parent / "image_site"


def _bin(name: str) -> str:
    candidate = BIN / name
    return str(candidate) if candidate.exists() else name


@dataclasses.dataclass
class WorldProcess:
    process: subprocess.Popen[str]
    state_dir: pathlib.Path
    info: dict[str, Any]
    prometheus_spare: prometheus_spares.Spare | None = None  # stopped with the world

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.state_dir / "management.kubeconfig"

    @property
    def control_url(self) -> str:
        return str(self.info["control_url"])

    def stop(self) -> None:
        terminate(self.process)
        if self.prometheus_spare is not None:
            self.prometheus_spare.stop()

    async def control(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Call the world's control API (traffic summaries, fault switches)."""
        async with aiohttp.ClientSession() as session, session.request(
            method, f"{self.control_url}{path}", json=body
        ) as response:
            response.raise_for_status()
            return await response.json()

    async def traffic(self, *, since: float | None = None, until: float | None = None,
                      samples: bool = False) -> dict[str, Any]:
        """The load generator's requests started in [since, until) (epoch seconds), summed up or one by one."""
        query = {"since": since, "until": until, "samples": 1 if samples else None}
        text = "&".join(f"{key}={value}" for key, value in query.items() if value is not None)
        return dict(await self.control("GET", f"/traffic?{text}" if text else "/traffic"))

    async def set_fault(self, cluster: str, *, error_rate: float | None = None,
                        latency: float | None = None) -> dict[str, Any]:
        """Make ``cluster``'s backend answer 5xx at ``error_rate`` and/or ``latency`` seconds late, from now on."""
        body = {"cluster": cluster, "errorRate": error_rate, "latency": latency}
        return dict(await self.control("POST", "/backends/fault", body))

    def gate_url(self, name: str) -> str:
        """A webhook URL answering with the status :meth:`set_gate` last set (200 to begin with)."""
        return f"{self.control_url}/gates/{name}"

    async def set_gate(self, name: str, *, status: int) -> None:
        await self.control("POST", f"/gates/{name}/set", {"status": status})

    async def gate_calls(self, name: str) -> list[dict[str, Any]]:
        """What the gate was sent, oldest first: ``{time, method, payload}``."""
        return list((await self.control("GET", f"/gates/{name}/calls"))["calls"])

    @property
    def prometheus_url(self) -> str:
        found = self.info.get("prometheus")
        if not found:
            raise RuntimeError("this world runs without Prometheus (bluegreen-sim up --no-prometheus)")
        return str(found["url"])

    async def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query to the world's Prometheus: (labels, value) per series of the result vector."""
        async with aiohttp.ClientSession() as session, session.get(
            f"{self.prometheus_url}/api/v1/query", params={"query": promql}
        ) as response:
            response.raise_for_status()
            body = await response.json()
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [({}, float(result[1]))]
        return [(dict(series["metric"]), float(series["value"][1])) for series in result]


@dataclasses.dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: pathlib.Path

    def kill(self) -> None:
        """SIGKILL: no cleanup, no status write, exactly like a node dying."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        terminate(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_world(state_dir: pathlib.Path, *, args: tuple[str, ...] = (), timeout: float = 60.0,
                prometheus_spare: prometheus_spares.Spare | None = None) -> WorldProcess:
    """Run ``bluegreen-sim up`` and wait for its ``ready`` line. With ``prometheus_spare`` (stopped with the
    world), the world uses that Prometheus instead of starting one and waiting ~5.5 s for it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    if prometheus_spare is not None:
        args = (*args, "--prometheus-spare", str(prometheus_spare.write(state_dir / "prometheus-spare.json")))
    log = (state_dir / "world.log").open("w")
    process = subprocess.Popen(
        [_bin("bluegreen-sim"), "up", "--state-dir", str(state_dir), *args],
        stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if line.strip() == "ready":
                info = json.loads((state_dir / "world.json").read_text())
                return WorldProcess(process=process, state_dir=state_dir, info=info, prometheus_spare=prometheus_spare)
            if not line:
                break
        if process.poll() is not None:
            break
    terminate(process)
    if prometheus_spare is not None:
        prometheus_spare.stop()
    raise RuntimeError(f"the world did not start; see {state_dir / 'world.log'}:\n"
                       f"{(state_dir / 'world.log').read_text()[-4000:]}")


def start_operator(
    kubeconfig: pathlib.Path, *, log_path: pathlib.Path, env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
) -> OperatorProcess:
    """Run the operator exactly as it runs in a cluster: ``kopf run -m bluegreen.handlers``.

    ``command`` replaces the standalone all-namespaces command line, e.g. with the one the chart's
    Deployment runs; its first word is looked up in this virtualenv first.
    """
    # No /metrics unless asked (env): operators of tests running side by side would all want port 8000.
    environment = {"BLUEGREEN_METRICS_PORT": "0", **os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1",
                   **(env or {})}
    # Without the client libraries the image does not install (see image_site/sitecustomize.py).
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(IMAGE_SITE), environment.get("PYTHONPATH")]))
    log = log_path.open("ab")
    argv = list(command) if command else ["kopf", "run", "--standalone", "--all-namespaces", "-m", "bluegreen.handlers"]
    process = subprocess.Popen(
        [_bin(argv[0]), *argv[1:]],
        stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True,
    )
    return OperatorProcess(process=process, log_path=log_path)


def kubectl(kubeconfig: pathlib.Path, *args: str, input_text: str | None = None, check: bool = True) -> str:
    """Run kubectl against the world (what a person would type)."""
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=input_text, capture_output=True, text=True, timeout=60,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def localize(manifest: dict[str, Any], world: Mapping[str, Any]) -> list[str]:
    """Point an example ClusterUpgrade at the world's addresses, in place; returns what changed, said plainly.

    Only addresses change, never behaviour: every HAProxy router's runtimeAPI
    becomes the world's HAProxy, every Prometheus query's address the world's
    Prometheus, and every HTTP probe's host and port green's ingress (the path,
    the Host header and the rest are kept), the one a probe is for in this world.
    """
    spec = manifest["spec"]
    changes = []
    for router in spec["traffic"]["routers"]:
        if "haproxy" in router:
            router["haproxy"]["runtimeAPI"] = world["haproxy"]["runtime_api"]
            changes.append(f"traffic.routers.haproxy.runtimeAPI -> {world['haproxy']['runtime_api']}")
    for metric in (spec.get("analysis") or {}).get("metrics") or []:
        if "prometheus" in metric:
            if not world.get("prometheus"):
                raise RuntimeError(f"metric {metric['name']} queries Prometheus but the world runs without it")
            metric["prometheus"]["address"] = world["prometheus"]["url"]
            changes.append(f"analysis.metrics[{metric['name']}].prometheus.address -> {world['prometheus']['url']}")
        if "httpProbe" in metric:
            path = urllib.parse.urlsplit(metric["httpProbe"]["url"]).path or "/"
            metric["httpProbe"]["url"] = world["backends"]["green"].rstrip("/") + path
            changes.append(f"analysis.metrics[{metric['name']}].httpProbe.url -> {metric['httpProbe']['url']} "
                           "(green's ingress)")
    return changes


@contextlib.contextmanager
def running(world: WorldProcess, *operators: OperatorProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for operator in operators:
            operator.stop()
        world.stop()


def terminate(process: subprocess.Popen[Any]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def parse_time(text: str) -> float:
    """An RFC 3339 timestamp from status as epoch seconds."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def weight_windows(
    journal: list[dict[str, Any]], *, end: float, settle: float = 0.25
) -> list[tuple[int, float, float]]:
    """(green weight, from, to) for each weight the first router held, from the status journal.

    ``settle`` skips the first moments after a change, when requests already
    on their way were routed by the previous weights.
    """
    changes = [entry for entry in journal if entry.get("action") == "setWeights" and entry.get("weights")]
    if not changes:
        return []
    first_router = changes[0]["target"]
    changes = [entry for entry in changes if entry["target"] == first_router]
    windows: list[tuple[int, float, float]] = []
    for index, entry in enumerate(changes):
        start = parse_time(entry["time"]) + settle
        stop = parse_time(changes[index + 1]["time"]) if index + 1 < len(changes) else end
        windows.append((int(entry["weights"]["green"]), start, stop))
    return windows

"""``make bench``: how fast the operator reacts, what a step costs it, and how it scales to a fleet.

Three processes, as in production: the fleet world (``python -m bluegreen.sim.fleet``: the management
emulator with Cluster API's and Flux's simulated controllers, one emulated API server per cluster, a webhook
router's receiver), the operator (``kopf run -m bluegreen.handlers``, as the image runs it), and this
driver, which writes what a person or the world would and watches the management API like any client.

Every time is taken in this process, from watch events on the management emulator: a change counts from
when its event arrives here (the operator gets the same event on its own watch) until the upgrade's status
shows the result. What is measured:

- floor: a bare client's round trip on the same emulator: create a ConfigMap, see it on a watch;
- reaction: green's Cluster turning Available, green's Kustomization turning Ready, a promote annotation ->
  the status moving on; over 200 events of 50 upgrades started 2 a second, every pause but the last promoted
  as it comes (20 a second at most): a rate well under what the operator can do, so this is reaction, not
  queueing;
- step overhead: one upgrade with 10 weight steps and no pause, from creation to Completed, minus the time
  the world itself took (green provisioning, Flux applying, blue's deletion: the union of those intervals);
- scale: N = 10, 100, 1,000 upgrades created at once, each with its own blue and green clusters, two
  three pauses each. Time to complete all (create -> all Completed, minus the windows the driver holds them:
  the probe and the restart); reaction p99 of 200 promotes (or all there are) sent 20 a second, once the
  operator is idle again, while the rest wait, each moving one upgrade's weight to its next pause; reaction
  p99 while all start at once (a burst: that is queueing); the operator's peak RSS; its API requests (kopf's
  and its own, on every API server) per upgrade;
- restart (at 1,000): the operator is killed with all upgrades paused, every one is promoted, and a new
  operator starts: time from its start until every upgrade moved on.

Writes ``bench/results.json`` and ``bench/results.md`` and prints the table. ``--quick`` runs small sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import json
import math
import os
import pathlib
import platform
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bluegreen.api.spec import default_green_name
from bluegreen.engine.types import ANNOTATION_PROMOTE, LABEL_UPGRADE
from bluegreen.kube.client import ApiError, KubeClient, Resource, UnreachableError
from bluegreen.sim import api_usage, harness

HERE = pathlib.Path(__file__).resolve().parent
NAMESPACE = "fleet"
UPGRADES = Resource("bluegreen.io", "v1alpha1", "clusterupgrades")
CLUSTERS = Resource("cluster.x-k8s.io", "v1beta2", "clusters")
KUSTOMIZATIONS = Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
CONFIGMAPS = Resource("", "v1", "configmaps")
NAMESPACES = Resource("", "v1", "namespaces")
OPERATOR_AGENTS = (api_usage.OPERATOR_AGENT, api_usage.KOPF_AGENT)
PROBE_RATE = 20.0  # promotes a second while measuring reaction under load
PROBE_EVENTS = 200
REACTION_RATE = 2.0  # upgrades created a second in the reaction run: well under what the operator can do
# The fleet plan: steps[1], [3] and [5] wait for a person. The restart (at the largest size) uses the first
# pause, the probe the ones before the last (a promote there moves the weight and stops at the next pause), and
# the last one leads to promotion, retirement and Completed.
PAUSED_STEPS = (1, 3, 5)
FLEET_STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 30}, {"pause": {}},
                                     {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
TEN_STEPS: list[dict[str, Any]] = [{"setWeight": weight} for weight in range(10, 101, 10)]
TARGETS = {"reaction_p99_s": 0.150, "overhead_ratio_p50": 5.0, "peak_rss_mib": 400.0, "step_overhead_s": 2.0}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def blue_name(index: int) -> str:
    return f"u{index:04d}-blue"  # as sim.fleet seeds them


def upgrade_name(index: int) -> str:
    return f"u{index:04d}"


def manifest(index: int, *, steps: list[dict[str, Any]], weights_url: str) -> dict[str, Any]:
    blue = blue_name(index)
    return {
        "apiVersion": "bluegreen.io/v1alpha1",
        "kind": "ClusterUpgrade",
        "metadata": {"name": upgrade_name(index), "namespace": NAMESPACE},
        "spec": {
            "strategy": "BlueGreen",
            "cluster": {"provider": "capi", "name": blue, "namespace": NAMESPACE},
            "target": {"kubernetesVersion": "1.31"},
            "workloads": {"flux": {"mode": "remote", "selector": {"matchLabels": {"bluegreen.io/cluster": blue}}}},
            "traffic": {"routers": [{"name": "lb", "webhook": {"url": weights_url}}], "steps": steps},
            "promotion": {"retainBlueFor": "0s", "blueDeletionPolicy": "Delete"},
        },
    }


# --- processes -----------------------------------------------------------------------------------


@dataclasses.dataclass
class FleetProcess:
    process: subprocess.Popen[str]
    state_dir: pathlib.Path
    info: dict[str, Any]

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.state_dir / "management.kubeconfig"

    async def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
                method, self.info["control_url"] + path, json=body) as response:
            response.raise_for_status()
            return await response.json()

    def stop(self) -> None:
        harness.terminate(self.process)


def start_fleet(state_dir: pathlib.Path, *, provision_delay: float, flux_delay: float) -> FleetProcess:
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / "fleet.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "bluegreen.sim.fleet", "--state-dir", str(state_dir),
         "--provision-delay", str(provision_delay), "--flux-delay", str(flux_delay)],
        stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if select.select([process.stdout], [], [], 0.5)[0] and process.stdout.readline().strip() == "ready":
            return FleetProcess(process, state_dir, json.loads((state_dir / "fleet.json").read_text()))
    harness.terminate(process)
    raise RuntimeError(f"the fleet world did not start: {(state_dir / 'fleet.log').read_text()[-3000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_operator(fleet: FleetProcess, *, log_name: str) -> tuple[harness.OperatorProcess, float]:
    """The operator as the image runs it; returns it once kopf answers its liveness probe, and how long that took."""
    port = free_port()
    started = time.monotonic()
    operator = harness.start_operator(
        fleet.kubeconfig, log_path=fleet.state_dir / log_name,
        command=["kopf", "run", "--standalone", "--all-namespaces", f"--liveness=http://127.0.0.1:{port}/healthz",
                 "-m", "bluegreen.handlers"],
    )
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < 60:
            if operator.process.poll() is not None:
                raise RuntimeError(f"the operator exited: {operator.log()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return operator, time.monotonic() - started
            await asyncio.sleep(0.02)
    raise RuntimeError(f"the operator did not become live: {operator.log()[-3000:]}")


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle(pid: int, *, below: float = 0.05, window: float = 1.0, timeout: float = 300.0) -> float:
    """Wait until the process used less than ``below`` of a core over ``window``; how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cpu_seconds(pid)
        await asyncio.sleep(window)
        if (cpu_seconds(pid) - before) / window < below:
            return time.monotonic() - started
    raise TimeoutError(f"process {pid} still busy after {timeout:g}s")


def memory_mib(pid: int) -> dict[str, float]:
    """Peak (VmHWM) and current (VmRSS) resident memory of a process, MiB."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmHWM", "VmRSS"}:
            fields[key] = int(value.split()[0]) / 1024
    return {"peak": round(fields["VmHWM"], 1), "now": round(fields["VmRSS"], 1)}


# --- observing the management API ----------------------------------------------------------------


@dataclasses.dataclass
class Upgrade:
    phase: str = ""
    step: int = 0
    green_weight: int = 0
    annotations: frozenset[str] = frozenset()
    created: float | None = None  # when its ADDED event arrived
    completed: float | None = None

    def summary(self) -> tuple[str, int, int]:
        return (self.phase, self.step, self.green_weight)


@dataclasses.dataclass
class Pending:
    kind: str
    since: float
    baseline: tuple[str, int, int]


class Observer:
    """Watches upgrades, Clusters and Kustomizations; turns their events into reaction samples and intervals."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.upgrades: dict[str, Upgrade] = {}
        self.samples: list[tuple[str, float]] = []  # (kind, seconds)
        self.slow: list[tuple[float, str, str, float]] = []  # (seconds, kind, upgrade, when), the slowest few
        self.unordered = 0  # the result was on the API before the cause reached this watch
        self.pending: dict[str, Pending] = {}
        self.at: collections.Counter[tuple[str, int, int]] = collections.Counter()  # summary -> upgrades
        self.changed = asyncio.Event()
        self.on_paused: Callable[[str, int], None] | None = None
        # World intervals: (object, what) -> [start, end]
        self.world: dict[tuple[str, str], list[float | None]] = {}
        self._green_of: dict[str, str] = {}  # green cluster name -> upgrade
        self._available: set[str] = set()
        self._ready: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def expect(self, upgrade: str, blue: str) -> None:
        self._green_of[default_green_name(blue)] = upgrade

    async def start(self) -> None:
        for resource, handler in ((UPGRADES, self._upgrade), (CLUSTERS, self._cluster),
                                  (KUSTOMIZATIONS, self._kustomization)):
            self._tasks.append(asyncio.create_task(self._follow(resource, handler)))
        await asyncio.sleep(0.5)  # the streams are open and what exists was sent (as ADDED)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow(self, resource: Resource, handler: Callable[[str, dict[str, Any], float], None]) -> None:
        # Without a resourceVersion the server sends what exists as ADDED first; the handlers compare states,
        # so a stream opened again after an error sends nothing twice that matters.
        while True:
            with contextlib.suppress(ApiError, UnreachableError):
                async for kind, obj in self.client.watch(resource, namespace=NAMESPACE, timeout_seconds=3600):
                    if kind != "BOOKMARK":
                        handler(kind, obj, time.monotonic())

    def _upgrade(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name"))
        upgrade = self.upgrades.setdefault(name, Upgrade(created=now))
        if kind == "DELETED":
            return
        status = obj.get("status") or {}
        before = upgrade.summary()
        annotations = frozenset((meta.get("annotations") or {}).keys())
        promoted = ANNOTATION_PROMOTE in annotations and ANNOTATION_PROMOTE not in upgrade.annotations
        upgrade.annotations = annotations
        upgrade.phase = str(status.get("phase") or "")
        upgrade.step = int((status.get("step") or {}).get("index") or 0)
        upgrade.green_weight = int((status.get("weights") or {}).get("green") or 0)
        after = upgrade.summary()
        if after != before:
            self.at[before] -= 1
            self.at[after] += 1
            pending = self.pending.get(name)
            if pending is not None and after != pending.baseline:
                self.samples.append((pending.kind, now - pending.since))
                self.slow = sorted([*self.slow, (now - pending.since, pending.kind, name, pending.since)])[-5:]
                del self.pending[name]
            if upgrade.phase == "Completed" and upgrade.completed is None:
                upgrade.completed = now
            if upgrade.phase == "Paused" and self.on_paused is not None:
                self.on_paused(name, upgrade.step)
            self.changed.set()
        if promoted:
            self._cause(name, "promote", now, waiting="Paused")

    def _cause(self, upgrade: str, kind: str, now: float, *, waiting: str) -> None:
        state = self.upgrades.get(upgrade)
        if state is None or state.phase != waiting:
            self.unordered += 1  # the operator got there first: no sample rather than a wrong one
            return
        self.pending[upgrade] = Pending(kind, now, state.summary())

    def _interval(self, key: tuple[str, str], now: float, *, end: bool) -> None:
        interval = self.world.setdefault(key, [None, None])
        if not end and interval[0] is None:
            interval[0] = now
        elif end and interval[0] is not None and interval[1] is None:
            interval[1] = now

    def _deletion(self, kind: str, meta: dict[str, Any], now: float) -> bool:
        """The world's part of a deletion (deletionTimestamp to DELETED); whether the object is gone."""
        name = str(meta.get("name"))
        if kind == "DELETED":
            self._interval((name, "deleted"), now, end=True)
            return True
        if meta.get("deletionTimestamp"):
            self._interval((name, "deleted"), now, end=False)
        return False

    def _cluster(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name"))
        if self._deletion(kind, meta, now):
            return
        upgrade = self._green_of.get(name)
        if upgrade is None:
            return
        self._interval((name, "provisioned"), now, end=False)
        if _condition(obj, "Available") and name not in self._available:
            self._available.add(name)
            self._interval((name, "provisioned"), now, end=True)
            self._cause(upgrade, "cluster Available", now, waiting="Provisioning")

    def _kustomization(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name"))
        if self._deletion(kind, meta, now):
            return
        owner = (meta.get("labels") or {}).get(LABEL_UPGRADE, "")
        upgrade = owner.removeprefix(f"{NAMESPACE}.") if owner else ""
        if not upgrade or upgrade not in self.upgrades:
            return
        self._interval((name, "applied"), now, end=False)
        if _condition(obj, "Ready") and name not in self._ready:
            self._ready.add(name)
            self._interval((name, "applied"), now, end=True)
            self._cause(upgrade, "Kustomization Ready", now, waiting="Syncing")

    def reset(self) -> None:
        """Start counting reactions afresh."""
        self.samples.clear()
        self.slow.clear()
        self.unordered = 0

    def done(self, upgrades: int) -> bool:
        return self.count("Completed") == upgrades

    def count(self, phase: str, step: int | None = None) -> int:
        return sum(n for (seen, at, _), n in self.at.items() if seen == phase and step in {None, at})

    async def until(self, predicate: Callable[[], bool], *, timeout: float, what: str) -> float:
        """Wait for ``predicate`` (checked at each status change); when it held (time.monotonic())."""
        deadline = time.monotonic() + timeout
        while not predicate():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                phases = collections.Counter(state.phase for state in self.upgrades.values())
                raise TimeoutError(f"{what}: not within {timeout:g}s; phases now {dict(phases)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=min(left, 1.0))
        return time.monotonic()


def _condition(obj: dict[str, Any], kind: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -math.inf
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


# --- the driver's writes -------------------------------------------------------------------------


class Promoter:
    """Annotates bluegreen.io/promote=step, at most ``rate`` a second; each (upgrade, step) once."""

    def __init__(self, client: KubeClient, *, rate: float) -> None:
        self.client = client
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.done: set[tuple[str, int]] = set()
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.sent = 0
        self.wanted = 0
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def want(self, upgrade: str, step: int) -> None:
        if (upgrade, step) not in self.done:
            self.done.add((upgrade, step))
            self.wanted += 1
            self.queue.put_nowait(upgrade)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            upgrade = await self.queue.get()
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at, time.monotonic()) + self.interval
            task = asyncio.create_task(promote(self.client, upgrade))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            self.sent += 1


async def promote(client: KubeClient, upgrade: str) -> None:
    await client.patch(UPGRADES, namespace=NAMESPACE, name=upgrade,
                       body={"metadata": {"annotations": {ANNOTATION_PROMOTE: "step"}}})


async def create_upgrades(client: KubeClient, observer: Observer, indexes: range, *, steps: list[dict[str, Any]],
                          weights_url: str, rate: float | None = None, concurrency: int = 32) -> float:
    """Create the upgrades (``rate`` a second, or as fast as ``concurrency`` allows); when the first was sent."""
    for index in indexes:
        observer.expect(upgrade_name(index), blue_name(index))
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with gate:
            await client.create(UPGRADES, manifest(index, steps=steps, weights_url=weights_url), namespace=NAMESPACE)

    started = time.monotonic()
    tasks = []
    for position, index in enumerate(indexes):
        if rate:
            delay = started + position / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    return started


def usage_per_upgrade(usage: dict[str, dict[str, int]], upgrades: int) -> dict[str, Any]:
    management = sum(usage["management"].get(agent, 0) for agent in OPERATOR_AGENTS)
    clusters = sum(usage["clusters"].get(agent, 0) for agent in OPERATOR_AGENTS)
    calls = {call: round(count / upgrades, 2) for call, count in sorted(usage["calls"].items(), key=lambda c: -c[1])
             if call.split()[1] in OPERATOR_AGENTS}
    return {"management": round(management / upgrades, 1), "clusters": round(clusters / upgrades, 1),
            "total": round((management + clusters) / upgrades, 1), "by_call": calls}


@contextlib.asynccontextmanager
async def world(state_dir: pathlib.Path, *, provision_delay: float = 1.0,
                flux_delay: float = 0.1) -> Any:
    fleet = start_fleet(state_dir, provision_delay=provision_delay, flux_delay=flux_delay)
    harness.kubectl(fleet.kubeconfig, "apply", "-k", str(HERE.parent / "crds"))  # as a person installs them
    client = KubeClient.from_kubeconfig(fleet.kubeconfig, user_agent="bluegreen-bench/1", timeout=120)
    try:
        yield fleet, client
    finally:
        await client.close()
        fleet.stop()


# --- the measurements ----------------------------------------------------------------------------


async def measure_floor(client: KubeClient, *, count: int = 300, rate: float = 50.0) -> dict[str, float]:
    """Create a ConfigMap, see its ADDED event on a watch: ``count`` times, ``rate`` a second."""
    with contextlib.suppress(ApiError):
        await client.create(NAMESPACES, {"metadata": {"name": "floor"}})
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = asyncio.Event()

    async def follow() -> None:
        async for kind, obj in client.watch(CONFIGMAPS, namespace="floor"):
            name = str((obj.get("metadata") or {}).get("name"))
            if kind == "ADDED" and name in sent:
                seen[name] = time.monotonic()
                if len(seen) == count:
                    done.set()
                    return

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    started = time.monotonic()
    for index in range(count):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        name = f"floor-{index}"
        sent[name] = time.monotonic()
        await client.create(CONFIGMAPS, {"metadata": {"name": name, "namespace": "floor"}, "data": {"i": str(index)}})
    await asyncio.wait_for(done.wait(), timeout=30)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    rounds = [seen[name] - sent[name] for name in sent]
    return {"p50_s": percentile(rounds, 50), "p99_s": percentile(rounds, 99), "events": len(rounds)}


def latency(samples: list[tuple[str, float]]) -> dict[str, Any]:
    values = [seconds for _, seconds in samples]
    kinds: dict[str, list[float]] = collections.defaultdict(list)
    for kind, seconds in samples:
        kinds[kind].append(seconds)
    return {
        "events": len(values), "p50_s": percentile(values, 50), "p99_s": percentile(values, 99),
        "max_s": max(values) if values else math.nan,
        "by_kind": {kind: {"events": len(v), "p50_s": percentile(v, 50), "p99_s": percentile(v, 99)}
                    for kind, v in sorted(kinds.items())},
    }


async def measure_reaction(base: pathlib.Path, *, upgrades: int, log: Callable[[str], None]) -> dict[str, Any]:
    async with world(base / "reaction") as (fleet, client):
        await fleet.control("POST", "/seed", {"count": upgrades})
        operator, _ = await start_operator(fleet, log_name="operator.log")
        try:
            log("  floor: a bare client's create -> watch event on the same emulator")
            floor = await measure_floor(client)
            observer = Observer(client)
            await observer.start()
            promoter = Promoter(client, rate=PROBE_RATE)
            last = PAUSED_STEPS[-1]
            # Every pause but the last is promoted as it comes; the last (which leads to retirement) afterwards.
            observer.on_paused = lambda name, step: promoter.want(name, step) if step != last else None
            promoter.start()
            log(f"  reaction: {upgrades} upgrades created {REACTION_RATE:g} a second, promoted as they pause")
            await create_upgrades(client, observer, range(upgrades), steps=FLEET_STEPS,
                                  weights_url=fleet.info["weights_url"], rate=REACTION_RATE)
            await observer.until(lambda: observer.count("Paused", last) == upgrades, timeout=300,
                                 what="the reaction run's upgrades reach their last pause")
            result = latency(observer.samples)
            observer.on_paused = promoter.want
            for name in observer.upgrades:
                promoter.want(name, last)
            await observer.until(functools.partial(observer.done, upgrades), timeout=300,
                                 what="the reaction run's upgrades complete")
            await promoter.stop()
            await observer.stop()
            result["unordered"] = observer.unordered
            result["floor"] = floor
            result["operator_memory_mib"] = memory_mib(operator.process.pid)
            return result
        finally:
            operator.stop()


async def measure_step_overhead(base: pathlib.Path, *, runs: int, log: Callable[[str], None]) -> dict[str, Any]:
    log(f"  step overhead: {runs} upgrades of 10 weight steps and no pause, one after the other")
    async with world(base / "steps") as (fleet, client):
        await fleet.control("POST", "/seed", {"count": runs})
        operator, _ = await start_operator(fleet, log_name="operator.log")
        try:
            observer = Observer(client)
            await observer.start()
            figures = []
            for index in range(runs):
                name, completed = upgrade_name(index), index + 1
                started = await create_upgrades(client, observer, range(index, index + 1), steps=TEN_STEPS,
                                                 weights_url=fleet.info["weights_url"])
                finished = await observer.until(functools.partial(observer.done, completed), timeout=120,
                                                what=f"{name} completes")
                await asyncio.sleep(0.3)  # the last deletions' DELETED events
                created = observer.upgrades[name].created or started
                total = finished - created
                intervals = [(max(start, created), min(end, finished))
                             for start, end in (tuple(v) for v in observer.world.values())
                             if start is not None and end is not None and end > created and start < finished]
                world_seconds = union_seconds(intervals)
                figures.append({"total_s": total, "world_s": world_seconds, "overhead_s": total - world_seconds})
                observer.world.clear()
            await observer.stop()
            overheads = [figure["overhead_s"] for figure in figures]
            return {"runs": figures, "overhead_s": statistics.median(overheads),
                    "total_s": statistics.median(figure["total_s"] for figure in figures)}
        finally:
            operator.stop()


async def measure_scale(base: pathlib.Path, *, upgrades: int, restart: bool,
                        log: Callable[[str], None]) -> dict[str, Any]:
    log(f"  scale: {upgrades} upgrades at once" + (" (and a restart)" if restart else ""))
    async with world(base / f"scale-{upgrades}") as (fleet, client):
        seeded = await fleet.control("POST", "/seed", {"count": upgrades})
        operator, _ = await start_operator(fleet, log_name="operator.log")
        peaks: list[float] = []
        held = 0.0
        result: dict[str, Any] = {"upgrades": upgrades, "world_seed_s": seeded["seconds"]}
        try:
            observer = Observer(client)
            await observer.start()
            created = await create_upgrades(client, observer, range(upgrades), steps=FLEET_STEPS,
                                            weights_url=fleet.info["weights_url"])
            ramp_done = await observer.until(lambda: observer.count("Paused", PAUSED_STEPS[0]) == upgrades,
                                             timeout=900, what="every upgrade reaches its first pause")
            ramp = latency(observer.samples)
            result["ramp_s"] = ramp_done - created
            result["ramp_reaction"] = ramp
            observer.reset()
            promoter = Promoter(client, rate=0)
            if restart:
                held_from = time.monotonic()
                peaks.append(memory_mib(operator.process.pid)["peak"])
                operator.kill()
                await asyncio.gather(*(promote(client, upgrade_name(index)) for index in range(upgrades)))
                for index in range(upgrades):
                    promoter.done.add((upgrade_name(index), PAUSED_STEPS[0]))
                started = time.monotonic()
                operator, live = await start_operator(fleet, log_name="operator-restarted.log")
                moved = await observer.until(lambda: observer.count("Paused", PAUSED_STEPS[1]) == upgrades,
                                             timeout=900, what="every upgrade moves on after the restart")
                result["restart"] = {"upgrades": upgrades, "live_s": live, "all_moved_on_s": moved - started}
                observer.reset()
                held += time.monotonic() - held_from
            # The probe: promotes at PROBE_RATE while the others wait, each moving one upgrade's weight. It starts
            # once the operator has worked off what the ramp or the restart left (its CPU idle), so it measures
            # reacting with the fleet in flight, not queueing behind the fleet's start.
            settled = await asyncio.gather(idle(operator.process.pid), idle(fleet.process.pid))
            result["settle_s"] = max(settled)
            probe_steps = PAUSED_STEPS[1:-1] if restart else PAUSED_STEPS[:-1]
            targets = min(PROBE_EVENTS, upgrades * len(probe_steps))
            probe_from = time.monotonic()
            probe = Promoter(client, rate=PROBE_RATE)
            probe.done = promoter.done

            def probe_paused(name: str, step: int) -> None:
                if step in probe_steps and probe.wanted < targets:
                    probe.want(name, step)

            observer.on_paused = probe_paused
            for name, state in sorted(observer.upgrades.items(), key=lambda item: (item[1].step, item[0])):
                if state.phase == "Paused":
                    probe_paused(name, state.step)
            probe.start()
            await observer.until(lambda: len(observer.samples) + observer.unordered >= targets and not observer.pending,
                                 timeout=300, what="the probe's promotes are answered")
            await probe.stop()
            held += time.monotonic() - probe_from
            result["reaction"] = latency(observer.samples)
            result["reaction"]["slowest"] = [{"seconds": round(seconds, 4), "kind": kind, "upgrade": upgrade}
                                             for seconds, kind, upgrade, _ in reversed(observer.slow)]
            # The rest as fast as they go.
            finisher = Promoter(client, rate=0)
            finisher.done = probe.done
            finisher.start()
            observer.on_paused = finisher.want
            for name, state in list(observer.upgrades.items()):
                if state.phase == "Paused":
                    finisher.want(name, state.step)
            done = await observer.until(lambda: observer.count("Completed") == upgrades, timeout=900,
                                        what="every upgrade completes")
            await finisher.stop()
            await observer.stop()
            peaks.append(memory_mib(operator.process.pid)["peak"])
            result["world_peak_rss_mib"] = memory_mib(fleet.process.pid)["peak"]
            result["seconds"] = done - created - held
            result["peak_rss_mib"] = max(peaks)
            usage = await fleet.control("GET", "/usage")
            result["api_requests"] = usage_per_upgrade(usage, upgrades)
            return result
        finally:
            operator.stop()


# --- report --------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def table(results: dict[str, Any]) -> str:
    def mark(ok: bool) -> str:
        return "yes" if ok else "**no**"

    floor = results["floor_p50_s"]
    lines = [
        "| figure | measured | target | met |",
        "|---|---|---|---|",
        f"| floor: bare client create -> watch event, p50 / p99 | {ms(floor)} / {ms(results['floor_p99_s'])} | | |",
        f"| reaction ({results['reaction']['events']} events), p50 / p99 | {ms(results['reaction_p50_s'])} / "
        f"{ms(results['reaction_p99_s'])} | p50 <= 5x floor | {mark(results['overhead_ratio_p50'] <= 5)} |",
        f"| reaction p50 / floor p50 | {results['overhead_ratio_p50']:.1f}x | <= 5x | "
        f"{mark(results['overhead_ratio_p50'] <= 5)} |",
    ]
    for kind, figures in results["reaction"]["by_kind"].items():
        lines.append(f"| reaction to {kind} ({figures['events']}), p50 / p99 | {ms(figures['p50_s'])} / "
                     f"{ms(figures['p99_s'])} | | |")
    lines.append(f"| step overhead: 10 steps, no pause (total {results['step']['total_s']:.2f} s) | "
                 f"{results['step_overhead_s']:.2f} s | <= 2 s | {mark(results['step_overhead_s'] <= 2)} |")
    for row in results["scale"]:
        n = row["upgrades"]
        lines.append(f"| {n} upgrades: time to complete all | {row['seconds']:.1f} s | | |")
        lines.append(f"| {n} upgrades: reaction p99 ({row['reaction_events']} promotes at {PROBE_RATE:g}/s) | "
                     f"{ms(row['reaction_p99_s'])} | <= 150 ms at 1,000 | "
                     f"{mark(row['reaction_p99_s'] <= 0.150) if n >= 1000 else ''} |")
        lines.append(f"| {n} upgrades: reaction p99 while all start at once ({row['ramp_events']} events) | "
                     f"{ms(row['ramp_reaction_p99_s'])} | | |")
        lines.append(f"| {n} upgrades: operator peak RSS | {row['peak_rss_mib']:.0f} MiB | <= 400 MiB at 1,000 | "
                     f"{mark(row['peak_rss_mib'] <= 400) if n >= 1000 else ''} |")
        lines.append(f"| {n} upgrades: API requests per upgrade (per step) | {row['api_requests_per_upgrade']:.0f} "
                     f"({row['api_requests_per_step']:.1f}) | bounded | |")
        if "restart" in row:
            restart = row["restart"]
            lines.append(f"| restart with {restart['upgrades']} in flight: live / every upgrade moved on | "
                         f"{restart['live_s']:.1f} s / {restart['all_moved_on_s']:.1f} s | | |")
    if len(results["scale"]) > 1:
        first, last = results["scale"][0], results["scale"][-1]
        factor = last["upgrades"] / first["upgrades"]
        lines.append(f"| growth {first['upgrades']} -> {last['upgrades']} upgrades (x{factor:g}): time / p99 / RSS / "
                     f"requests per upgrade | x{last['seconds'] / first['seconds']:.1f} / "
                     f"x{last['reaction_p99_s'] / first['reaction_p99_s']:.1f} / "
                     f"x{last['peak_rss_mib'] / first['peak_rss_mib']:.1f} / "
                     f"x{last['api_requests_per_upgrade'] / first['api_requests_per_upgrade']:.2f} | | |")
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next(int(line.split()[1]) for line in pathlib.Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return f"{os.cpu_count()} cores ({cpu}), {memory / 1024 / 1024:.0f} GiB, Python {platform.python_version()}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    sizes = [int(size) for size in args.sizes.split(",")]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bluegreen-bench-") as temporary:
        base = pathlib.Path(args.state_dir or temporary)
        reaction = await measure_reaction(base, upgrades=args.reaction_upgrades, log=log)
        step = await measure_step_overhead(base, runs=args.step_runs, log=log)
        scale = []
        for size in sizes:
            row = await measure_scale(base, upgrades=size, restart=size == max(sizes) and args.restart, log=log)
            steps = len(FLEET_STEPS)
            scale.append({
                "upgrades": size, "seconds": round(row["seconds"], 2),
                "reaction_p99_s": row["reaction"]["p99_s"], "reaction_p50_s": row["reaction"]["p50_s"],
                "reaction_events": row["reaction"]["events"], "reaction_slowest": row["reaction"]["slowest"],
                "ramp_reaction_p99_s": row["ramp_reaction"]["p99_s"], "ramp_events": row["ramp_reaction"]["events"],
                "peak_rss_mib": row["peak_rss_mib"], "world_peak_rss_mib": row["world_peak_rss_mib"],
                "probe_waited_for_idle_s": round(row["settle_s"], 1),
                "api_requests_per_upgrade": row["api_requests"]["total"],
                "api_requests_per_step": round(row["api_requests"]["total"] / steps, 1),
                "api_requests": row["api_requests"],
                **({"restart": row["restart"]} if "restart" in row else {}),
            })
    floor = reaction.pop("floor")
    return {
        "reaction_p50_s": reaction["p50_s"],
        "reaction_p99_s": reaction["p99_s"],
        "floor_p50_s": floor["p50_s"],
        "floor_p99_s": floor["p99_s"],
        "overhead_ratio_p50": reaction["p50_s"] / floor["p50_s"],
        "step_overhead_s": step["overhead_s"],
        "scale": scale,
        "reaction": reaction,
        "step": step,
        "machine": machine(),
        "bench_seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000", help="fleet sizes, comma-separated")
    parser.add_argument("--reaction-upgrades", type=int, default=50)
    parser.add_argument("--step-runs", type=int, default=5)
    parser.add_argument("--restart", action=argparse.BooleanOptionalAction, default=True,
                        help="at the largest size, also kill and restart the operator with every upgrade paused")
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the bench out")
    parser.add_argument("--output", type=pathlib.Path, default=HERE / "results.json")
    parser.add_argument("--state-dir", type=pathlib.Path, help="keep the worlds' logs here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.reaction_upgrades, args.step_runs = "5,20", 20, 2
    results = asyncio.run(run(args))
    text = table(results)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(
        f"Measured on {results['machine']}; `make bench` took {results['bench_seconds']:.0f} s.\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

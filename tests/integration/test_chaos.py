"""Crash anywhere: whole upgrades while the operator is SIGKILLed again and again, restarted at once each time.

Status is the operator's only memory and every external change is meant to be idempotent, so a process
that dies at any instant (between a change and the status write that records it, in the middle of a
pass, during kopf's own startup) must leave nothing a restarted process cannot finish cleanly.

Each run is a fresh world with HAProxy and real client traffic. A run's kill schedule is a list of
waypoints (a phase, or a weight reached) each followed by a delay drawn from a generator seeded with
``BLUEGREEN_CHAOS_SEED`` and the run's number, so the same seed gives the same schedule; the world's own
timing is real, so the exact instant a kill lands can differ between two runs of one seed, and the
report says where each one landed (the status a dead operator leaves is exactly what it had written).
Every third run is told to fail (a rollout webhook starts answering 500 at a seeded weight) and must
end RolledBack with green retired. ``BLUEGREEN_CHAOS_RUNS`` runs more (the CI default is 3).

After each run: the phase it must end in, exactly one green cluster ever (one uid seen, whatever its
name), no Kustomization left for the retired side and none twice, HAProxy's servers as finalize leaves
them, every step's weight in the journal once and in order (back down only once the rollback began),
and no failed client request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness
from bluegreen.traffic.haproxy_runtime import RuntimeAPI
from tests.integration.conftest import CLUSTER_UPGRADES, Operator, apply, upgrade_manifest

# Traffic shares, latencies or timings are measured: run with the machine to itself (conftest).
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.without_prometheus, pytest.mark.alone]

SEED = int(os.environ.get("BLUEGREEN_CHAOS_SEED", "9031"))
RUNS = int(os.environ.get("BLUEGREEN_CHAOS_RUNS", "3"))
RUN_TIMEOUT = 75.0  # seconds from apply to the end phase; a run takes about 35 s on a quiet machine

KUSTOMIZATIONS = Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
CAPI_CLUSTERS = Resource("cluster.x-k8s.io", "v1beta2", "clusters")
BLUE, GREEN = "prod-blue", "prod-green"
GATE = "chaos"
STEPS = [{"setWeight": 10}, {"pause": {"duration": "1s"}}, {"setWeight": 25}, {"pause": {"duration": "1s"}},
         {"setWeight": 50}, {"pause": {"duration": "1s"}}, {"setWeight": 100}]
STEP_WEIGHTS = [10, 25, 50, 100]

FORWARD = ("Pending", "Preflight", "Provisioning", "Syncing", "Verifying", "Shifting", "Paused", "Promoted",
           "Retiring", "Completed")
BACKWARD = ("Pending", "Preflight", "Provisioning", "Syncing", "Verifying", "Shifting", "Paused", "RollingBack",
            "RolledBack")


def status_of(body: dict[str, Any]) -> dict[str, Any]:
    return dict(body.get("status") or {})


@dataclasses.dataclass(frozen=True)
class Waypoint:
    """A kill in ``phase`` (with green at exactly ``green`` percent when Shifting), a delay drawn from
    [low, high) seconds after the waypoint is seen. ``fresh``: only once the running process has written
    status (the delay then counts from inside its passes, not from its startup). Passed over, not waited
    for, when the upgrade is already beyond it."""

    phase: str
    low: float
    high: float
    green: int | None = None
    fresh: bool = True

    def where(self, body: dict[str, Any], order: tuple[str, ...]) -> int:
        """-1 before the waypoint, 0 at it, 1 past it."""
        status = status_of(body)
        phase = status.get("phase") or "Pending"
        here, there = order.index(phase) if phase in order else len(order), order.index(self.phase)
        if here != there or self.green is None:
            return (here > there) - (here < there)
        green = int((status.get("weights") or {}).get("green", 0))
        return (green > self.green) - (green < self.green)

    def describe(self) -> str:
        shares = "" if self.green is None else f" at {self.green}%"
        return f"{self.phase}{shares}{'' if self.fresh else ' (any time)'}"


# Small delays land in the pass after a write (its next change made, the status saying so not yet written);
# those not fresh land anywhere, kopf's startup included (importing and listing take 1-3 s, a phase's timer
# may run out meanwhile). Phases that pass faster than a restart (Verifying, RollingBack) are often missed.
# A waypoint not fresh follows one fresh in the same phase, never one before it: Syncing lasts a few tenths
# of a second after a restart, and a long delay at Provisioning could overshoot it.
COMPLETING = [
    Waypoint("Pending", 0.0, 0.8, fresh=False),
    Waypoint("Provisioning", 0.0, 0.6),
    Waypoint("Syncing", 0.0, 0.15),
    Waypoint("Syncing", 0.3, 2.0, fresh=False),
    Waypoint("Verifying", 0.0, 0.15),
    Waypoint("Shifting", 0.0, 0.8, green=10),
    Waypoint("Shifting", 0.0, 0.8, green=25),
    Waypoint("Shifting", 0.3, 2.0, green=25, fresh=False),
    Waypoint("Shifting", 0.0, 0.8, green=50),
    Waypoint("Shifting", 0.0, 0.3, green=100),
    Waypoint("Promoted", 0.0, 0.5),
    Waypoint("Promoted", 0.3, 2.0, fresh=False),
    Waypoint("Promoted", 0.0, 0.8),
    Waypoint("Retiring", 0.0, 0.3),
    Waypoint("Retiring", 0.3, 1.5, fresh=False),
]
# Told to fail: a rollout webhook answers 500 once green reaches a seeded weight (25 or 50). Rolling back
# takes fewer passes than the way up, and RolledBack writes nothing during green's inspection window (10 s):
# kills not fresh land in that window, the fresh ones in green's retirement after it.
FAILING = [
    Waypoint("Pending", 0.0, 0.8, fresh=False),
    Waypoint("Provisioning", 0.0, 0.6),
    Waypoint("Syncing", 0.0, 0.15),
    Waypoint("Syncing", 0.3, 2.0, fresh=False),
    Waypoint("Verifying", 0.0, 0.15),
    Waypoint("Shifting", 0.0, 0.8, green=10),
    Waypoint("Shifting", 0.3, 2.0, green=10, fresh=False),
    Waypoint("Shifting", 0.0, 0.5, green=25),
    Waypoint("Shifting", 0.3, 2.0, green=25, fresh=False),
    Waypoint("Shifting", 0.0, 0.5, green=50),
    Waypoint("RollingBack", 0.0, 0.05),
    Waypoint("RolledBack", 0.0, 2.0, fresh=False),
    Waypoint("RolledBack", 0.3, 2.0, fresh=False),
    Waypoint("RolledBack", 0.3, 2.0, fresh=False),
    Waypoint("RolledBack", 0.3, 2.0, fresh=False),
    Waypoint("RolledBack", 0.0, 0.5),
    Waypoint("RolledBack", 0.3, 2.0, fresh=False),
    Waypoint("RolledBack", 0.0, 0.5),
    Waypoint("RolledBack", 0.3, 2.0, fresh=False),
]


@dataclasses.dataclass(frozen=True)
class Kill:
    at: float  # seconds since the upgrade was applied
    life: float  # seconds the killed process had run
    waypoint: Waypoint
    delay: float
    phase: str  # as the killed process left it in status
    green: int


@dataclasses.dataclass
class Chaos:
    """One run: its seeded schedule, what happened, and what was seen of the world meanwhile."""

    seed: int
    run: int
    failing: bool
    fail_at_green: int
    waypoints: list[Waypoint]
    delays: list[float]
    kills: list[Kill] = dataclasses.field(default_factory=list)
    passed: list[Waypoint] = dataclasses.field(default_factory=list)  # already behind when their turn came
    cluster_uids: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    gate_closed_at: float | None = None  # seconds since apply
    gate_closed_wall: float | None = None  # epoch seconds, to compare with the journal's times

    @classmethod
    def plan(cls, *, seed: int, run: int) -> Chaos:
        rng = random.Random(f"{seed}:{run}")
        failing = run % 3 == 2
        waypoints = FAILING if failing else COMPLETING
        return cls(seed=seed, run=run, failing=failing, fail_at_green=rng.choice([25, 50]), waypoints=waypoints,
                   delays=[round(rng.uniform(point.low, point.high), 3) for point in waypoints])

    @property
    def order(self) -> tuple[str, ...]:
        return BACKWARD if self.failing else FORWARD

    def phases_hit(self) -> set[str]:
        return {kill.phase for kill in self.kills}

    def report(self) -> str:
        kind = f"told to fail at green {self.fail_at_green}%" if self.failing else "completing"
        lines = [f"chaos seed {self.seed} run {self.run} ({kind}); rerun with BLUEGREEN_CHAOS_SEED={self.seed} "
                 f"BLUEGREEN_CHAOS_RUNS={self.run + 1}"]
        if self.gate_closed_at is not None:
            lines.append(f"  rollout gate answers 500 from t={self.gate_closed_at:.2f}s")
        for index, kill in enumerate(self.kills):
            lines.append(f"  kill {index + 1}: t={kill.at:.2f}s, {kill.life:.2f}s into the process, waypoint "
                         f"{kill.waypoint.describe()} +{kill.delay:.2f}s -> phase {kill.phase}, green {kill.green}%")
        if self.passed:
            lines.append(f"  passed over: {', '.join(point.describe() for point in self.passed)}")
        return "\n".join(lines)


def chaos_manifest(world: harness.WorldProcess) -> dict[str, Any]:
    manifest = upgrade_manifest(world)
    spec = manifest["spec"]
    spec["traffic"]["steps"] = STEPS
    # A rollout webhook is asked every second while green takes traffic: kills land mid-analysis too.
    spec["analysis"] = {"interval": "1s", "failureLimit": 1,
                        "webhooks": [{"name": GATE, "type": "rollout", "url": world.gate_url(GATE)}]}
    spec["promotion"] = {"retainBlueFor": "5s"}
    spec["rollback"] = {"retainGreenFor": "10s", "greenDeletionPolicy": "Delete"}
    return manifest


class Run:
    def __init__(self, chaos: Chaos, *, world: harness.WorldProcess, operator: Operator,
                 management: KubeClient, manifest: dict[str, Any]) -> None:
        self.chaos = chaos
        self.world = world
        self.operator = operator
        self.management = management
        self.manifest = manifest
        self.applied = 0.0
        self.started = 0.0  # when the running operator process was started
        self.left: dict[str, Any] = {}  # the status the last killed process left

    async def body(self) -> dict[str, Any]:
        meta = self.manifest["metadata"]
        return await self.management.get(CLUSTER_UPGRADES, namespace=meta["namespace"], name=meta["name"]) or {}

    async def look(self) -> dict[str, Any]:
        """The upgrade, and every Cluster object on the management cluster noted by uid (a re-created green
        under the same name is a second green)."""
        for cluster in await self.management.list(CAPI_CLUSTERS, namespace="fleet"):
            meta = cluster["metadata"]
            self.chaos.cluster_uids.setdefault(meta["name"], set()).add(meta["uid"])
        body = await self.body()
        if self.chaos.failing and self.chaos.gate_closed_at is None:
            status = status_of(body)
            if status.get("phase") == "Shifting" and \
                    int((status.get("weights") or {}).get("green", 0)) >= self.chaos.fail_at_green:
                await self.world.set_gate(GATE, status=500)
                self.chaos.gate_closed_at = time.monotonic() - self.applied
                self.chaos.gate_closed_wall = time.time()
        return body

    def ended(self, body: dict[str, Any]) -> bool:
        status = status_of(body)
        if self.chaos.failing:
            return status.get("phase") == "RolledBack" and bool(status.get("greenRetired"))
        return status.get("phase") == "Completed"

    async def wait(self, predicate: Callable[[dict[str, Any]], bool], *, deadline: float) -> dict[str, Any]:
        while True:
            body = await self.look()
            if predicate(body) or self.ended(body) or time.monotonic() > deadline:
                return body
            await asyncio.sleep(0.05)

    def due(self, waypoint: Waypoint, body: dict[str, Any]) -> bool:
        """At the waypoint (and, when fresh, the running process has written status), or past it."""
        where = waypoint.where(body, self.chaos.order)
        return where > 0 or (where == 0 and (not waypoint.fresh or status_of(body) != self.left))

    async def go(self) -> dict[str, Any]:
        self.started = self.applied = time.monotonic()
        apply(self.world, self.manifest)
        deadline = self.applied + RUN_TIMEOUT
        for waypoint, delay in zip(self.chaos.waypoints, self.chaos.delays, strict=True):
            body = await self.wait(functools.partial(self.due, waypoint), deadline=deadline)
            if self.ended(body) or time.monotonic() > deadline:
                break
            if waypoint.where(body, self.chaos.order) > 0:
                self.chaos.passed.append(waypoint)
                continue
            await self.wait(lambda b: False, deadline=min(deadline, time.monotonic() + delay))
            killed_at = time.monotonic()
            self.operator.kill()
            status = self.left = status_of(await self.look())  # nobody writes it now: what the process left
            self.chaos.kills.append(Kill(
                at=killed_at - self.applied, life=killed_at - self.started, waypoint=waypoint, delay=delay,
                phase=status.get("phase") or "Pending", green=int((status.get("weights") or {}).get("green", 0)),
            ))
            self.started = time.monotonic()
            self.operator.start()
        body = await self.wait(lambda b: False, deadline=deadline)
        assert self.ended(body), f"the run did not end within {RUN_TIMEOUT:.0f}s: status {status_of(body)}"
        return body


async def haproxy_servers(world: harness.WorldProcess) -> dict[str, tuple[int, str]]:
    runtime = RuntimeAPI(world.info["haproxy"]["runtime_api"], timeout=5.0)
    return {server.name: (server.weight, server.state)
            for server in await runtime.servers(world.info["haproxy"]["backend"])}


async def kustomizations(management: KubeClient, cluster: str) -> list[str]:
    found = await management.list(KUSTOMIZATIONS, namespace="fleet", label_selector={"bluegreen.io/cluster": cluster})
    return sorted(item["metadata"]["name"] for item in found)


def journal_greens(status: dict[str, Any]) -> list[int]:
    return [int(entry["weights"]["green"]) for entry in status.get("journal") or []
            if entry.get("action") == "setWeights" and entry.get("weights")]


async def check_run(run: Run, body: dict[str, Any]) -> None:
    chaos, world, management = run.chaos, run.world, run.management
    status = status_of(body)
    # Enough kills, and the phases asked for among them
    assert len(chaos.kills) >= 10, f"only {len(chaos.kills)} kills landed before the end"
    wanted = {"Provisioning", "Syncing", "Shifting"}
    assert wanted <= chaos.phases_hit(), f"kills missed {sorted(wanted - chaos.phases_hit())}"
    late = {"RollingBack", "RolledBack"} if chaos.failing else {"Promoted", "Retiring"}
    assert chaos.phases_hit() & late, f"no kill in {sorted(late)}"
    assert not status.get("failures"), f"the run ended retrying after an error: {status.get('message')}"
    # Exactly one green, ever: one uid under green's name and no other cluster than blue and green
    assert set(chaos.cluster_uids) <= {BLUE, GREEN}, f"clusters seen: {chaos.cluster_uids}"
    assert len(chaos.cluster_uids.get(GREEN, ())) == 1, f"green's Cluster objects seen: {chaos.cluster_uids}"
    assert len(chaos.cluster_uids.get(BLUE, ())) == 1, "blue was never re-created"
    creates = [entry for entry in status["journal"] if entry["target"] == "cluster" and entry["action"] == "create"]
    assert len(creates) <= 1, creates
    now = {c["name"]: c for c in (await world.control("GET", "/clusters"))["clusters"]}
    servers = await haproxy_servers(world)
    greens = journal_greens(status)
    if chaos.failing:
        # Rolled back and green retired: blue serves everything; green, its Kustomizations and its
        # HAProxy server's traffic are gone; blue's Kustomizations are as they were
        assert status["weights"] == {"blue": 100, "green": 0, "verified": True}
        assert GREEN not in now and BLUE in now, now
        assert await kustomizations(management, GREEN) == [], "green's Kustomizations removed with green"
        assert await kustomizations(management, BLUE) == ["apps-prod-blue", "infra-prod-blue"]
        assert servers[GREEN] == (0, "maint") and servers[BLUE][0] > 0 and servers[BLUE][1] == "ready", servers
        # Weights: up the steps in order, each once, then straight back to 0, only after the gate closed
        assert chaos.gate_closed_at is not None, "the run never reached the weight its gate was to close at"
        peak = greens.index(max(greens))
        assert greens[:peak + 1] == STEP_WEIGHTS[:peak + 1], f"steps in order, each once: {greens}"
        assert greens[peak + 1:] == [0], f"one move back to blue: {greens}"
        assert max(greens) >= chaos.fail_at_green
        back = [entry for entry in status["journal"] if entry.get("action") == "setWeights"
                and entry.get("weights", {}).get("green") == 0][-1]
        assert chaos.gate_closed_wall is not None
        assert harness.parse_time(back["time"]) >= chaos.gate_closed_wall - 1, "back only once the gate failed"
    else:
        assert status["weights"] == {"blue": 0, "green": 100, "verified": True}
        assert list(now) == [GREEN], now
        assert await kustomizations(management, BLUE) == [], "no orphaned Kustomization of blue"
        assert await kustomizations(management, GREEN) == ["apps-prod-green", "infra-prod-green"]
        assert servers[BLUE] == (0, "maint") and servers[GREEN][0] > 0 and servers[GREEN][1] == "ready", servers
        assert greens == STEP_WEIGHTS, f"every step's weight once, in order, never back: {greens}"
    traffic = await world.traffic()
    assert traffic["requests"] > 500 and traffic["failed"] == 0, traffic


@pytest.mark.parametrize("run_number", range(RUNS))
async def test_upgrade_survives_sigkill_anywhere(
    world: harness.WorldProcess, operator: Operator, management: KubeClient, run_number: int
) -> None:
    chaos = Chaos.plan(seed=SEED, run=run_number)
    run = Run(chaos, world=world, operator=operator, management=management, manifest=chaos_manifest(world))
    try:
        body = await run.go()
        await check_run(run, body)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{chaos.report()}\noperator log tail:\n{operator.log()[-4000:]}") from exc
    print(chaos.report())

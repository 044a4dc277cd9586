"""Handoffs end to end: simulated CAPI and Flux on the management emulator, StatefulSets that scale pod by pod.

Given Elasticsearch's data nodes (a StatefulSet Flux renders with 3 replicas)
running on blue, and green's Kustomization copies holding green's copy at 0,
when the handoff hook is advanced until it succeeds, then blue's copy is down
and held there by Flux, green's runs 3 ready replicas, and at no moment did
both clusters run a replica. The reverse hands it back the same way, and a
runner made afresh in the middle (a restarted operator) goes on where the
clusters say the handoff is.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api import spec as api
from bluegreen.engine.types import HookObservation
from bluegreen.hooks.runner import HookRunner
from bluegreen.sim import flux as sim_flux
from bluegreen.workloads import flux_holds
from tests.fixtures.fleet import BLUE, GREEN, NAMESPACE, eventually
from tests.fixtures.handoff_fleet import (
    ES,
    ES_HANDOFF,
    ES_NAMESPACE,
    MANIFEST_REPLICAS,
    OWNER,
    STATEFULSETS,
    HandoffFleet,
    running_handoff_fleet,
    upgrade_spec,
)

pytestmark = [pytest.mark.integration, pytest.mark.preflight]

TARGET = flux_holds.HoldTarget(kind="StatefulSet", namespace=ES_NAMESPACE, name=ES)
NEW_REVISION = "main@sha1:3333333333333333333333333333333333333333"


class Recorder:
    """Both clusters' ``status.replicas`` of the StatefulSet, at every change either cluster reports."""

    def __init__(self, fleet: HandoffFleet) -> None:
        self.fleet = fleet
        self.current = {"blue": 0, "green": 0}
        self.history: list[dict[str, int]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for side in ("blue", "green"):
            self.current[side] = _replicas(self.fleet.statefulset(side))
            self._tasks.append(asyncio.create_task(self._follow(side, self.fleet.cluster(side).watch(STATEFULSETS))))
        self.history.append(dict(self.current))

    async def _follow(self, side: str, watch: Any) -> None:
        try:
            async for _, obj in watch:
                if (obj["metadata"]["namespace"], obj["metadata"]["name"]) == (ES_NAMESPACE, ES):
                    self.current[side] = _replicas(obj)
                    self.history.append(dict(self.current))
        finally:
            await watch.aclose()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def both_ran(self) -> list[dict[str, int]]:
        return [moment for moment in self.history if moment["blue"] > 0 and moment["green"] > 0]

    def ran(self, side: str) -> bool:
        return any(moment[side] > 0 for moment in self.history)


def _replicas(obj: dict[str, Any]) -> int:
    return int((obj.get("status") or {}).get("replicas") or 0)


def runner(fleet: HandoffFleet) -> HookRunner:
    return HookRunner(fleet.spec, management=fleet.client, side_client=fleet.side_client, owner=OWNER,
                      upgrade_namespace=NAMESPACE)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def drive(hooks: HookRunner, hook: api.Hook, *, reverse: bool = False, stop_after: int | None = None
                ) -> tuple[list[str], list[HookObservation]]:
    """The engine's loop for one hook: observe, and advance while Missing or Running, until Succeeded."""
    journal: list[str] = []
    seen: list[HookObservation] = []
    advances = 0

    async def step() -> HookObservation | None:
        nonlocal advances
        observation = await hooks.observe(hook, reverse=reverse, run=0, now=now())
        if not seen or seen[-1] != observation:
            seen.append(observation)
        assert observation.state != "Failed", observation.message
        if observation.state == "Succeeded" or (stop_after is not None and advances >= stop_after):
            return observation
        journal.extend(await hooks.advance(hook, reverse=reverse, run=0))
        advances += 1
        return None

    await eventually(step, what=f"hook {hook.name} {'reversed' if reverse else 'done'}", timeout=30)
    return journal, seen


def holds(fleet: HandoffFleet, side: str) -> list[bool]:
    cluster = BLUE if side == "blue" else GREEN
    found = fleet.management.list(sim_flux.KUSTOMIZATIONS, NAMESPACE, label_selector=f"bluegreen.io/cluster={cluster}")
    return [flux_holds.find_hold(flux_holds.patches_of(item), TARGET) is not None for item in found]


async def synced(fleet: HandoffFleet) -> None:
    """Green's copies made, Ready, and both StatefulSets settled (blue at 3 ready, green held at 0)."""
    await fleet.sync_green()

    async def settled() -> bool:
        green = fleet.cluster("green").get(STATEFULSETS, ES_NAMESPACE, ES)
        blue = fleet.statefulset("blue")
        return (green is not None and green["spec"]["replicas"] == 0 and _replicas(green) == 0
                and (blue.get("status") or {}).get("readyReplicas") == MANIFEST_REPLICAS)

    await eventually(settled, what="blue running, green's copy rendered and held at 0")


@pytest.fixture
async def fleet() -> AsyncIterator[HandoffFleet]:
    async with running_handoff_fleet(upgrade_spec(ES_HANDOFF)) as running:
        yield running


async def test_green_s_copies_hold_the_workload_from_the_start(fleet: HandoffFleet) -> None:
    await synced(fleet)

    assert holds(fleet, "green") == [True, True]
    assert holds(fleet, "blue") == [False, False]
    green = fleet.statefulset("green")
    assert green["metadata"]["annotations"][flux_holds.ANNOTATION_HOLD] == flux_holds.HOLD_MARK
    observation = await runner(fleet).observe(fleet.spec.hooks[0], reverse=False, run=0, now=now())
    assert observation.state == "Missing"
    assert f"blue's StatefulSet {ES_NAMESPACE}/{ES} runs 3 replicas" in observation.message


# It samples the handoff's transient stages (blue's replicas left, green's ready count) as a person would see
# them; on a busy machine a stage can pass between two samples, so it runs with the machine to itself.
@pytest.mark.alone
async def test_the_handoff_stops_blue_before_green_starts_and_hands_back(fleet: HandoffFleet) -> None:
    await synced(fleet)
    hook = fleet.spec.hooks[0]
    recorder = Recorder(fleet)
    recorder.start()
    try:
        journal, seen = await drive(runner(fleet), hook)

        # Then blue is down and held there by its Kustomizations; green runs what blue ran
        assert holds(fleet, "blue") == [True, True] and holds(fleet, "green") == [False, False]
        blue, green = fleet.statefulset("blue"), fleet.statefulset("green")
        assert (blue["spec"]["replicas"], _replicas(blue)) == (0, 0)
        assert (green["spec"]["replicas"], green["status"]["readyReplicas"]) == (3, 3)
        # and the stages came in order, each saying which
        states = [observation.state for observation in seen]
        assert states[0] == "Missing" and states[-1] == "Succeeded"
        assert any("replicas left" in observation.message or "replica left" in observation.message
                   for observation in seen)
        assert any(observation.message.startswith(f"green's StatefulSet {ES_NAMESPACE}/{ES}: ")
                   and "ready" in observation.message for observation in seen)
        first_green = next(index for index, line in enumerate(journal) if line.startswith("scaled green's"))
        assert all(index < first_green for index, line in enumerate(journal) if "holds blue's" in line)
        assert f"scaled blue's StatefulSet {ES_NAMESPACE}/{ES} from 3 to 0 replicas" in journal

        # When green's copies are synced again, the hold the handoff lifted stays lifted
        assert await fleet.workloads().sync_green(blue_name=BLUE, green_name=GREEN,
                                                  kubeconfig_secret=(NAMESPACE, f"{GREEN}-kubeconfig", "value")) == []
        assert holds(fleet, "green") == [False, False]

        # When the handoff is handed back (a rollback)
        _, back = await drive(runner(fleet), hook, reverse=True)

        # Then blue runs its 3 again and green is held at 0
        assert holds(fleet, "green") == [True, True] and holds(fleet, "blue") == [False, False]
        blue, green = fleet.statefulset("blue"), fleet.statefulset("green")
        assert (blue["spec"]["replicas"], blue["status"]["readyReplicas"]) == (3, 3)
        assert (green["spec"]["replicas"], _replicas(green)) == (0, 0)
        assert back[0].state == "Missing" and back[-1].state == "Succeeded"
    finally:
        await recorder.stop()

    # And at no moment did both clusters run a replica (while each did run some)
    assert recorder.both_ran() == []
    assert recorder.ran("blue") and recorder.ran("green")
    assert recorder.history[-1] == {"blue": 3, "green": 0}


async def test_flux_keeps_blue_down_through_a_new_revision(fleet: HandoffFleet) -> None:
    await synced(fleet)
    await drive(runner(fleet), fleet.spec.hooks[0])

    # When a new commit makes Flux apply both sides again
    sim_flux.set_revision(fleet.management, namespace=NAMESPACE, name="fleet-infra", revision=NEW_REVISION)

    async def applied() -> bool:
        return all(fleet.statefulset(side)["metadata"]["annotations"].get("revision") == NEW_REVISION
                   for side in ("blue", "green"))

    await eventually(applied, what="the new revision applied to both sides")
    # Then blue's hold keeps it at 0 and green is not held back
    assert fleet.statefulset("blue")["spec"]["replicas"] == 0
    assert fleet.statefulset("green")["spec"]["replicas"] == MANIFEST_REPLICAS


async def test_a_restarted_operator_goes_on_where_the_clusters_are(fleet: HandoffFleet) -> None:
    await synced(fleet)
    hook = fleet.spec.hooks[0]
    recorder = Recorder(fleet)
    recorder.start()
    try:
        # Given a handoff that has held blue and scaled it down (one advance), when that runner is gone
        journal, seen = await drive(runner(fleet), hook, stop_after=1)
        assert seen[-1].state == "Running" and holds(fleet, "blue") == [True, True]
        assert sum("holds blue's" in line for line in journal) == 2

        # Then a new one finds the stage from the clusters and finishes
        more, rest = await drive(runner(fleet), hook)
    finally:
        await recorder.stop()

    assert not any("holds blue's" in line for line in more)  # blue was not held twice
    assert rest[-1].state == "Succeeded"
    assert fleet.statefulset("green")["status"]["readyReplicas"] == MANIFEST_REPLICAS
    assert recorder.both_ran() == [] and recorder.ran("green")


async def test_handoff_replicas_override_what_blue_ran_and_a_missing_workload_fails() -> None:
    missing = {"name": "ghost", "at": "BeforeTraffic",
               "handoff": {"kind": "Deployment", "namespace": ES_NAMESPACE, "name": "ghost"}}
    async with running_handoff_fleet(upgrade_spec({**ES_HANDOFF, "handoff": {**ES_HANDOFF["handoff"], "replicas": 2}},
                                                  missing)) as fleet:
        await synced(fleet)
        es, ghost = fleet.spec.hooks
        hooks = runner(fleet)

        observation = await hooks.observe(ghost, reverse=False, run=0, now=now())
        assert observation == HookObservation(
            state="Failed", message=f"blue's Deployment {ES_NAMESPACE}/ghost does not exist; check "
                                    "spec.hooks[ghost].handoff (kind, namespace, name) against what Flux applies "
                                    "to blue")

        await drive(hooks, es)
        green = fleet.statefulset("green")
        assert green["metadata"]["annotations"]["bluegreen.io/handoff-replicas"] == "2"
        assert (green["spec"]["replicas"], green["status"]["readyReplicas"]) == (2, 2)

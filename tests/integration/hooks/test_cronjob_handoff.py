"""A CronJob handoff end to end: never scheduled on both clusters, never started while the other's Job runs.

Given a CronJob ``ops/invoices`` that Flux renders on blue (scheduled) and on
green (suspended by the hold green's Kustomization copies carry), and one of
blue's Jobs still running (written into ``status.active``, as the CronJob
controller would), when the handoff hook is driven, then blue is held suspended
at once and green stays suspended for as long as blue's Job runs; once it is
done green is released and unsuspended. A new revision from Flux keeps it so,
and the reverse hands it back the same way, waiting for green's Job. Both
clusters are sampled at every change either reports: at no moment could both
start or run a Job.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api import spec as api
from bluegreen.hooks.runner import HookRunner
from bluegreen.sim import flux as sim_flux
from bluegreen.workloads import flux_holds
from tests.fixtures.fleet import BLUE, GREEN, NAMESPACE, eventually
from tests.fixtures.handoff_fleet import (
    CRON_HANDOFF,
    CRON_JOB,
    CRON_NAMESPACE,
    CRONJOBS,
    HandoffFleet,
    render_with_cron_job,
    running_handoff_fleet,
    upgrade_spec,
)
from tests.integration.hooks.test_handoff import NEW_REVISION, drive, now, runner

pytestmark = [pytest.mark.integration, pytest.mark.preflight]

TARGET = flux_holds.HoldTarget(kind="CronJob", namespace=CRON_NAMESPACE, name=CRON_JOB)


def suspended(cron_job: dict[str, Any]) -> bool:
    return (cron_job.get("spec") or {}).get("suspend") is True


def active(cron_job: dict[str, Any]) -> int:
    return len((cron_job.get("status") or {}).get("active") or [])


class Recorder:
    """Each side's CronJob at every change either cluster reports: (may start Jobs, Jobs running)."""

    def __init__(self, fleet: HandoffFleet) -> None:
        self.fleet = fleet
        self.current: dict[str, tuple[bool, int]] = {}
        self.history: list[dict[str, tuple[bool, int]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for side in ("blue", "green"):
            self.current[side] = self._state(self.fleet.cron_job(side))
            self._tasks.append(asyncio.create_task(self._follow(side, self.fleet.cluster(side).watch(CRONJOBS))))
        self.history.append(dict(self.current))

    @staticmethod
    def _state(cron_job: dict[str, Any]) -> tuple[bool, int]:
        return (not suspended(cron_job), active(cron_job))

    async def _follow(self, side: str, watch: Any) -> None:
        try:
            async for _, obj in watch:
                if (obj["metadata"]["namespace"], obj["metadata"]["name"]) == (CRON_NAMESPACE, CRON_JOB):
                    self.current[side] = self._state(obj)
                    self.history.append(dict(self.current))
        finally:
            await watch.aclose()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def both_live(self) -> list[dict[str, tuple[bool, int]]]:
        """Moments when both sides were scheduled or running a Job."""
        return [moment for moment in self.history if all(scheduled or jobs for scheduled, jobs in moment.values())]

    def scheduled(self, side: str) -> bool:
        return any(moment[side][0] for moment in self.history)


def holds(fleet: HandoffFleet, side: str) -> list[bool]:
    cluster = BLUE if side == "blue" else GREEN
    found = fleet.management.list(sim_flux.KUSTOMIZATIONS, NAMESPACE, label_selector=f"bluegreen.io/cluster={cluster}")
    return [flux_holds.find_hold(flux_holds.patches_of(item), TARGET) is not None for item in found]


async def until_waiting_for_jobs(hooks: HookRunner, hook: api.Hook, *, reverse: bool, side: str) -> str:
    """Advance until the hook says the source's Job still runs; return that message."""
    async def step() -> str | None:
        observation = await hooks.observe(hook, reverse=reverse, run=0, now=now())
        assert observation.state in ("Missing", "Running"), observation
        if observation.message == f"{side}'s CronJob {CRON_NAMESPACE}/{CRON_JOB}: 1 Job still running":
            return observation.message
        await hooks.advance(hook, reverse=reverse, run=0)
        return None

    return await eventually(step, what=f"the handoff waiting for {side}'s Job")


@pytest.fixture
async def fleet() -> AsyncIterator[HandoffFleet]:
    async with running_handoff_fleet(upgrade_spec(CRON_HANDOFF), render=render_with_cron_job) as running:
        await running.sync_green()

        async def settled() -> bool:
            green = running.cluster("green").get(CRONJOBS, CRON_NAMESPACE, CRON_JOB)
            return green is not None and suspended(green)

        await eventually(settled, what="green's CronJob rendered suspended by its hold")
        yield running


async def test_a_cronjob_moves_once_blue_s_job_is_done_and_is_handed_back(fleet: HandoffFleet) -> None:
    hook = fleet.spec.hooks[0]
    assert holds(fleet, "green") == [True, True] and holds(fleet, "blue") == [False, False]
    assert not suspended(fleet.cron_job("blue"))
    # Given one of blue's Jobs still running
    fleet.set_active_jobs("blue", "invoices-29610240")
    recorder = Recorder(fleet)
    recorder.start()
    try:
        # When the handoff starts, blue is held and suspended at once, and the handoff waits for its Job
        hooks = runner(fleet)
        assert (await hooks.observe(hook, reverse=False, run=0, now=now())).state == "Missing"
        await until_waiting_for_jobs(hooks, hook, reverse=False, side="blue")
        assert suspended(fleet.cron_job("blue")) and holds(fleet, "blue") == [True, True]
        for _ in range(3):  # advancing again changes nothing while the Job runs
            assert await hooks.advance(hook, reverse=False, run=0) == []
        assert suspended(fleet.cron_job("green")) and holds(fleet, "green") == [True, True]

        # Then once the Job is done, green is released and unsuspended
        fleet.set_active_jobs("blue")
        journal, seen = await drive(hooks, hook)
        assert seen[-1].message == (f"green's CronJob {CRON_NAMESPACE}/{CRON_JOB} runs on its schedule (spec.suspend "
                                    f"is false); blue's CronJob {CRON_NAMESPACE}/{CRON_JOB} is held suspended")
        assert journal[0] == (f"unsuspended green's CronJob {CRON_NAMESPACE}/{CRON_JOB} (blue's CronJob "
                              f"{CRON_NAMESPACE}/{CRON_JOB} runs no Job)")
        assert holds(fleet, "green") == [False, False] and holds(fleet, "blue") == [True, True]
        assert not suspended(fleet.cron_job("green")) and suspended(fleet.cron_job("blue"))

        # And a new revision applied by Flux keeps blue suspended and green scheduled
        sim_flux.set_revision(fleet.management, namespace=NAMESPACE, name="fleet-infra", revision=NEW_REVISION)

        async def applied() -> bool:
            return all(fleet.cron_job(side)["metadata"]["annotations"].get("revision") == NEW_REVISION
                       for side in ("blue", "green"))

        await eventually(applied, what="the new revision applied to both sides")
        assert suspended(fleet.cron_job("blue")) and not suspended(fleet.cron_job("green"))

        # When it is handed back while one of green's Jobs runs, blue waits for it
        fleet.set_active_jobs("green", "invoices-29610300")
        await until_waiting_for_jobs(hooks, hook, reverse=True, side="green")
        assert suspended(fleet.cron_job("green")) and suspended(fleet.cron_job("blue"))
        fleet.set_active_jobs("green")
        _, back = await drive(hooks, hook, reverse=True)

        # Then blue is scheduled again and green held suspended
        assert back[-1].state == "Succeeded"
        assert holds(fleet, "blue") == [False, False] and holds(fleet, "green") == [True, True]
        assert not suspended(fleet.cron_job("blue")) and suspended(fleet.cron_job("green"))
    finally:
        await recorder.stop()

    # And at no moment were both sides scheduled or running a Job (while each was scheduled at some point)
    assert recorder.both_live() == []
    assert recorder.scheduled("green") and recorder.scheduled("blue")
    assert recorder.history[-1] == {"blue": (True, 0), "green": (False, 0)}


async def test_a_job_still_running_past_the_timeout_fails_and_green_stays_suspended(fleet: HandoffFleet) -> None:
    hook = fleet.spec.hooks[0]
    fleet.set_active_jobs("blue", "invoices-29610240")
    hooks = runner(fleet)
    await until_waiting_for_jobs(hooks, hook, reverse=False, side="blue")

    late = await hooks.observe(hook, reverse=False, run=0, now=now() + datetime.timedelta(minutes=3))

    assert late.state == "Failed"
    assert late.message == (f"blue's CronJob {CRON_NAMESPACE}/{CRON_JOB}: 1 Job still running after 2m; green's "
                            f"CronJob {CRON_NAMESPACE}/{CRON_JOB} was not started")
    assert suspended(fleet.cron_job("green")) and holds(fleet, "green") == [True, True]

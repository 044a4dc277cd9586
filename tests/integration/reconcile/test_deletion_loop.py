"""Deleting a ClusterUpgrade through the reconcile loop, against the strict emulator holding it.

The loop's part of spec.onDelete: the finalizer bluegreen.io/cleanup is on before the first action a
deletion would have to undo and off when nothing is left to undo; a deleted upgrade is cleaned up pass
by pass, a failing step is retried with backoff and shown in a condition, and the finalizer goes last.
The providers are the reconcile-loop test's fakes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bluegreen.engine.types import FINALIZER
from bluegreen.handlers import upgrade_fingerprint
from bluegreen.reconcile import UpgradeLoop
from bluegreen.sim.kube import KubeEmulator
from tests.integration.reconcile.test_reconcile_loop import RESOURCE, ScriptedRouter, status_of
from tests.integration.reconcile.test_reconcile_loop import world as loop_world

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
world = loop_world

World = tuple[KubeEmulator, UpgradeLoop, ScriptedRouter]


def finalizers(emulator: KubeEmulator) -> list[str]:
    body = emulator.get(RESOURCE, "fleet", "demo")
    assert body is not None
    return list(body["metadata"].get("finalizers") or [])


async def shift_to_50(loop: UpgradeLoop, emulator: KubeEmulator, router: ScriptedRouter) -> None:
    for _ in range(12):
        await loop.reconcile_once()
        if router.green == 50:
            return
    raise AssertionError(status_of(emulator))


async def test_the_finalizer_is_on_before_green_is_created(world: World) -> None:
    emulator, loop, _ = world
    provider: Any = loop._collaborators_for(None, {})  # type: ignore[arg-type]
    create = provider.provider.provision_green
    seen: list[list[str]] = []

    async def provision_green(**kwargs: Any) -> str | None:
        seen.append(finalizers(emulator))
        return str(await create(**kwargs))

    provider.provider.provision_green = provision_green
    for _ in range(6):
        await loop.reconcile_once()
    assert seen and all(FINALIZER in held for held in seen), "held before the first action it would undo"


async def test_deleted_mid_shift_returns_traffic_retires_green_then_goes(world: World) -> None:
    emulator, loop, router = world
    await shift_to_50(loop, emulator, router)
    fakes: Any = loop._collaborators_for(None, {})  # type: ignore[arg-type]
    assert fakes.provider.green and FINALIZER in finalizers(emulator)
    emulator.delete(RESOURCE, "fleet", "demo")
    assert emulator.get(RESOURCE, "fleet", "demo") is not None, "held by the finalizer"
    await asyncio.wait_for(loop.run(stop=asyncio.Event()), timeout=20)
    assert emulator.get(RESOURCE, "fleet", "demo") is None, "released once the cleanup was done"
    assert router.green == 0
    assert not fakes.provider.green, "green, created by this upgrade, deleted"
    reasons = {event["reason"] for event in emulator.list("v1/events", "fleet")}
    assert {"Deleting", "TrafficReturned", "RoutersFinalized", "CleanupDone"} <= reasons


async def test_a_failing_step_of_the_cleanup_is_retried_and_shown(world: World) -> None:
    emulator, loop, router = world
    await shift_to_50(loop, emulator, router)
    emulator.delete(RESOURCE, "fleet", "demo")
    router.refuse = "runtime API socket gone"
    for _ in range(3):
        await loop.reconcile_once()
    status = status_of(emulator)
    assert status["phase"] == "Deleting" and status["deletion"]["stage"] == "ReturningTraffic"
    assert status["failures"] >= 1
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "RetryingAfterError" and "runtime API socket gone" in progressing["message"]
    assert FINALIZER in finalizers(emulator)
    router.refuse = None
    await asyncio.wait_for(loop.run(stop=asyncio.Event()), timeout=20)
    assert emulator.get(RESOURCE, "fleet", "demo") is None and router.green == 0


async def test_leave_drops_the_finalizer_so_a_deletion_changes_nothing(world: World) -> None:
    emulator, loop, router = world
    await shift_to_50(loop, emulator, router)
    changed = emulator.patch(RESOURCE, "fleet", "demo", {"spec": {"onDelete": "Leave"}})
    # As the operator's watch handler (handlers.upgrade_changed) tells the loop: a pass right after its own
    # status write starts from what it wrote, unless told of a change by someone else.
    loop.context.wakeups.upgrade_changed(loop.key, fingerprint=upgrade_fingerprint(changed["metadata"]))
    await loop.reconcile_once()
    assert FINALIZER not in finalizers(emulator), "nothing to undo under Leave: nothing to hold"
    weight = router.green
    emulator.delete(RESOURCE, "fleet", "demo")
    await asyncio.wait_for(loop.run(stop=asyncio.Event()), timeout=5)
    assert emulator.get(RESOURCE, "fleet", "demo") is None
    fakes: Any = loop._collaborators_for(None, {})  # type: ignore[arg-type]
    assert router.green == weight > 0 and fakes.provider.green, "traffic and green left as they were"


"""The reconcile loop's preflight when blue's API server fails for a while: retried, never Blocked.

Given the in-process loop of ``test_reconcile_loop`` (the management emulator
stands in for blue, whose live scan reads it through the kubeconfig Secret),
when blue answers 503 to the stateful scan's list twice, then each pass keeps
the old status with ``Progressing=False, RetryingAfterError`` naming the scan,
the cluster and the error, backs off, and the upgrade neither blocks nor
records a scan; once blue answers, the scan is recorded and the upgrade goes
on by itself, with no ``bluegreen.io/retry`` from a person.
"""

from __future__ import annotations

import pytest

from bluegreen.reconcile import UpgradeLoop
from bluegreen.sim.kube import KubeEmulator
from tests.integration.reconcile import test_reconcile_loop as loop_world

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
world = loop_world.world


def progressing(status: dict[str, object]) -> dict[str, str]:
    conditions = status.get("conditions") or []
    assert isinstance(conditions, list)
    return next(c for c in conditions if c["type"] == "Progressing")


async def test_a_scan_blue_answers_with_503_is_retried_with_backoff_and_goes_on_by_itself(
    world: tuple[KubeEmulator, UpgradeLoop, loop_world.ScriptedRouter]
) -> None:
    emulator, loop, _ = world
    emulator.injected.add(verb="list", resource="statefulsets", status=503, count=2)

    delays = []
    for _ in range(10):  # Pending -> Preflight -> the pass that scans, which fails twice
        delays.append(await loop.reconcile_once())
        if emulator.injected.served and not emulator.injected.rules():
            break
    status = loop_world.status_of(emulator)

    assert len(emulator.injected.served) == 2, "both faults were met by the scan"
    assert delays[-2:] == [0.5, 1.0], "exponential backoff"
    assert status["failures"] == 2
    assert status["phase"] != "Blocked" and "scannedAt" not in (status.get("preflight") or {})
    condition = progressing(status)
    assert condition["status"] == "False" and condition["reason"] == "RetryingAfterError"
    assert condition["message"].startswith(
        "ScanInterrupted: the scan of prod-blue for stateful workloads could not read prod-blue: "
        "ServiceUnavailable (503)")

    await loop.reconcile_once()
    status = loop_world.status_of(emulator)
    assert status["failures"] == 0
    assert status["preflight"]["scannedAt"] and status["preflight"].get("problems", []) == []
    assert status["phase"] != "Blocked"
    for _ in range(5):
        await loop.reconcile_once()
    assert loop_world.status_of(emulator)["phase"] not in ("Pending", "Preflight", "Blocked")

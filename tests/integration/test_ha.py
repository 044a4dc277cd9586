"""High availability: the acting replica dies with SIGKILL mid-shift and the standby finishes the upgrade.

A replica killed outright says no goodbye to the peering object: its keep-alive stays there until its
lifetime runs out, and only then does kopf let the standby act (``peering.lifetime``, 5 s here). Status
is the only memory, so the standby carries on from the weight the dead replica left, without repeating
a change and without a client noticing.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from bluegreen.kube.client import KubeClient
from bluegreen.sim import harness
from tests.fixtures.replicas import start_pair, until
from tests.integration.conftest import apply, phase_is, upgrade_manifest, wait_for

# Traffic shares, latencies or timings are measured: run with the machine to itself (conftest).
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.without_prometheus, pytest.mark.alone]
STEPS = [{"setWeight": 10}, {"pause": {"duration": "2s"}}, {"setWeight": 25}, {"pause": {"duration": "2s"}},
         {"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]


def greens(body: dict[str, Any]) -> list[int]:
    return [int(entry["weights"]["green"]) for entry in body["status"]["journal"]
            if entry["action"] == "setWeights" and entry.get("weights")]


async def test_standby_finishes_the_upgrade_when_the_active_replica_is_killed_mid_shift(
    world: harness.WorldProcess, tmp_path: pathlib.Path, management: KubeClient
) -> None:
    # Given two replicas as the chart runs them, the older acting and the younger standing by
    active, standby = await start_pair(world, tmp_path, management, names=("active", "standby"),
                                       values={"replicaCount": 2, "peering": {"lifetime": 5}})
    both = (active, standby)
    try:
        # and an upgrade shifting traffic
        manifest = upgrade_manifest(world)
        manifest["spec"]["traffic"]["steps"] = STEPS
        manifest["spec"]["promotion"]["retainBlueFor"] = "1s"  # blue's retirement is not what is tested here
        apply(world, manifest)
        body = await wait_for(management, manifest, lambda b: phase_is("Shifting")(b) and
                              b["status"]["weights"]["green"] == 25, timeout=90, operator=active,
                              what="green at 25%")
        # (so far the standby has not run a single pass)
        assert await active.passes() >= 1
        assert await standby.passes() == 0 and not standby.resumed(), "a standby never acts"

        # When the acting replica is killed in the middle of the shift
        active.kill()
        # Then the standby waits out the dead replica's keep-alive (it never said goodbye), then acts
        assert not standby.resumed(), "the dead replica's keep-alive is still valid at the moment it dies"
        await until(lambda: asyncio.sleep(0, standby.resumed()), timeout=30, what="the standby to take over",
                    replicas=both)
        # and finishes the upgrade from where status says it is
        body = await wait_for(management, manifest, phase_is("Completed", "Failed", "RolledBack"), timeout=90,
                              operator=standby, what="completion by the standby")
        assert body["status"]["phase"] == "Completed", body["status"]
        assert body["status"]["weights"] == {"blue": 0, "green": 100, "verified": True}
        assert await standby.passes() >= 1
        # with every weight set once, in order, across the handover
        assert greens(body) == [10, 25, 50, 100], body["status"]["journal"]
        # and not one client request failed
        traffic = await world.traffic()
        assert traffic["requests"] > 200 and traffic["failed"] == 0, traffic
    finally:
        for replica in both:
            replica.stop()

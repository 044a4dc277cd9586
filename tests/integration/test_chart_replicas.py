"""Two replicas started the way the chart's Deployment starts them: one acts, the other stands by and takes over.

Each replica is the operator process the chart's Deployment runs (tests/fixtures/replicas.py).
"""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from bluegreen.kube.client import KubeClient
from bluegreen.sim import harness
from tests.fixtures.replicas import start_pair, until
from tests.integration.conftest import apply, phase_is, upgrade_manifest, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.without_prometheus
async def test_two_replicas_one_acts_and_the_standby_takes_over_when_it_goes(
    world: harness.WorldProcess, tmp_path: pathlib.Path, management: KubeClient
) -> None:
    # Given both replicas as the chart runs them, the first older, meeting in the chart's peering object (its
    # CRD came with crds/): both keep their keep-alives there; the younger starts paused and stays so
    first, second = await start_pair(world, tmp_path, management,
                                     values={"replicaCount": 2, "peering": {"lifetime": 10}})
    both = (first, second)
    try:
        assert "Resuming operations" in first.log() and "Resuming operations" not in second.log()
        # When an upgrade runs to a pause for a human
        manifest = upgrade_manifest(world)
        manifest["spec"]["traffic"]["steps"] = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]
        apply(world, manifest)
        await wait_for(management, manifest, phase_is("Paused"), timeout=90, operator=first, what="the pause")
        # Then only the first replica has run passes; the standby has not touched it
        assert await first.passes() >= 1
        assert await second.passes() == 0
        upgrade = (("name", "demo"), ("namespace", "fleet"))
        assert (await first.metrics())[("bluegreen_upgrade_phase", (*upgrade, ("phase", "Paused")))] == 1
        assert ("bluegreen_upgrade_phase", (*upgrade, ("phase", "Paused"))) not in await second.metrics()
        assert await second.healthy(), "a standby is alive: its probes must not restart it"

        # When the acting replica goes (a rolling update, a drained node) and a person promotes
        first.stop()
        await until(lambda: asyncio.sleep(0, "Resuming operations" in second.log()), timeout=30,
                    what="the standby to resume", replicas=both)
        harness.kubectl(world.kubeconfig, "annotate", "clusterupgrade", "demo", "-n", "fleet",
                        "bluegreen.io/promote=step")
        # Then the standby carries the upgrade on from where status says it is, to the end
        body = await wait_for(management, manifest, phase_is("Completed"), timeout=120, operator=second,
                              what="completion by the standby")
        assert await second.passes() >= 1
        # and nothing was done twice across the handover: each weight was set once, in order
        greens = [entry["weights"]["green"] for entry in body["status"]["journal"]
                  if entry["action"] == "setWeights" and entry.get("weights")]
        assert greens == [25, 100], body["status"]["journal"]
    finally:
        for replica in both:
            replica.stop()

"""Two replicas started the way the chart's Deployment starts them: one acts, the other stands by and takes over.

Each replica is the operator process with the command line, arguments and environment Helm renders for the
chart's Deployment (tests/fixtures/helm.py). Pods have their own network; processes on one machine do not, so
each replica's rendering gets its own health and metrics ports, as two pods would have the same ones.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
import time
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness
from tests.fixtures import helm
from tests.integration.conftest import Operator, apply, phase_is, upgrade_manifest, wait_for

pytestmark = pytest.mark.integration

PEERINGS = Resource("kopf.dev", "v1", "clusterkopfpeerings", namespaced=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Replica(Operator):
    """One pod of the chart's Deployment, as a process."""

    def __init__(self, world: harness.WorldProcess, log_dir: pathlib.Path, *, values: dict[str, Any]) -> None:
        super().__init__(world, log_dir)
        self.health_port, self.metrics_port = free_port(), free_port()
        self.objects = helm.render({**values, "health": {"port": self.health_port},
                                    "metrics": {"port": self.metrics_port}})
        pod = helm.find(self.objects, "Deployment")["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.command = [*container["command"], *container["args"]]
        self.env = {item["name"]: item["value"] for item in container["env"]}

    def start(self) -> None:
        self.process = harness.start_operator(self.world.kubeconfig, log_path=self.log_path, command=self.command,
                                              env={**self.env, "BLUEGREEN_RETRY_BASE_SECONDS": "0.2"})

    async def healthy(self) -> bool:
        try:
            async with aiohttp.ClientSession() as session, \
                    session.get(f"http://127.0.0.1:{self.health_port}/healthz") as response:
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as response:
            text = await response.text()
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}

    async def passes(self) -> float:
        return (await self.metrics()).get(("bluegreen_reconcile_latency_seconds_count", ()), 0.0)


async def until(condition: Any, *, timeout: float, what: str, replicas: tuple[Replica, ...]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    logs = "\n".join(f"--- {replica.log_path.parent.name}\n{replica.log()[-3000:]}" for replica in replicas)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


@pytest.mark.without_prometheus
async def test_two_replicas_one_acts_and_the_standby_takes_over_when_it_goes(
    world: harness.WorldProcess, tmp_path: pathlib.Path, management: KubeClient
) -> None:
    values = {"replicaCount": 2, "peering": {"lifetime": 10}}
    first = Replica(world, tmp_path / "first", values=values)
    second = Replica(world, tmp_path / "second", values=values)
    for replica in (first, second):
        replica.log_path.parent.mkdir()
    both = (first, second)
    # Given the peering object the chart creates (its CRD came with crds/), and both replicas, the first older
    peering = helm.find(first.objects, "ClusterKopfPeering")
    harness.kubectl(world.kubeconfig, "apply", "-f", "-", input_text=yaml.safe_dump(peering))
    try:
        first.start()
        await until(first.healthy, timeout=30, what="the first replica's health endpoint", replicas=both)
        second.start()
        await until(second.healthy, timeout=30, what="the second replica's health endpoint", replicas=both)

        async def both_announced() -> bool:
            body = await management.get(PEERINGS, name=peering["metadata"]["name"]) or {}
            return len(body.get("status") or {}) == 2

        # Both keep their keep-alives in the peering object; the younger starts paused and stays so
        await until(both_announced, timeout=30, what="both replicas in the peering object", replicas=both)
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

"""Faults in the world during whole upgrades, through the real operator process.

Given the emulated world with real HAProxy (and, for analysis, real Prometheus)
and the operator as a process, when the management API server answers 500 and
409 and holds requests past the operator's timeout, when HAProxy's runtime
socket is gone for a while, or when Prometheus cannot be reached, then the
operator shows each fault (``Progressing=False`` reason ``RetryingAfterError``
and a Warning Event with the error; analysis Inconclusive, never a pass), holds
where it is, and goes on by itself once the fault ends: every weight recorded
once and in order, one green cluster, its Kustomizations created once, and no
client request failed.

The API faults are the world's (``POST /kube/fault``, see ``sim.kube_faults``);
the socket and Prometheus outages are a :class:`~bluegreen.sim.fault_proxy.TcpGate`
in this test process that the upgrade's addresses point at.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness
from bluegreen.sim.fault_proxy import TcpGate
from tests.integration.conftest import Operator, apply, phase_is, upgrade_manifest, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

KUSTOMIZATIONS = Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
API_TIMEOUT = 1.5  # the operator's API timeout here: a request held longer is a timeout


class FaultyWorldOperator(Operator):
    """The operator with short backoffs and API timeout, so faults and their recovery fit in a test."""

    def start(self) -> None:
        self.process = harness.start_operator(self.world.kubeconfig, log_path=self.log_path, env={
            "BLUEGREEN_RETRY_BASE_SECONDS": "0.2", "BLUEGREEN_RETRY_MAX_SECONDS": "2",
            "BLUEGREEN_API_TIMEOUT_SECONDS": str(API_TIMEOUT)})


@pytest.fixture
def faulty_operator(world: harness.WorldProcess, tmp_path: pathlib.Path) -> Iterator[Operator]:
    running = FaultyWorldOperator(world, tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def inject(world: harness.WorldProcess, **fault: Any) -> dict[str, Any]:
    return dict(await world.control("POST", "/kube/fault", fault))


def retry_events(world: harness.WorldProcess) -> list[str]:
    """The messages of the operator's RetryingAfterError Events on the ClusterUpgrade, oldest first."""
    events = json.loads(harness.kubectl(world.kubeconfig, "get", "events", "-n", "fleet", "-o", "json"))["items"]
    return [event["message"] for event in sorted(events, key=lambda e: e.get("lastTimestamp") or "")
            if event["involvedObject"]["kind"] == "ClusterUpgrade" and event["reason"] == "RetryingAfterError"]


def weights_journal(body: dict[str, Any], router: str = "edge") -> list[int]:
    return [entry["weights"]["green"] for entry in body["status"]["journal"]
            if entry["target"] == router and entry["action"] == "setWeights"]


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(found) for found in (body.get("status") or {}).get("conditions") or []
                 if found["type"] == type_), {})


class ConditionLog:
    """Every distinct (type, status, reason, message) of the conditions seen while polling, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str]] = []

    def __call__(self, body: dict[str, Any]) -> None:
        for found in (body.get("status") or {}).get("conditions") or []:
            key = (found["type"], found["status"], found.get("reason", ""), found.get("message", ""))
            if key not in self.seen:
                self.seen.append(key)

    def retrying(self) -> list[str]:
        return [message for type_, status, reason, message in self.seen
                if type_ == "Progressing" and status == "False" and reason == "RetryingAfterError"]


@pytest.mark.without_prometheus
async def test_management_api_500s_409s_and_timeouts_are_retried_shown_and_nothing_is_done_twice(
    world: harness.WorldProcess, faulty_operator: Operator, management: KubeClient
) -> None:
    # Given the management API server answers 500 to the first two creates of green's Cluster, and holds
    # the first create of a Kustomization past the operator's timeout (then makes it anyway)
    await inject(world, verb="create", resource="clusters", status=500, count=2)
    await inject(world, verb="create", resource="kustomizations", stall=API_TIMEOUT + 1.0, count=1)
    manifest = upgrade_manifest(world)
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 10}, {"pause": {"duration": "2s"}}, {"setWeight": 50},
                                            {"pause": {"duration": "1s"}}, {"setWeight": 100}]
    manifest["spec"]["promotion"]["retainBlueFor"] = "1s"
    apply(world, manifest)
    log = ConditionLog()

    def shifted_to_10(body: dict[str, Any]) -> bool:
        log(body)
        return bool((body.get("status") or {}).get("weights", {}).get("green") == 10)

    await wait_for(management, manifest, shifted_to_10, timeout=90, operator=faulty_operator, what="green at 10%")
    # When, while traffic is split, status writes fail: twice 500, then a 409 Conflict
    await inject(world, verb="patch", resource="clusterupgrades/status", status=500, count=2)
    await inject(world, verb="patch", resource="clusterupgrades/status", status=409, count=1)

    def finished(body: dict[str, Any]) -> bool:
        log(body)
        return phase_is("Completed", "Failed", "RolledBack")(body)

    body = await wait_for(management, manifest, finished, timeout=120, operator=faulty_operator,
                          what="the upgrade to finish through the faults")
    # Then every fault was met
    faults = await world.control("GET", "/kube/fault")
    served = faults["management"]["served"]
    assert [(f["verb"], f["resource"], f["status"]) for f in served] == [
        ("create", "clusters", 500), ("create", "clusters", 500), ("create", "kustomizations", None),
        ("patch", "clusterupgrades/status", 500), ("patch", "clusterupgrades/status", 500),
        ("patch", "clusterupgrades/status", 409)], served
    assert faults["management"]["rules"] == []
    # and each was shown, with the API's own error, in the condition or a Warning Event
    shown = log.retrying() + retry_events(world)
    for needle in ("InternalError (500)", "Conflict (409)", "timeout"):
        assert any(needle.lower() in message.lower() for message in shown), (needle, shown)
    # and the upgrade completed with nothing done twice and nothing skipped
    status = body["status"]
    assert status["phase"] == "Completed", status
    assert weights_journal(body) == [10, 50, 100], "each weight recorded once, in order"
    creates = [e for e in status["journal"] if e["target"] == "cluster" and e["action"] == "create"]
    assert len(creates) == 1, creates
    greens = [c for c in (await world.control("GET", "/clusters"))["clusters"] if c["name"] != "prod-blue"]
    assert [c["name"] for c in greens] == ["prod-green"]
    green_ks = await management.list(KUSTOMIZATIONS, namespace="fleet",
                                     label_selector={"bluegreen.io/cluster": "prod-green"})
    assert sorted(k["metadata"]["name"] for k in green_ks) == ["apps-prod-green", "infra-prod-green"]
    assert condition(body, "Progressing").get("reason") != "RetryingAfterError"
    assert (await world.control("GET", "/traffic"))["failed"] == 0


@pytest.fixture
async def runtime_gate(world: harness.WorldProcess) -> AsyncIterator[TcpGate]:
    gate = TcpGate.to(world.info["haproxy"]["runtime_api"])
    await gate.start()
    yield gate
    await gate.stop()


@pytest.fixture
async def prometheus_gate(world: harness.WorldProcess) -> AsyncIterator[TcpGate]:
    gate = TcpGate.to(world.prometheus_url)
    await gate.start()
    yield gate
    await gate.stop()


async def test_haproxy_socket_gone_holds_the_weight_and_prometheus_unreachable_is_never_a_pass(
    world: harness.WorldProcess, faulty_operator: Operator, management: KubeClient,
    runtime_gate: TcpGate, prometheus_gate: TcpGate,
) -> None:
    # Given the demo's upgrade reaching HAProxy's runtime API and Prometheus through gates
    manifest = upgrade_manifest(world)
    spec = manifest["spec"]
    spec["traffic"]["routers"][0]["haproxy"]["runtimeAPI"] = f"tcp://127.0.0.1:{runtime_gate.port}"
    for metric in spec["analysis"]["metrics"]:
        if "prometheus" in metric:
            metric["prometheus"]["address"] = f"http://127.0.0.1:{prometheus_gate.port}"
    spec["analysis"]["metrics"] = [m for m in spec["analysis"]["metrics"] if "prometheus" in m]
    spec["traffic"]["steps"] = [{"setWeight": 10}, {"pause": {"duration": "1s"}}, {"setWeight": 25},
                                {"analysis": {"count": 2}}, {"setWeight": 50}, {"setWeight": 100}]
    spec["promotion"]["retainBlueFor"] = "1s"
    # A short outage is waited out: more inconclusive measurements in a row than this hold for a person.
    spec["analysis"]["inconclusiveLimit"] = 50
    apply(world, manifest)
    log = ConditionLog()

    def at(green: int) -> Any:
        def check(body: dict[str, Any]) -> bool:
            log(body)
            return bool((body.get("status") or {}).get("weights", {}).get("green") == green)
        return check

    await wait_for(management, manifest, at(10), timeout=90, operator=faulty_operator, what="green at 10%")
    # When HAProxy's runtime socket is gone for 4 s (HAProxy itself keeps serving)
    await runtime_gate.close()
    closed_at = time.time()
    await asyncio.sleep(4)
    held = await wait_for(management, manifest, lambda b: True, timeout=5)
    log(held)
    # Then the upgrade holds at 10 % and says why
    assert held["status"]["weights"]["green"] == 10
    assert any(f"127.0.0.1:{runtime_gate.port}" in message for message in log.retrying()), log.seen
    servers = (await world.control("GET", "/world"))["haproxy"]
    assert servers["runtime_api"] != f"tcp://127.0.0.1:{runtime_gate.port}"
    during = await world.control("GET", f"/traffic?since={closed_at}")
    assert during["requests"] > 50 and during["failed"] == 0, "HAProxy kept serving without its runtime socket"
    # And when the socket is back, it goes on to 25 %; when Prometheus then cannot be reached at the analysis
    await prometheus_gate.close()
    prometheus_gone_at = time.time()
    await runtime_gate.open()

    def unreachable_measured(body: dict[str, Any]) -> bool:
        log(body)
        results = (body.get("status") or {}).get("analysis", {}).get("results", [])
        return len([r for r in results if r["greenWeight"] == 25 and r["phase"] == "Inconclusive"]) >= 2

    body = await wait_for(management, manifest, unreachable_measured, timeout=40, operator=faulty_operator,
                          what="two measurements at 25% while Prometheus is unreachable")
    # Then every measurement since is Inconclusive and names Prometheus, and traffic stays at 25 %
    assert body["status"]["weights"]["green"] == 25
    assert body["status"]["phase"] in ("Shifting", "Paused"), body["status"]["phase"]
    since = [r for r in body["status"]["analysis"]["results"]
             if r["name"] == "error-rate" and harness.parse_time(r["time"]) > prometheus_gone_at + 1]
    assert since and all(r["phase"] == "Inconclusive" for r in since), since
    assert all(f"127.0.0.1:{prometheus_gate.port}" in r["message"] for r in since), since
    # And when Prometheus is back, the analysis passes and the upgrade completes
    await prometheus_gate.open()
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "RolledBack"), timeout=120,
                          operator=faulty_operator, what="completion once Prometheus answers")
    assert body["status"]["phase"] == "Completed", body["status"]
    assert weights_journal(body) == [10, 25, 50, 100], "each weight once, in order: nothing skipped"
    assert (await world.control("GET", "/traffic"))["failed"] == 0

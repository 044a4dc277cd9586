"""The operator's metrics, read the way Prometheus reads them: from the exposition text.

The reconcile loop runs with the reconcile-loop test's in-memory providers against the
strict emulator holding the ClusterUpgrade; each test scrapes the loop's own registry
(``Context.metrics``), so tests do not see each other's counts.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bluegreen.api.status import (
    CheckPhase,
    CheckResult,
    ClusterUpgradeStatus,
    NodePoolsStatus,
    Phase,
    StepStatus,
    Weights,
)
from bluegreen.clusters.registry import build_cluster_provider
from bluegreen.metrics import PassReport, UpgradeMetrics, serve
from bluegreen.reconcile import UpgradeLoop
from bluegreen.settings import OperatorSettings
from bluegreen.sim.kube import KubeEmulator
from tests.integration.reconcile.test_reconcile_loop import (
    RESOURCE,
    ScriptedRouter,
    run_until_verified_at_zero,
    status_of,
)
from tests.integration.reconcile.test_reconcile_loop import world as loop_world

world = loop_world  # the reconcile-loop test's fixture: emulator, loop with fakes, scripted router "edge"
T0 = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)


def samples(text: str, metric: str, /, **labels: str) -> list[float]:
    """Values of every sample called ``metric`` whose labels include ``labels``."""
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric and all(sample.labels.get(key) == wanted for key, wanted in labels.items())
    ]


def value(text: str, metric: str, /, **labels: str) -> float:
    found = samples(text, metric, **labels)
    assert len(found) == 1, f"{metric}{labels}: {found}\n{text}"
    return found[0]


def scrape(loop: UpgradeLoop) -> str:
    return loop.context.metrics.exposition().decode()


async def test_phase_gauge_and_weights_follow_the_status_the_loop_wrote(
    world: tuple[KubeEmulator, UpgradeLoop, ScriptedRouter],
) -> None:
    emulator, loop, _ = world
    await run_until_verified_at_zero(loop, emulator)
    text = scrape(loop)
    assert value(text, "bluegreen_upgrade_phase", namespace="fleet", name="demo", phase="Verifying") == 1
    assert sum(samples(text, "bluegreen_upgrade_phase", namespace="fleet", name="demo")) == 1
    assert len(samples(text, "bluegreen_upgrade_phase", name="demo")) == len(Phase)
    assert value(text, "bluegreen_router_weight_percent", name="demo", router="edge", side="green") == 0
    assert value(text, "bluegreen_router_weight_percent", name="demo", router="edge", side="blue") == 100
    # Each phase the loop went through on its way is observed once, when it ended.
    assert value(text, "bluegreen_phase_duration_seconds_count", phase="Syncing") == 1
    assert samples(text, "bluegreen_phase_duration_seconds_count", phase="Verifying") == []

    await loop.reconcile_once()  # the first step: setWeight 50
    text = scrape(loop)
    assert status_of(emulator)["weights"]["green"] == 50
    assert value(text, "bluegreen_router_weight_percent", name="demo", router="edge", side="green") == 50
    assert value(text, "bluegreen_router_weight_percent", name="demo", router="edge", side="blue") == 50
    assert value(text, "bluegreen_upgrade_phase", name="demo", phase="Shifting") == 1
    assert value(text, "bluegreen_upgrade_phase", name="demo", phase="Verifying") == 0
    assert value(text, "bluegreen_reconcile_latency_seconds_count") >= 1


async def test_a_refusing_router_counts_router_errors_by_kind_and_action(
    world: tuple[KubeEmulator, UpgradeLoop, ScriptedRouter],
) -> None:
    emulator, loop, router = world
    await run_until_verified_at_zero(loop, emulator)
    router.refuse = "No such server."
    await loop.reconcile_once()
    await loop.reconcile_once()
    text = scrape(loop)
    assert value(text, "bluegreen_router_errors_total", kind="haproxy", action="setWeights") == 2
    assert value(text, "bluegreen_reconcile_failures_total") == 2
    assert samples(text, "bluegreen_provider_errors_total") == []
    # The failed passes left the weights where the last verified pass put them.
    assert value(text, "bluegreen_router_weight_percent", name="demo", router="edge", side="green") == 0


async def test_a_failing_cluster_provider_is_counted_under_the_method_that_failed(
    world: tuple[KubeEmulator, UpgradeLoop, ScriptedRouter],
) -> None:
    emulator, loop, _ = world
    collaborators = loop._collaborators_for(None, {})  # type: ignore[arg-type]  # the fixture's fakes
    # The real Cluster API provider against a management API without Cluster API's CRDs: creating green fails.
    collaborators.provider = build_cluster_provider("capi", client=loop.context.management)
    for _ in range(6):
        await loop.reconcile_once()
    text = scrape(loop)
    counted = {sample.labels["action"]: sample.value
               for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "bluegreen_provider_errors_total" and sample.labels["provider"] == "capi"}
    # Its very first call, observing blue, fails (the API serves no clusters.cluster.x-k8s.io), on every pass.
    assert counted == {"observe": 6}, f"status: {status_of(emulator)}"
    assert value(text, "bluegreen_reconcile_failures_total") == 6 == status_of(emulator)["failures"]
    assert samples(text, "bluegreen_router_errors_total") == []


async def test_latency_counts_from_the_change_that_woke_the_pass(
    world: tuple[KubeEmulator, UpgradeLoop, ScriptedRouter],
) -> None:
    _, loop, _ = world
    await loop.reconcile_once(woken_at=time.monotonic() - 30.0)  # a pass that acts (Pending moves on)
    text = scrape(loop)
    assert value(text, "bluegreen_reconcile_latency_seconds_count") == 1
    assert value(text, "bluegreen_reconcile_latency_seconds_sum") >= 30.0
    assert value(text, "bluegreen_reconcile_latency_seconds_bucket", le="10.0") == 0


async def test_a_deleted_upgrade_s_series_are_forgotten(
    world: tuple[KubeEmulator, UpgradeLoop, ScriptedRouter],
) -> None:
    emulator, loop, _ = world
    await run_until_verified_at_zero(loop, emulator)
    assert samples(scrape(loop), "bluegreen_upgrade_phase", name="demo")
    emulator.delete(RESOURCE, "fleet", "demo")
    await asyncio.wait_for(loop.run(stop=asyncio.Event()), timeout=10)  # sees the object gone and ends
    text = scrape(loop)
    for name in ("bluegreen_upgrade_phase", "bluegreen_router_weight_percent", "bluegreen_upgrade_step"):
        assert samples(text, name, name="demo") == [], name
    # Aggregates over all upgrades stay: they are not the deleted upgrade's.
    assert value(text, "bluegreen_phase_duration_seconds_count", phase="Syncing") == 1


def report(old: ClusterUpgradeStatus, new: ClusterUpgradeStatus, *, routers: tuple[str, ...] = ("edge",),
           evicted: bool = False, now: datetime.datetime = T0) -> PassReport:
    return PassReport(old=old, new=new, routers=routers, acted=False, evicted=evicted,
                      started=time.monotonic(), woken_at=None, now=now)


def result(name: str, phase: CheckPhase, minute: int) -> CheckResult:
    return CheckResult(name=name, kind="metric", phase=phase, time=T0 + datetime.timedelta(minutes=minute))


def test_each_check_result_is_counted_once_by_metric_and_verdict() -> None:
    metrics = UpgradeMetrics()
    first = ClusterUpgradeStatus(phase=Phase.SHIFTING)
    first = first.model_copy(update={"analysis": first.analysis.model_copy(update={"results": [
        result("error-rate", CheckPhase.SUCCESSFUL, 0), result("latency", CheckPhase.FAILED, 0)]})})
    second = first.model_copy(update={"analysis": first.analysis.model_copy(update={"results": [
        *first.analysis.results, result("error-rate", CheckPhase.FAILED, 1)]})})
    metrics.record_pass(namespace="fleet", name="demo", report=report(ClusterUpgradeStatus(), first))
    metrics.record_pass(namespace="fleet", name="demo", report=report(first, second))
    metrics.record_pass(namespace="fleet", name="demo", report=report(second, second))  # nothing new
    text = metrics.exposition().decode()
    assert value(text, "bluegreen_analysis_results_total", metric="error-rate", phase="Successful") == 1
    assert value(text, "bluegreen_analysis_results_total", metric="error-rate", phase="Failed") == 1
    assert value(text, "bluegreen_analysis_results_total", metric="latency", phase="Failed", kind="metric") == 1


def test_step_and_phase_durations_come_from_status_timestamps() -> None:
    metrics = UpgradeMetrics()
    old = ClusterUpgradeStatus(phase=Phase.SHIFTING, phase_since=T0 - datetime.timedelta(hours=2),
                               step=StepStatus(index=1, started_at=T0 - datetime.timedelta(minutes=20)))
    next_step = old.model_copy(update={"step": StepStatus(index=2, started_at=T0)})
    promoted = next_step.model_copy(update={"phase": Phase.PROMOTED, "phase_since": T0})
    metrics.record_pass(namespace="fleet", name="demo", report=report(old, next_step))
    metrics.record_pass(namespace="fleet", name="demo", report=report(next_step, promoted))
    text = metrics.exposition().decode()
    assert value(text, "bluegreen_step_duration_seconds_count") == 1
    assert value(text, "bluegreen_step_duration_seconds_sum") == 1200
    assert value(text, "bluegreen_phase_duration_seconds_sum", phase="Shifting") == 7200
    assert value(text, "bluegreen_phase_duration_seconds_bucket", phase="Shifting", le="3600.0") == 0
    assert value(text, "bluegreen_phase_duration_seconds_bucket", phase="Shifting", le="7200.0") == 1
    assert value(text, "bluegreen_upgrade_step", name="demo") == 2


def test_node_pools_drained_nodes_and_evictions() -> None:
    metrics = UpgradeMetrics()
    old = ClusterUpgradeStatus(phase=Phase.ROTATING, node_pools=NodePoolsStatus(nodes_total=3, nodes_drained=0))
    new = old.model_copy(update={"node_pools": NodePoolsStatus(nodes_total=3, nodes_drained=1)})
    metrics.record_pass(namespace="fleet", name="pools", report=report(old, new, routers=(), evicted=True))
    metrics.record_pass(namespace="fleet", name="pools", report=report(new, new, routers=(), evicted=True))
    metrics.record_pass(namespace="fleet", name="pools", report=report(new, new, routers=()))
    text = metrics.exposition().decode()
    assert value(text, "bluegreen_nodepools_nodes_drained", name="pools") == 1
    assert value(text, "bluegreen_nodepools_nodes", name="pools") == 3
    assert value(text, "bluegreen_nodepools_evictions_total", name="pools") == 2
    assert samples(text, "bluegreen_router_weight_percent") == []


def test_a_router_removed_from_the_spec_loses_its_weight_series() -> None:
    metrics = UpgradeMetrics()
    status = ClusterUpgradeStatus(phase=Phase.SHIFTING, weights=Weights(blue=70, green=30, verified=True))
    metrics.record_pass(namespace="fleet", name="demo", report=report(status, status, routers=("edge", "dns")))
    metrics.record_pass(namespace="fleet", name="demo", report=report(status, status, routers=("edge",)))
    text = metrics.exposition().decode()
    assert value(text, "bluegreen_router_weight_percent", router="edge", side="green") == 30
    assert samples(text, "bluegreen_router_weight_percent", router="dns") == []


def test_unverified_weights_are_not_reported_as_what_routers_do() -> None:
    metrics = UpgradeMetrics()
    fresh = ClusterUpgradeStatus()  # blue 100 / green 0 is the intent, nothing applied yet
    metrics.record_pass(namespace="fleet", name="demo", report=report(fresh, fresh))
    assert samples(metrics.exposition().decode(), "bluegreen_router_weight_percent") == []


def test_the_metrics_port_is_read_from_the_environment() -> None:
    assert OperatorSettings.from_env({}).metrics_port == 8000
    settings = OperatorSettings.from_env({"BLUEGREEN_METRICS_PORT": "9464", "BLUEGREEN_METRICS_HOST": "127.0.0.1"})
    assert (settings.metrics_port, settings.metrics_host) == (9464, "127.0.0.1")
    assert OperatorSettings.from_env({"BLUEGREEN_METRICS_PORT": "0"}).metrics_port == 0
    with pytest.raises(ValueError, match="BLUEGREEN_METRICS_PORT"):
        OperatorSettings.from_env({"BLUEGREEN_METRICS_PORT": "http"})


@pytest.fixture
async def served() -> AsyncIterator[tuple[UpgradeMetrics, str]]:
    metrics = UpgradeMetrics()
    runner = await serve(metrics, host="127.0.0.1", port=0)
    host, port = runner.addresses[0][:2]
    try:
        yield metrics, f"http://{host}:{port}/metrics"
    finally:
        await runner.cleanup()


async def test_metrics_are_served_over_http(served: tuple[UpgradeMetrics, str]) -> None:
    metrics, url = served
    status = ClusterUpgradeStatus(phase=Phase.PROMOTED)
    metrics.record_pass(namespace="fleet", name="demo", report=report(status, status))
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    assert value(text, "bluegreen_upgrade_phase", name="demo", phase="Promoted") == 1


async def test_a_fault_in_the_metrics_never_stops_a_pass(
    world: tuple[KubeEmulator, UpgradeLoop, ScriptedRouter], caplog: pytest.LogCaptureFixture,
) -> None:
    emulator, loop, _ = world

    class Broken(UpgradeMetrics):
        def record_pass(self, *, namespace: str, name: str, report: PassReport) -> None:
            raise RuntimeError("a metrics bug")

    loop.context.metrics = Broken()
    await run_until_verified_at_zero(loop, emulator)  # the upgrade goes on: status is written as without metrics
    assert "could not record a pass's metrics" in caplog.text

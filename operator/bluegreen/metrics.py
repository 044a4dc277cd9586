"""The operator's Prometheus metrics: what it is doing, told from the status it writes.

Every metric lives here, in one registry owned by an :class:`UpgradeMetrics`
(not the process-wide default registry), so each test and each operator
context counts alone. The reconcile loop reports once per pass, after it has
written status, and once per failure; nothing else calls in. Values come from
the status the pass wrote (and the old one it replaced), so a restarted
operator reports the same gauges and durations as the one before it.

Cardinality is bounded: per-upgrade labels are the ClusterUpgrade's namespace
and name (one set per object, removed by :meth:`UpgradeMetrics.forget` when
its loop ends), router names, check names and phases come from the spec or
the API, and error labels are router kinds, provider kinds and action names
from the code. Pod names, node names and messages are never labels.

Upgrades by phase is one 0/1 gauge per upgrade and phase
(``bluegreen_upgrade_phase``), as kube-state-metrics does for pods: an alert
can name the upgrade stuck in Failed, and ``sum by (phase)`` gives the count
per phase that a ``bluegreen_upgrades{phase}`` gauge would.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import types
from collections.abc import Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.aiohttp import make_aiohttp_handler

from bluegreen.api.status import ClusterUpgradeStatus, Phase

# A phase lasts from seconds (Pending) to days (Promoted holds blue for the rollback window).
PHASE_BUCKETS = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 2 * 3600.0, 6 * 3600.0, 12 * 3600.0,
                 86400.0, 3 * 86400.0, 7 * 86400.0)
# A traffic step is a pause and its analysis: minutes, sometimes an hour or two.
STEP_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 2 * 3600.0, 4 * 3600.0)
# From a change in the world to the end of the pass that acted on it: API calls, a router, a clone.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

UPGRADE_LABELS = ("namespace", "name")
CLUSTERS_PACKAGE = "bluegreen.clusters."


@dataclasses.dataclass(frozen=True)
class PassReport:
    """What one successful pass did, as the loop knows it after writing status."""

    old: ClusterUpgradeStatus
    new: ClusterUpgradeStatus
    routers: Sequence[str]  # the spec's router names, in order
    acted: bool  # the decision had actions and all of them succeeded
    evicted: bool  # a NodePools drain pass evicted a pod
    started: float  # time.monotonic() when the pass began
    woken_at: float | None  # time.monotonic() of the change that woke the pass, if one did
    now: datetime.datetime  # the pass's clock, the one status timestamps are written with


class UpgradeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.phase = Gauge(
            "bluegreen_upgrade_phase", "1 for the phase the ClusterUpgrade is in, 0 for the others.",
            [*UPGRADE_LABELS, "phase"], registry=registry)
        self.weight = Gauge(
            "bluegreen_router_weight_percent",
            "Percent of traffic a router sends to a side, as last applied and verified on every router.",
            [*UPGRADE_LABELS, "router", "side"], registry=registry)
        self.step_index = Gauge(
            "bluegreen_upgrade_step", "status.step.index: the traffic step the upgrade is at.",
            UPGRADE_LABELS, registry=registry)
        self.phase_duration = Histogram(
            "bluegreen_phase_duration_seconds", "How long each phase lasted, observed when it ends.",
            ["phase"], buckets=PHASE_BUCKETS, registry=registry)
        self.step_duration = Histogram(
            "bluegreen_step_duration_seconds", "How long each traffic step lasted, observed when the next begins.",
            buckets=STEP_BUCKETS, registry=registry)
        self.analysis = Counter(
            "bluegreen_analysis_results_total",
            "Check results by check (a metric, webhook or smoke Job of spec.analysis) and verdict.",
            [*UPGRADE_LABELS, "kind", "metric", "phase"], registry=registry)
        self.router_errors = Counter(
            "bluegreen_router_errors_total", "Router refusals and failed verifications, by router kind and action.",
            ["kind", "action"], registry=registry)
        self.provider_errors = Counter(
            "bluegreen_provider_errors_total", "Cluster provider failures, by provider and action.",
            ["provider", "action"], registry=registry)
        self.failures = Counter(
            "bluegreen_reconcile_failures_total", "Passes that failed and will be retried after a backoff.",
            registry=registry)
        self.latency = Histogram(
            "bluegreen_reconcile_latency_seconds",
            "From the change that woke a pass (or the pass's start) to the end of the pass that acted on it.",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.nodes_drained = Gauge(
            "bluegreen_nodepools_nodes_drained", "NodePools: old nodes drained so far.",
            UPGRADE_LABELS, registry=registry)
        self.nodes_total = Gauge(
            "bluegreen_nodepools_nodes", "NodePools: old nodes the rotation drains in all.",
            UPGRADE_LABELS, registry=registry)
        self.evictions = Counter(
            "bluegreen_nodepools_evictions_total", "NodePools: pods evicted through the Eviction API.",
            UPGRADE_LABELS, registry=registry)
        self._per_upgrade = (self.phase, self.weight, self.step_index, self.analysis, self.nodes_drained,
                             self.nodes_total, self.evictions)
        self._routers: dict[tuple[str, str], set[str]] = {}

    def record_pass(self, *, namespace: str, name: str, report: PassReport) -> None:
        old, new = report.old, report.new
        for phase in Phase:
            self.phase.labels(namespace, name, phase.value).set(1 if new.phase == phase else 0)
        self.step_index.labels(namespace, name).set(new.step.index)
        self._record_weights(namespace, name, new, report.routers)
        if new.phase != old.phase and old.phase_since is not None:
            self.phase_duration.labels(old.phase.value).observe(_seconds(report.now - old.phase_since))
        if (new.step.index, new.step.started_at) != (old.step.index, old.step.started_at) \
                and old.step.started_at is not None:
            self.step_duration.observe(_seconds(report.now - old.step.started_at))
        known = set(old.analysis.results)
        for result in new.analysis.results:
            if result not in known:
                self.analysis.labels(namespace, name, result.kind, result.name, result.phase.value).inc()
        if new.node_pools is not None:
            self.nodes_drained.labels(namespace, name).set(new.node_pools.nodes_drained)
            self.nodes_total.labels(namespace, name).set(new.node_pools.nodes_total)
        if report.evicted:
            self.evictions.labels(namespace, name).inc()
        if report.acted:
            cause = report.woken_at if report.woken_at is not None else report.started
            self.latency.observe(max(0.0, time.monotonic() - cause))

    def record_router_error(self, *, kind: str, action: str) -> None:
        self.router_errors.labels(kind, action).inc()

    def record_failure(self, *, error: BaseException, provider: str | None) -> None:
        """A failed pass; a cluster provider's failure is counted under the provider method that raised."""
        self.failures.inc()
        action = provider_action(error)
        if provider is not None and action is not None:
            self.provider_errors.labels(provider, action).inc()

    def forget(self, *, namespace: str, name: str) -> None:
        """The upgrade's loop ended (deleted, or another replica took it): its series go."""
        for metric in self._per_upgrade:
            metric.remove_by_labels({"namespace": namespace, "name": name})
        self._routers.pop((namespace, name), None)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format, as /metrics serves it."""
        return generate_latest(self.registry)

    def _record_weights(self, namespace: str, name: str, status: ClusterUpgradeStatus, routers: Sequence[str]) -> None:
        # Status says the weights every router was set to and verified at; before that, routers hold
        # whatever they held, which is not ours to report.
        before = self._routers.get((namespace, name), set())
        for gone in before - set(routers):
            self.weight.remove_by_labels({"namespace": namespace, "name": name, "router": gone})
        self._routers[(namespace, name)] = set(routers)
        if not status.weights.verified:
            return
        for router in routers:
            self.weight.labels(namespace, name, router, "blue").set(status.weights.blue)
            self.weight.labels(namespace, name, router, "green").set(status.weights.green)


def provider_action(error: BaseException) -> str | None:
    """The cluster provider method a failure came out of (its outermost frame in bluegreen.clusters).

    Provider modules raise the API's and their own errors unwrapped; where the traceback first
    enters bluegreen.clusters names the Protocol method the loop called, a bounded label.
    """
    traceback: types.TracebackType | None = error.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        if str(frame.f_globals.get("__name__", "")).startswith(CLUSTERS_PACKAGE):
            return frame.f_code.co_name
        traceback = traceback.tb_next
    return None


def _seconds(delta: datetime.timedelta) -> float:
    return max(0.0, delta.total_seconds())


async def serve(metrics: UpgradeMetrics, *, host: str, port: int) -> web.AppRunner:
    """Serve /metrics on host:port until the returned runner is cleaned up."""
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

"""An in-memory world for the engine tests: it carries out Decisions like the I/O layer would.

It applies actions to plain state, lets tests (or hypothesis) change the world
between passes, and writes a decision's status only when its actions succeed,
exactly as the handlers do.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

from bluegreen.api import spec as api
from bluegreen.api.status import CheckPhase, CheckResult, ClusterUpgradeStatus, PreflightStatus, SavedRouter
from bluegreen.engine import analysis, decide
from bluegreen.engine.types import (
    ClusterObservation,
    Decision,
    DeleteCluster,
    DeleteWorkloads,
    FinalizeRouters,
    HookObservation,
    JobObservation,
    KustomizationObservation,
    Observed,
    ProvisionGreen,
    RemoveAnnotation,
    RunChecks,
    RunHook,
    SaveRouters,
    ScanPreflight,
    SetWeights,
    StartJob,
    SyncWorkloads,
    UpgradeInPlace,
    WorkloadsObservation,
)

# A check's verdict in the fake world: (phase, value, message) for a metric or webhook name.
Oracle = Callable[[str, str, "World"], tuple[CheckPhase, float | None, str]]


def always_passing(name: str, kind: str, world: World) -> tuple[CheckPhase, float | None, str]:
    return CheckPhase.SUCCESSFUL, 0.0, "ok"


T0 = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
OWNER = "fleet.demo"


def make_spec(**overrides: Any) -> api.ClusterUpgradeSpec:
    raw: dict[str, Any] = {
        "cluster": {"provider": "capi", "name": "prod-blue", "namespace": "fleet"},
        "target": {"kubernetesVersion": "1.31", "readyTimeout": "10m"},
        "workloads": {"flux": {"selector": {"matchLabels": {"bluegreen.io/cluster": "prod-blue"}}},
                      "timeout": "5m"},
        "traffic": {
            "routers": [{"haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "app",
                                     "blueServer": "blue", "greenServer": "green"}}],
            "steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50},
                      {"pause": {}}, {"setWeight": 100}],
        },
        "promotion": {"retainBlueFor": "1h"},
    }
    raw.update(overrides)
    return api.parse_spec(raw)


@dataclasses.dataclass
class World:
    spec: api.ClusterUpgradeSpec = dataclasses.field(default_factory=make_spec)
    status: ClusterUpgradeStatus = dataclasses.field(default_factory=ClusterUpgradeStatus)
    now: datetime.datetime = T0
    generation: int = 1
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    blue_exists: bool = True
    blue_ready: bool = True
    blue_deleting: bool = False
    blue_version: str = "v1.30.4"
    blue_kustomizations: dict[str, str] = dataclasses.field(default_factory=lambda: {"apps": "main@sha1:aaa"})
    green_exists: bool = False
    green_ready: bool = False
    green_kubeconfig: bool = False
    green_owner: str | None = OWNER
    green_copies: dict[str, tuple[bool, str | None]] = dataclasses.field(default_factory=dict)  # name -> (ready, rev)
    router_green: int | None = None  # None: never set by the operator
    routers_finalized: bool = False
    finalized_sides: list[str] = dataclasses.field(default_factory=list)
    oracle: Oracle = always_passing
    checks: list[tuple[str, str, datetime.datetime, int]] = dataclasses.field(default_factory=list)  # name, kind
    jobs: dict[str, JobObservation] = dataclasses.field(default_factory=dict)
    jobs_started: list[str] = dataclasses.field(default_factory=list)
    fail_actions: bool = False
    preflight_problems: tuple[str, ...] = ()
    scan: PreflightStatus = dataclasses.field(default_factory=PreflightStatus)  # what ScanPreflight finds
    scans: int = 0
    blue_rolling_out: bool = False
    worker_versions: dict[str, str] = dataclasses.field(default_factory=dict)
    offered_versions: tuple[str, ...] | None = None
    versions_asked: list[str] = dataclasses.field(default_factory=list)
    hooks: dict[str, HookObservation] = dataclasses.field(default_factory=dict)
    hooks_run: list[tuple[str, bool]] = dataclasses.field(default_factory=list)  # (name, reverse)
    log: list[Decision] = dataclasses.field(default_factory=list)

    def observe(self) -> Observed:
        green_name = self.spec.green_name
        return Observed(
            preflight_problems=self.preflight_problems,
            generation=self.generation,
            annotations=dict(self.annotations),
            blue=ClusterObservation(
                name=self.spec.cluster.name, exists=self.blue_exists, ready=self.blue_exists and self.blue_ready,
                version=self.blue_version if self.blue_exists else None, deleting=self.blue_deleting,
                reason="" if self.blue_ready else "ControlPlane not ready", rolling_out=self.blue_rolling_out,
                worker_versions=dict(self.worker_versions), offered_versions=self.offered_versions,
            ),
            green=ClusterObservation(
                name=green_name, exists=self.green_exists, ready=self.green_exists and self.green_ready,
                version="v1.31.0" if self.green_exists else None, managed_by=self.green_owner,
                kubeconfig_secret=f"{green_name}-kubeconfig" if self.green_kubeconfig else None,
                reason="" if self.green_ready else "Provisioning",
            ),
            jobs=dict(self.jobs),
            hooks=dict(self.hooks),
            workloads=WorkloadsObservation(
                blue=tuple(KustomizationObservation(name=name, namespace="fleet", ready=True, revision=rev)
                           for name, rev in self.blue_kustomizations.items()),
                green=tuple(KustomizationObservation(name=f"{name}-green", namespace="fleet", ready=ready,
                                                     revision=rev, copy_of=name,
                                                     reason="" if ready else "HealthCheckFailed")
                            for name, (ready, rev) in self.green_copies.items()),
                green_missing=tuple(name for name in self.blue_kustomizations if name not in self.green_copies)
                if self.green_copies or self.green_exists else (),
            ),
        )

    def step(self) -> Decision:
        """One reconcile pass: observe, decide, act, write status (only if the actions succeeded)."""
        decision = decide(self.spec, self.status, self.observe(), self.now, owner=OWNER)
        self.log.append(decision)
        if self.fail_actions and any(not isinstance(a, RemoveAnnotation) for a in decision.actions):
            return decision
        self.status = decision.status
        results: list[CheckResult] = []
        for action in decision.actions:
            results.extend(self.apply(action))
        self.status = analysis.record(self.status, self.spec, results)
        return decision

    def apply(self, action: object) -> list[CheckResult]:
        match action:
            case SaveRouters():
                self.status = self.status.model_copy(update={"routers": [
                    SavedRouter(name=router.display_name, original={"green": self.router_green})
                    for router in self.spec.traffic.routers]})
            case RunChecks(metrics=metrics, webhooks=webhooks):
                results = []
                for name, kind in [(m, "metric") for m in metrics] + [(w, "webhook") for w in webhooks]:
                    self.checks.append((name, kind, self.now, self.status.weights.green))
                    phase, value, message = self.oracle(name, kind, self)
                    results.append(CheckResult(name=name, kind=kind, phase=phase, time=self.now, value=value,
                                               message=message, step=self.status.step.index,
                                               green_weight=self.status.weights.green))
                return results
            case ScanPreflight():
                self.scans += 1
                self.status = self.status.model_copy(update={"preflight": self.scan.model_copy(
                    update={"scanned_at": self.now})})
            case UpgradeInPlace(version=version):
                self.versions_asked.append(version)
                self.blue_version = version
                self.blue_rolling_out = True
            case RunHook(name=name, reverse=reverse):
                self.hooks_run.append((name, reverse))
                self.hooks.setdefault(name, HookObservation(state="Running"))
            case StartJob(name=name):
                self.jobs_started.append(name)
                self.jobs.setdefault(name, JobObservation(state="Running"))
            case ProvisionGreen():
                self.green_exists = True
            case SyncWorkloads():
                for name in self.blue_kustomizations:
                    self.green_copies.setdefault(name, (False, None))
            case SetWeights(green=green):
                self.router_green = green
            case FinalizeRouters(retired=retired):
                self.routers_finalized = True
                self.finalized_sides.append(retired)
            case DeleteWorkloads(side="blue"):
                self.blue_kustomizations = {}
            case DeleteWorkloads(side="green"):
                self.green_copies = {}
            case DeleteCluster(side="blue"):
                self.blue_exists = False
            case DeleteCluster(side="green"):
                self.green_exists = False
                self.green_ready = False
            case RemoveAnnotation(key=key):
                self.annotations.pop(key, None)
            case _:
                raise AssertionError(f"unknown action {action!r}")
        return []

    # --- what the simulated controllers would do ---

    def green_becomes_ready(self) -> None:
        if self.green_exists:
            self.green_ready = True
            self.green_kubeconfig = True

    def flux_syncs(self, *, healthy: bool = True) -> None:
        for name in list(self.green_copies):
            self.green_copies[name] = (healthy, self.blue_kustomizations.get(name) if healthy else None)

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)

    def run_until_settled(self, limit: int = 50) -> None:
        """Pass until a pass neither acts nor changes phase/step (the world must change next)."""
        for _ in range(limit):
            before = self.status
            decision = self.step()
            # Moving a hook along is asked on every pass until the world shows it done (it is idempotent):
            # a pass that asks only that and changes nothing else waits for the world like one that acts not.
            waiting = all(isinstance(action, RunHook) for action in decision.actions)
            if waiting and (before.phase, before.step.index, before.weights, before.in_place, before.hooks) == (
                    self.status.phase, self.status.step.index, self.status.weights, self.status.in_place,
                    self.status.hooks):
                return
        raise AssertionError("the engine did not settle")

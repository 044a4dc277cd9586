"""One preflight pass: the scans composed against an emulated blue, failures and lateness as problems, bounds.

Blue is a strict API emulator at 1.24 that still serves ``batch/v1beta1``; the
target is 1.25, which removes it. The sources scan needs Flux on a management
cluster, so most tests replace it with a stand-in returning what a test needs.
"""

from __future__ import annotations

import asyncio
import datetime
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api import spec as api
from bluegreen.api.status import LIST_LIMIT, CapacityVerdict
from bluegreen.clusters.base import ClusterProviderError, WorkerCapacity
from bluegreen.kube.client import ApiError, KubeClient
from bluegreen.preflight import live, sources, stateful
from bluegreen.preflight.findings import Finding
from bluegreen.preflight.removed_apis import find
from bluegreen.preflight.run import run_preflight
from bluegreen.sim.kube import KubeEmulator

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
GiB = 2 ** 30
CRONJOB_REMOVAL = find("batch/v1beta1", "CronJob", current="1.24", target="1.25")
assert CRONJOB_REMOVAL is not None


def make_spec(*, preflight: dict[str, Any] | None = None, hooks: list[dict[str, Any]] | None = None) -> (
        api.ClusterUpgradeSpec):
    return api.parse_spec({
        "cluster": {"provider": "capi", "name": "prod-blue", "namespace": "fleet"},
        "target": {"kubernetesVersion": "1.25"},
        "workloads": {"flux": {"mode": "remote", "selector": {"matchLabels": {"bluegreen.io/cluster": "prod-blue"}}}},
        "traffic": {"routers": [{"haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "app",
                                             "blueServer": "blue", "greenServer": "green"}}],
                    "steps": [{"setWeight": 100}]},
        "preflight": {"scanSources": False, **(preflight or {})},
        "hooks": hooks or [],
    })


@pytest.fixture
async def blue() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="prod-blue", kubernetes_version="1.24")
    emulator.add_resource(group="batch", version="v1beta1", plural="cronjobs", kind="CronJob")
    await emulator.start()
    emulator.create("v1/namespaces", {"metadata": {"name": "data"}})
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def client(blue: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(blue.kubeconfig()) as client:
        yield client


def add_statefulset(cluster: KubeEmulator, namespace: str, name: str) -> None:
    cluster.create("apps/v1/statefulsets", {"metadata": {"name": name, "namespace": namespace}, "spec": {
        "serviceName": name, "replicas": 1, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                  "spec": {"accessModes": ["ReadWriteOnce"],
                                           "resources": {"requests": {"storage": "10Gi"}}}}],
    }})


def add_cronjob(cluster: KubeEmulator, namespace: str, name: str) -> None:
    cluster.create("batch/v1/cronjobs", {"metadata": {"name": name, "namespace": namespace}, "spec": {
        "schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]}}}}}})


def add_worker(cluster: KubeEmulator, name: str) -> None:
    cluster.create("v1/nodes", {"metadata": {"name": name}, "status": {
        "capacity": {"cpu": "4", "memory": "16Gi"}, "allocatable": {"cpu": "4", "memory": "16Gi"}}})


def source_finding(name: str, where: str = "in apps/backup/cronjob.yaml") -> Finding:
    assert CRONJOB_REMOVAL is not None
    return Finding.of(CRONJOB_REMOVAL, namespace="data", name=name, where=where)


def live_scan_finding(monkeypatch: pytest.MonkeyPatch, name: str) -> list[dict[str, Any]]:
    """Replace the live scan (its own tests cover what it reads) by one that finds ``name``; returns its calls."""
    calls: list[dict[str, Any]] = []

    async def fake_live(client: KubeClient, **kwargs: Any) -> list[Finding]:
        calls.append(kwargs)
        return [source_finding(name, where=f"live on {kwargs['cluster']}")]

    monkeypatch.setattr(live, "scan_live", fake_live)
    return calls


class Sizes:
    """green_capacity as the provider offers it, counting calls."""

    def __init__(self, capacity: WorkerCapacity | Exception) -> None:
        self.capacity = capacity
        self.calls = 0

    async def __call__(self) -> WorkerCapacity:
        self.calls += 1
        if isinstance(self.capacity, Exception):
            raise self.capacity
        return self.capacity


GREEN = WorkerCapacity(nodes=3, cpu_millis=12_000, memory_bytes=48 * GiB, detail="3 x 4 CPU, 16 GiB")


async def preflight_of(spec: api.ClusterUpgradeSpec, client: KubeClient, tmp_path: pathlib.Path,
                       sizes: Sizes | None = None) -> Any:
    return await run_preflight(spec, management=client, blue=client, blue_name="prod-blue", blue_version="1.24",
                               green_capacity=sizes or Sizes(GREEN), workdir=tmp_path, now=NOW)


async def test_one_pass_composes_every_scan(
        blue: KubeEmulator, client: KubeClient, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_cronjob(blue, "data", "backup")
    add_statefulset(blue, "data", "elasticsearch")
    add_worker(blue, "w-1")
    live_calls = live_scan_finding(monkeypatch, "backup")
    asked: list[dict[str, Any]] = []

    async def fake_sources(spec: api.ClusterUpgradeSpec, **kwargs: Any) -> tuple[list[Finding], list[str]]:
        asked.append(kwargs)
        return [source_finding("backup")], ["GitRepository fleet/apps: artifact digest does not match"]

    monkeypatch.setattr(sources, "scan_sources", fake_sources)
    spec = make_spec(preflight={"scanSources": True, "capacity": "Warn", "timeout": "30s"},
                     hooks=[{"name": "move-es", "at": "BeforeTraffic",
                             "handoff": {"kind": "StatefulSet", "namespace": "data", "name": "elasticsearch"}}])

    status = await preflight_of(spec, client, tmp_path)

    # The same CronJob, live and in its source: two pieces of evidence, both kept.
    assert [(f.name, f.where) for f in status.findings] == [("backup", "live on prod-blue"),
                                                            ("backup", "in apps/backup/cronjob.yaml")]
    assert status.findings_total == 2
    assert [(w.kind, w.name, w.handoff) for w in status.stateful_workloads] == [
        ("CronJob", "backup", None), ("StatefulSet", "elasticsearch", "move-es")]
    assert status.stateful_total == 2
    assert status.problems == ["GitRepository fleet/apps: artifact digest does not match"]
    assert status.capacity is not None and status.capacity.verdict == CapacityVerdict.ENOUGH
    assert status.scanned_at == NOW and status.strategy is None and status.path == []
    assert live_calls == [{"cluster": "prod-blue", "current": "1.24", "target": "1.25"}]
    assert asked and asked[0]["current"] == "1.24" and asked[0]["target"] == "1.25"
    assert asked[0]["workdir"] == tmp_path and 0 < asked[0]["timeout"] <= 30


async def test_sources_and_capacity_are_skipped_when_turned_off(
        client: KubeClient, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sources scan was turned off")

    monkeypatch.setattr(sources, "scan_sources", never)
    sizes = Sizes(GREEN)

    status = await preflight_of(make_spec(preflight={"scanSources": False, "capacity": "Off"}), client, tmp_path,
                                sizes)

    assert status.capacity is None and sizes.calls == 0
    assert status.problems == []


async def test_failures_become_problems_and_the_other_scans_still_report(
        blue: KubeEmulator, client: KubeClient, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_statefulset(blue, "data", "postgres")

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise ApiError(403, "Forbidden", "cronjobs.batch is forbidden", method="GET", path="/apis/batch/v1beta1")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("kubectl crashed")

    monkeypatch.setattr(live, "scan_live", refused)
    monkeypatch.setattr(sources, "scan_sources", broken)

    status = await preflight_of(make_spec(preflight={"scanSources": True, "capacity": "Block"}), client, tmp_path,
                                Sizes(ClusterProviderError("DockerMachineTemplate prod-md-0 states no size")))

    assert status.problems == [
        "the live scan of prod-blue for removed APIs failed: Forbidden (403): cronjobs.batch is forbidden; "
        "fix that, then retry",
        "the scan of prod-blue's Flux sources for removed APIs failed: kubectl crashed; fix that, then retry",
    ]
    assert [w.name for w in status.stateful_workloads] == ["postgres"]
    assert status.capacity is not None and status.capacity.verdict == CapacityVerdict.UNKNOWN
    assert status.capacity.message == "green's size cannot be told: DockerMachineTemplate prod-md-0 states no size"


async def test_a_capacity_check_that_fails_otherwise_is_unknown_not_a_problem(
        client: KubeClient, tmp_path: pathlib.Path) -> None:
    status = await preflight_of(make_spec(preflight={"capacity": "Warn"}), client, tmp_path,
                                Sizes(KeyError("machineTemplate")))

    # Problems stand for scans that could not vouch for removed APIs or stateful workloads; capacity has
    # its own verdict and policy, so its failure is an Unknown that says why.
    assert status.problems == []
    assert status.capacity is not None and status.capacity.verdict == CapacityVerdict.UNKNOWN
    assert status.capacity.message == "the capacity check failed: 'machineTemplate'; fix that, then retry"


async def test_what_does_not_finish_in_time_is_a_problem_naming_it(
        client: KubeClient, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live_scan_finding(monkeypatch, "backup")
    cancelled: list[str] = []

    async def hangs(*args: Any, **kwargs: Any) -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("sources")
            raise

    monkeypatch.setattr(sources, "scan_sources", hangs)

    status = await preflight_of(make_spec(preflight={"scanSources": True, "timeout": "1s"}), client, tmp_path)

    assert status.problems == [
        "the scan of prod-blue's Flux sources for removed APIs did not finish within 1s (spec.preflight.timeout): "
        "find out what makes it slow, or raise the timeout, then retry"]
    assert cancelled == ["sources"]
    assert [f.where for f in status.findings] == ["live on prod-blue"]  # what finished is kept


async def test_cancelling_the_pass_cancels_its_scans(
        client: KubeClient, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hangs(*args: Any, **kwargs: Any) -> Any:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    monkeypatch.setattr(sources, "scan_sources", hangs)
    task = asyncio.create_task(preflight_of(make_spec(preflight={"scanSources": True}), client, tmp_path))
    await started.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_lists_are_bounded_with_their_totals(
        client: KubeClient, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    many = [source_finding(f"job-{index:03}") for index in range(120)]

    async def fake_sources(*args: Any, **kwargs: Any) -> tuple[list[Finding], list[str]]:
        return many + many[:10], [f"source {index} unreadable" for index in range(80)]

    async def fake_stateful(*args: Any, **kwargs: Any) -> stateful.StatefulScan:
        return stateful.StatefulScan(
            workloads=[stateful.StatefulWorkload("StatefulSet", "data", f"db-{index:03}", "volume claims")
                       for index in range(70)], missing=[])

    monkeypatch.setattr(sources, "scan_sources", fake_sources)
    monkeypatch.setattr(stateful, "scan_stateful", fake_stateful)

    status = await preflight_of(make_spec(preflight={"scanSources": True}), client, tmp_path)

    assert len(status.findings) == LIST_LIMIT and status.findings_total == 120  # exact repeats counted once
    assert [f.name for f in status.findings] == [f"job-{index:03}" for index in range(LIST_LIMIT)]
    assert len(status.stateful_workloads) == LIST_LIMIT and status.stateful_total == 70
    assert len(status.problems) == LIST_LIMIT
    assert status.problems[-1] == f"... and {80 - LIST_LIMIT + 1} more problems"


async def test_declared_singletons_are_marked_with_their_handoff_and_missing_ones_named(
        blue: KubeEmulator, client: KubeClient, tmp_path: pathlib.Path) -> None:
    blue.create("apps/v1/deployments", {"metadata": {"name": "leader", "namespace": "data"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "leader"}},
        "template": {"metadata": {"labels": {"app": "leader"}},
                     "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}}})
    spec = make_spec(
        preflight={"singletons": [{"kind": "Deployment", "namespace": "data", "name": "leader"},
                                  {"kind": "Deployment", "namespace": "data", "name": "ledaer"}]},
        hooks=[{"name": "move-other", "at": "BeforeTraffic",
                "handoff": {"kind": "StatefulSet", "namespace": "data", "name": "leader"}},
               {"name": "move-leader", "at": "AfterPromotion",
                "handoff": {"kind": "Deployment", "namespace": "data", "name": "leader"}}],
    )

    status = await preflight_of(spec, client, tmp_path)

    assert [(w.kind, w.name, w.handoff) for w in status.stateful_workloads] == [
        ("Deployment", "leader", "move-leader")]
    assert len(status.problems) == 1
    assert status.problems[0].startswith("spec.preflight.singletons[1]: declared a singleton, but there is no "
                                         "Deployment data/ledaer on the cluster")

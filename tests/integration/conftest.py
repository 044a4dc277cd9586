"""The emulated world and the operator as real processes, one fresh world per test."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import yaml

from bluegreen.api import spec as api
from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness
from bluegreen.sim import prometheus_spares as sim_spares
from bluegreen.sim import world as sim_world
from tests.fixtures.prometheus import HAVE_PROMETHEUS

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLUSTER_UPGRADES = Resource(api.GROUP, api.VERSION, api.PLURAL)

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        # A whole world and the operator as processes, with traffic shares, latencies or timings measured
        # (marker `alone`): such a test gets the machine to itself (make test runs the others three at a time,
        # then these one after the other). A world test whose assertions do not depend on how busy the
        # machine is runs with the rest. A test that samples transient states is `alone` too.
        if item.get_closest_marker("alone") is not None:
            item.add_marker(pytest.mark.serial)


@pytest.fixture
def world(tmp_path: pathlib.Path, request: pytest.FixtureRequest,
          prometheus_spares: sim_spares.Spares) -> Iterator[harness.WorldProcess]:
    if shutil.which("haproxy") is None and not pathlib.Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy is not installed; `make test` installs it (hack/install-system-deps.sh)")
    args = ["--provision-delay", "1", "--flux-delay", "0.3"]
    spare = None
    if request.node.get_closest_marker("without_prometheus") is not None:
        args.append("--no-prometheus")  # upgrade_manifest then leaves analysis out
    elif HAVE_PROMETHEUS:
        spare = prometheus_spares.take(sim_world.SCRAPE_JOBS)  # started ahead: no ~5.5 s wait for a new one
    for marker in request.node.iter_markers("world_args"):
        args.extend(str(arg) for arg in marker.args)
    started = harness.start_world(tmp_path / "world", args=tuple(args), prometheus_spare=spare)
    try:
        harness.kubectl(started.kubeconfig, "apply", "-k", str(ROOT / "crds"))
        yield started
    finally:
        started.stop()


class Operator:
    """The operator process, restartable (for the crash tests)."""

    def __init__(self, world: harness.WorldProcess, log_dir: pathlib.Path) -> None:
        self.world = world
        self.log_path = log_dir / "operator.log"
        self.process: harness.OperatorProcess | None = None

    def start(self) -> None:
        self.process = harness.start_operator(self.world.kubeconfig, log_path=self.log_path,
                                              env={"BLUEGREEN_RETRY_BASE_SECONDS": "0.2"})

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def operator(world: harness.WorldProcess, tmp_path: pathlib.Path) -> Iterator[Operator]:
    running = Operator(world, tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def management(world: harness.WorldProcess) -> AsyncIterator[KubeClient]:
    client = KubeClient.from_kubeconfig(str(world.kubeconfig))
    yield client
    await client.close()


def upgrade_manifest(world: harness.WorldProcess, **spec_changes: Any) -> dict[str, Any]:
    """The demo's upgrade in this world; without Prometheus in the world, without its analysis."""
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "clusterupgrade-demo.yaml").read_text())
    if not world.info.get("prometheus"):
        spec = manifest["spec"]
        spec.pop("analysis", None)
        spec["traffic"]["steps"] = [step for step in spec["traffic"]["steps"] if "analysis" not in step]
    harness.localize(manifest, world.info)
    manifest["spec"].update(spec_changes)
    return manifest


def apply(world: harness.WorldProcess, manifest: dict[str, Any]) -> None:
    harness.kubectl(world.kubeconfig, "apply", "-f", "-", input_text=yaml.safe_dump(manifest))


async def wait_for(
    management: KubeClient,
    manifest: dict[str, Any],
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    operator: Operator | None = None,
    what: str = "",
) -> dict[str, Any]:
    """Poll the ClusterUpgrade until ``predicate(body)``; fail with its status and the operator log."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    meta = manifest["metadata"]
    while time.monotonic() < deadline:
        body = await management.get(CLUSTER_UPGRADES, namespace=meta["namespace"], name=meta["name"]) or {}
        if predicate(body):
            return body
        await asyncio.sleep(0.2)
    log = operator.log()[-6000:] if operator is not None else ""
    raise AssertionError(f"timed out waiting for {what}; status: {yaml.safe_dump(body.get('status'))}\n"
                         f"operator log tail:\n{log}")


def phase_is(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: (body.get("status") or {}).get("phase") in phases

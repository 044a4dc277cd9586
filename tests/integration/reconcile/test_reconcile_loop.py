"""The reconcile loop with in-memory providers, against the strict emulator holding the ClusterUpgrade.

The providers are fakes implementing the Protocols; the ClusterUpgrade, its
status subresource and its Events are real API objects. These tests pin what
the loop does with a router that is still applying a change (hold, not a
failure) and with a router that refuses one (backoff, a condition, a journal
entry naming the router), and that success afterwards clears the failure.
"""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from bluegreen.api import spec as api
from bluegreen.engine.types import ClusterObservation, KustomizationObservation, WorkloadsObservation
from bluegreen.handlers import upgrade_fingerprint
from bluegreen.hooks.runner import HookRunner
from bluegreen.kube.client import KubeClient
from bluegreen.kube.remote import RemoteClients
from bluegreen.nodepools.rotation import Rotation
from bluegreen.reconcile import Collaborators, Context, UpgradeLoop
from bluegreen.settings import OperatorSettings
from bluegreen.sim.kube import KubeEmulator
from bluegreen.traffic.base import RouterChange, RouterError, RouterPending, RouterWeights
from bluegreen.wakeups import Wakeups
from bluegreen.workloads.base import RemoteWatch

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[3]
RESOURCE = f"{api.GROUP}/{api.VERSION}/{api.PLURAL}"


class FakeProvider:
    def __init__(self) -> None:
        self.green = False

    async def observe(self, *, namespace: str, name: str) -> ClusterObservation:
        if name == "prod-blue":
            return ClusterObservation(name=name, exists=True, ready=True, version="v1.30.4",
                                      kubeconfig_secret="prod-blue-kubeconfig")
        return ClusterObservation(name=name, exists=self.green, ready=self.green, version="v1.31.0",
                                  kubeconfig_secret="prod-green-kubeconfig" if self.green else None,
                                  managed_by="fleet.demo")

    async def preflight(self, **_: Any) -> list[str]:
        return []

    async def provision_green(self, **_: Any) -> str | None:
        self.green = True
        return "created"

    async def delete(self, **_: Any) -> str | None:
        deleted, self.green = self.green, False
        return "deleted" if deleted else None

    def kubeconfig_secret_ref(self, *, namespace: str, name: str) -> tuple[str, str, str]:
        return (namespace, f"{name}-kubeconfig", "value")


class FakeWorkloads:
    def __init__(self) -> None:
        self.synced = False

    async def observe(self, *, blue_name: str, green_name: str) -> WorkloadsObservation:
        blue = (KustomizationObservation(name="apps", namespace="fleet", ready=True, revision="r1"),)
        green = (KustomizationObservation(name="apps-green", namespace="fleet", ready=True, revision="r1",
                                          copy_of="apps"),) if self.synced else ()
        return WorkloadsObservation(blue=blue, green=green)

    def remote_watches(self, **_: Any) -> list[RemoteWatch]:
        return []

    async def preflight(self, **_: Any) -> list[str]:
        return []

    async def sync_green(self, **_: Any) -> list[str]:
        self.synced = True
        return ["synced"]

    async def delete(self, **_: Any) -> list[str]:
        return []


class ScriptedRouter:
    """A router whose next answers a test decides: pending, refused, or applied."""

    name = "edge"

    def __init__(self) -> None:
        self.green = 0
        self.pending = False
        self.refuse: str | None = None

    async def set_weights(self, *, blue: int, green: int) -> RouterChange:
        if self.refuse:
            raise RouterError(self.refuse)
        changed = green != self.green
        self.green = green
        return RouterChange(changed=changed, detail=f"green {green}")

    async def verify(self) -> RouterWeights | None:
        if self.pending:
            raise RouterPending("change C123 is PENDING", retry_after=1.5)
        return RouterWeights(blue=100 - self.green, green=self.green)

    async def save(self) -> dict[str, Any]:
        return {"green": self.green}

    async def finalize(self, *, retired: str, mode: str, original: dict[str, Any] | None) -> str:
        return f"{retired} retired ({mode})"


@pytest.fixture
async def world() -> AsyncIterator[tuple[KubeEmulator, UpgradeLoop, ScriptedRouter]]:
    emulator = KubeEmulator(name="management")
    await emulator.start()
    emulator.install_crd(yaml.safe_load((ROOT / "crds" / "bluegreen.io_clusterupgrades.yaml").read_text()))
    emulator.create("v1/namespaces", {"metadata": {"name": "fleet"}})
    manifest = yaml.safe_load((ROOT / "examples" / "clusterupgrade-demo.yaml").read_text())
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 50}, {"setWeight": 100}]
    manifest["spec"].pop("analysis", None)  # these tests are about routers; analysis has its own
    # Preflight's live scan reads blue through its kubeconfig Secret: here the management emulator stands in
    # for blue (it serves no removed API, so nothing is found); its sources are another test's business.
    manifest["spec"]["preflight"] = {"scanSources": False}
    emulator.create("v1/secrets", {"metadata": {"name": "prod-blue-kubeconfig", "namespace": "fleet"},
                                   "stringData": {"value": yaml.safe_dump(emulator.kubeconfig())}})
    emulator.create(RESOURCE, manifest)
    client = KubeClient.from_kubeconfig(emulator.kubeconfig())
    context = Context(management=client, remote=RemoteClients(client), wakeups=Wakeups(),
                      settings=OperatorSettings(retry_base_seconds=0.5))
    loop = UpgradeLoop(context, namespace="fleet", name="demo")
    router = ScriptedRouter()
    async def no_workload_cluster(side: str) -> KubeClient:
        raise AssertionError(f"these tests reach no workload cluster ({side})")

    spec = api.parse_spec(manifest["spec"])
    hooks = HookRunner(spec, management=client, side_client=no_workload_cluster,
                       owner="fleet.demo", upgrade_namespace="fleet")
    provider = FakeProvider()
    fakes = Collaborators(digest="fixed", provider=provider, workloads=FakeWorkloads(), routers=[router],
                          hooks=hooks, rotation=Rotation(spec, provider=provider,  # type: ignore[arg-type]
                                                         cluster_client=lambda: no_workload_cluster("blue")))
    loop._collaborators_for = lambda spec, raw: fakes  # type: ignore[method-assign,assignment]
    try:
        yield emulator, loop, router
    finally:
        await client.close()
        await emulator.stop()


def status_of(emulator: KubeEmulator) -> dict[str, Any]:
    body = emulator.get(RESOURCE, "fleet", "demo")
    assert body is not None
    return dict(body.get("status") or {})


async def run_until_verified_at_zero(loop: UpgradeLoop, emulator: KubeEmulator) -> None:
    for _ in range(10):
        await loop.reconcile_once()
        status = status_of(emulator)
        if status.get("phase") == "Verifying" and (status.get("weights") or {}).get("verified"):
            return
    raise AssertionError(status_of(emulator))


async def test_a_pending_router_holds_the_step_without_counting_a_failure(
    world: tuple[KubeEmulator, UpgradeLoop, ScriptedRouter]
) -> None:
    emulator, loop, router = world
    await run_until_verified_at_zero(loop, emulator)  # every router verified at green 0; next: setWeight 50
    router.pending = True
    delay = await loop.reconcile_once()
    status = status_of(emulator)
    assert delay == pytest.approx(1.5)
    assert status["failures"] == 0
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "WaitingForRouter" and "C123 is PENDING" in progressing["message"]
    assert status["weights"]["green"] == 0, "not recorded as applied until it is in effect"
    router.pending = False
    await loop.reconcile_once()
    status = status_of(emulator)
    assert status["weights"] == {"blue": 50, "green": 50, "verified": True}
    assert [e["weights"]["green"] for e in status["journal"] if e["action"] == "setWeights"] == [50]


async def test_a_refusing_router_backs_off_names_itself_and_recovers(
    world: tuple[KubeEmulator, UpgradeLoop, ScriptedRouter]
) -> None:
    emulator, loop, router = world
    await run_until_verified_at_zero(loop, emulator)
    router.refuse = "No such server."
    first = await loop.reconcile_once()
    second = await loop.reconcile_once()
    status = status_of(emulator)
    assert (first, second) == (0.5, 1.0), "exponential backoff"
    assert status["failures"] == 2
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "RetryingAfterError" and "router edge: No such server." in progressing["message"]
    failed = [e for e in status["journal"] if e["action"] == "setWeights failed"]
    assert failed and failed[-1]["target"] == "edge" and failed[-1]["detail"] == "No such server."
    router.refuse = None
    await loop.reconcile_once()
    status = status_of(emulator)
    assert status["failures"] == 0 and status["weights"]["green"] == 50
    events = emulator.list("v1/events", "fleet")
    assert any(e["reason"] == "RetryingAfterError" and e["type"] == "Warning" for e in events)
    assert datetime.datetime.fromisoformat(status["journal"][-1]["time"].replace("Z", "+00:00"))


async def test_a_pass_after_its_own_write_starts_from_it_and_a_change_by_someone_else_is_read(
    world: tuple[KubeEmulator, UpgradeLoop, ScriptedRouter],
) -> None:
    emulator, loop, router = world

    def reads() -> int:
        return emulator.request_counts[("get", "bluegreen.io", "clusterupgrades")]

    for _ in range(12):  # to 50 %: the finalizer is on, the passes that follow read only to act
        await loop.reconcile_once()
        if router.green == 50:
            break
    before = reads()
    await loop.reconcile_once()
    await loop.reconcile_once()
    assert status_of(emulator)["phase"] == "Promoted", "two passes that each wrote"
    assert reads() == before, "each started from what the pass before wrote: the object came back with it"
    changed = emulator.patch(RESOURCE, "fleet", "demo", {"metadata": {"annotations": {"bluegreen.io/abort": "true"}}})
    loop.context.wakeups.upgrade_changed(loop.key, fingerprint=upgrade_fingerprint(changed["metadata"]))
    await loop.reconcile_once()
    assert reads() > before, "a person's change since the write is read"
    assert status_of(emulator)["phase"] == "RollingBack"

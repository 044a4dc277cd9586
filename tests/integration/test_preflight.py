"""Preflight, Auto, InPlace and handoffs through the real operator process, in the emulated world.

The world's Flux applies what its GitRepository's artifact holds (served over
HTTP like source-controller's), so an object written through a removed API is
both in the source the operator downloads and live on blue, where only its
managedFields tell which version wrote it (Flux strips last-applied).
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness
from tests.integration.conftest import CLUSTER_UPGRADES, Operator, apply, phase_is, upgrade_manifest, wait_for
from tests.integration.test_analysis import PLUGIN

pytestmark = [pytest.mark.integration, pytest.mark.preflight, pytest.mark.without_prometheus]

SECRETS = Resource("", "v1", "secrets")
FLOW_SCHEMAS_V1 = Resource("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", namespaced=False)
STATEFULSETS = Resource("apps", "v1", "statefulsets")

FLOW_SCHEMA = """\
apiVersion: flowcontrol.apiserver.k8s.io/{version}
kind: FlowSchema
metadata:
  name: batch-jobs
spec:
  priorityLevelConfiguration: {{name: workload-low}}
  matchingPrecedence: 1000
  rules:
    - subjects: [{{kind: ServiceAccount, serviceAccount: {{name: batch, namespace: jobs}}}}]
      resourceRules: [{{verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaced: true}}]
"""

ELASTICSEARCH = """\
apiVersion: v1
kind: Namespace
metadata:
  name: search
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: es-data
  namespace: search
spec:
  replicas: 3
  serviceName: es-data
  selector: {matchLabels: {app: es-data}}
  template:
    metadata: {labels: {app: es-data}}
    spec:
      containers: [{name: es, image: elasticsearch:8.15.0}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}
"""


async def cluster_client(management: KubeClient, name: str) -> KubeClient:
    """A client of a workload cluster, through its kubeconfig Secret as the operator reads it."""
    secret = await management.get(SECRETS, namespace="fleet", name=f"{name}-kubeconfig")
    assert secret is not None, f"no kubeconfig Secret for {name}"
    return KubeClient.from_kubeconfig(yaml.safe_load(base64.b64decode(secret["data"]["value"])))


async def commit(world: harness.WorldProcess, revision: str, files: dict[str, str | None]) -> None:
    """A new commit in the world's fleet-infra repository: Flux downloads it and applies it."""
    await world.control("POST", "/flux/revision", {"source": "fleet-infra", "revision": revision, "files": files})


async def eventually(check: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def plan_of(world: harness.WorldProcess, name: str = "demo") -> str:
    """``kubectl bluegreen plan NAME`` as a person runs it."""
    done = subprocess.run([str(PLUGIN), "plan", name, "-n", "fleet"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KUBECONFIG": str(world.kubeconfig)}, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def preflight_of(body: dict[str, Any]) -> dict[str, Any]:
    return dict((body.get("status") or {}).get("preflight") or {})


@pytest.fixture
async def blue(world: harness.WorldProcess, management: KubeClient) -> AsyncIterator[KubeClient]:
    client = await cluster_client(management, "prod-blue")
    yield client
    await client.close()


async def test_removed_apis_found_live_and_in_the_source_block_until_fixed_then_retry_unblocks(
    world: harness.WorldProcess, operator: Operator, management: KubeClient, blue: KubeClient
) -> None:
    # Given Flux applied a FlowSchema written through flowcontrol v1beta3, which 1.32 no longer serves
    await commit(world, "main@sha1:" + "b" * 40, {"apps/flowschema.yaml": FLOW_SCHEMA.format(version="v1beta3")})
    written = await eventually(lambda: blue.get(FLOW_SCHEMAS_V1, name="batch-jobs"), timeout=20,
                               what="Flux to apply the FlowSchema on blue")
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (written["metadata"].get("annotations") or {})
    # When an upgrade to 1.32 is applied
    manifest = upgrade_manifest(world, target={"kubernetesVersion": "1.32"})
    apply(world, manifest)
    # Then it is Blocked before anything is created, naming the count and the first findings
    body = await wait_for(management, manifest, phase_is("Blocked"), timeout=60, operator=operator,
                          what="preflight to block")
    found = preflight_of(body)
    places = sorted(finding["where"] for finding in found["findings"])
    assert len(places) == 2, found
    assert places[0].startswith("in GitRepository fleet/fleet-infra"), places
    assert places[1].startswith("live on prod-blue"), places
    assert "flowcontrol.apiserver.k8s.io/v1beta3" in places[1] and "kustomize-controller" in places[1]
    assert all(f["kind"] == "FlowSchema" and f["removedIn"] == "1.32" for f in found["findings"])
    message = body["status"]["message"]
    assert "2 object(s) use APIs removed by 1.32" in message and "FlowSchema batch-jobs" in message
    names = {c["name"] for c in (await world.control("GET", "/clusters"))["clusters"]}
    assert names == {"prod-blue"}, "nothing is created while blocked"

    # When the manifest is fixed (Flux rewrites the object through v1) and the person asks again
    await commit(world, "main@sha1:" + "c" * 40, {"apps/flowschema.yaml": FLOW_SCHEMA.format(version="v1")})

    async def rewritten() -> bool:
        current = await blue.get(FLOW_SCHEMAS_V1, name="batch-jobs") or {}
        managers = current.get("metadata", {}).get("managedFields") or []
        return bool(managers) and all(entry.get("apiVersion") != "flowcontrol.apiserver.k8s.io/v1beta3"
                                      for entry in managers)

    await eventually(rewritten, timeout=20, what="Flux to rewrite the FlowSchema through v1")
    harness.kubectl(world.kubeconfig, "annotate", "cu", "demo", "-n", "fleet", "bluegreen.io/retry=1")
    # Then preflight runs again, finds nothing and the upgrade goes on to the end
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "RolledBack"), timeout=120,
                          operator=operator, what="the upgrade to finish after the retry")
    assert body["status"]["phase"] == "Completed", body["status"]
    assert preflight_of(body).get("findings", []) == [] and preflight_of(body).get("findingsTotal", 0) == 0


async def test_auto_chooses_in_place_for_one_clean_minor_and_upgrades_the_cluster_itself(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    manifest = upgrade_manifest(world, strategy="Auto")
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "Blocked"), timeout=90,
                          operator=operator, what="the Auto upgrade to finish")
    status = body["status"]
    assert status["phase"] == "Completed", status
    choice = status["preflight"]["strategy"]
    assert choice["chosen"] == "InPlace"
    assert "one minor: 1.30 to 1.31" in choice["reasons"]
    clusters = {c["name"]: c for c in (await world.control("GET", "/clusters"))["clusters"]}
    assert set(clusters) == {"prod-blue"}, "in place: no green cluster"
    assert clusters["prod-blue"]["version"] == "v1.31.0"
    assert [e["action"] for e in status["journal"] if e["target"] == "cluster"] == ["upgrade"]
    plan = plan_of(world)
    assert "InPlace" in plan and "one minor: 1.30 to 1.31" in plan


async def test_auto_chooses_blue_green_when_the_source_uses_a_removed_api(
    world: harness.WorldProcess, operator: Operator, management: KubeClient, blue: KubeClient
) -> None:
    await commit(world, "main@sha1:" + "d" * 40, {"apps/flowschema.yaml": FLOW_SCHEMA.format(version="v1beta3")})
    await eventually(lambda: blue.get(FLOW_SCHEMAS_V1, name="batch-jobs"), timeout=20, what="Flux to apply it")
    manifest = upgrade_manifest(world, strategy="Auto", target={"kubernetesVersion": "1.32"},
                                preflight={"removedAPIs": "Warn"})
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Provisioning", "Syncing", "Blocked", "Failed"),
                          timeout=60, operator=operator, what="Auto to choose")
    status = body["status"]
    assert status["phase"] != "Blocked", status["message"]
    choice = status["preflight"]["strategy"]
    assert choice["chosen"] == "BlueGreen"
    assert any("use APIs 1.32 no longer serves" in reason for reason in choice["reasons"]), choice
    plan = plan_of(world)
    assert "BlueGreen" in plan and "FlowSchema" in plan


@pytest.mark.world_args("--blue-version", "v1.28.3")
async def test_in_place_goes_through_three_minors_one_rollout_at_a_time(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    manifest = upgrade_manifest(world, strategy="InPlace", inPlace={"betweenMinors": [{"pause": {"duration": "1s"}}]})
    del manifest["spec"]["traffic"]  # in place moves no traffic
    # The versions the cluster asks for, as a watch on the management cluster sees them.
    seen: list[str] = []
    stop = asyncio.Event()

    async def watch_versions() -> None:
        cluster = Resource("cluster.x-k8s.io", "v1beta2", "clusters")
        while not stop.is_set():
            found = await management.get(cluster, namespace="fleet", name="prod-blue") or {}
            version = ((found.get("spec") or {}).get("topology") or {}).get("version")
            if version and (not seen or seen[-1] != version):
                seen.append(version)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_versions())
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "Blocked"), timeout=120,
                          operator=operator, what="three in-place minors")
    stop.set()
    await watcher
    status = body["status"]
    assert status["phase"] == "Completed", status
    assert seen == ["v1.28.3", "v1.29.0", "v1.30.0", "v1.31.0"], seen
    assert status["inPlace"]["path"] == ["1.29", "1.30", "1.31"]
    upgrades = [e["detail"] for e in status["journal"] if e["target"] == "cluster" and e["action"] == "upgrade"]
    assert len(upgrades) == 3, upgrades
    reasons = [e["reason"] for e in (await management.list(Resource("", "v1", "events"), namespace="fleet"))
               if e["involvedObject"]["name"] == "demo"]
    assert reasons.count("MinorRolledOut") == 3


async def test_a_handoff_moves_a_statefulset_to_green_before_traffic_and_it_never_runs_on_both(
    world: harness.WorldProcess, operator: Operator, management: KubeClient, blue: KubeClient
) -> None:
    # Given Flux runs Elasticsearch's data nodes (a StatefulSet with volume claims) on blue
    await commit(world, "main@sha1:" + "e" * 40, {"apps/elasticsearch.yaml": ELASTICSEARCH})

    async def running(client: KubeClient) -> int:
        found = await client.get(STATEFULSETS, namespace="search", name="es-data") or {}
        return int((found.get("status") or {}).get("replicas") or 0)

    await eventually(lambda: _equals(running(blue), 3), timeout=20, what="es-data to run on blue")
    # When an upgrade hands it over to green before any traffic moves
    manifest = upgrade_manifest(world, preflight={"stateful": "Handoff"}, hooks=[
        {"name": "es-move", "at": "BeforeTraffic",
         "handoff": {"kind": "StatefulSet", "namespace": "search", "name": "es-data", "timeout": "1m"}}])
    samples: list[tuple[int, int]] = []
    stop = asyncio.Event()

    async def sample() -> None:
        green: KubeClient | None = None
        while not stop.is_set():
            if green is None and await management.get(SECRETS, namespace="fleet", name="prod-green-kubeconfig"):
                green = await cluster_client(management, "prod-green")
            try:
                samples.append((await running(blue), await running(green) if green is not None else 0))
            except Exception:  # blue is deleted at the end
                break
            await asyncio.sleep(0.02)
        if green is not None:
            await green.close()

    sampler = asyncio.create_task(sample())
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "RolledBack"), timeout=120,
                          operator=operator, what="the upgrade with a handoff to finish")
    stop.set()
    await sampler
    status = body["status"]
    assert status["phase"] == "Completed", status
    # Then preflight listed it with its handoff, the hook succeeded, and it never ran on both clusters
    stateful = status["preflight"]["statefulWorkloads"]
    assert {"kind": "StatefulSet", "namespace": "search", "name": "es-data"}.items() <= stateful[0].items()
    assert stateful[0]["handoff"] == "es-move"
    assert [(h["name"], h["phase"]) for h in status["hooks"]] == [("es-move", "Succeeded")]
    assert all(not (on_blue > 0 and on_green > 0) for on_blue, on_green in samples), samples
    assert any(on_green == 3 for _, on_green in samples), "green ran it"
    first_traffic = next(e["time"] for e in status["journal"] if e["action"] == "setWeights"
                         and e.get("weights", {}).get("green", 0) > 0)
    hook_done = next(e["time"] for e in reversed(status["journal"]) if e["target"] == "hook/es-move")
    assert hook_done <= first_traffic, "the handoff finished before any traffic moved"


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_blocked_upgrade_shows_its_findings_in_kubectl_bluegreen_plan(
    world: harness.WorldProcess, operator: Operator, management: KubeClient, blue: KubeClient
) -> None:
    await commit(world, "main@sha1:" + "f" * 40, {"apps/flowschema.yaml": FLOW_SCHEMA.format(version="v1beta3")})
    await eventually(lambda: blue.get(FLOW_SCHEMAS_V1, name="batch-jobs"), timeout=20, what="Flux to apply it")
    manifest = upgrade_manifest(world, target={"kubernetesVersion": "1.32"})
    apply(world, manifest)
    await wait_for(management, manifest, phase_is("Blocked"), timeout=60, operator=operator, what="Blocked")
    plan = plan_of(world)
    assert "FlowSchema" in plan and "v1beta3" in plan and "batch-jobs" in plan
    got = await management.get(CLUSTER_UPGRADES, namespace="fleet", name="demo")
    assert got is not None and got["status"]["phase"] == "Blocked"

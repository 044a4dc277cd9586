"""A whole ClusterUpgrade through the real operator process, with real requests through real HAProxy.

Given a world with a blue Cluster API cluster, Flux Kustomizations deploying
to it, and HAProxy sending all traffic to it, when a ClusterUpgrade is applied
with kubectl, then the operator provisions green, syncs Flux, and shifts
traffic step by step without a single failed request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest
import yaml

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness
from tests.integration.conftest import Operator, apply, phase_is, upgrade_manifest, wait_for

# Traffic shares, latencies or timings are measured: run with the machine to itself (conftest), except in the
# pause and Flux health tests, which check where the upgrade holds and that no request failed.
pytestmark = [pytest.mark.integration]

KUSTOMIZATIONS = Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
SECRETS = Resource("", "v1", "secrets")
GIT_REPOSITORIES = Resource("source.toolkit.fluxcd.io", "v1", "gitrepositories")


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for found in (body.get("status") or {}).get("conditions") or []:
        if found["type"] == type_:
            return dict(found)
    return {}


async def clusters(world: harness.WorldProcess) -> list[dict[str, Any]]:
    return list((await world.control("GET", "/clusters"))["clusters"])


async def kubeconfig_tokens(management: KubeClient, *names: str) -> set[str]:
    """The bearer tokens in the workload clusters' kubeconfig Secrets: what must never be shown."""
    tokens = set()
    for name in names:
        secret = await management.get(SECRETS, namespace="fleet", name=f"{name}-kubeconfig")
        assert secret is not None, f"{name}-kubeconfig"
        config = yaml.safe_load(base64.b64decode(secret["data"]["value"]))
        tokens.update(user["user"]["token"] for user in config["users"] if user["user"].get("token"))
    assert tokens
    return tokens


@pytest.mark.alone
async def test_full_upgrade_moves_traffic_step_by_step_without_a_failed_request(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given the demo upgrade (10, 25, 50, 100 with short pauses)
    manifest = upgrade_manifest(world)
    secrets = await kubeconfig_tokens(management, "prod-blue")
    # When it is applied
    apply(world, manifest)
    await wait_for(management, manifest, phase_is("Shifting"), timeout=60, operator=operator, what="Shifting")
    secrets |= await kubeconfig_tokens(management, "prod-green")
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "RolledBack"), timeout=120,
                          operator=operator, what="the upgrade to finish")
    end = time.time()
    # Then it completed, blue is gone, green serves everything
    status = body["status"]
    assert status["phase"] == "Completed", status
    assert status["weights"] == {"blue": 0, "green": 100, "verified": True}
    names = {c["name"]: c for c in await clusters(world)}
    assert "prod-blue" not in names, "blue's Cluster was deleted at retirement"
    assert names["prod-green"]["version"] == "v1.31.0"
    # and no request failed, and each step's measured share matches its weight
    summary = await world.control("GET", "/traffic")
    assert summary["requests"] > 200 and summary["failed"] == 0, summary
    windows = harness.weight_windows(status["journal"], end=end)
    assert [green for green, _, _ in windows] == [10, 25, 50, 100], "the journal records every change, once"
    for green, since, until in windows[:-1]:
        window = await world.control("GET", f"/traffic?since={since}&until={until}")
        answered = sum(window["by_cluster"].values())
        assert answered >= 20, f"too few requests in the {green}% window to judge: {window}"
        blue_share = 100 * window["by_cluster"].get("prod-blue", 0) / answered
        assert abs(blue_share - (100 - green)) <= 5, f"step green={green}%: blue answered {blue_share:.1f}%"
    # and green's Kustomizations are Ready at the revision blue had
    source = await management.get(GIT_REPOSITORIES, namespace="fleet", name="fleet-infra")
    assert source is not None
    revision = source["status"]["artifact"]["revision"]
    green_ks = await management.list(KUSTOMIZATIONS, namespace="fleet",
                                     label_selector={"bluegreen.io/cluster": "prod-green"})
    assert len(green_ks) == 2
    for kustomization in green_ks:
        ready = [c for c in kustomization["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        assert kustomization["status"]["lastAppliedRevision"] == revision
        assert kustomization["spec"]["kubeConfig"]["secretRef"]["name"] == "prod-green-kubeconfig"
    blue_ks = await management.list(KUSTOMIZATIONS, namespace="fleet",
                                    label_selector={"bluegreen.io/cluster": "prod-blue"})
    assert blue_ks == [], "blue's Kustomizations were removed before blue was deleted"
    # and every transition was told as an Event
    events = json.loads(harness.kubectl(world.kubeconfig, "get", "events", "-n", "fleet", "-o", "json"))["items"]
    told = [event for event in events if event["involvedObject"]["kind"] == "ClusterUpgrade"]
    assert len(told) >= 8
    # and no Event, status or operator log line carries the clusters' credentials
    shown = {"events": json.dumps(told), "status": json.dumps(status), "operator log": operator.log()}
    for where, text in shown.items():
        assert not [token for token in secrets if token in text], f"a kubeconfig token is in the {where}"


@pytest.mark.without_prometheus
async def test_pause_without_duration_waits_for_promote(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given an upgrade with a pause that waits for a human after 25 %
    manifest = upgrade_manifest(world)
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Paused"), timeout=60, operator=operator,
                          what="the pause for a human")
    assert body["status"]["weights"]["green"] == 25
    await asyncio.sleep(2)
    body = await wait_for(management, manifest, lambda b: True, timeout=5)
    assert body["status"]["phase"] == "Paused", "a pause without duration holds until promoted"
    # When a person promotes it
    harness.kubectl(world.kubeconfig, "annotate", "clusterupgrade", "demo", "-n", "fleet", "bluegreen.io/promote=step")
    # Then it goes on to 100 % and completes
    body = await wait_for(management, manifest, phase_is("Completed"), timeout=60, operator=operator,
                          what="completion after promote")
    assert "bluegreen.io/promote" not in (body["metadata"].get("annotations") or {}), "the request was consumed"
    assert (await world.control("GET", "/traffic"))["failed"] == 0


@pytest.mark.alone
@pytest.mark.without_prometheus
async def test_abort_at_50_percent_brings_blue_back_to_100(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    manifest = upgrade_manifest(world)
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    apply(world, manifest)
    await wait_for(management, manifest, lambda b: (b.get("status") or {}).get("weights", {}).get("green") == 50,
                   timeout=60, operator=operator, what="green at 50%")
    # When the upgrade is aborted
    harness.kubectl(world.kubeconfig, "annotate", "clusterupgrade", "demo", "-n", "fleet", "bluegreen.io/abort=true")
    body = await wait_for(management, manifest, phase_is("RolledBack"), timeout=30, operator=operator,
                          what="the rollback")
    rolled_back_at = time.time()
    # Then blue serves everything again, and nothing failed
    assert body["status"]["weights"] == {"blue": 100, "green": 0, "verified": True}
    await asyncio.sleep(2)
    after = await world.control("GET", f"/traffic?since={rolled_back_at + 0.25}")
    assert after["by_cluster"].get("prod-green", 0) == 0 and after["by_cluster"].get("prod-blue", 0) > 0
    assert (await world.control("GET", "/traffic"))["failed"] == 0
    assert {c["name"] for c in await clusters(world)} >= {"prod-blue", "prod-green"}, "both clusters kept"


@pytest.mark.alone
@pytest.mark.without_prometheus
async def test_operator_killed_during_shifting_resumes_with_one_green(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    manifest = upgrade_manifest(world)
    manifest["spec"]["traffic"]["steps"] = [{"setWeight": 10}, {"pause": {"duration": "3s"}}, {"setWeight": 50},
                                            {"pause": {"duration": "3s"}}, {"setWeight": 100}]
    manifest["spec"]["promotion"]["retainBlueFor"] = "1s"  # blue's retirement is not what is tested here
    apply(world, manifest)
    await wait_for(management, manifest, phase_is("Shifting"), timeout=60, operator=operator, what="shifting")
    # When the operator dies with SIGKILL in the middle of the shift
    operator.kill()
    killed = await wait_for(management, manifest, lambda b: True, timeout=5)
    weight_at_kill = killed["status"]["weights"]["green"]
    await asyncio.sleep(1)
    operator.start()
    # Then a new operator process resumes from status alone and completes
    body = await wait_for(management, manifest, phase_is("Completed"), timeout=90, operator=operator,
                          what="completion after a restart")
    greens = [c for c in await clusters(world) if c["name"] != "prod-blue"]
    assert [c["name"] for c in greens] == ["prod-green"], "exactly one green cluster"
    creates = [e for e in body["status"]["journal"] if e["target"] == "cluster" and e["action"] == "create"]
    assert len(creates) <= 1
    weights = [e["weights"]["green"] for e in body["status"]["journal"] if e["action"] == "setWeights"]
    assert weights == sorted(weights), f"traffic never moved back: {weights}"
    assert weights == sorted(set(weights)), f"each weight recorded once: {weights}"
    assert weights[-1] == 100 and (weight_at_kill == 0 or weight_at_kill in weights)
    assert (await world.control("GET", "/traffic"))["failed"] == 0


@pytest.mark.without_prometheus
async def test_green_flux_health_failing_keeps_traffic_on_blue_and_says_why(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given green's Flux health checks fail
    await world.control("POST", "/flux/failing", {"target": "prod-green", "failing": True})
    manifest = upgrade_manifest(world)
    apply(world, manifest)
    # Then the upgrade holds in Syncing with a condition naming the failing Kustomization
    body = await wait_for(
        management, manifest,
        lambda b: "HealthCheckFailed" in condition(b, "WorkloadsInSync").get("message", ""),
        timeout=60, operator=operator, what="a WorkloadsInSync condition with the health failure",
    )
    assert body["status"]["phase"] == "Syncing"
    assert condition(body, "WorkloadsInSync")["status"] == "False"
    await asyncio.sleep(2)
    summary = await world.control("GET", "/traffic")
    assert summary["by_cluster"].get("prod-green", 0) == 0, "no request reached green"
    assert summary["failed"] == 0
    # When the health checks pass again, the upgrade proceeds on its own
    await world.control("POST", "/flux/failing", {"target": "prod-green", "failing": False})
    await wait_for(management, manifest, phase_is("Shifting", "Promoted", "Completed"), timeout=60, operator=operator,
                   what="shifting once green is healthy")

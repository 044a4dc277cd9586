"""Bad input through kubectl and the operator process: refused with the field named, before anything is created.

Given the demo world (blue prod-blue at 1.30 behind HAProxy), when ClusterUpgrades
with bad specs are applied with kubectl, then what the CRD schema can check is
refused by kubectl itself, naming the field; what only the operator can check
(across fields, or against the world) is held with a condition naming the field,
and no green Cluster, no Kustomization copy and no HAProxy weight change is made.
And an upgrade under way whose target version is changed holds with its weights
untouched until the change is undone, then completes.
"""

from __future__ import annotations

import asyncio
import copy
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness
from tests.integration.conftest import Operator, apply, phase_is, upgrade_manifest, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.without_prometheus]

KUSTOMIZATIONS = Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")


def named(manifest: dict[str, Any], name: str, **spec_changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(manifest)
    changed["metadata"]["name"] = name
    changed["spec"].update(spec_changes)
    return changed


def refused_by_kubectl(world: harness.WorldProcess, manifest: dict[str, Any]) -> str:
    with pytest.raises(RuntimeError) as refused:
        apply(world, manifest)
    return str(refused.value)


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(c) for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def held_for(type_: str, reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: condition(body, type_).get("reason") == reason


async def green_weight(world: harness.WorldProcess) -> int:
    """HAProxy's own word: the weight of green's server, read on its runtime API."""
    address = urllib.parse.urlparse(world.info["haproxy"]["runtime_api"])
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(b"get weight app/prod-green\n")
    await writer.drain()
    reply = (await reader.read()).decode()
    writer.close()
    return int(reply.split()[0])  # "10 (initial 0)"


async def test_bad_specs_are_refused_naming_the_field_and_nothing_is_created(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    demo = upgrade_manifest(world)
    router = demo["spec"]["traffic"]["routers"][0]
    weight_before = await green_weight(world)
    # Given specs the CRD schema refuses, when they are applied, then kubectl says which field
    schema_cases = {
        "spec.traffic.steps[0].setWeight": named(demo, "weight", traffic={
            "routers": [router], "steps": [{"setWeight": 150}, {"setWeight": 100}]}),
        "spec.traffic.routers[0].nginx": named(demo, "router-kind", traffic={
            "routers": [{"nginx": {"upstream": "app"}}], "steps": [{"setWeight": 100}]}),
        "spec.cluster.provider": named(demo, "provider", cluster={**demo["spec"]["cluster"], "provider": "gke"}),
        "spec.traffic.steps[1].pause.duration": named(demo, "duration", traffic={
            "routers": [router], "steps": [{"setWeight": 10}, {"pause": {"duration": "5 minutes"}},
                                           {"setWeight": 100}]}),
    }
    for field, manifest in schema_cases.items():
        assert field in refused_by_kubectl(world, manifest), field
    # Given specs only the operator can judge, when they are applied, then each is held naming its field
    operator_cases = {
        "green-is-blue": (named(demo, "green-is-blue", target={"kubernetesVersion": "1.31", "greenName": "prod-blue"}),
                          "InvalidSpec", "spec.target.greenName"),
        "never-100": (named(demo, "never-100", traffic={"routers": [router],
                                                        "steps": [{"setWeight": 10}, {"setWeight": 50}]}),
                      "InvalidSpec", "spec.traffic.steps"),
        "going-down": (named(demo, "going-down", traffic={
            "routers": [router], "steps": [{"setWeight": 50}, {"setWeight": 10}, {"setWeight": 100}]}),
            "InvalidSpec", "spec.traffic.steps[1].setWeight"),
        "older": (named(demo, "older", target={"kubernetesVersion": "1.29", "greenName": "older-green"}),
                  "PreflightFailed", "spec.target.kubernetesVersion"),
        "no-secret": (named(demo, "no-secret", target={"kubernetesVersion": "1.31", "greenName": "nosecret-green"},
                            traffic={"routers": [router, {"webhook": {
                                "url": "http://127.0.0.1:9/weights",
                                "bearerTokenSecretRef": {"name": "lb-token"}}}],
                                "steps": [{"setWeight": 100}]}),
                      "MissingSecrets", "spec.traffic.routers[1].webhook.bearerTokenSecretRef"),
    }
    for manifest, _, _ in operator_cases.values():
        apply(world, manifest)
    for name, (manifest, reason, field) in operator_cases.items():
        held = "Ready" if reason == "InvalidSpec" else "PreflightPassed"
        body = await wait_for(management, manifest, held_for(held, reason), timeout=30, operator=operator,
                              what=f"{name}: {held} {reason}")
        assert field in condition(body, held)["message"], (name, condition(body, held))
        assert (body["status"].get("phase") or "Pending") in {"Pending", "Blocked"}, (name, body["status"])
    # Then nothing was created and no router was touched
    clusters = [c["name"] for c in (await world.control("GET", "/clusters"))["clusters"]]
    assert clusters == ["prod-blue"], clusters
    copies = [k["metadata"]["name"] for k in await management.list(KUSTOMIZATIONS, namespace="fleet")
              if "bluegreen.io/upgrade" in (k["metadata"].get("labels") or {})]
    assert copies == [], copies
    assert await green_weight(world) == weight_before
    # And once the Secret exists, the upgrade that lacked it goes on by itself past preflight
    harness.kubectl(world.kubeconfig, "create", "secret", "generic", "lb-token", "-n", "fleet",
                    "--from-literal=token=not-a-real-token")
    no_secret = operator_cases["no-secret"][0]
    await wait_for(management, no_secret, lambda b: condition(b, "PreflightPassed").get("reason") != "MissingSecrets",
                   timeout=60, operator=operator, what="preflight again once the Secret exists")


async def test_a_new_target_version_mid_shift_is_refused_until_set_back(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given an upgrade held by a human pause at 10 %
    demo = upgrade_manifest(world)
    demo["spec"]["traffic"]["steps"] = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]
    apply(world, demo)
    await wait_for(management, demo, phase_is("Paused"), timeout=60, operator=operator, what="the pause at 10 %")
    assert await green_weight(world) == 10
    # When the target version is changed, and a person asks to go on
    changed = copy.deepcopy(demo)
    changed["spec"]["target"]["kubernetesVersion"] = "1.32"
    apply(world, changed)
    body = await wait_for(management, demo, lambda b: condition(b, "Progressing").get("reason") == "UnsafeSpecChange",
                          timeout=30, operator=operator, what="the change refused")
    harness.kubectl(world.kubeconfig, "annotate", "clusterupgrade", "demo", "-n", "fleet",
                    "bluegreen.io/promote=step")
    await asyncio.sleep(3)  # passes run on the annotation's change; none may act
    # Then nothing moves, and the condition says what is in effect and how to get back to it
    message = condition(body, "Progressing")["message"]
    assert 'spec.target.kubernetesVersion is "1.32" but the upgrade under way uses "1.31": set it back to "1.31"' \
        in message
    now = await management.get(Resource("bluegreen.io", "v1alpha1", "clusterupgrades"), namespace="fleet",
                               name="demo")
    assert now is not None
    assert now["status"]["phase"] == "Paused" and now["status"]["weights"]["green"] == 10
    assert await green_weight(world) == 10
    warnings = yaml.safe_load(harness.kubectl(world.kubeconfig, "get", "events", "-n", "fleet", "-o", "yaml",
                                              "--field-selector", "reason=UnsafeSpecChange"))["items"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
    # When it is set back, then the promote it was holding goes through and the upgrade completes
    apply(world, demo)
    body = await wait_for(management, demo, phase_is("Completed", "Failed", "RolledBack"), timeout=90,
                          operator=operator, what="the upgrade to finish")
    assert body["status"]["phase"] == "Completed", body["status"]
    assert body["status"]["weights"]["green"] == 100

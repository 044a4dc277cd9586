"""EKS Anywhere with Flux in git mode, end to end: the seed scenario.

Given an EKS-A vSphere cluster whose own Flux syncs clusters/prod-blue/ of an
environment repository (a real bare git repository served over HTTP with basic
auth), and HAProxy in front of it, when the complete EKS-A example is applied,
then green is created with its machine configs, green's directory is committed,
green's own Flux applies that commit, traffic moves without a failed request,
and blue's directory and cluster go away.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from bluegreen.kube.client import KubeClient, Resource
from bluegreen.sim import harness
from tests.integration.conftest import ROOT, Operator, apply, phase_is, wait_for

# Only the whole upgrade measures traffic (marked alone: the machine to itself, see conftest); the preflight
# refusals and the in-place upgrade move no traffic and run two at a time with the rest.
pytestmark = [pytest.mark.integration, pytest.mark.eksa]

EKSA = "anywhere.eks.amazonaws.com"
MACHINE_CONFIGS = Resource(EKSA, "v1alpha1", "vspheremachineconfigs")
SECRETS = Resource("", "v1", "secrets")


@pytest.fixture
def world(tmp_path: pathlib.Path) -> Iterator[harness.WorldProcess]:
    if shutil.which("haproxy") is None and not pathlib.Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy is not installed; `make test` installs it (hack/install-system-deps.sh)")
    started = harness.start_world(tmp_path / "world", args=(
        "--provider", "eksa", "--provision-delay", "1", "--no-prometheus"))
    try:
        harness.kubectl(started.kubeconfig, "apply", "-k", str(ROOT / "crds"))
        yield started
    finally:
        started.stop()


def eksa_manifest(world: harness.WorldProcess, **git_changes: Any) -> dict[str, Any]:
    """The committed EKS-A example with the world's addresses and test timings."""
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "clusterupgrade-eksa.yaml").read_text())
    spec = manifest["spec"]
    spec["traffic"]["routers"][0]["haproxy"]["runtimeAPI"] = world.info["haproxy"]["runtime_api"]
    git = spec["workloads"]["flux"]["git"]
    git.update({"url": world.info["git"]["http_url"], "secretRef": {"name": world.info["git"]["secret"]}})
    git.update(git_changes)
    spec["traffic"]["steps"] = [{"setWeight": 10}, {"pause": {"duration": "2s"}}, {"setWeight": 50},
                                {"pause": {"duration": "2s"}}, {"setWeight": 100}]
    spec["promotion"]["retainBlueFor"] = "2s"
    return manifest


def git(world: harness.WorldProcess, *args: str) -> str:
    repository = world.info["git"]["file_url"].removeprefix("file://")
    return subprocess.run(["git", "--git-dir", repository, *args], check=True, capture_output=True,
                          text=True).stdout


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(c) for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


async def cluster_names(world: harness.WorldProcess) -> set[str]:
    return {c["name"] for c in (await world.control("GET", "/clusters"))["clusters"]}


@pytest.mark.alone
async def test_eksa_git_mode_upgrade_with_traffic_and_no_failed_request(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    before = git(world, "rev-parse", "main").strip()
    # a colleague pushes right before bluegreen's first push: bluegreen must rebuild on top, never force
    await world.control("POST", "/git/concurrent-push", {"path": "README.md", "text": "hello\n"})
    manifest = eksa_manifest(world)
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "RolledBack"), timeout=150,
                          operator=operator, what="the EKS-A upgrade to finish")
    status = body["status"]
    assert status["phase"] == "Completed", status
    # green exists with its own machine configs; blue is gone, and its machine configs, which a person
    # created (not bluegreen), are kept, with the journal saying so
    assert await cluster_names(world) == {"prod-green"}
    configs = {c["metadata"]["name"] for c in await management.list(MACHINE_CONFIGS, namespace="eksa-clusters")}
    assert {"prod-green-cp", "prod-green-md-0"} <= configs
    deleted = [e["detail"] for e in status["journal"] if e["target"] == "cluster" and e["action"] == "delete"]
    assert deleted and "prod-blue-cp" in deleted[0] and "not created by bluegreen" in deleted[0], deleted
    # the repository: green's copy with the substitution, blue's directory removed, nothing forced
    log = git(world, "log", "--format=%H %an %s", "main").splitlines()
    subjects = [line.split(" ", 2)[2] for line in log]
    assert any("colleague" in subject for subject in subjects), "the concurrent commit survived"
    assert before in git(world, "rev-list", "main").split(), "history was not rewritten"
    tree = git(world, "ls-tree", "-r", "--name-only", "main").split()
    assert not any(path.startswith("clusters/prod-blue/") for path in tree)
    assert "clusters/prod-green/apps/workload-mapping.yaml" in tree or any(
        path.startswith("clusters/prod-green/apps/") for path in tree)
    green_files = "".join(git(world, "show", f"main:{path}") for path in tree
                          if path.startswith("clusters/prod-green/") and "flux-system" not in path)
    assert "prod-green.example.com" in green_files and "prod-blue.example.com" not in green_files
    # traffic: no failure, and it went to green in the end
    summary = await world.control("GET", "/traffic")
    assert summary["failed"] == 0 and summary["by_cluster"].get("prod-green", 0) > 0, summary
    journal_details = " ".join(entry.get("detail", "") for entry in status["journal"])
    assert "commit" in journal_details.lower()


async def test_missing_git_credentials_stop_before_any_cluster_is_created(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    manifest = eksa_manifest(world, secretRef={"name": "no-such-secret"})
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Blocked"), timeout=60, operator=operator,
                          what="Blocked on missing credentials")
    message = condition(body, "PreflightPassed")["message"]
    assert "no-such-secret" in message, message
    assert await cluster_names(world) == {"prod-blue"}, "no cluster was created"
    # When the spec names the Secret that exists, preflight runs again by itself and the upgrade proceeds
    manifest["spec"]["workloads"]["flux"]["git"]["secretRef"]["name"] = world.info["git"]["secret"]
    apply(world, manifest)
    await wait_for(management, manifest, phase_is("Provisioning", "Syncing", "Shifting", "Promoted", "Completed"),
                   timeout=60, operator=operator, what="preflight passing after the fix")


async def test_unreachable_repository_stops_before_any_cluster_is_created(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    manifest = eksa_manifest(world, url="http://127.0.0.1:9/env.git")
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Blocked"), timeout=60, operator=operator,
                          what="Blocked on an unreachable repository")
    message = condition(body, "PreflightPassed")["message"]
    assert "127.0.0.1:9" in message, message
    assert await cluster_names(world) == {"prod-blue"}


async def test_vsphere_needs_its_own_endpoint_and_preflight_names_the_override(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    manifest = eksa_manifest(world)
    manifest["spec"]["target"]["overrides"] = {}
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Blocked"), timeout=60, operator=operator,
                          what="Blocked on the endpoint")
    message = condition(body, "PreflightPassed")["message"]
    assert "spec.target.overrides.controlPlaneConfiguration.endpoint.host" in message, message
    assert await cluster_names(world) == {"prod-blue"}


@pytest.mark.preflight
async def test_auto_upgrades_an_eksa_cluster_in_place_when_one_clean_minor_is_asked(
    world: harness.WorldProcess, operator: Operator, management: KubeClient
) -> None:
    # Given the EKS-A example (blue at 1.30, target 1.31, git mode) asking Auto to choose
    manifest = eksa_manifest(world)
    manifest["spec"]["strategy"] = "Auto"
    apply(world, manifest)
    body = await wait_for(management, manifest, phase_is("Completed", "Failed", "Blocked", "RolledBack"),
                          timeout=90, operator=operator, what="the Auto upgrade to finish")
    # Then preflight read the repository and blue, found nothing removed, and chose to upgrade in place
    status = body["status"]
    assert status["phase"] == "Completed", status
    assert status["preflight"]["strategy"]["chosen"] == "InPlace", status["preflight"]
    assert status["preflight"].get("problems", []) == [], "the repository was scanned"
    assert await cluster_names(world) == {"prod-blue"}, "no green cluster in place"
    blue = next(c for c in (await world.control("GET", "/clusters"))["clusters"] if c["name"] == "prod-blue")
    assert blue["version"] == "1.31"
    assert [e["action"] for e in status["journal"] if e["target"] == "cluster"] == ["upgrade"]

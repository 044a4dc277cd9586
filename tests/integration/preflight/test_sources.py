"""The source scan against the management emulator, artifacts really served over HTTP, and a real git repository.

Given blue's Kustomizations whose GitRepository (or OCIRepository) artifact
holds manifests that use removed APIs, when the sources are scanned for an
upgrade, then each removed object is found with the source and path it came
from, each artifact is downloaded once, and every way a source cannot be read
(no artifact, a wrong digest, an unreachable server, a path Flux could not
build, too little time) is a problem naming it rather than an exception or a
silent pass. In git mode the same holds for blue's directories of the
environment repository.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import shutil
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest

from bluegreen.api import spec as api
from bluegreen.kube.client import KubeClient
from bluegreen.preflight.findings import Finding
from bluegreen.preflight.sources import scan_sources
from bluegreen.sim import artifacts, flux, harness
from bluegreen.sim.kube import KubeEmulator
from tests.fixtures import gitops

pytestmark = [
    pytest.mark.integration,
    pytest.mark.preflight,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl kustomize renders kustomizations"),
]

NAMESPACE = "fleet"
BLUE = "prod-blue"
SELECTOR = {"bluegreen.io/cluster": BLUE}
PLACEHOLDER = "main@sha1:0000000000000000000000000000000000000000"
APPS = "in GitRepository fleet/fleet-infra at ./apps"
INFRA = "in GitRepository fleet/fleet-infra at ./infra"

PDB = """\
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata:
  name: web
  namespace: shop
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
"""
FLOW_SCHEMA = """\
apiVersion: flowcontrol.apiserver.k8s.io/v1beta2
kind: FlowSchema
metadata:
  name: batch-jobs
spec:
  priorityLevelConfiguration: {name: workload-low}
  matchingPrecedence: 1000
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"""
CRONJOB = """\
apiVersion: batch/v1beta1
kind: CronJob
metadata:
  name: report
  namespace: jobs
spec:
  schedule: "0 * * * *"
  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}}
"""
# apps/ is a kustomization (rendered with kubectl kustomize); infra/ is a plain directory Flux reads file by file.
REPOSITORY = {
    "apps/kustomization.yaml": "resources: [deployment.yaml, pdb.yaml, flowschema.yaml]\n",
    "apps/deployment.yaml": DEPLOYMENT,
    "apps/pdb.yaml": PDB,
    "apps/flowschema.yaml": FLOW_SCHEMA,
    "infra/jobs/cronjob.yaml": CRONJOB,
    "infra/notes.txt": "not a manifest\n",
    "other/cronjob.yaml": CRONJOB.replace("report", "elsewhere"),
}


@dataclasses.dataclass
class World:
    management: KubeEmulator
    client: KubeClient
    server: artifacts.ArtifactServer
    tmp: pathlib.Path

    def tree(self, files: Mapping[str, str], name: str = "checkout") -> pathlib.Path:
        artifacts.write_tree(self.tmp / name, files)
        return self.tmp / name

    def source(self, name: str, files: Mapping[str, str]) -> dict[str, Any]:
        """A GitRepository whose artifact (really served) holds ``files``."""
        flux.seed_source(self.management, namespace=NAMESPACE, name=name, revision=PLACEHOLDER)
        return artifacts.publish_source(self.management, self.server, namespace=NAMESPACE, name=name,
                                        directory=self.tree(files, name))

    def kustomization(self, name: str, *, source: str, path: str, labels: Mapping[str, str] = SELECTOR,
                      kind: str = "GitRepository") -> None:
        manifest = flux.kustomization_manifest(namespace=NAMESPACE, name=name, source=source, path=path,
                                               cluster=BLUE, labels=labels)
        manifest["spec"]["sourceRef"]["kind"] = kind
        self.management.create(flux.KUSTOMIZATIONS, manifest)

    def artifact(self, name: str, **changes: str) -> None:
        """Change the GitRepository's ``status.artifact`` fields (what source-controller reports)."""
        self.management.patch(flux.GIT_REPOSITORIES, NAMESPACE, name, {"status": {"artifact": changes}},
                              subresource="status")

    async def scan(self, *, current: str = "1.24", target: str = "1.29", timeout: float = 20.0,
                   **flux_spec: Any) -> tuple[list[Finding], list[str]]:
        return await scan_sources(upgrade_spec(**flux_spec), management=self.client, current=current,
                                  target=target, workdir=self.tmp / "operator", timeout=timeout)


def upgrade_spec(**flux_spec: Any) -> api.ClusterUpgradeSpec:
    return api.ClusterUpgradeSpec.model_validate({
        "strategy": "InPlace",
        "cluster": {"provider": "capi", "name": BLUE, "namespace": NAMESPACE},
        "target": {"kubernetesVersion": "1.29"},
        "workloads": {"flux": flux_spec or {"selector": {"matchLabels": SELECTOR}}},
    })


def seen(findings: list[Finding]) -> list[tuple[str, str, str, str]]:
    return sorted((finding.api_version, finding.kind, finding.name, finding.where) for finding in findings)


@pytest.fixture
async def world(tmp_path: pathlib.Path) -> AsyncIterator[World]:
    management = KubeEmulator(name="management", kubernetes_version="1.24")
    await management.start()
    flux.install(management)
    management.create("v1/namespaces", {"metadata": {"name": NAMESPACE}})
    server = artifacts.ArtifactServer()
    await server.start()
    client = KubeClient.from_kubeconfig(management.kubeconfig())
    try:
        yield World(management=management, client=client, server=server, tmp=tmp_path)
    finally:
        await client.close()
        await server.stop()
        await management.stop()


# --- remote mode ------------------------------------------------------------------------------------


async def test_removed_apis_are_found_in_a_rendered_kustomization_and_a_plain_directory(world: World) -> None:
    world.source("fleet-infra", REPOSITORY)
    world.kustomization("apps-prod-blue", source="fleet-infra", path="./apps")
    world.kustomization("infra-prod-blue", source="fleet-infra", path="./infra")

    findings, problems = await world.scan()

    assert problems == []
    assert seen(findings) == [
        ("batch/v1beta1", "CronJob", "report", f"{INFRA}, file infra/jobs/cronjob.yaml"),
        ("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema", "batch-jobs", f"{APPS}, kustomization apps"),
        ("policy/v1beta1", "PodDisruptionBudget", "web", f"{APPS}, kustomization apps"),
    ]
    pdb = next(finding for finding in findings if finding.kind == "PodDisruptionBudget")
    assert (pdb.namespace, pdb.removed_in, pdb.replacement) == ("shop", "1.25", "policy/v1")
    assert len(world.server.downloads) == 1  # two Kustomizations, one artifact


@pytest.mark.parametrize(("current", "target", "expected"), [
    ("1.24", "1.25", {"PodDisruptionBudget", "CronJob"}),
    ("1.25", "1.28", set()),
    ("1.28", "1.29", {"FlowSchema"}),
    ("1.24", "1.29", {"PodDisruptionBudget", "CronJob", "FlowSchema"}),
])
async def test_what_is_found_depends_on_the_versions_between_blue_and_the_target(
    world: World, current: str, target: str, expected: set[str]
) -> None:
    world.source("fleet-infra", REPOSITORY)
    world.kustomization("apps-prod-blue", source="fleet-infra", path="./apps")
    world.kustomization("infra-prod-blue", source="fleet-infra", path="infra/")

    findings, problems = await world.scan(current=current, target=target)

    assert problems == []
    assert {finding.kind for finding in findings} == expected


async def test_nothing_is_downloaded_when_no_api_is_removed_between_the_versions(world: World) -> None:
    world.source("fleet-infra", REPOSITORY)
    world.kustomization("apps-prod-blue", source="fleet-infra", path="./apps")

    assert await world.scan(current="1.29", target="1.30") == ([], [])
    assert world.server.downloads == []


async def test_only_blues_kustomizations_are_scanned(world: World) -> None:
    world.source("fleet-infra", REPOSITORY)
    world.kustomization("infra-prod-blue", source="fleet-infra", path="./infra")
    world.kustomization("other-staging", source="fleet-infra", path="./other",
                        labels={"bluegreen.io/cluster": "staging"})

    findings, problems = await world.scan()

    assert problems == []
    assert [finding.name for finding in findings] == ["report"]


async def test_each_source_is_downloaded_once_and_scanned_at_each_path(world: World) -> None:
    world.source("fleet-infra", REPOSITORY)
    world.source("platform", {"policies/pdb.yaml": PDB.replace("name: web", "name: platform")})
    world.kustomization("apps-prod-blue", source="fleet-infra", path="./apps")
    world.kustomization("apps-again-prod-blue", source="fleet-infra", path="apps")
    world.kustomization("platform-prod-blue", source="platform", path="./policies")

    findings, problems = await world.scan(target="1.25")

    assert problems == []
    assert seen(findings) == [
        ("policy/v1beta1", "PodDisruptionBudget", "platform", "in GitRepository fleet/platform at ./policies, "
                                                              "file policies/pdb.yaml"),
        ("policy/v1beta1", "PodDisruptionBudget", "web", f"{APPS}, kustomization apps"),
    ]
    assert sorted(path.split("/")[2] for path in world.server.downloads) == ["fleet-infra", "platform"]


async def test_an_oci_repository_served_at_v1beta2_is_scanned(world: World) -> None:
    world.management.add_resource(group=flux.SOURCE_GROUP, version="v1beta2", plural="ocirepositories",
                                  kind="OCIRepository")
    published = world.server.publish(NAMESPACE, "manifests", world.tree({"pdb.yaml": PDB}), kind="ocirepository")
    world.management.create(f"{flux.SOURCE_GROUP}/v1beta2/ocirepositories", {
        "metadata": {"name": "manifests", "namespace": NAMESPACE},
        "spec": {"url": "oci://registry.example.com/manifests", "interval": "5m"},
    })
    world.management.patch(f"{flux.SOURCE_GROUP}/v1beta2/ocirepositories", NAMESPACE, "manifests", {"status": {
        "artifact": {"url": published.url, "digest": published.digest, "revision": "latest@sha256:abc"}}},
        subresource="status")
    world.kustomization("manifests-prod-blue", source="manifests", path="./", kind="OCIRepository")

    findings, problems = await world.scan()

    assert problems == []
    assert seen(findings) == [("policy/v1beta1", "PodDisruptionBudget", "web",
                               "in OCIRepository fleet/manifests at ./, file pdb.yaml")]


async def test_a_wrong_digest_is_a_problem_and_nothing_is_scanned(world: World) -> None:
    world.source("fleet-infra", REPOSITORY)
    world.kustomization("apps-prod-blue", source="fleet-infra", path="./apps")
    world.artifact("fleet-infra", digest="sha256:" + "ab" * 32)

    findings, problems = await world.scan()

    assert findings == []
    assert len(problems) == 1
    assert problems[0].startswith("Kustomization fleet/apps-prod-blue: the artifact of GitRepository fleet/fleet-infra")
    assert f"not sha256:{'ab' * 32} as the source's status says" in problems[0]


async def test_a_source_without_an_artifact_and_a_missing_source_are_problems(world: World) -> None:
    world.management.create(flux.GIT_REPOSITORIES, {
        "metadata": {"name": "new", "namespace": NAMESPACE},
        "spec": {"url": "https://git.example.com/new.git", "interval": "1m"},
    })
    world.kustomization("new-prod-blue", source="new", path="./")
    world.kustomization("gone-prod-blue", source="gone", path="./")

    findings, problems = await world.scan()

    assert findings == []
    assert sorted(problems) == [
        "Kustomization fleet/gone-prod-blue: its source GitRepository fleet/gone does not exist; create it or fix "
        "spec.sourceRef",
        "Kustomization fleet/new-prod-blue: its source GitRepository fleet/new has no artifact yet (Ready not "
        "reported yet); wait until source-controller has fetched it, then retry the upgrade",
    ]


async def test_an_unserved_or_unreachable_artifact_is_a_problem_naming_the_address(world: World) -> None:
    world.source("fleet-infra", REPOSITORY)
    world.source("platform", {"pdb.yaml": PDB})
    world.kustomization("apps-prod-blue", source="fleet-infra", path="./apps")
    world.kustomization("platform-prod-blue", source="platform", path="./")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    world.artifact("fleet-infra", url=f"{world.server.base_url}/gitrepository/fleet/fleet-infra/gone.tar.gz")
    world.artifact("platform", url=f"http://127.0.0.1:{port}/gitrepository/fleet/platform/x.tar.gz")

    findings, problems = await world.scan()

    assert findings == []
    assert [problem.split(": cannot download")[0] for problem in sorted(problems)] == [
        "Kustomization fleet/apps-prod-blue", "Kustomization fleet/platform-prod-blue"]
    assert "gone.tar.gz answered HTTP 404" in sorted(problems)[0]
    assert f"from http://127.0.0.1:{port}/gitrepository/fleet/platform/x.tar.gz: cannot connect" in sorted(problems)[1]
    assert "source-controller's artifact address" in sorted(problems)[1]


async def test_a_path_flux_could_not_build_is_a_problem_and_the_other_paths_are_still_scanned(world: World) -> None:
    world.source("fleet-infra", {**REPOSITORY, "broken/kustomization.yaml": "resources: [missing.yaml]\n"})
    world.kustomization("apps-prod-blue", source="fleet-infra", path="./apps")
    world.kustomization("broken-prod-blue", source="fleet-infra", path="./broken")
    world.kustomization("typo-prod-blue", source="fleet-infra", path="./aps")

    findings, problems = await world.scan(target="1.25")

    assert [finding.kind for finding in findings] == ["PodDisruptionBudget"]
    broken, typo = sorted(problems)
    assert broken.startswith("Kustomization fleet/broken-prod-blue: ./broken in the artifact of GitRepository "
                             "fleet/fleet-infra (revision main@sha1:")
    assert "kubectl kustomize broken failed" in broken
    assert typo.startswith("Kustomization fleet/typo-prod-blue: spec.path ./aps is not a directory in the artifact")


async def test_no_kustomization_matching_the_selector_is_a_problem(world: World) -> None:
    findings, problems = await world.scan()

    assert findings == []
    assert problems == ["no Kustomization in namespace fleet matches spec.workloads.flux.selector, so no Flux source "
                        "was scanned; fix the selector or set spec.preflight.scanSources: false to rely on the live "
                        "scan alone"]


async def test_a_scan_that_does_not_finish_in_time_is_a_problem(world: World) -> None:
    world.source("fleet-infra", REPOSITORY)
    world.kustomization("apps-prod-blue", source="fleet-infra", path="./apps")
    world.server.stall_next(2.0)

    findings, problems = await world.scan(timeout=0.3)

    assert findings == []
    assert problems == ["Kustomization fleet/apps-prod-blue (GitRepository fleet/fleet-infra): not scanned within "
                        "0.3s (spec.preflight.timeout); raise the timeout or retry"]
    assert list((world.tmp / "operator").iterdir()) == []  # the scratch directory is gone


# --- git mode ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def environment(tmp_path: pathlib.Path) -> AsyncIterator[gitops.GitOpsFleet]:
    async with gitops.running_gitops(tmp_path) as fleet:
        fleet.server.write({
            f"clusters/{BLUE}/apps/pdb.yaml": PDB,
            f"clusters/{BLUE}/infra/kustomization.yaml": "resources: [flowschema.yaml]\n",
            f"clusters/{BLUE}/infra/flowschema.yaml": FLOW_SCHEMA,
            f"clusters/{BLUE}/flux-system/cronjob.yaml": CRONJOB,  # EKS Anywhere's: not blue's workloads
        }, message="Workloads still on old APIs", author=("Someone", "someone@example.com"))
        yield fleet


def git_spec(url: str, **git: Any) -> dict[str, Any]:
    return {"mode": "git", "git": {"url": url, **git}}


async def scan_git(fleet: gitops.GitOpsFleet, tmp_path: pathlib.Path, url: str, **git: Any) -> tuple[list[Finding],
                                                                                                     list[str]]:
    return await scan_sources(upgrade_spec(**git_spec(url, **git)), management=fleet.client, current="1.24",
                              target="1.29", workdir=tmp_path / "operator", timeout=20,
                              upgrade_namespace=gitops.NAMESPACE)


async def test_git_mode_scans_blues_directories_at_the_branch_head(tmp_path: pathlib.Path) -> None:
    async with environment(tmp_path) as fleet:
        fleet.put_secret(gitops.SECRET, fleet.http_credentials())

        findings, problems = await scan_git(fleet, tmp_path, fleet.server.http_url, secretRef={"name": gitops.SECRET})

        head = fleet.server.head()[:12]
    source = f"{fleet.server.http_url} (branch main at {head})"
    assert problems == []
    assert seen(findings) == [
        ("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema", "batch-jobs",
         f"in {source} at clusters/{BLUE}/infra, kustomization clusters/{BLUE}/infra"),
        ("policy/v1beta1", "PodDisruptionBudget", "web", f"in {source} at clusters/{BLUE}/apps, file "
                                                         f"clusters/{BLUE}/apps/pdb.yaml"),
    ]


async def test_git_mode_scans_only_the_listed_paths(tmp_path: pathlib.Path) -> None:
    async with environment(tmp_path) as fleet:
        findings, problems = await scan_git(fleet, tmp_path, fleet.server.file_url, paths=["apps"])

    assert problems == []
    assert [finding.kind for finding in findings] == ["PodDisruptionBudget"]


async def test_git_mode_problems_name_the_repository_and_the_fix(tmp_path: pathlib.Path) -> None:
    async with environment(tmp_path) as fleet:
        fleet.put_secret(gitops.SECRET, {"username": fleet.server.username, "password": "wrong"})

        refused = await scan_git(fleet, tmp_path, fleet.server.http_url, secretRef={"name": gitops.SECRET})
        no_secret = await scan_git(fleet, tmp_path, fleet.server.http_url, secretRef={"name": "absent"})
        no_path = await scan_git(fleet, tmp_path, fleet.server.file_url, paths=["databases"])

    assert refused[0] == []
    assert len(refused[1]) == 1
    assert refused[1][0].startswith(f"environment repository: {fleet.server.http_url} refused the credentials in "
                                    f"Secret fleet/{gitops.SECRET}")
    assert "wrong" not in refused[1][0]
    assert no_secret == ([], ["environment repository: Secret fleet/absent (spec.workloads.flux.git.secretRef) "
                              "does not exist; create it with username and password as Flux expects for http"])
    assert no_path == ([], [f"environment repository: clusters/{BLUE}/databases/ does not exist on branch main of "
                            f"{fleet.server.file_url}; fix spec.workloads.flux.git.paths"])


# --- the emulated world -------------------------------------------------------------------------------


@pytest.fixture
def world_process(tmp_path: pathlib.Path) -> Iterator[harness.WorldProcess]:
    if shutil.which("haproxy") is None and not pathlib.Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy is not installed; `make test` installs it (hack/install-system-deps.sh)")
    started = harness.start_world(tmp_path / "world", args=("--provision-delay", "1", "--no-prometheus"))
    try:
        yield started
    finally:
        started.stop()


async def test_the_worlds_source_is_served_and_a_new_commit_with_a_removed_api_is_found(
    world_process: harness.WorldProcess, tmp_path: pathlib.Path
) -> None:
    spec = upgrade_spec(selector={"matchLabels": {"bluegreen.io/cluster": world_process.info["blue"]}})
    async with KubeClient.from_kubeconfig(str(world_process.kubeconfig)) as client:
        before = await scan_sources(spec, management=client, current="1.30", target="1.32",
                                    workdir=tmp_path / "operator", timeout=20)
        await world_process.control("POST", "/flux/revision", {
            "revision": "main@sha1:" + "5" * 40,
            "files": {"apps/flowschema.yaml": FLOW_SCHEMA.replace("v1beta2", "v1beta3")},
        })
        after = await scan_sources(spec, management=client, current="1.30", target="1.32",
                                   workdir=tmp_path / "operator", timeout=20)

    assert before == ([], [])
    assert after[1] == []
    assert seen(after[0]) == [("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema", "batch-jobs",
                               "in GitRepository fleet/fleet-infra at ./apps, file apps/flowschema.yaml")]

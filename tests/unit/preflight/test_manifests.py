"""The manifest scan on a Flux-like source tree: plain YAML read directly, kustomizations rendered by kubectl."""

from __future__ import annotations

import pathlib
import re
import shutil
import textwrap

import pytest

from bluegreen.preflight.findings import Finding
from bluegreen.preflight.manifests import ManifestError, scan_manifests

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl kustomize renders kustomizations")

CRONJOB = """\
apiVersion: batch/v1beta1
kind: CronJob
metadata:
  name: report
  namespace: jobs
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: busybox}]
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx}]
"""
PDB = """\
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
"""
HPA_LIST = """\
apiVersion: v1
kind: List
items:
- apiVersion: autoscaling/v2beta2
  kind: HorizontalPodAutoscaler
  metadata: {name: web, namespace: shop}
  spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}, maxReplicas: 3}
"""


def _write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def _summary(findings: list[Finding]) -> list[tuple[str | None, ...]]:
    return sorted((f.kind, f.namespace, f.name, f.api_version, f.removed_in, f.where) for f in findings)


def test_plain_directories_are_read_file_by_file(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "repo"
    _write(source / "apps" / "all.yaml", CRONJOB + "---\n" + DEPLOYMENT + "---\n")
    _write(source / "apps" / "policy" / "pdb.yml", PDB)
    _write(source / "apps" / "hpa.yaml", HPA_LIST)
    _write(source / "apps" / "values.yaml", "replicas: 3\nimage: {tag: v1}\n")
    _write(source / "apps" / "notes.txt", PDB)  # not YAML by name: Flux ignores it too
    _write(source / ".git" / "stray.yaml", PDB)

    findings = scan_manifests([source], current="1.24", target="1.26", root=source)

    assert _summary(findings) == [
        ("CronJob", "jobs", "report", "batch/v1beta1", "1.25", "in apps/all.yaml"),
        ("HorizontalPodAutoscaler", "shop", "web", "autoscaling/v2beta2", "1.26", "in apps/hpa.yaml"),
        ("PodDisruptionBudget", None, "web", "policy/v1beta1", "1.25", "in apps/policy/pdb.yml"),
    ]
    assert {f.replacement for f in findings} == {"batch/v1", "autoscaling/v2", "policy/v1"}


def test_window_applies_to_manifests(tmp_path: pathlib.Path) -> None:
    _write(tmp_path / "a.yaml", CRONJOB + "---\n" + HPA_LIST)
    assert _summary(scan_manifests([tmp_path / "a.yaml"], current="1.25", target="1.26")) == [
        ("HorizontalPodAutoscaler", "shop", "web", "autoscaling/v2beta2", "1.26", f"in {tmp_path / 'a.yaml'}"),
    ]
    assert scan_manifests([tmp_path], current="1.26", target="1.31") == []


@needs_kubectl
def test_kustomization_is_rendered_with_kubectl(tmp_path: pathlib.Path) -> None:
    overlay = tmp_path / "clusters" / "blue"
    _write(overlay / "kustomization.yaml", """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        namespace: team-a
        resources: [cron.yaml, deploy.yaml]
        """)
    _write(overlay / "cron.yaml", CRONJOB)
    _write(overlay / "deploy.yaml", DEPLOYMENT)
    _write(overlay / "unused.yaml", PDB)  # not a resource of the kustomization: Flux never applies it
    _write(tmp_path / "plain" / "pdb.yaml", PDB)

    findings = scan_manifests([tmp_path / "clusters", tmp_path / "plain"], current="1.24", target="1.25",
                              root=tmp_path)

    assert _summary(findings) == [
        # the namespace comes from the rendering: kustomize overrides the file's "jobs"
        ("CronJob", "team-a", "report", "batch/v1beta1", "1.25", "in clusters/blue"),
        ("PodDisruptionBudget", None, "web", "policy/v1beta1", "1.25", "in plain/pdb.yaml"),
    ]


@needs_kubectl
def test_kustomize_failure_is_an_error_naming_the_directory(tmp_path: pathlib.Path) -> None:
    _write(tmp_path / "kustomization.yaml", "resources: [missing.yaml]\n")
    with pytest.raises(ManifestError, match=f"kubectl kustomize {re.escape(str(tmp_path))} failed"):
        scan_manifests([tmp_path], current="1.24", target="1.25")


def test_missing_kubectl_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    _write(tmp_path / "kustomization.yaml", "resources: [cron.yaml]\n")
    _write(tmp_path / "cron.yaml", CRONJOB)
    with pytest.raises(ManifestError, match="needs kubectl, which is not on PATH"):
        scan_manifests([tmp_path], current="1.24", target="1.25", kubectl="no-such-kubectl-here")


def test_invalid_yaml_names_the_file(tmp_path: pathlib.Path) -> None:
    _write(tmp_path / "broken.yaml", "apiVersion: v1\nkind: [unclosed\n")
    with pytest.raises(ManifestError, match=r"broken\.yaml: not valid YAML"):
        scan_manifests([tmp_path], current="1.24", target="1.25")


def test_missing_path_is_an_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ManifestError, match="no such file or directory"):
        scan_manifests([tmp_path / "absent"], current="1.24", target="1.25")

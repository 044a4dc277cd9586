"""GitOps of the CRD: ``crds/`` builds with kustomize, and ``examples/flux/`` is what Flux would accept.

No Flux runs here, so the Flux objects are checked against the fields Flux's own API types mark
required (source.toolkit.fluxcd.io/v1 GitRepository, kustomize.toolkit.fluxcd.io/v1 Kustomization,
helm.toolkit.fluxcd.io/v2 HelmRelease) and against this repository: a path that does not exist or a
``dependsOn`` naming nothing would only show up as a stuck Kustomization on a real cluster.
"""

from __future__ import annotations

import copy
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"
FLUX = REPO / "examples" / "flux"

GIT_REPOSITORY = ("source.toolkit.fluxcd.io/v1", "GitRepository")
KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
HELM_RELEASE = ("helm.toolkit.fluxcd.io/v2", "HelmRelease")
# The pattern Flux's CRDs put on every interval and timeout.
DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
GIT_URL = re.compile(r"^(http|https|ssh)://.*$")
# What each reference may point at (the enums of the sourceRef fields).
KUSTOMIZATION_SOURCES = {"GitRepository", "OCIRepository", "Bucket"}
CHART_SOURCES = {"HelmRepository", "GitRepository", "Bucket"}


def kubectl_kustomize(path: pathlib.Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` is what checks the kustomizations build")
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def flux_documents() -> list[dict[str, Any]]:
    return [doc for path in sorted(FLUX.rglob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def flux_objects(documents: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The documents Flux's controllers read (kustomize's own kustomization.yaml files are not among them)."""
    kinds = {GIT_REPOSITORY, KUSTOMIZATION, HELM_RELEASE}
    return [doc for doc in documents if (doc.get("apiVersion"), doc.get("kind")) in kinds]


def _key(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')} {meta.get('namespace')}/{meta.get('name')}"


def _duration_problems(where: str, spec: Mapping[str, Any], field: str, *, required: bool) -> Iterator[str]:
    if field not in spec:
        if required:
            yield f"{where}: spec.{field} is required"
    elif not DURATION.match(str(spec[field])):
        yield f"{where}: spec.{field} {spec[field]!r} is not a duration"


def _repo_dir(where: str, path: Any) -> Iterator[str]:
    if not isinstance(path, str) or not path.startswith("./"):
        yield f"{where}: {path!r} is not a path relative to the repository (./...)"
    elif not (REPO / path).is_dir():
        yield f"{where}: {path} is not a directory of this repository"


def flux_problems(documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every reason Flux would refuse these objects or never get them Ready, for sources that are this repo."""
    objects = flux_objects(documents)
    names = {(doc["kind"], (doc.get("metadata") or {}).get("namespace"), (doc.get("metadata") or {}).get("name"))
             for doc in objects}
    problems: list[str] = []
    for doc in objects:
        where = _key(doc)
        meta = doc.get("metadata") or {}
        namespace = meta.get("namespace")
        if not meta.get("name") or not namespace:
            problems.append(f"{where}: metadata.name and metadata.namespace are needed (they are namespaced)")
        spec = doc.get("spec") or {}
        problems.extend(_duration_problems(where, spec, "interval", required=True))
        problems.extend(_duration_problems(where, spec, "timeout", required=False))
        if doc["kind"] == "GitRepository":
            if not GIT_URL.match(str(spec.get("url", ""))):
                problems.append(f"{where}: spec.url is required, http(s):// or ssh://")
        elif doc["kind"] == "Kustomization":
            if not isinstance(spec.get("prune"), bool):
                problems.append(f"{where}: spec.prune is required (true or false)")
            problems.extend(_reference_problems(where, spec.get("sourceRef"), KUSTOMIZATION_SOURCES, namespace,
                                                names, field="spec.sourceRef"))
            problems.extend(_repo_dir(f"{where}: spec.path", spec.get("path", "./")))
            for dependency in spec.get("dependsOn") or []:
                target = ("Kustomization", dependency.get("namespace", namespace), dependency.get("name"))
                if target not in names:
                    problems.append(f"{where}: dependsOn {dependency} names no Kustomization here")
        elif doc["kind"] == "HelmRelease":
            problems.extend(_helm_release_problems(where, spec, namespace, names))
    return problems


def _reference_problems(where: str, ref: Any, kinds: set[str], namespace: str | None,
                        names: set[tuple[str, str | None, str | None]], *, field: str) -> Iterator[str]:
    if not isinstance(ref, Mapping) or not ref.get("kind") or not ref.get("name"):
        yield f"{where}: {field} needs kind and name"
        return
    if ref["kind"] not in kinds:
        yield f"{where}: {field}.kind {ref['kind']!r} is not one of {sorted(kinds)}"
    if (ref["kind"], ref.get("namespace", namespace), ref["name"]) not in names:
        yield f"{where}: {field} {ref['kind']}/{ref['name']} is not defined in examples/flux"


def _helm_release_problems(where: str, spec: Mapping[str, Any], namespace: str | None,
                           names: set[tuple[str, str | None, str | None]]) -> Iterator[str]:
    if ("chart" in spec) == ("chartRef" in spec):
        yield f"{where}: exactly one of spec.chart and spec.chartRef must be set"
    chart = (spec.get("chart") or {}).get("spec")
    if "chart" in spec and not isinstance(chart, Mapping):
        yield f"{where}: spec.chart.spec is required"
    elif isinstance(chart, Mapping):
        if not chart.get("chart"):
            yield f"{where}: spec.chart.spec.chart is required"
        yield from _reference_problems(where, chart.get("sourceRef"), CHART_SOURCES, namespace, names,
                                       field="spec.chart.spec.sourceRef")
        if (chart.get("sourceRef") or {}).get("kind") == "GitRepository":
            yield from _repo_dir(f"{where}: spec.chart.spec.chart", chart.get("chart"))
            if (REPO / str(chart.get("chart"))).is_dir() and not (REPO / str(chart["chart"]) / "Chart.yaml").is_file():
                yield f"{where}: {chart['chart']} has no Chart.yaml"


def by_name(kind: str, name: str) -> Mapping[str, Any]:
    [found] = [doc for doc in flux_objects(flux_documents()) if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def crd_files() -> list[pathlib.Path]:
    return sorted(path for path in CRDS.glob("*.yaml") if path.name != "kustomization.yaml")


def test_kustomize_builds_crds_into_exactly_the_crd_files() -> None:
    built = kubectl_kustomize(CRDS)
    on_disk = [doc for path in crd_files() for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert on_disk, "crds/ holds no CRD"
    assert sorted(built, key=_key) == sorted(on_disk, key=_key)
    assert {doc["kind"] for doc in built} == {"CustomResourceDefinition"}


def test_the_operator_folder_builds_into_the_helm_release() -> None:
    [built] = kubectl_kustomize(FLUX / "operator")
    assert (built["apiVersion"], built["kind"]) == HELM_RELEASE
    assert built == by_name("HelmRelease", "bluegreen")


def test_flux_examples_have_what_flux_requires_and_point_at_this_repository() -> None:
    documents = flux_documents()
    assert {(doc["apiVersion"], doc["kind"]) for doc in flux_objects(documents)} == {
        GIT_REPOSITORY, KUSTOMIZATION, HELM_RELEASE,
    }
    assert flux_problems(documents) == []


def test_the_crds_are_applied_first_kept_and_waited_for() -> None:
    crds = by_name("Kustomization", "bluegreen-crds")["spec"]
    assert crds["path"] == "./crds"
    assert crds["prune"] is False, "pruning the CRD would delete every ClusterUpgrade"
    crd_names = {yaml.safe_load(path.read_text())["metadata"]["name"] for path in crd_files()}
    checked = {(check["kind"], check["name"]) for check in crds["healthChecks"]}
    assert checked == {("CustomResourceDefinition", name) for name in crd_names}
    operator = by_name("Kustomization", "bluegreen-operator")["spec"]
    assert operator["dependsOn"] == [{"name": "bluegreen-crds"}]
    assert (REPO / operator["path"]).resolve() == FLUX / "operator"


def test_the_helm_release_installs_the_chart_and_leaves_the_crd_to_the_kustomization() -> None:
    release = by_name("HelmRelease", "bluegreen")["spec"]
    assert (REPO / release["chart"]["spec"]["chart"]).resolve() == REPO / "charts" / "bluegreen"
    assert release["install"]["crds"] == release["upgrade"]["crds"] == "Skip"


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        (lambda docs: docs[1]["spec"].pop("prune"), "spec.prune is required"),
        (lambda docs: docs[1]["spec"].update(interval="an hour"), "'an hour' is not a duration"),
        (lambda docs: docs[2]["spec"].update(dependsOn=[{"name": "bluegreen-crd"}]), "names no Kustomization"),
        (lambda docs: docs[2]["spec"].update(path="./examples/fluxcd"), "is not a directory of this repository"),
        (lambda docs: docs[3]["spec"]["chart"]["spec"].update(chart="./charts"), "has no Chart.yaml"),
        (lambda docs: docs[3]["spec"].update(chartRef={"kind": "HelmChart", "name": "x"}), "exactly one of"),
        (lambda docs: docs[0]["spec"].update(url="github.com/x/y"), "spec.url is required"),
        (lambda docs: docs[1]["spec"]["sourceRef"].update(name="flux-system"), "is not defined in examples/flux"),
    ],
)
def test_the_checker_finds_what_flux_would_refuse(breakage: Any, problem: str) -> None:
    documents = copy.deepcopy(flux_objects(flux_documents()))
    assert [_key(doc).split()[0] for doc in documents] == ["GitRepository", "Kustomization", "Kustomization",
                                                           "HelmRelease"]
    breakage(documents)
    assert any(problem in found for found in flux_problems(documents)), flux_problems(documents)

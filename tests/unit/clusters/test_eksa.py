"""The EKS Anywhere provider's pure rules: cloning a Cluster with its machine configs, readiness, preflight."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bluegreen.clusters import eksa
from bluegreen.clusters.base import ClusterProviderError
from bluegreen.clusters.registry import build_cluster_provider
from bluegreen.engine.types import LABEL_UPGRADE
from bluegreen.kube import client as kubeclient
from bluegreen.kube import config, objects

pytestmark = pytest.mark.eksa

OWNER = {LABEL_UPGRADE: "fleet.prod-to-1-31"}
NEW_ENDPOINT = {"controlPlaneConfiguration": {"endpoint": {"host": "10.0.0.11"}}}


def blue_cluster(*, cp: str = "prod-blue-cp", workers: dict[str, str] | None = None, etcd: str | None = None,
                 kind: str = "VSphereMachineConfig", datacenter: str = "VSphereDatacenterConfig",
                 host: str | None = "10.0.0.10") -> dict[str, Any]:
    control_plane: dict[str, Any] = {"count": 3, "machineGroupRef": {"kind": kind, "name": cp}}
    if host:
        control_plane["endpoint"] = {"host": host}
    spec: dict[str, Any] = {
        "kubernetesVersion": "1.30",
        "clusterNetwork": {"cniConfig": {"cilium": {}}, "pods": {"cidrBlocks": ["192.168.0.0/16"]}},
        "controlPlaneConfiguration": control_plane,
        "workerNodeGroupConfigurations": [
            {"name": group, "count": 2, "machineGroupRef": {"kind": kind, "name": name}}
            for group, name in (workers if workers is not None else {"md-0": "prod-blue-md-0"}).items()
        ],
        "datacenterRef": {"kind": datacenter, "name": "dc"},
        "managementCluster": {"name": "mgmt"},
        "gitOpsRef": {"kind": "FluxConfig", "name": "fleet-gitops"},
        "eksaVersion": "v0.22.0",
    }
    if etcd:
        spec["externalEtcdConfiguration"] = {"count": 3, "machineGroupRef": {"kind": kind, "name": etcd}}
    return {
        "apiVersion": "anywhere.eks.amazonaws.com/v1alpha1",
        "kind": "Cluster",
        "metadata": {
            "name": "prod-blue", "namespace": "fleet", "uid": "1234", "resourceVersion": "77", "generation": 4,
            "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{"manager": "kubectl"}],
            "finalizers": ["clusters.anywhere.eks.amazonaws.com/finalizer"],
            "labels": {"bluegreen.io/cluster": "prod-blue", "env": "prod", LABEL_UPGRADE: "fleet.older",
                       "kustomize.toolkit.fluxcd.io/name": "clusters"},
            "annotations": {"anywhere.eks.amazonaws.com/paused": "true",
                            "anywhere.eks.amazonaws.com/managed-by-cli": "true", "team": "platform"},
        },
        "spec": spec,
        "status": {"observedGeneration": 4, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def machine_config(name: str, kind: str = "VSphereMachineConfig", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "anywhere.eks.amazonaws.com/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": "fleet", "uid": f"uid-{name}", "resourceVersion": "5",
                     "generation": 1, "labels": {"tier": "prod"},
                     "annotations": {"anywhere.eks.amazonaws.com/control-plane": "true"}},
        "spec": {"numCPUs": 2, "memoryMiB": 8192, "datastore": "ds1", **spec},
    }


def configs_of(cluster: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any] | None]:
    return {ref.key: machine_config(ref.name, ref.kind, role=ref.role) for ref in eksa.machine_group_refs(cluster)}


def plan(blue: dict[str, Any], **kwargs: Any) -> eksa.GreenPlan:
    arguments: dict[str, Any] = {"machine_configs": configs_of(blue), "green_name": "prod-green", "version": "1.31",
                                 "overrides": NEW_ENDPOINT, "labels": OWNER}
    arguments.update(kwargs)
    return eksa.plan_green(blue, **arguments)


def refs_of(cluster: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(ref.role, ref.kind, ref.name) for ref in eksa.machine_group_refs(cluster)]


# --- machine configs -----------------------------------------------------------------------------


def test_every_machine_group_ref_is_found_with_its_role_and_field() -> None:
    blue = blue_cluster(workers={"md-0": "w0", "gpu": "w1"}, etcd="prod-blue-etcd")

    refs = eksa.machine_group_refs(blue)

    assert [(ref.role, ref.name, ref.field) for ref in refs] == [
        ("cp", "prod-blue-cp", "spec.controlPlaneConfiguration.machineGroupRef"),
        ("etcd", "prod-blue-etcd", "spec.externalEtcdConfiguration.machineGroupRef"),
        ("md-0", "w0", "spec.workerNodeGroupConfigurations[0].machineGroupRef"),
        ("gpu", "w1", "spec.workerNodeGroupConfigurations[1].machineGroupRef"),
    ]


def test_a_docker_cluster_has_no_machine_configs() -> None:
    blue = blue_cluster(datacenter="DockerDatacenterConfig", host=None)
    del blue["spec"]["controlPlaneConfiguration"]["machineGroupRef"]
    for group in blue["spec"]["workerNodeGroupConfigurations"]:
        del group["machineGroupRef"]

    assert eksa.machine_group_refs(blue) == []
    assert plan(blue, overrides={}).machine_configs == ()


@pytest.mark.parametrize(("cp", "workers", "etcd", "expected"), [
    # one config per role: one copy per role, named after the role
    ("a", {"md-0": "b"}, None, {("cp", "prod-green-cp"), ("md-0", "prod-green-md-0")}),
    ("a", {"md-0": "b", "md-1": "c"}, "d",
     {("cp", "prod-green-cp"), ("md-0", "prod-green-md-0"), ("md-1", "prod-green-md-1"),
      ("etcd", "prod-green-etcd")}),
    # one config for everything: one copy, every role points at it
    ("a", {"md-0": "a", "md-1": "a"}, "a",
     {("cp", "prod-green-cp"), ("md-0", "prod-green-cp"), ("md-1", "prod-green-cp"), ("etcd", "prod-green-cp")}),
    # workers share one config, the control plane has its own
    ("a", {"md-0": "b", "md-1": "b"}, None,
     {("cp", "prod-green-cp"), ("md-0", "prod-green-md-0"), ("md-1", "prod-green-md-0")}),
    # a worker group called like another role does not collide with it
    ("a", {"cp": "b"}, None, {("cp", "prod-green-cp"), ("cp", "prod-green-cp-2")}),
])
def test_green_refs_mirror_how_blue_shares_its_configs(
    cp: str, workers: dict[str, str], etcd: str | None, expected: set[tuple[str, str]]
) -> None:
    blue = blue_cluster(cp=cp, workers=workers, etcd=etcd)

    result = plan(blue)

    green_refs = {(role, name) for role, _, name in refs_of(result.cluster)}
    assert green_refs == expected
    assert sorted(objects.name_of(clone) for clone in result.machine_configs) == sorted(
        {name for _, name in expected})


def test_machine_config_copies_keep_the_spec_and_drop_server_set_metadata() -> None:
    blue = blue_cluster()

    clones = {objects.name_of(clone): clone for clone in plan(blue).machine_configs}

    cp = clones["prod-green-cp"]
    assert cp["apiVersion"] == "anywhere.eks.amazonaws.com/v1alpha1"
    assert cp["kind"] == "VSphereMachineConfig"
    assert cp["metadata"]["namespace"] == "fleet"
    assert cp["spec"] == {"numCPUs": 2, "memoryMiB": 8192, "datastore": "ds1", "role": "cp"}
    assert cp["metadata"]["labels"] == {"tier": "prod", **OWNER}
    assert cp["metadata"]["annotations"] == {"anywhere.eks.amazonaws.com/control-plane": "true",
                                             eksa.CLONED_FROM: "prod-blue-cp"}
    for key in ("uid", "resourceVersion", "generation"):
        assert key not in cp["metadata"], key
    assert clones["prod-green-md-0"]["spec"]["role"] == "md-0"


@pytest.mark.parametrize(("kind", "plural"), [
    ("VSphereMachineConfig", "vspheremachineconfigs"),
    ("NutanixMachineConfig", "nutanixmachineconfigs"),
    ("TinkerbellMachineConfig", "tinkerbellmachineconfigs"),
    ("CloudStackMachineConfig", "cloudstackmachineconfigs"),
    ("SnowMachineConfig", "snowmachineconfigs"),
])
def test_every_provider_s_machine_configs_are_copied_the_same_way(kind: str, plural: str) -> None:
    blue = blue_cluster(kind=kind)

    clones = plan(blue).machine_configs

    assert {(clone["kind"], objects.name_of(clone)) for clone in clones} == {
        (kind, "prod-green-cp"), (kind, "prod-green-md-0")}
    assert eksa.machine_config_resource(kind) == kubeclient.Resource(
        "anywhere.eks.amazonaws.com", "v1alpha1", plural)


def test_a_missing_machine_config_is_named() -> None:
    blue = blue_cluster()
    found = configs_of(blue)
    found[("VSphereMachineConfig", "prod-blue-md-0")] = None

    with pytest.raises(ClusterProviderError, match=r"VSphereMachineConfig fleet/prod-blue-md-0"):
        plan(blue, machine_configs=found)


# --- the Cluster ---------------------------------------------------------------------------------


def test_the_cluster_clone_has_green_s_name_labels_and_no_server_set_metadata_or_status() -> None:
    green = plan(blue_cluster()).cluster

    meta = green["metadata"]
    assert (meta["name"], meta["namespace"]) == ("prod-green", "fleet")
    assert "status" not in green
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "finalizers"):
        assert key not in meta, key
    assert meta["labels"] == {"bluegreen.io/cluster": "prod-green", "env": "prod", **OWNER}


def test_eksa_control_annotations_are_not_cloned() -> None:
    annotations = plan(blue_cluster()).cluster["metadata"]["annotations"]

    assert annotations == {"team": "platform", eksa.CLONED_FROM: "prod-blue"}


@pytest.mark.parametrize(("target", "expected"), [("1.31", "1.31"), ("v1.31.2", "1.31"), ("1.31.0", "1.31"),
                                                  ("v1.32", "1.32")])
def test_the_version_is_always_the_string_major_minor(target: str, expected: str) -> None:
    blue = blue_cluster(workers={"md-0": "a", "md-1": "b"})
    blue["spec"]["workerNodeGroupConfigurations"][1]["kubernetesVersion"] = "1.29"

    spec = plan(blue, version=target).cluster["spec"]

    assert spec["kubernetesVersion"] == expected
    workers = spec["workerNodeGroupConfigurations"]
    assert "kubernetesVersion" not in workers[0], "a group that follows the cluster keeps following it"
    assert workers[1]["kubernetesVersion"] == expected, "a group that pins its version is pinned to the target"


def test_shared_and_immutable_references_are_kept() -> None:
    blue = blue_cluster()

    spec = plan(blue).cluster["spec"]

    for field in ("datacenterRef", "managementCluster", "gitOpsRef", "eksaVersion", "clusterNetwork"):
        assert spec[field] == blue["spec"][field], field


def test_overrides_are_a_merge_patch_applied_after_cloning() -> None:
    overrides = {
        "controlPlaneConfiguration": {"endpoint": {"host": "10.0.0.11"}, "count": 5},
        "gitOpsRef": None,
        "clusterNetwork": {"pods": {"cidrBlocks": ["10.200.0.0/16"]}},
    }

    spec = plan(blue_cluster(), overrides=overrides).cluster["spec"]

    assert spec["controlPlaneConfiguration"] == {
        "count": 5, "endpoint": {"host": "10.0.0.11"},
        "machineGroupRef": {"kind": "VSphereMachineConfig", "name": "prod-green-cp"}}
    assert "gitOpsRef" not in spec
    assert spec["clusterNetwork"] == {"cniConfig": {"cilium": {}}, "pods": {"cidrBlocks": ["10.200.0.0/16"]}}


def test_a_config_that_an_override_replaces_is_not_copied() -> None:
    overrides = {**NEW_ENDPOINT, "workerNodeGroupConfigurations": [
        {"name": "md-0", "count": 4, "machineGroupRef": {"kind": "VSphereMachineConfig", "name": "big-workers"}}]}

    result = plan(blue_cluster(), overrides=overrides)

    assert [objects.name_of(clone) for clone in result.machine_configs] == ["prod-green-cp"]
    assert refs_of(result.cluster)[1] == ("md-0", "VSphereMachineConfig", "big-workers")


def test_overrides_cannot_remove_the_control_plane() -> None:
    with pytest.raises(ClusterProviderError, match=r"must not remove spec\.controlPlaneConfiguration"):
        plan(blue_cluster(), overrides={"controlPlaneConfiguration": None})


def test_blue_is_not_modified() -> None:
    blue = blue_cluster()
    before = copy.deepcopy(blue)

    plan(blue)

    assert blue == before


# --- preflight rules -----------------------------------------------------------------------------

FIELD = "spec.target.overrides.controlPlaneConfiguration.endpoint.host"


@pytest.mark.parametrize(("datacenter", "blue_host", "override", "expected"), [
    ("VSphereDatacenterConfig", "10.0.0.10", None, ["would share blue's control-plane endpoint '10.0.0.10'", FIELD]),
    ("VSphereDatacenterConfig", "10.0.0.10", "10.0.0.10", ["would share blue's", FIELD, "different from blue's"]),
    ("VSphereDatacenterConfig", "10.0.0.10", "10.0.0.11", None),
    ("VSphereDatacenterConfig", None, None, ["has no control-plane endpoint", FIELD]),
    ("NutanixDatacenterConfig", "10.0.0.10", None, [FIELD]),
    ("CloudStackDatacenterConfig", "10.0.0.10", None, [FIELD]),
    ("TinkerbellDatacenterConfig", "10.0.0.10", None, [FIELD]),
    ("SnowDatacenterConfig", "10.0.0.10", None, [FIELD]),  # the Snow docs: "a unique IP" too
    ("SnowDatacenterConfig", "10.0.0.10", "10.0.0.12", None),
    ("DockerDatacenterConfig", None, None, None),
    ("DockerDatacenterConfig", None, "10.0.0.12", ["DockerDatacenterConfig clusters take no control-plane endpoint"]),
])
def test_green_needs_its_own_endpoint_where_the_provider_gives_one(
    datacenter: str, blue_host: str | None, override: str | None, expected: list[str] | None
) -> None:
    blue = blue_cluster(datacenter=datacenter, host=blue_host)
    overrides = {"controlPlaneConfiguration": {"endpoint": {"host": override}}} if override else {}
    green = plan(blue, overrides=overrides).cluster

    problems = eksa.endpoint_problems(blue, green, green_name="prod-green")

    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1
        for text in expected:
            assert text in problems[0]


@pytest.mark.parametrize(("management", "expected"), [
    ({"name": "mgmt"}, None),
    ({"name": "prod-blue"}, "is a management cluster"),
    (None, "is a management cluster (spec.managementCluster.name is unset"),
])
def test_only_workload_clusters_are_replaced(management: dict[str, str] | None, expected: str | None) -> None:
    blue = blue_cluster()
    if management is None:
        del blue["spec"]["managementCluster"]
    else:
        blue["spec"]["managementCluster"] = management

    problems = eksa.blue_problems(blue)

    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0]


@pytest.mark.parametrize(("overrides", "expected"), [
    (NEW_ENDPOINT, []),
    ({"kubernetesVersion": "1.32"}, ["spec.target.overrides.kubernetesVersion"]),
    ({"managementCluster": {"name": "other"}}, ["spec.target.overrides.managementCluster"]),
    ({"workerNodeGroupConfigurations": [{"name": "md-0", "kubernetesVersion": 1.3}]},
     ["workerNodeGroupConfigurations[0].kubernetesVersion is 1.3, not a string"]),
    ({"workerNodeGroupConfigurations": [{"name": "md-0", "kubernetesVersion": "1.30"}]}, []),
])
def test_overrides_that_contradict_the_spec_are_refused(overrides: dict[str, Any], expected: list[str]) -> None:
    problems = eksa.override_problems(overrides)

    assert len(problems) == len(expected)
    for problem, text in zip(problems, expected, strict=True):
        assert text in problem


# --- readiness -----------------------------------------------------------------------------------


def observed(**changes: Any) -> dict[str, Any]:
    cluster = blue_cluster()
    status = cluster["status"]
    for key, value in changes.items():
        if key == "generation":
            cluster["metadata"]["generation"] = value
        elif key == "deleting":
            cluster["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"
        elif value is None:
            status.pop(key, None)
        else:
            status[key] = value
    return cluster


@pytest.mark.parametrize(("cluster", "ready", "failed", "reason"), [
    (observed(), True, False, ""),
    (observed(generation=5), False, False, "has not yet observed generation 5 (status is for 4)"),
    (observed(conditions=[{"type": "Ready", "status": "False", "reason": "RollingUpgradeInProgress",
                           "message": "upgrading"}]),
     False, False, "Ready=False (RollingUpgradeInProgress): upgrading"),
    (observed(conditions=None), False, False, "Ready not reported yet"),
    (observed(failureMessage="VSphereMachineConfig \"x\" not found", failureReason="ClusterInvalid"),
     False, True, 'failure (ClusterInvalid): VSphereMachineConfig "x" not found'),
    (observed(deleting=True), False, False, "being deleted"),
])
def test_ready_is_generation_observed_ready_true_and_no_failure(
    cluster: dict[str, Any], ready: bool, failed: bool, reason: str
) -> None:
    seen = eksa.observe_cluster(cluster, kubeconfig_secret="prod-blue-kubeconfig")

    assert (seen.ready, seen.failed) == (ready, failed)
    assert reason in seen.reason
    assert seen.version == "1.30"
    assert seen.managed_by == "fleet.older"


def test_a_cluster_without_status_is_not_ready() -> None:
    cluster = blue_cluster()
    del cluster["status"]

    seen = eksa.observe_cluster(cluster, kubeconfig_secret=None)

    assert not seen.ready and not seen.failed
    assert "Ready not reported yet" in seen.reason


# --- registry and kubeconfig -----------------------------------------------------------------------


def test_the_registry_builds_the_eksa_provider() -> None:
    client = kubeclient.KubeClient(config.Connection(server="http://127.0.0.1:1"))

    assert isinstance(build_cluster_provider("eksa", client=client), eksa.EksaClusterProvider)


def test_the_kubeconfig_secret_is_in_eksa_system_not_next_to_the_cluster() -> None:
    provider = eksa.EksaClusterProvider(client=kubeclient.KubeClient(config.Connection(server="http://127.0.0.1:1")))

    assert provider.kubeconfig_secret_ref(namespace="fleet", name="prod-green") == (
        "eksa-system", "prod-green-kubeconfig", "value")

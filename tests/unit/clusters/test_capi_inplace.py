"""Cluster API in place: the next topology version, what a rollout looks like, and green's worker capacity."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bluegreen.clusters import capi
from bluegreen.clusters.base import ClusterProviderError


def cluster(version: str = "v1.30.4", *, api_version: str = "v1beta2", status: dict[str, Any] | None = None,
            generation: int = 2, workers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"cluster.x-k8s.io/{api_version}", "kind": "Cluster",
        "metadata": {"name": "prod-blue", "namespace": "fleet", "generation": generation},
        "spec": {"topology": {"classRef": {"name": "quick-start"}, "version": version,
                              "workers": workers or {"machineDeployments": [
                                  {"class": "default-worker", "name": "md-0", "replicas": 3}]}}},
        "status": status if status is not None else {"phase": "Provisioned", "observedGeneration": generation},
    }


def condition(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(("current", "target", "expected"), [
    ("v1.30.4", "1.31", "v1.31.0"),
    ("v1.30.4", "v1.31.2", "v1.31.2"),
    ("1.30", "1.31", "1.31"),
    ("v1.30.4", "v1.30.6", "v1.30.6"),
])
def test_next_version_is_one_minor_up_in_the_clusters_style(current: str, target: str, expected: str) -> None:
    assert capi.next_version(cluster(current), target) == expected


@pytest.mark.parametrize("target", ["1.30", "v1.30.4", "v1.30"])
def test_next_version_is_none_when_the_cluster_already_asks_for_it(target: str) -> None:
    assert capi.next_version(cluster("v1.30.4"), target) is None


def test_two_minors_at_once_are_refused_naming_the_field_and_the_path() -> None:
    with pytest.raises(ClusterProviderError) as refused:
        capi.next_version(cluster("v1.29.1"), "1.31")

    message = str(refused.value)
    assert "spec.topology.version" in message
    assert "1.30, 1.31 one at a time" in message


@pytest.mark.parametrize("target", ["1.29", "v1.30.2"])
def test_a_downgrade_is_refused(target: str) -> None:
    with pytest.raises(ClusterProviderError, match="downgrade"):
        capi.next_version(cluster("v1.30.4"), target)


def test_a_cluster_without_topology_version_cannot_be_upgraded_in_place() -> None:
    bare = cluster()
    del bare["spec"]["topology"]
    with pytest.raises(ClusterProviderError, match="ClusterClass"):
        capi.next_version(bare, "1.31")


def test_a_settled_cluster_is_not_rolling_out() -> None:
    settled = cluster(status={"phase": "Provisioned", "observedGeneration": 2, "conditions": [
        condition("Available", "True"), condition("RollingOut", "False", "NotRollingOut")]})

    seen = capi.observe_cluster(settled, kubeconfig_secret=None)

    assert (seen.rolling_out, seen.ready) == (False, True)


@pytest.mark.parametrize("status", [
    {"phase": "Provisioned", "observedGeneration": 2,
     "conditions": [condition("Available", "True"), condition("RollingOut", "True", "RollingOut", "cp")]},
    {"phase": "Provisioned", "observedGeneration": 1, "conditions": [condition("Available", "True")]},
    {"phase": "Provisioned", "observedGeneration": 2, "conditions": [
        condition("Available", "True"), condition("TopologyReconciled", "False", "ControlPlaneUpgradePending")]},
    {"phase": "Provisioned", "observedGeneration": 2, "conditions": [condition("Available", "True")],
     "controlPlane": {"desiredReplicas": 3, "upToDateReplicas": 1}},
    {"phase": "Provisioned", "observedGeneration": 2, "conditions": [condition("Available", "True")],
     "workers": {"desiredReplicas": 3, "upToDateReplicas": 2}},
], ids=["RollingOut", "generation", "TopologyReconciled", "control-plane-replicas", "worker-replicas"])
def test_a_rollout_is_seen_in_each_signal_v1beta2_gives(status: dict[str, Any]) -> None:
    seen = capi.observe_cluster(cluster(status=status), kubeconfig_secret=None)

    assert seen.rolling_out
    assert "rolling out v1.30.4" in seen.reason


def test_a_v1beta1_cluster_rolls_out_by_its_status_v1beta2_conditions() -> None:
    status = {"phase": "Provisioned", "observedGeneration": 2, "conditions": [condition("Ready", "True")],
              "v1beta2": {"conditions": [condition("RollingOut", "True", "RollingOut")]}}

    assert capi.observe_cluster(cluster(api_version="v1beta1", status=status), kubeconfig_secret=None).rolling_out


def test_a_cluster_being_built_is_provisioning_not_rolling_out() -> None:
    building = cluster(status={"phase": "Provisioning", "observedGeneration": 1,
                               "conditions": [condition("Available", "False")]})

    assert not capi.observe_cluster(building, kubeconfig_secret=None).rolling_out


def test_worker_versions_and_offered_versions_are_not_reported() -> None:
    seen = capi.observe_cluster(cluster(), kubeconfig_secret=None)

    assert (dict(seen.worker_versions), seen.offered_versions) == ({}, None)


def md(name: str, replicas: int | None, **annotations: str) -> dict[str, Any]:
    group: dict[str, Any] = {"class": "default-worker", "name": name, "metadata": {"annotations": annotations}}
    if replicas is not None:
        group["replicas"] = replicas
    return group


CPU, MEMORY = capi.CAPACITY_CPU, capi.CAPACITY_MEMORY


def test_capacity_sums_replicas_times_the_autoscaler_annotations() -> None:
    workers = {"machineDeployments": [md("md-0", 3, **{CPU: "4", MEMORY: "16Gi"}),
                                      md("md-1", 2, **{CPU: "2500m", MEMORY: "8G"})]}

    capacity = capi.worker_capacity(cluster(workers=workers), cluster_class=None)

    assert (capacity.nodes, capacity.cpu_millis, capacity.memory_bytes) == (
        5, 3 * 4000 + 2 * 2500, 3 * 16 * 2**30 + 2 * 8 * 10**9)
    assert "md-0: 3 x (4000m cpu, 16Gi memory)" in capacity.detail


def test_an_autoscaled_group_counts_its_min_size_and_the_class_states_its_size() -> None:
    workers = {"machineDeployments": [md("md-0", None, **{capi.AUTOSCALER_MIN_SIZE: "2"})]}
    cluster_class = {"spec": {"workers": {"machineDeployments": [
        {"class": "default-worker", "template": {"metadata": {"annotations": {CPU: "8", MEMORY: "32Gi"}}}}]}}}

    capacity = capi.worker_capacity(cluster(workers=workers), cluster_class=cluster_class)

    assert (capacity.nodes, capacity.cpu_millis, capacity.memory_bytes) == (2, 16000, 64 * 2**30)


def test_a_group_without_annotations_makes_cpu_and_memory_unknown_and_says_how_to_fix_it() -> None:
    workers = {"machineDeployments": [md("md-0", 3, **{CPU: "4", MEMORY: "16Gi"}), md("md-1", 1)]}

    capacity = capi.worker_capacity(cluster(workers=workers), cluster_class=None)

    assert (capacity.nodes, capacity.cpu_millis, capacity.memory_bytes) == (4, None, None)
    assert f"(md-1) has no {CPU} annotation" in capacity.detail
    assert "spec.topology.workers.machineDeployments[].metadata.annotations" in capacity.detail


def test_a_malformed_annotation_is_named() -> None:
    workers = {"machineDeployments": [md("md-0", 1, **{CPU: "four", MEMORY: "16Gi"})]}

    capacity = capi.worker_capacity(cluster(workers=workers), cluster_class=None)

    assert capacity.cpu_millis is None and capacity.memory_bytes == 16 * 2**30
    assert "'four' is not a Kubernetes quantity" in capacity.detail


def test_overrides_are_merged_as_the_clone_merges_them() -> None:
    blue = cluster(workers={"machineDeployments": [md("md-0", 3, **{CPU: "4", MEMORY: "16Gi"})]})
    patched = copy.deepcopy(blue["spec"]["topology"]["workers"])
    patched["machineDeployments"][0]["replicas"] = 6
    green = capi.clone_cluster(blue, green_name="prod-green", version="1.30", overrides={
        "topology": {"workers": patched}}, labels={})

    assert capi.worker_capacity(green, cluster_class=None).nodes == 6

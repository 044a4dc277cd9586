"""EKS Anywhere in place: the next kubernetesVersion, rollouts, pinned worker groups, Bundles, capacity."""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.clusters import eksa
from bluegreen.clusters.base import ClusterProviderError


def cluster(version: Any = "1.30", *, groups: list[dict[str, Any]] | None = None,
            conditions: list[dict[str, Any]] | None = None, generation: int = 2, observed: int = 2,
            **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": eksa.API_VERSION, "kind": "Cluster",
        "metadata": {"name": "prod-blue", "namespace": "fleet", "generation": generation},
        "spec": {"kubernetesVersion": version, "controlPlaneConfiguration": {"count": 1},
                 "datacenterRef": {"kind": "VSphereDatacenterConfig", "name": "dc"},
                 "workerNodeGroupConfigurations": groups if groups is not None else [
                     {"name": "md-0", "count": 2, "machineGroupRef": {"kind": "VSphereMachineConfig", "name": "w"}}],
                 **spec},
        "status": {"observedGeneration": observed, "conditions": conditions if conditions is not None else [
            {"type": "ControlPlaneInitialized", "status": "True"}, {"type": "Ready", "status": "True"}]},
    }


@pytest.mark.parametrize(("target", "expected"), [("1.31", "1.31"), ("v1.31.2", "1.31"), ("1.30", None),
                                                  ("v1.30.1", None)])
def test_next_version_is_the_quoted_minor_or_none_when_already_asked(target: str, expected: str | None) -> None:
    assert eksa.next_version(cluster("1.30"), target) == expected


def test_two_minors_at_once_are_refused_naming_the_field() -> None:
    with pytest.raises(ClusterProviderError) as refused:
        eksa.next_version(cluster("1.28"), "1.30")

    assert "spec.kubernetesVersion" in str(refused.value)
    assert "1.29, 1.30 one at a time" in str(refused.value)


def test_a_downgrade_is_refused() -> None:
    with pytest.raises(ClusterProviderError, match="never downgraded"):
        eksa.next_version(cluster("1.30"), "1.29")


def test_an_unquoted_version_on_the_cluster_is_refused() -> None:
    with pytest.raises(ClusterProviderError, match="quote it"):
        eksa.next_version(cluster(1.3), "1.31")


def test_a_pinned_worker_group_is_not_moved_and_may_not_fall_three_minors_behind() -> None:
    groups = [{"name": "md-0", "count": 1}, {"name": "legacy", "count": 1, "kubernetesVersion": "1.28"}]

    assert eksa.next_version(cluster("1.29", groups=groups), "1.30") == "1.30"
    with pytest.raises(ClusterProviderError) as refused:
        eksa.next_version(cluster("1.30", groups=groups), "1.31")

    assert "'legacy' runs 1.28, 3 minors behind" in str(refused.value)
    assert "spec.workerNodeGroupConfigurations[].kubernetesVersion" in str(refused.value)


def test_worker_versions_lists_the_pinned_groups_only() -> None:
    groups = [{"name": "md-0", "count": 1}, {"name": "legacy", "count": 1, "kubernetesVersion": "1.29"}]

    assert dict(eksa.observe_cluster(cluster(groups=groups), kubeconfig_secret=None).worker_versions) == {
        "legacy": "1.29"}


def rolling(reason: str) -> list[dict[str, Any]]:
    return [{"type": "ControlPlaneInitialized", "status": "True"},
            {"type": "ControlPlaneReady", "status": "False", "reason": reason},
            {"type": "Ready", "status": "False", "reason": reason}]


@pytest.mark.parametrize("reason", ["RollingUpgradeInProgress", "InPlaceUpgradeInProgress"])
def test_a_rolling_reason_is_a_rollout_and_not_ready(reason: str) -> None:
    seen = eksa.observe_cluster(cluster(conditions=rolling(reason)), kubeconfig_secret=None)

    assert (seen.rolling_out, seen.ready) == (True, False)


def test_a_change_not_yet_observed_on_a_running_cluster_is_a_rollout() -> None:
    assert eksa.observe_cluster(cluster(generation=3, observed=2), kubeconfig_secret=None).rolling_out


@pytest.mark.parametrize("conditions", [
    [{"type": "ControlPlaneInitialized", "status": "False", "reason": "ControlPlaneInitializationInProgress"},
     {"type": "Ready", "status": "False", "reason": "ControlPlaneInitializationInProgress"}],
    [{"type": "ControlPlaneInitialized", "status": "True"},
     {"type": "Ready", "status": "False", "reason": "ScalingUp"}],
], ids=["first-build", "scaling"])
def test_building_or_scaling_is_not_a_rollout(conditions: list[dict[str, Any]]) -> None:
    assert not eksa.observe_cluster(cluster(conditions=conditions), kubeconfig_secret=None).rolling_out


def test_a_failed_cluster_is_not_rolling_out() -> None:
    failed = cluster(conditions=rolling("RollingUpgradeInProgress"))
    failed["status"]["failureMessage"] = "boom"

    seen = eksa.observe_cluster(failed, kubeconfig_secret=None)

    assert (seen.failed, seen.rolling_out) == (True, False)


def test_bundles_are_found_through_bundles_ref_or_the_eksa_version() -> None:
    assert eksa.bundles_key(cluster(bundlesRef={"name": "bundles-7", "namespace": "eksa-system"})) == (
        "bundles", "eksa-system", "bundles-7")
    assert eksa.bundles_key(cluster(eksaVersion="v0.22.0")) == ("release", "v0.22.0")
    assert eksa.bundles_key(cluster()) is None
    assert eksa.release_name("v0.22.0") == "eksa-v0-22-0"


def test_offered_versions_are_the_bundles_kube_versions_in_order() -> None:
    bundles = {"spec": {"versionsBundles": [{"kubeVersion": "1.31"}, {"kubeVersion": "1.28"},
                                            {"kubeVersion": "1.30"}, {"kubeVersion": "1.31"}, {}]}}

    assert eksa.offered_kube_versions(bundles) == ("1.28", "1.30", "1.31")


@pytest.mark.parametrize(("kind", "spec", "size"), [
    ("VSphereMachineConfig", {"numCPUs": 4, "memoryMiB": 16384}, (4000, 16 * 2**30)),
    ("NutanixMachineConfig", {"vcpusPerSocket": 2, "vcpuSockets": 3, "memorySize": "12Gi"}, (6000, 12 * 2**30)),
])
def test_machine_sizes_of_the_providers_that_state_them(kind: str, spec: dict[str, Any],
                                                        size: tuple[int, int]) -> None:
    assert eksa.machine_size(kind, spec) == size


@pytest.mark.parametrize(("kind", "spec", "why"), [
    ("VSphereMachineConfig", {"numCPUs": 4}, "does not set numCPUs and memoryMiB"),
    ("NutanixMachineConfig", {"vcpusPerSocket": 1, "vcpuSockets": 2, "memorySize": "lots"}, "memorySize"),
    ("CloudStackMachineConfig", {"computeOffering": {"name": "m4-large"}}, "compute offering (m4-large)"),
    ("SnowMachineConfig", {"instanceType": "sbe-c.large"}, "instance type (sbe-c.large)"),
    ("TinkerbellMachineConfig", {}, "bare metal"),
    ("FancyMachineConfig", {}, "does not know how FancyMachineConfig"),
])
def test_machine_sizes_that_are_unknown_say_why(kind: str, spec: dict[str, Any], why: str) -> None:
    size = eksa.machine_size(kind, spec)

    assert isinstance(size, str) and why in size


def test_capacity_is_count_times_machine_size_summed_over_groups() -> None:
    groups: list[dict[str, Any]] = [
        {"name": "md-0", "count": 3, "machineGroupRef": {"kind": "VSphereMachineConfig", "name": "big"}},
        {"name": "md-1", "autoscalingConfiguration": {"minCount": 2, "maxCount": 5},
         "machineGroupRef": {"kind": "VSphereMachineConfig", "name": "small"}},
    ]
    configs: dict[tuple[str, str], Any] = {
        ("VSphereMachineConfig", "big"): {"spec": {"numCPUs": 8, "memoryMiB": 32768}},
        ("VSphereMachineConfig", "small"): {"spec": {"numCPUs": 2, "memoryMiB": 8192}},
    }

    capacity = eksa.worker_capacity(cluster(groups=groups), machine_configs=configs)

    assert (capacity.nodes, capacity.cpu_millis, capacity.memory_bytes) == (
        5, 3 * 8000 + 2 * 2000, (3 * 32 + 2 * 8) * 2**30)
    assert "md-1: 2 x (2000m cpu, 8Gi memory)" in capacity.detail


def test_docker_workers_have_no_machine_config_so_their_size_is_unknown() -> None:
    docker = cluster(groups=[{"name": "md-0", "count": 2}], datacenterRef={"kind": "DockerDatacenterConfig"})

    capacity = eksa.worker_capacity(docker, machine_configs={})

    assert (capacity.nodes, capacity.cpu_millis, capacity.memory_bytes) == (2, None, None)
    assert "DockerDatacenterConfig machines have no machine config" in capacity.detail

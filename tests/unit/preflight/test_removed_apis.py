"""The removal table against REFERENCE.md, and which removals a version window selects."""

from __future__ import annotations

import pytest

from bluegreen.preflight.removed_apis import REMOVALS, find, removals_up_to

FLOWCONTROL = "flowcontrol.apiserver.k8s.io"


@pytest.mark.parametrize(("api_version", "kind", "removed_in", "replacement"), [
    ("extensions/v1beta1", "Deployment", "1.16", "apps/v1"),
    ("apps/v1beta2", "StatefulSet", "1.16", "apps/v1"),
    ("extensions/v1beta1", "NetworkPolicy", "1.16", "networking.k8s.io/v1"),
    ("extensions/v1beta1", "Ingress", "1.22", "networking.k8s.io/v1"),
    ("networking.k8s.io/v1beta1", "Ingress", "1.22", "networking.k8s.io/v1"),
    ("networking.k8s.io/v1beta1", "IngressClass", "1.22", "networking.k8s.io/v1"),
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition", "1.22", "apiextensions.k8s.io/v1"),
    ("admissionregistration.k8s.io/v1beta1", "ValidatingWebhookConfiguration", "1.22",
     "admissionregistration.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding", "1.22", "rbac.authorization.k8s.io/v1"),
    ("storage.k8s.io/v1beta1", "StorageClass", "1.22", "storage.k8s.io/v1"),
    ("batch/v1beta1", "CronJob", "1.25", "batch/v1"),
    ("policy/v1beta1", "PodDisruptionBudget", "1.25", "policy/v1"),
    ("autoscaling/v2beta1", "HorizontalPodAutoscaler", "1.25", "autoscaling/v2"),
    ("discovery.k8s.io/v1beta1", "EndpointSlice", "1.25", "discovery.k8s.io/v1"),
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler", "1.26", "autoscaling/v2"),
    (f"{FLOWCONTROL}/v1beta1", "FlowSchema", "1.26", f"{FLOWCONTROL}/v1beta3"),
    ("storage.k8s.io/v1beta1", "CSIStorageCapacity", "1.27", "storage.k8s.io/v1"),
    (f"{FLOWCONTROL}/v1beta2", "PriorityLevelConfiguration", "1.29", f"{FLOWCONTROL}/v1"),
    (f"{FLOWCONTROL}/v1beta3", "FlowSchema", "1.32", f"{FLOWCONTROL}/v1"),
])
def test_reference_removals_are_in_the_table(api_version: str, kind: str, removed_in: str, replacement: str) -> None:
    removal = find(api_version, kind, current="1.15", target="1.32")
    assert removal is not None
    assert (removal.api_version, removal.kind, removal.removed_in, removal.replacement) == (
        api_version, kind, removed_in, replacement)


def test_pod_security_policy_has_no_api_replacement_in_1_25() -> None:
    removal = find("policy/v1beta1", "PodSecurityPolicy", current="1.24", target="1.25")
    assert removal is not None and removal.replacement.startswith("none")


@pytest.mark.parametrize(("api_version", "kind"), [
    ("batch/v1", "CronJob"), ("policy/v1", "PodDisruptionBudget"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "Ingress"), ("apps/v1", "Deployment"), ("v1", "ConfigMap"),
    (f"{FLOWCONTROL}/v1", "FlowSchema"),
])
def test_current_versions_are_never_removals(api_version: str, kind: str) -> None:
    assert find(api_version, kind, current="1.15", target="1.32") is None


def test_each_group_version_kind_is_removed_once() -> None:
    keys = [(removal.api_version, removal.kind) for removal in REMOVALS]
    assert len(keys) == len(set(keys))


def test_the_table_spans_the_releases_reference_lists() -> None:
    assert {removal.removed_in for removal in REMOVALS} == {"1.16", "1.22", "1.25", "1.26", "1.27", "1.29", "1.32"}
    assert removals_up_to(current="1.15", target="1.32") == list(REMOVALS)


def test_one_minor_window_includes_the_target_minor() -> None:
    assert find("batch/v1beta1", "CronJob", current="1.24", target="1.25") is not None
    assert {removal.removed_in for removal in removals_up_to(current="1.24", target="1.25")} == {"1.25"}


def test_window_excludes_removals_at_or_before_the_current_minor() -> None:
    assert find("batch/v1beta1", "CronJob", current="1.25", target="1.26") is None
    assert find("autoscaling/v2beta2", "HorizontalPodAutoscaler", current="1.25", target="1.26") is not None
    assert {removal.removed_in for removal in removals_up_to(current="1.25", target="1.26")} == {"1.26"}


def test_multi_minor_window_and_provider_version_forms() -> None:
    found = {removal.removed_in for removal in removals_up_to(current="v1.28.4", target="v1.31.0+eks.2")}
    assert found == {"1.29"}
    assert find(f"{FLOWCONTROL}/v1beta3", "FlowSchema", current="v1.28.4", target="1.31") is None
    assert find(f"{FLOWCONTROL}/v1beta3", "FlowSchema", current="v1.28.4", target="1.32") is not None


@pytest.mark.parametrize(("current", "target"), [("1.30", "1.30"), ("1.31", "1.25")])
def test_no_removals_without_an_upgrade(current: str, target: str) -> None:
    assert removals_up_to(current=current, target=target) == []


def test_bad_version_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        removals_up_to(current="latest", target="1.31")

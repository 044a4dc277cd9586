from __future__ import annotations

import copy
from typing import Any

import pytest

from bluegreen.clusters import capi
from bluegreen.clusters.base import ClusterProviderError
from bluegreen.clusters.registry import UnknownProviderError, build_cluster_provider
from bluegreen.engine.types import LABEL_UPGRADE
from bluegreen.kube import client as kubeclient
from bluegreen.kube import config


def blue_v1beta2(**spec_extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Cluster",
        "metadata": {
            "name": "prod-blue",
            "namespace": "fleet",
            "uid": "1234",
            "resourceVersion": "77",
            "generation": 4,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "ownerReferences": [{"kind": "Thing", "name": "x"}],
            "finalizers": ["cluster.cluster.x-k8s.io"],
            "labels": {"bluegreen.io/cluster": "prod-blue", "env": "prod", LABEL_UPGRADE: "fleet.older",
                       "kustomize.toolkit.fluxcd.io/name": "clusters"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "platform"},
        },
        "spec": {
            "clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/16"]}},
            "controlPlaneEndpoint": {"host": "10.0.0.1", "port": 6443},
            "controlPlaneRef": {"apiGroup": "controlplane.cluster.x-k8s.io", "kind": "KubeadmControlPlane",
                                "name": "prod-blue-abcde"},
            "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "DockerCluster",
                                  "name": "prod-blue-fghij"},
            "topology": {
                "classRef": {"name": "quick-start", "namespace": "fleet"},
                "version": "v1.30.4",
                "controlPlane": {"replicas": 3},
                "workers": {"machineDeployments": [{"class": "default-worker", "name": "md-0", "replicas": 2}]},
            },
            **spec_extra,
        },
        "status": {"phase": "Provisioned"},
    }


def blue_v1beta1() -> dict[str, Any]:
    blue = blue_v1beta2()
    blue["apiVersion"] = "cluster.x-k8s.io/v1beta1"
    topology = blue["spec"]["topology"]
    del topology["classRef"]
    topology["class"] = "quick-start"
    topology["version"] = "1.30"
    return blue


def clone(blue: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"green_name": "prod-green", "version": "1.31", "overrides": {},
                                 "labels": {LABEL_UPGRADE: "fleet.prod-to-1-31"}}
    arguments.update(kwargs)
    return capi.clone_cluster(blue, **arguments)


def test_the_clone_has_a_new_name_and_no_server_set_metadata_or_status() -> None:
    green = clone(blue_v1beta2())

    assert green["metadata"]["name"] == "prod-green"
    assert green["metadata"]["namespace"] == "fleet"
    assert "status" not in green
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "ownerReferences",
                "finalizers"):
        assert key not in green["metadata"], key


def test_the_clone_does_not_share_blue_endpoint_or_generated_objects() -> None:
    spec = clone(blue_v1beta2())["spec"]

    assert "controlPlaneEndpoint" not in spec
    assert "controlPlaneRef" not in spec
    assert "infrastructureRef" not in spec
    assert spec["clusterNetwork"] == blue_v1beta2()["spec"]["clusterNetwork"]
    assert spec["topology"]["workers"] == blue_v1beta2()["spec"]["topology"]["workers"]


def test_labels_follow_green_and_the_owning_upgrade_is_the_new_one() -> None:
    labels = clone(blue_v1beta2())["metadata"]["labels"]

    assert labels == {"bluegreen.io/cluster": "prod-green", "env": "prod", LABEL_UPGRADE: "fleet.prod-to-1-31"}


def test_annotations_keep_blue_s_own_and_say_where_the_clone_came_from() -> None:
    annotations = clone(blue_v1beta2())["metadata"]["annotations"]

    assert annotations == {"team": "platform", capi.CLONED_FROM: "prod-blue"}


@pytest.mark.parametrize(("blue_version", "target", "expected"), [
    ("v1.30.4", "1.31", "v1.31.0"),
    ("v1.30.4", "v1.31.2", "v1.31.2"),
    ("1.30", "v1.31.2", "1.31"),
])
def test_the_version_is_written_in_blue_s_style(blue_version: str, target: str, expected: str) -> None:
    blue = blue_v1beta2()
    blue["spec"]["topology"]["version"] = blue_version

    assert clone(blue, version=target)["spec"]["topology"]["version"] == expected


def test_overrides_are_a_merge_patch_onto_the_spec() -> None:
    overrides = {
        "topology": {"controlPlane": {"replicas": 1}, "variables": [{"name": "vip", "value": "10.0.0.2"}]},
        "clusterNetwork": None,
    }

    spec = clone(blue_v1beta2(), overrides=overrides)["spec"]

    assert spec["topology"]["controlPlane"] == {"replicas": 1}
    assert spec["topology"]["variables"] == [{"name": "vip", "value": "10.0.0.2"}]
    assert spec["topology"]["classRef"] == {"name": "quick-start", "namespace": "fleet"}
    assert "clusterNetwork" not in spec


def test_blue_is_not_modified() -> None:
    blue = blue_v1beta2()
    before = copy.deepcopy(blue)

    clone(blue, overrides={"topology": {"controlPlane": {"replicas": 1}}})

    assert blue == before


def test_v1beta1_topology_keeps_its_shape() -> None:
    green = clone(blue_v1beta1())

    assert green["apiVersion"] == "cluster.x-k8s.io/v1beta1"
    assert green["spec"]["topology"]["class"] == "quick-start"
    assert green["spec"]["topology"]["version"] == "1.31"


def test_a_cluster_without_a_cluster_class_is_refused_with_what_to_do() -> None:
    blue = blue_v1beta2()
    del blue["spec"]["topology"]

    with pytest.raises(ClusterProviderError, match=r"fleet/prod-blue has no spec.topology.*ClusterClass") as caught:
        clone(blue)
    assert "InPlace" in str(caught.value)


# --- observing -----------------------------------------------------------------------------------


def provisioned_v1beta2(*, available: str = "True", observed: int = 4) -> dict[str, Any]:
    cluster = blue_v1beta2()
    cluster["status"] = {
        "phase": "Provisioned",
        "observedGeneration": observed,
        "conditions": [{"type": "Available", "status": available, "reason": "NotAvailable" if available != "True"
                        else "Available", "message": "* ControlPlaneAvailable: 0 of 3 up" if available != "True"
                        else ""}],
    }
    return cluster


def test_v1beta2_available_and_observed_is_ready() -> None:
    seen = capi.observe_cluster(provisioned_v1beta2(), kubeconfig_secret="prod-blue-kubeconfig")

    assert (seen.exists, seen.ready, seen.version, seen.reason) == (True, True, "v1.30.4", "")
    assert seen.kubeconfig_secret == "prod-blue-kubeconfig"
    assert seen.managed_by == "fleet.older"


def test_v1beta2_not_available_says_why() -> None:
    seen = capi.observe_cluster(provisioned_v1beta2(available="False"), kubeconfig_secret=None)

    assert not seen.ready
    assert "phase Provisioned" in seen.reason
    assert "Available=False (NotAvailable): * ControlPlaneAvailable: 0 of 3 up" in seen.reason


def test_an_unobserved_generation_is_not_ready_even_when_available() -> None:
    seen = capi.observe_cluster(provisioned_v1beta2(observed=3), kubeconfig_secret=None)

    assert not seen.ready
    assert "not yet observed generation 4" in seen.reason


def test_v1beta1_reads_ready() -> None:
    cluster = blue_v1beta1()
    cluster["status"] = {"phase": "Provisioned", "observedGeneration": 4,
                         "conditions": [{"type": "Ready", "status": "True", "severity": ""}]}

    assert capi.observe_cluster(cluster, kubeconfig_secret=None).ready


def test_v1beta1_without_ready_falls_back_to_its_v1beta2_conditions() -> None:
    cluster = blue_v1beta1()
    cluster["status"] = {"phase": "Provisioned", "observedGeneration": 4,
                         "v1beta2": {"conditions": [{"type": "Available", "status": "True"}]}}

    assert capi.observe_cluster(cluster, kubeconfig_secret=None).ready


def test_failed_and_deleting_are_reported() -> None:
    failed = provisioned_v1beta2()
    failed["status"]["phase"] = "Failed"
    failed["status"]["failureMessage"] = "infrastructure quota exceeded"
    deleting = provisioned_v1beta2()
    deleting["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"

    seen_failed = capi.observe_cluster(failed, kubeconfig_secret=None)
    seen_deleting = capi.observe_cluster(deleting, kubeconfig_secret=None)

    assert seen_failed.failed and not seen_failed.ready and "infrastructure quota exceeded" in seen_failed.reason
    assert seen_deleting.deleting and not seen_deleting.ready and "being deleted" in seen_deleting.reason


def test_no_status_yet_says_the_condition_is_not_reported() -> None:
    cluster = blue_v1beta2()
    cluster["status"] = {}

    seen = capi.observe_cluster(cluster, kubeconfig_secret=None)

    assert not seen.ready and "Available not reported yet" in seen.reason


# --- registry --------------------------------------------------------------------------------------


def test_the_registry_builds_capi_and_refuses_unknown_kinds() -> None:
    client = kubeclient.KubeClient(config.Connection(server="http://127.0.0.1:1"))

    assert isinstance(build_cluster_provider("capi", client=client), capi.CapiClusterProvider)
    with pytest.raises(UnknownProviderError, match="'gke' is not available in this build; use one of: capi, eksa"):
        build_cluster_provider("gke", client=client)


def test_the_kubeconfig_secret_is_next_to_the_cluster() -> None:
    client = kubeclient.KubeClient(config.Connection(server="http://127.0.0.1:1"))
    provider = capi.CapiClusterProvider(client=client)

    assert provider.kubeconfig_secret_ref(namespace="fleet", name="prod-green") == (
        "fleet", "prod-green-kubeconfig", "value")

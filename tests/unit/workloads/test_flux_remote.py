from __future__ import annotations

from typing import Any

import pytest

from bluegreen.api.spec import FluxMode, FluxWorkloads, LabelSelector
from bluegreen.kube import client as kubeclient
from bluegreen.kube import config
from bluegreen.workloads import flux_holds, flux_remote


def blue_kustomization(name: str = "apps-prod-blue", **spec_extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system", "uid": "u", "resourceVersion": "9", "generation": 2,
                     "labels": {"bluegreen.io/cluster": "prod-blue", "tier": "apps"}},
        "spec": {
            "interval": "5m",
            "path": "./apps/prod",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            "kubeConfig": {"secretRef": {"name": "prod-blue-kubeconfig", "key": "value"}},
            "postBuild": {"substitute": {"cluster_name": "prod-blue", "region": "eu-west-1"}},
            "suspend": True,
            **spec_extra,
        },
        "status": {"observedGeneration": 2, "lastAppliedRevision": "main@sha1:abc"},
    }


def desired(blue: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"blue_name": "prod-blue", "green_name": "prod-green",
                                 "secret_name": "prod-green-kubeconfig", "secret_key": "value",
                                 "sibling_names": {}, "stamp": {"bluegreen.io/upgrade": "fleet.up"}}
    arguments.update(kwargs)
    return flux_remote.desired_copy(blue, **arguments)


@pytest.mark.parametrize(("blue_ks", "expected"), [
    ("apps-prod-blue", "apps-prod-green"),
    ("prod-blue-infra", "prod-green-infra"),
    ("apps", "apps-prod-green"),
])
def test_copy_names(blue_ks: str, expected: str) -> None:
    assert flux_remote.copy_name(blue_ks, blue_name="prod-blue", green_name="prod-green") == expected


def test_the_copy_points_at_green_and_is_not_suspended() -> None:
    copy = desired(blue_kustomization())

    assert copy["metadata"]["name"] == "apps-prod-green"
    assert copy["metadata"]["namespace"] == "flux-system"
    assert copy["spec"]["kubeConfig"] == {"secretRef": {"name": "prod-green-kubeconfig", "key": "value"}}
    assert copy["spec"]["suspend"] is False
    assert copy["spec"]["postBuild"]["substitute"] == {"cluster_name": "prod-green", "region": "eu-west-1"}
    assert {key: copy["spec"][key] for key in ("interval", "path", "prune", "sourceRef")} == {
        "interval": "5m", "path": "./apps/prod", "prune": True, "sourceRef": {"kind": "GitRepository", "name": "fleet"}}
    assert "status" not in copy and "uid" not in copy["metadata"]


def test_the_copy_s_labels_let_the_next_upgrade_select_it_as_blue() -> None:
    labels = desired(blue_kustomization())["metadata"]["labels"]

    assert labels == {
        "bluegreen.io/cluster": "prod-green",
        "tier": "apps",
        "bluegreen.io/upgrade": "fleet.up",
        flux_remote.LABEL_COPY_OF: "apps-prod-blue",
    }


def test_depends_on_a_sibling_points_at_the_sibling_s_copy() -> None:
    blue = blue_kustomization(dependsOn=[{"name": "infra-prod-blue"}, {"name": "cert-manager"},
                                         {"name": "infra-prod-blue", "namespace": "elsewhere"}])

    copy = desired(blue, sibling_names={"infra-prod-blue": "infra-prod-green"})

    assert copy["spec"]["dependsOn"] == [{"name": "infra-prod-green"}, {"name": "cert-manager"},
                                         {"name": "infra-prod-blue", "namespace": "elsewhere"}]


def test_ready_needs_the_generation_observed_and_ready_true() -> None:
    ready = blue_kustomization()
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                                      "message": "Applied revision: main@sha1:abc"}]
    stale = blue_kustomization()
    stale["status"] = {**ready["status"], "observedGeneration": 1}

    seen_ready = flux_remote.observe_kustomization(ready)
    seen_stale = flux_remote.observe_kustomization(stale)

    assert (seen_ready.ready, seen_ready.revision, seen_ready.reason) == (True, "main@sha1:abc",
                                                                         "ReconciliationSucceeded")
    assert not seen_stale.ready
    assert "generation 2 not observed yet" in seen_stale.message


def test_failing_health_is_reported_with_flux_s_reason_and_message() -> None:
    failing = blue_kustomization()
    failing["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "HealthCheckFailed",
                                        "message": "Deployment/shop/web not ready"}]

    seen = flux_remote.observe_kustomization(failing)

    assert (seen.ready, seen.reason, seen.message) == (False, "HealthCheckFailed", "Deployment/shop/web not ready")


def test_a_copy_reports_what_it_is_a_copy_of() -> None:
    copy = desired(blue_kustomization())

    assert flux_remote.observe_kustomization(copy).copy_of == "apps-prod-blue"
    assert flux_remote.observe_kustomization(blue_kustomization()).copy_of is None


def test_an_empty_selector_is_refused_naming_the_field() -> None:
    client = kubeclient.KubeClient(config.Connection(server="http://127.0.0.1:1"))
    # The spec validation refuses this already; the provider guards itself all the same.
    flux = FluxWorkloads.model_construct(mode=FluxMode.REMOTE, namespace=None, git=None,
                                         selector=LabelSelector.model_construct(match_labels={}))

    with pytest.raises(flux_remote.FluxSyncError, match=r"spec.workloads.flux.selector.matchLabels is empty"):
        flux_remote.FluxRemoteWorkloads(client=client, flux=flux, namespace="flux-system", labels={})


def test_a_new_copy_holds_every_handoff_target_and_never_copies_blue_s_holds() -> None:
    es = flux_holds.HoldTarget(kind="StatefulSet", namespace="search", name="es-data")
    own = {"patch": "- op: add\n  path: /metadata/labels/x\n  value: y\n", "target": {"kind": "Service"}}
    blue_hold = flux_holds.hold_patch(es, replicas=3, since="2026-05-01T10:00:00Z")
    blue = blue_kustomization(patches=[own, blue_hold])

    copy = desired(blue, holds=[es])

    assert copy["spec"]["patches"] == [own, flux_holds.hold_patch(es)]
    assert flux_holds.record_of(copy["spec"]["patches"][1]).replicas is None
    assert "patches" not in desired(blue_kustomization(patches=[blue_hold]))["spec"]

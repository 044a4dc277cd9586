from __future__ import annotations

import pathlib
from typing import Any

import pytest

from bluegreen.api import spec as api
from bluegreen.kube.client import KubeClient
from bluegreen.kube.remote import RemoteClients
from bluegreen.workloads.flux_git import FluxGitWorkloads
from bluegreen.workloads.flux_remote import FluxRemoteWorkloads
from bluegreen.workloads.registry import UnknownWorkloadModeError, build_workload_sync

CLIENT = KubeClient.from_kubeconfig({
    "clusters": [{"name": "m", "cluster": {"server": "http://127.0.0.1:1"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
    "contexts": [{"name": "m", "context": {"cluster": "m", "user": "u"}}],
    "current-context": "m",
})


def spec_with(flux: dict[str, Any]) -> api.ClusterUpgradeSpec:
    return api.ClusterUpgradeSpec.model_validate({
        "cluster": {"provider": "eksa", "name": "prod-blue", "namespace": "fleet"},
        "target": {"kubernetesVersion": "1.31"},
        "workloads": {"flux": flux},
        "traffic": {"routers": [{"haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "app",
                                             "blueServer": "blue", "greenServer": "green"}}],
                    "steps": [{"setWeight": 100}]},
    })


def build(spec: api.ClusterUpgradeSpec, tmp_path: pathlib.Path) -> Any:
    return build_workload_sync(
        spec, management=CLIENT, remote_clients=RemoteClients(CLIENT), upgrade_namespace="fleet",
        kubeconfig_ref=lambda name: ("eksa-system", f"{name}-kubeconfig", "value"), workdir=tmp_path,
        labels={"bluegreen.io/upgrade": "fleet.up"},
    )


def test_each_mode_gets_its_own_sync(tmp_path: pathlib.Path) -> None:
    remote = spec_with({"selector": {"matchLabels": {"bluegreen.io/cluster": "prod-blue"}}})
    git = spec_with({"mode": "git", "git": {"url": "file:///srv/env.git"}})

    assert isinstance(build(remote, tmp_path), FluxRemoteWorkloads)
    assert isinstance(build(git, tmp_path), FluxGitWorkloads)


def test_an_unknown_mode_is_an_error_not_a_fallback(tmp_path: pathlib.Path) -> None:
    spec = spec_with({"mode": "git", "git": {"url": "file:///srv/env.git"}})
    flux = spec.workloads.flux.model_copy(update={"mode": "helm"})
    odd = spec.model_copy(update={"workloads_spec": spec.workloads.model_copy(update={"flux": flux})})

    with pytest.raises(UnknownWorkloadModeError, match="'helm' is not available in this build; use one of: remote, "):
        build(odd, tmp_path)

"""Which WorkloadSync an upgrade gets, by ``spec.workloads.flux.mode``.

An explicit table, like the router and cluster registries: a mode without an
entry is an error naming the modes there are, never a fallback to another.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping

from bluegreen.api.spec import ClusterUpgradeSpec, FluxMode
from bluegreen.kube.client import KubeClient
from bluegreen.kube.remote import RemoteClients
from bluegreen.workloads import flux_holds
from bluegreen.workloads.base import WorkloadSync
from bluegreen.workloads.flux_git import FluxGitWorkloads
from bluegreen.workloads.flux_remote import FluxRemoteWorkloads
from bluegreen.workloads.none import NoWorkloads

MODES: tuple[FluxMode, ...] = (FluxMode.REMOTE, FluxMode.GIT)


class UnknownWorkloadModeError(ValueError):
    """The spec asks for a Flux mode this build does not have."""


def build_workload_sync(
    spec: ClusterUpgradeSpec,
    *,
    management: KubeClient,
    remote_clients: RemoteClients,
    upgrade_namespace: str,
    kubeconfig_ref: Callable[[str], tuple[str, str, str]],
    workdir: pathlib.Path | str,
    labels: Mapping[str, str],
) -> WorkloadSync:
    """The WorkloadSync for ``spec.workloads.flux.mode`` (none for NodePools, which has no spec.workloads).

    ``kubeconfig_ref(cluster)`` is the cluster provider's ``(namespace, secret, key)``
    of a cluster's kubeconfig; ``workdir`` is this upgrade's own directory (git mode
    keeps its clone there).
    """
    if spec.workloads_spec is None:  # strategy NodePools: the workloads stay in their cluster
        return NoWorkloads()
    flux = spec.workloads.flux
    if flux.mode == FluxMode.REMOTE:
        return FluxRemoteWorkloads(client=management, flux=flux, namespace=spec.flux_namespace, labels=labels,
                                   holds=flux_holds.hold_targets(spec))
    if flux.mode == FluxMode.GIT:
        return FluxGitWorkloads(
            management=management, remote_clients=remote_clients, flux=flux, upgrade_namespace=upgrade_namespace,
            kubeconfig_ref=kubeconfig_ref, workdir=workdir, labels=labels,
        )
    raise UnknownWorkloadModeError(
        f"spec.workloads.flux.mode {flux.mode!r} is not available in this build; use one of: "
        f"{', '.join(mode.value for mode in MODES)}"
    )

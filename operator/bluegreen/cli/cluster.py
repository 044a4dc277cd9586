"""The plugin's side of the management cluster: where it is, and the few calls the commands make.

Connection follows kubectl: ``--kubeconfig`` or ``$KUBECONFIG`` (several files
merged) or ``~/.kube/config``, then in-cluster credentials; ``--context``
picks a context; the namespace is ``-n``, else the context's, else
``default``. Nothing here starts or needs the operator.

What the plugin writes is limited to DESIGN.md's human controls: the
``bluegreen.io/promote``, ``abort`` and ``retry`` annotations and
``spec.paused``, each as a merge patch that touches nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any

from bluegreen.api import spec as api
from bluegreen.kube import config as kubeconfig
from bluegreen.kube.client import VERSION, ApiError, KubeClient, NotFoundError, Resource, UnreachableError
from bluegreen.kube.events import EVENTS

CLUSTER_UPGRADES = Resource(api.GROUP, api.VERSION, api.PLURAL)
CRD_NAME = f"{api.PLURAL}.{api.GROUP}"
# Audit logs (and managedFields, for writes) tell the plugin's calls from the operator's.
USER_AGENT = f"kubectl-bluegreen/{VERSION}"


class CliError(Exception):
    """A failure to report in one line (``error: ...``) with exit status 1."""


@dataclasses.dataclass(frozen=True)
class Target:
    """One ClusterUpgrade on one management cluster."""

    client: KubeClient
    namespace: str
    name: str

    @property
    def display(self) -> str:
        return f"{self.namespace}/{self.name}"


def connect(*, kubeconfig_path: str | None, context: str | None, namespace: str | None) -> tuple[KubeClient, str]:
    """A client for the management cluster, and the namespace to use, the way kubectl picks them."""
    try:
        if kubeconfig_path:
            connection = kubeconfig.load_kubeconfig(kubeconfig_path, context=context)
        else:
            connection = kubeconfig.load_default(context=context)
        client = KubeClient(connection, user_agent=USER_AGENT)
    except kubeconfig.KubeConfigError as exc:
        raise CliError(str(exc)) from None
    return client, namespace or connection.namespace or "default"


async def get_upgrade(target: Target) -> dict[str, Any]:
    """The ClusterUpgrade, or a CliError that says whether it or its CRD is missing."""
    try:
        found = await target.client.get(CLUSTER_UPGRADES, namespace=target.namespace, name=target.name)
    except (ApiError, UnreachableError) as exc:
        raise _failure(target, exc) from None
    if found is None:
        raise await _missing(target)
    return found


async def patch_upgrade(target: Target, body: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch of the ClusterUpgrade (never its status)."""
    try:
        return await target.client.patch(CLUSTER_UPGRADES, namespace=target.namespace, name=target.name,
                                         body=body, patch_type="merge")
    except NotFoundError:
        raise await _missing(target) from None
    except (ApiError, UnreachableError) as exc:
        raise _failure(target, exc) from None


async def events_of(target: Target, upgrade: Mapping[str, Any]) -> list[dict[str, Any]]:
    """core/v1 Events about this object (by uid, so a deleted namesake's Events are not shown)."""
    meta = upgrade.get("metadata") or {}
    uid = meta.get("uid")
    try:
        # KubeClient.list takes no fieldSelector, so the namespace's Events are filtered here.
        events = await target.client.list(EVENTS, namespace=target.namespace)
    except (ApiError, UnreachableError):
        return []  # Events are a help, not the view: a denied list must not hide the status
    return [event for event in events if _about(event, name=target.name, uid=uid)]


async def watch_upgrade(target: Target, *, resource_version: str | None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Changes of the ClusterUpgrade from ``resource_version`` on: ``("MODIFIED", obj)`` / ``("DELETED", obj)``.

    The stream is renewed when the server ends it; a 410 Expired yields
    ``("RELISTED", obj)`` from a fresh GET, so no change is missed.
    """
    version = resource_version
    while True:
        try:
            async for kind, obj in target.client.watch(CLUSTER_UPGRADES, namespace=target.namespace,
                                                       resource_version=version, timeout_seconds=300):
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version or "")
                if kind == "BOOKMARK" or (obj.get("metadata") or {}).get("name") != target.name:
                    continue
                yield kind, obj
                if kind == "DELETED":
                    return
        except ApiError as exc:
            if exc.status != 410:
                raise _failure(target, exc) from None
            current = await get_upgrade(target)
            version = str((current.get("metadata") or {}).get("resourceVersion") or "")
            yield "RELISTED", current
        except UnreachableError as exc:
            raise _failure(target, exc) from None


def _about(event: Mapping[str, Any], *, name: str, uid: object) -> bool:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    if not isinstance(involved, Mapping) or involved.get("kind") not in (api.KIND, None):
        return False
    if uid and involved.get("uid"):
        return bool(involved.get("uid") == uid)
    return bool(involved.get("name") == name)


async def _missing(target: Target) -> CliError:
    not_found = CliError(f'clusterupgrade "{target.name}" not found in namespace "{target.namespace}"')
    try:
        served = await target.client.resources(api.API_VERSION)
    except (ApiError, UnreachableError):
        return not_found
    if served is None or not any(item.get("name") == api.PLURAL for item in served):
        return CliError(f"the ClusterUpgrade CRD ({CRD_NAME}) is not installed on {target.client.server}; "
                        "install it with `kubectl apply -k crds` (from the bluegreen repository)")
    return not_found


def _failure(target: Target, exc: ApiError | UnreachableError) -> CliError:
    if isinstance(exc, UnreachableError):
        return CliError(f"cannot reach the management cluster: {exc}")
    return CliError(f"clusterupgrade {target.display}: {exc}")

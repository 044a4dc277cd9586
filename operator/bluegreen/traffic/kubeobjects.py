"""What the routers that edit Kubernetes objects share: where the objects are, and how they are written.

The Gateway API, Emissary and Istio routers take over a few fields of objects
that belong to the user (an HTTPRoute's backendRefs, two Mappings' weights, a
VirtualService's route). This module is not a router and knows none of them;
it keeps the rules they all follow in one place:

- The objects live on the management cluster, or on a cluster reached through
  a kubeconfig Secret in the ClusterUpgrade's namespace
  (``cluster.kubeconfigSecretRef``, default key ``value``). The client is asked
  for on every call: :class:`~bluegreen.kube.remote.RemoteClients` caches it
  and rebuilds it when the Secret changes (rotated credentials).
- Every write is a merge patch that carries the ``resourceVersion`` read just
  before: if anyone changed the object in between, the API server answers 409
  and writes nothing. The router reports a :class:`~bluegreen.traffic.base.RouterError`
  and the next pass reads the object again, so a change nobody has seen is
  never overwritten.
- Before its first change a router saves what it takes over in a
  ``bluegreen.io/original-...`` annotation on the object, in the same write, so
  a person can see and restore it (Flagger does the same). An annotation that
  is already there is kept: it holds what was there before bluegreen first
  touched the object, which is the state worth restoring.
- Every failure of the API becomes a RouterError naming the object, the
  cluster and the API server's own words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bluegreen.api import spec
from bluegreen.kube import client as kubeclient
from bluegreen.traffic import base

ORIGINAL_PREFIX = "bluegreen.io/original-"


class Cluster:
    """The cluster that holds a router's objects: the management cluster or one behind a kubeconfig Secret."""

    def __init__(self, *, context: base.RouterContext, kubeconfig: spec.SecretKeyRef | None) -> None:
        self._context = context
        self._kubeconfig = kubeconfig

    @classmethod
    def from_access(cls, access: spec.ClusterAccess, *, context: base.RouterContext) -> Cluster:
        return cls(context=context, kubeconfig=access.kubeconfig_secret_ref)

    def __str__(self) -> str:
        if self._kubeconfig is None:
            return "the management cluster"
        return f"the cluster of kubeconfig Secret {self._context.namespace}/{self._kubeconfig.name}"

    async def client(self) -> kubeclient.KubeClient:
        if self._kubeconfig is None:
            return self._context.management
        try:
            return await self._context.remote.client(
                namespace=self._context.namespace, name=self._kubeconfig.name, key=self._kubeconfig.key or "value"
            )
        except kubeclient.KubeError as exc:
            # KubeconfigSecretError names the Secret and the keys tried, never their content.
            raise base.RouterError(f"cannot reach {self}: {exc}") from None


def check_percent(*, blue: int, green: int) -> None:
    if not (0 <= blue <= 100 and 0 <= green <= 100 and blue + green == 100):
        raise ValueError(f"weights must be percent summing to 100, got blue={blue} green={green}")


def same_split(*, current: tuple[int, int], desired: tuple[int, int]) -> bool:
    """Whether relative weights ``current`` send traffic as ``desired`` does (exact proportion, not rounded).

    Two zero weights send nothing anywhere, which is never a split anyone asked for.
    """
    (current_blue, current_green), (desired_blue, desired_green) = current, desired
    if current_blue + current_green == 0:
        return False
    return current_blue * desired_green == current_green * desired_blue


def percent(*, blue_weight: int, green_weight: int) -> base.RouterWeights:
    """Relative weights as percent of the traffic the two sides share (callers refuse a zero total first)."""
    blue = round(100 * blue_weight / (blue_weight + green_weight))
    return base.RouterWeights(blue=blue, green=100 - blue)


def failure(exc: kubeclient.KubeError, *, doing: str, what: str, cluster: Cluster) -> base.RouterError:
    """A RouterError for an API failure while ``doing`` something to ``what``."""
    if isinstance(exc, kubeclient.ConflictError):
        return base.RouterError(
            f"{what} on {cluster} changed while bluegreen was {doing} it (409 Conflict: stale resourceVersion); "
            "nothing was written, the next attempt reads it again"
        )
    if isinstance(exc, kubeclient.ApiError) and exc.status == 403:
        return base.RouterError(
            f"the operator is forbidden from {doing} {what} on {cluster} (403: {exc.message}); "
            "grant its identity there get and patch on that resource"
        )
    return base.RouterError(f"{doing} {what} on {cluster} failed: {exc}")


async def read(
    client: kubeclient.KubeClient, resource: kubeclient.Resource, *, namespace: str, name: str, what: str,
    cluster: Cluster,
) -> dict[str, Any]:
    """The object; a RouterError when it does not exist or cannot be read."""
    try:
        found = await client.get(resource, namespace=namespace, name=name)
    except kubeclient.KubeError as exc:
        raise failure(exc, doing="reading", what=what, cluster=cluster) from None
    if found is None:
        raise base.RouterError(f"{what} does not exist on {cluster} (or {resource} is not served there)")
    return found


async def write(
    client: kubeclient.KubeClient,
    resource: kubeclient.Resource,
    *,
    read_back: Mapping[str, Any],
    spec_patch: Mapping[str, Any],
    annotations: Mapping[str, str | None],
    what: str,
    cluster: Cluster,
) -> dict[str, Any]:
    """Merge-patch ``spec_patch`` and ``annotations`` (None removes one), guarded by the version read."""
    metadata = read_back.get("metadata") or {}
    patch_metadata: dict[str, Any] = {"resourceVersion": metadata.get("resourceVersion")}
    if annotations:
        patch_metadata["annotations"] = dict(annotations)
    try:
        return await client.patch(
            resource,
            namespace=metadata.get("namespace"),
            name=str(metadata.get("name")),
            body={"metadata": patch_metadata, "spec": dict(spec_patch)},
        )
    except kubeclient.KubeError as exc:
        raise failure(exc, doing="updating", what=what, cluster=cluster) from None


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    found = (obj.get("metadata") or {}).get("annotations")
    return dict(found) if isinstance(found, dict) else {}


def save_original(obj: Mapping[str, Any], *, key: str, value: Any) -> dict[str, str | None]:
    """The annotation to write with the first change: ``value`` as JSON, unless one is saved already."""
    if key in annotations_of(obj):
        return {}
    return {key: json.dumps(value, separators=(",", ":"), sort_keys=True)}


def forget_original(obj: Mapping[str, Any], *, key: str) -> dict[str, str | None]:
    """The annotation change that drops a saved original, if there is one."""
    return {key: None} if key in annotations_of(obj) else {}


def resource_version(obj: Mapping[str, Any]) -> str | None:
    found = (obj.get("metadata") or {}).get("resourceVersion")
    return str(found) if found is not None else None


def describe(obj: Mapping[str, Any], kind: str) -> str:
    metadata = obj.get("metadata") or {}
    return f"{kind} {metadata.get('namespace')}/{metadata.get('name')}"


def is_weight(value: Any, *, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


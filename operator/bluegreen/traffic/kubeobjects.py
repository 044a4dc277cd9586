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
- What a router takes over is saved by its ``save`` into the ClusterUpgrade's
  ``status.routers`` (status is the operator's only memory), never on the
  object: the objects are the user's, often applied from Git, and an
  annotation there would be one more thing to drift or be pruned.
- Every failure of the API becomes a RouterError naming the object, the
  cluster and the API server's own words.
- The routers that take over a list of weighted entries (an HTTPRoute rule's
  backendRefs, a VirtualService route's destinations) finalize the same way,
  through :class:`EntryList`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from bluegreen.api import spec
from bluegreen.kube import client as kubeclient
from bluegreen.traffic import base, retiring


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


async def get(
    client: kubeclient.KubeClient, resource: kubeclient.Resource, *, namespace: str, name: str, what: str,
    cluster: Cluster,
) -> dict[str, Any] | None:
    """The object, or None when it does not exist; a RouterError when it cannot be read."""
    try:
        return await client.get(resource, namespace=namespace, name=name)
    except kubeclient.KubeError as exc:
        raise failure(exc, doing="reading", what=what, cluster=cluster) from None


async def read(
    client: kubeclient.KubeClient, resource: kubeclient.Resource, *, namespace: str, name: str, what: str,
    cluster: Cluster,
) -> dict[str, Any]:
    """The object; a RouterError when it does not exist or cannot be read."""
    found = await get(client, resource, namespace=namespace, name=name, what=what, cluster=cluster)
    if found is None:
        raise base.RouterError(f"{what} does not exist on {cluster} (or {resource} is not served there)")
    return found


async def write(
    client: kubeclient.KubeClient,
    resource: kubeclient.Resource,
    *,
    read_back: Mapping[str, Any],
    spec_patch: Mapping[str, Any],
    what: str,
    cluster: Cluster,
) -> dict[str, Any]:
    """Merge-patch ``spec_patch`` (None removes a field), guarded by the version read."""
    metadata = read_back.get("metadata") or {}
    try:
        return await client.patch(
            resource,
            namespace=metadata.get("namespace"),
            name=str(metadata.get("name")),
            body={"metadata": {"resourceVersion": metadata.get("resourceVersion")}, "spec": dict(spec_patch)},
        )
    except kubeclient.KubeError as exc:
        raise failure(exc, doing="updating", what=what, cluster=cluster) from None


Entries = list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class EntryList:
    """A list of weighted entries in a router's object, ``spec[field][position][key]``, and how to read it.

    An HTTPRoute rule's backendRefs, a VirtualService route's destinations: both are read and finalized the
    same way, here. ``index`` finds a side's entry (None: absent, which counts as weight 0), ``weight`` reads
    the entry at a position as the back end counts it, ``label`` names a side's entry ("app-blue:80") and
    ``noun`` says what an entry is ("backend").
    """

    field: str
    position: int
    key: str
    noun: str
    index: Callable[[Entries, str], int | None]
    weight: Callable[[Entries, int], int]
    label: Callable[[str], str]

    def shares(self, entries: Entries) -> tuple[int, int]:
        """(blue, green) weights in ``entries``."""
        blue, green = (self.index(entries, side) for side in retiring.SIDES)
        return (0 if blue is None else self.weight(entries, blue), 0 if green is None else self.weight(entries, green))

    def state(self, entries: Entries) -> str:
        """Both sides' weights in ``entries``, for messages: ``app-blue:80 90, app-green:80 absent``."""
        parts = []
        for side in retiring.SIDES:
            found = self.index(entries, side)
            parts.append(f"{self.label(side)} {'absent' if found is None else self.weight(entries, found)}")
        return ", ".join(parts)

    async def finalize(
        self, retirement: retiring.Retirement, *, client: kubeclient.KubeClient, resource: kubeclient.Resource,
        obj: Mapping[str, Any], entries: Entries, router: str, what: str, cluster: Cluster,
    ) -> str:
        """Leave ``entries`` (read from ``obj``) as saved (Restore) or without the retired side's; a journal line.

        Refuses per :mod:`~bluegreen.traffic.retiring`; writes only on a difference.
        """
        where = f"{what} {self.field}[{self.position}]"
        retiring.check_current(retirement, shares=self.shares(entries), what=where, state=self.state(entries))
        if retirement.restoring:
            wanted = retiring.saved(retirement, self.key, router=router, expect=list)
            if not all(isinstance(entry, dict) for entry in wanted):
                raise base.RouterError(f"router {router!r}: the {self.key} saved in status.routers are not objects; "
                                       "set them by hand, or set onFinalize: Remove")
            retiring.check_original(retirement, shares=self.shares(wanted), what=where, state=self.state(wanted))
            outcome = f"{self.key} restored as saved ({self.state(wanted)})"
        else:
            position = self.index(entries, retirement.retired)
            wanted = [entry for number, entry in enumerate(entries) if number != position]
            outcome = f"removed {retirement.retired}'s {self.noun} {self.label(retirement.retired)}"
        if wanted == entries:
            return f"{where}: {'as saved before the upgrade' if retirement.restoring else 'already ' + outcome}"
        lists = copy.deepcopy((obj.get("spec") or {})[self.field])
        lists[self.position][self.key] = list(wanted)
        await write(client, resource, read_back=obj, spec_patch={self.field: lists}, what=what, cluster=cluster)
        return f"{where}: {outcome}"


def resource_version(obj: Mapping[str, Any]) -> str | None:
    found = (obj.get("metadata") or {}).get("resourceVersion")
    return str(found) if found is not None else None


def describe(obj: Mapping[str, Any], kind: str) -> str:
    metadata = obj.get("metadata") or {}
    return f"{kind} {metadata.get('namespace')}/{metadata.get('name')}"


def is_weight(value: Any, *, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


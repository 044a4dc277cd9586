"""Emissary-ingress as a router: ``spec.weight`` of blue's Mapping and green's Mapping.

Emissary groups the Mappings that share a prefix and host and splits their
traffic by weight, in percent. Its rules, which this module follows (they are
in Emissary's mapping-group normalisation): a weighted Mapping takes its
weight; the Mappings without one share what is left equally; a group whose
weights add up to more than 100 is refused as a whole (Emissary keeps serving
nothing new for it); weights that add up to less than 100 with no unweighted
Mapping leave the rest to whatever route comes after. The pair is assumed to
be the whole group: a third Mapping of the same prefix and host would take
its own share, which this router neither sees nor changes.

Invariants:

- Only ``spec.weight`` of the two Mappings is written; everything else stays
  the user's. Both Mappings must exist and share prefix and host, or the
  weights would not split one stream of requests.
- ``set_weights`` compares the split in effect with the one asked for and
  writes only on a difference: explicit weights on both Mappings, one merge
  patch each, each guarded by the ``resourceVersion`` read (see
  :mod:`bluegreen.traffic.kubeobjects`).
- Two objects cannot change at once. Of the two possible orders the one whose
  intermediate state is valid and loses the least traffic goes first: a
  group over 100 is never written, so normally the falling side goes first.
  A failure between the two writes says what was already applied.
- ``save`` keeps both Mappings' weights (None: no weight). ``finalize``
  (Remove) gives the retired Mapping weight 0 and the kept one 100. That is
  what "removed" honestly means for a Mapping group: the Mapping is the
  user's (often kept in Git, where a deletion would come back) and at weight
  0 it takes nothing, while deleting it would be a change to the user's
  routing this router does not own. It writes explicit numbers rather than
  removing the kept side's weight: without a weight the kept side would only
  get "what the other leaves", the same split today but one that depends on
  the retired Mapping staying as it is. It refuses while the retired Mapping
  still takes a share. When the retired Mapping is gone already, the kept one
  is given 100 if it has another weight. Restore after a rollback writes the
  saved weights back, removing a weight that was not there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bluegreen.api import spec
from bluegreen.kube import client as kubeclient
from bluegreen.traffic import base, kubeobjects, retiring

DEFAULT_API_VERSION = "getambassador.io/v3alpha1"
MAX_WEIGHT = 100


def mappings_resource(api_version: str) -> kubeclient.Resource:
    group, slash, version = api_version.partition("/")
    if not slash or not group or not version or "/" in version:
        raise ValueError(f"emissary.apiVersion {api_version!r} is not group/version, e.g. {DEFAULT_API_VERSION}")
    return kubeclient.Resource(group, version, "mappings")


@dataclasses.dataclass(frozen=True)
class _Split:
    """Explicit weights of the pair (None: no weight) and what Emissary makes of them."""

    blue: int | None
    green: int | None

    def effective(self) -> tuple[int, int, int] | None:
        """(blue %, green %, % routed to neither), or None when Emissary refuses the group (over 100)."""
        explicit = (self.blue or 0) + (self.green or 0)
        if explicit > 100:
            return None
        weightless = [side for side, weight in (("blue", self.blue), ("green", self.green)) if weight is None]
        remaining = 100 - explicit
        blue = self.blue if self.blue is not None else 0
        green = self.green if self.green is not None else 0
        if len(weightless) == 2:
            blue, green = remaining - remaining // 2, remaining // 2
        elif weightless == ["blue"]:
            blue = remaining
        elif weightless == ["green"]:
            green = remaining
        return blue, green, 100 - blue - green

    def describe(self) -> str:
        return f"blue {_text(self.blue)} and green {_text(self.green)}"


class EmissaryRouter:
    """Split traffic between two Emissary Mappings of one prefix and host."""

    def __init__(
        self,
        *,
        name: str,
        cluster: kubeobjects.Cluster,
        blue: spec.ObjectRef,
        green: spec.ObjectRef,
        api_version: str = DEFAULT_API_VERSION,
    ) -> None:
        if (blue.namespace, blue.name) == (green.namespace, green.name):
            raise ValueError(f"emissary.blueMapping and emissary.greenMapping are both {blue.namespace}/{blue.name}")
        self._name = name
        self._cluster = cluster
        self._blue = blue
        self._green = green
        self._resource = mappings_resource(api_version)

    @classmethod
    def from_spec(cls, *, name: str, config: spec.EmissaryRouter, context: base.RouterContext) -> EmissaryRouter:
        return cls(
            name=name,
            cluster=kubeobjects.Cluster.from_access(config.cluster, context=context),
            blue=config.blue_mapping,
            green=config.green_mapping,
            api_version=config.api_version,
        )

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return (
            f"EmissaryRouter(name={self._name!r}, blue={self._label(self._blue)!r}, "
            f"green={self._label(self._green)!r}, apiVersion={self._resource.api_version!r}, "
            f"cluster={str(self._cluster)!r})"
        )

    async def set_weights(self, *, blue: int, green: int) -> base.RouterChange:
        kubeobjects.check_percent(blue=blue, green=green)
        client = await self._cluster.client()
        blue_mapping, green_mapping = await self._read_pair(client)
        current = _Split(self._weight(blue_mapping), self._weight(green_mapping))
        if current.effective() == (blue, green, 0):
            return base.RouterChange(changed=False, detail=f"{self._pair()}: {current.describe()}")
        return await self._apply(client, blue_mapping, green_mapping, current, _Split(blue, green))

    async def verify(self) -> base.RouterWeights:
        client = await self._cluster.client()
        blue_mapping, green_mapping = await self._read_pair(client)
        split = _Split(self._weight(blue_mapping), self._weight(green_mapping))
        effective = split.effective()
        if effective is None:
            raise base.RouterError(
                f"{self._pair()} have weights {split.describe()}, which add up to more than 100: "
                "Emissary refuses the whole group"
            )
        blue, green, lost = effective
        if lost:
            raise base.RouterError(
                f"{self._pair()} have weights {split.describe()}, which add up to {100 - lost}: Emissary "
                f"leaves {lost}% of the requests to whatever route comes next"
            )
        return base.RouterWeights(blue=blue, green=green)

    async def save(self) -> dict[str, Any]:
        """Both Mappings' weights (None: no weight)."""
        blue_mapping, green_mapping = await self._read_pair(await self._cluster.client())
        return {"blue": self._weight(blue_mapping), "green": self._weight(green_mapping)}

    async def finalize(self, *, retired: str, mode: str, original: dict[str, Any] | None) -> str:
        retirement = retiring.plan(router=self._name, retired=retired, mode=mode, original=original)
        client = await self._cluster.client()
        gone = self._ref(retirement.retired)
        if await kubeobjects.get(client, self._resource, namespace=gone.namespace, name=gone.name,
                                 what=self._label(gone), cluster=self._cluster) is None:
            return await self._alone(client, retirement)
        blue_mapping, green_mapping = await self._read_pair(client)
        current = _Split(self._weight(blue_mapping), self._weight(green_mapping))
        retiring.check_current(retirement, shares=self._shares(current), what=self._pair(),
                               state=current.describe())
        if retirement.restoring:
            desired = _Split(self._saved_weight(retirement, "blue"), self._saved_weight(retirement, "green"))
            retiring.check_original(retirement, shares=self._shares(desired), what=self._pair(),
                                    state=desired.describe())
            outcome = "restored as saved"
        else:
            desired = _Split(0, 100) if retirement.retired == "blue" else _Split(100, 0)
            outcome = f"{retirement.retired} retired"
        change = await self._apply(client, blue_mapping, green_mapping, current, desired)
        if not change.changed:
            outcome = "as saved before the upgrade" if retirement.restoring else f"{retirement.retired} already retired"
            return f"{self._pair()}: {outcome} ({desired.describe()})"
        return f"{self._pair()}: {outcome}: {change.detail}"

    async def _alone(self, client: kubeclient.KubeClient, retirement: retiring.Retirement) -> str:
        """The retired Mapping is gone already: the kept one must take everything, alone."""
        gone, kept = self._ref(retirement.retired), self._ref(retirement.kept)
        mapping = await self._read(client, kept)
        weight = self._weight(mapping)
        # Alone, no weight and 100 both take everything; a restore puts back whichever of the two was saved.
        desired = weight if weight in (None, 100) else 100
        if retirement.restoring:
            saved = self._saved_weight(retirement, retirement.kept)
            desired = saved if saved in (None, 100) else desired
        if desired == weight:
            return f"{self._label(gone)} is gone; {self._label(kept)} takes everything (weight {_text(weight)})"
        await kubeobjects.write(client, self._resource, read_back=mapping, spec_patch={"weight": desired},
                                what=self._label(kept), cluster=self._cluster)
        return f"{self._label(gone)} is gone; {retirement.kept} {self._label(kept)} {_text(weight)}->{_text(desired)}"

    # --- writing -----------------------------------------------------------------------------------

    async def _apply(
        self,
        client: kubeclient.KubeClient,
        blue_mapping: dict[str, Any],
        green_mapping: dict[str, Any],
        current: _Split,
        desired: _Split,
    ) -> base.RouterChange:
        writes = [
            (side, ref, mapping, before, after)
            for side, ref, mapping, before, after in (
                ("blue", self._blue, blue_mapping, current.blue, desired.blue),
                ("green", self._green, green_mapping, current.green, desired.green),
            )
            if before != after
        ]
        # Between the two writes one side is new and the other old; pick the order whose middle is better.
        if len(writes) == 2 and _loss(_Split(current.blue, desired.green)) < _loss(_Split(desired.blue, current.green)):
            writes.reverse()
        done: list[str] = []
        change_id: str | None = None
        for side, ref, mapping, before, after in writes:
            try:
                written = await kubeobjects.write(client, self._resource, read_back=mapping,
                                                  spec_patch={"weight": after}, what=self._label(ref),
                                                  cluster=self._cluster)
            except base.RouterError as exc:
                already = f" (already applied: {', '.join(done)})" if done else ""
                raise base.RouterError(f"{exc}{already}") from None
            done.append(f"{side} {self._label(ref)} {_text(before)}->{_text(after)}")
            change_id = kubeobjects.resource_version(written)
        return base.RouterChange(changed=bool(done), detail=", ".join(done), change_id=change_id)

    # --- reading -----------------------------------------------------------------------------------

    async def _read_pair(self, client: kubeclient.KubeClient) -> tuple[dict[str, Any], dict[str, Any]]:
        blue_mapping = await self._read(client, self._blue)
        green_mapping = await self._read(client, self._green)
        self._check_group(blue_mapping, green_mapping)
        return blue_mapping, green_mapping

    async def _read(self, client: kubeclient.KubeClient, ref: spec.ObjectRef) -> dict[str, Any]:
        return await kubeobjects.read(client, self._resource, namespace=ref.namespace, name=ref.name,
                                      what=self._label(ref), cluster=self._cluster)

    def _check_group(self, blue_mapping: dict[str, Any], green_mapping: dict[str, Any]) -> None:
        blue_key, green_key = _group_key(blue_mapping), _group_key(green_mapping)
        if blue_key != green_key:
            raise base.RouterError(
                f"{self._pair()} do not route the same requests (blue: {_key_text(blue_key)}; green: "
                f"{_key_text(green_key)}): Emissary splits by weight only between Mappings of one prefix and host"
            )

    def _weight(self, mapping: dict[str, Any]) -> int | None:
        weight = (mapping.get("spec") or {}).get("weight")
        if weight is None:
            return None
        if not kubeobjects.is_weight(weight, maximum=MAX_WEIGHT):
            raise base.RouterError(
                f"{kubeobjects.describe(mapping, 'Mapping')} has weight {weight!r}, not an integer from 0 to 100"
            )
        return int(weight)

    def _saved_weight(self, retirement: retiring.Retirement, side: str) -> int | None:
        weight = retiring.saved(retirement, side, router=self._name, expect=(int, type(None)))
        if weight is None:
            return None
        if not kubeobjects.is_weight(weight, maximum=MAX_WEIGHT):
            raise base.RouterError(f"router {self._name!r}: the {side} weight saved in status.routers is {weight!r}, "
                                   "not 0-100; set the weights by hand, or set onFinalize: Remove")
        return int(weight)

    def _shares(self, split: _Split) -> tuple[int, int]:
        """(blue, green) percent Emissary gives the pair; an error for a group it refuses."""
        effective = split.effective()
        if effective is None:
            raise base.RouterError(
                f"{self._pair()} with weights {split.describe()} add up to more than 100: Emissary refuses the "
                "whole group; set the weights by hand"
            )
        return effective[0], effective[1]

    def _ref(self, side: str) -> spec.ObjectRef:
        return self._blue if side == "blue" else self._green

    def _label(self, ref: spec.ObjectRef) -> str:
        return f"Mapping {ref.namespace}/{ref.name}"

    def _pair(self) -> str:
        return f"Mappings {self._blue.namespace}/{self._blue.name} and {self._green.namespace}/{self._green.name}"


def _loss(state: _Split) -> int:
    """How bad a state is: the percent of requests routed to neither side, 1000 when Emissary refuses it."""
    effective = state.effective()
    return 1000 if effective is None else effective[2]


def _group_key(mapping: dict[str, Any]) -> tuple[Any, ...]:
    spec_ = mapping.get("spec") or {}
    host = spec_.get("hostname", spec_.get("host")) or "*"  # no host is any host
    return (spec_.get("prefix"), spec_.get("prefix_regex", False), host)


def _key_text(key: tuple[Any, ...]) -> str:
    prefix, regex, host = key
    return f"prefix {prefix!r}{' (regex)' if regex else ''}, host {host!r}"


def _text(weight: int | None) -> str:
    return "unset" if weight is None else str(weight)

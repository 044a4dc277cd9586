"""Istio as a router: the weights of blue's and green's destinations in one http route of a VirtualService.

``spec.http[route].route[]`` lists destinations with relative weights; a
destination without a weight counts 0, except that a route with a single
destination sends it everything. Writing the percent itself gives exactly the
split asked for, and it is also what Istio releases that still want the
weights of a route to add up to 100 accept.

The API version is found by discovery: ``networking.istio.io/v1`` where it is
served (Istio 1.22 and later), else ``v1beta1``. It is looked up once per
router and again after the VirtualService was not found, in case Istio was
upgraded in between.

Invariants:

- Only blue's and green's entries of ``http[route].route`` are touched, and
  only their ``weight``; every other destination, match, retry, header rule
  and http route is written back as it was read. A destination is found by
  ``host`` (compared as written: ``reviews`` and
  ``reviews.prod.svc.cluster.local`` are different names here), ``subset``
  (absent matches absent only) and, when the spec names one, port number.
- ``set_weights`` compares the split in effect (exact proportion) with the one
  asked for and writes only on a difference, in one merge patch of
  ``spec.http`` guarded by the ``resourceVersion`` it read (see
  :mod:`bluegreen.traffic.kubeobjects`). Green's destination is appended to
  the route when missing. A missing destination counts as weight 0: the
  retired side's is gone after ``finalize``; blue's is never added back, so
  asking blue for traffic without its destination is an error.
- ``save`` keeps the route's destinations as read. ``finalize`` (Remove) drops
  the retired side's destination (it routes to a cluster that is being
  deleted) and keeps every other; it refuses while that destination still
  takes a share, or when the kept side's would carry nothing. Restore after a
  rollback writes the saved destinations back as they were (so green's,
  added by bluegreen, is gone again). A VirtualService that no longer exists
  routes to nobody: finalize has nothing to do.
"""

from __future__ import annotations

import copy
from typing import Any

from bluegreen.api import spec
from bluegreen.kube import client as kubeclient
from bluegreen.traffic import base, kubeobjects, retiring

GROUP = "networking.istio.io"
VERSIONS = ("v1", "v1beta1")  # in order of preference
PLURAL = "virtualservices"


class IstioRouter:
    """Split traffic between two destinations of one VirtualService http route."""

    def __init__(
        self,
        *,
        name: str,
        cluster: kubeobjects.Cluster,
        namespace: str,
        virtual_service: str,
        route: int,
        blue: spec.IstioDestination,
        green: spec.IstioDestination,
    ) -> None:
        if route < 0:
            raise ValueError(f"istio.route must be 0 or more, got {route}")
        if _overlap(blue, green):
            raise ValueError(f"istio.blueDestination and istio.greenDestination both name {_label(blue)}")
        self._name = name
        self._cluster = cluster
        self._namespace = namespace
        self._virtual_service = virtual_service
        self._route = route
        self._blue = blue
        self._green = green
        self._resource: kubeclient.Resource | None = None
        self._entries = kubeobjects.EntryList(
            field="http", position=route, key="route", noun="destination", index=self._index, weight=self._weight,
            label=lambda side: _label(self._destination(side)),
        )

    @classmethod
    def from_spec(cls, *, name: str, config: spec.IstioRouter, context: base.RouterContext) -> IstioRouter:
        return cls(
            name=name,
            cluster=kubeobjects.Cluster.from_access(config.cluster, context=context),
            namespace=config.virtual_service.namespace,
            virtual_service=config.virtual_service.name,
            route=config.route,
            blue=config.blue_destination,
            green=config.green_destination,
        )

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return (
            f"IstioRouter(name={self._name!r}, virtual_service={self._what!r}, route={self._route}, "
            f"blue={_label(self._blue)!r}, green={_label(self._green)!r}, cluster={str(self._cluster)!r})"
        )

    @property
    def _what(self) -> str:
        return f"VirtualService {self._namespace}/{self._virtual_service}"

    async def set_weights(self, *, blue: int, green: int) -> base.RouterChange:
        kubeobjects.check_percent(blue=blue, green=green)
        client = await self._cluster.client()
        resource, service = await self._read(client)
        http, destinations = self._route_destinations(service)
        blue_index, green_index = self._index(destinations, "blue"), self._index(destinations, "green")
        current_blue, current_green = self._entries.shares(destinations)
        if kubeobjects.same_split(current=(current_blue, current_green), desired=(blue, green)):
            return base.RouterChange(changed=False,
                                     detail=f"{self._what} http[{self._route}]: {self._entries.state(destinations)}")
        if blue_index is None and blue > 0:
            raise self._missing(destinations, self._blue, side="blue")

        new_destinations = copy.deepcopy(destinations)
        if blue_index is not None:
            new_destinations[blue_index]["weight"] = blue
        if green_index is None:
            new_destinations.append({"destination": _destination(self._green), "weight": green})
        else:
            new_destinations[green_index]["weight"] = green
        new_http = copy.deepcopy(http)
        new_http[self._route]["route"] = new_destinations
        written = await kubeobjects.write(client, resource, read_back=service, spec_patch={"http": new_http},
                                          what=self._what, cluster=self._cluster)
        added = " (added)" if green_index is None else ""
        detail = (
            f"{self._what} http[{self._route}]: {_label(self._blue)} {current_blue}->{blue}, "
            f"{_label(self._green)} {current_green}->{green}{added}"
        )
        return base.RouterChange(changed=True, detail=detail, change_id=kubeobjects.resource_version(written))

    async def verify(self) -> base.RouterWeights:
        client = await self._cluster.client()
        _, service = await self._read(client)
        _, destinations = self._route_destinations(service)
        if self._index(destinations, "blue") is None and self._index(destinations, "green") is None:
            raise self._missing(destinations, self._blue, side="blue")
        blue_weight, green_weight = self._entries.shares(destinations)
        if blue_weight + green_weight == 0:
            raise base.RouterError(
                f"{self._what} http[{self._route}] gives blue's and green's destinations weight 0: "
                "neither takes traffic"
            )
        return kubeobjects.percent(blue_weight=blue_weight, green_weight=green_weight)

    async def save(self) -> dict[str, Any]:
        """The http route's destinations as read."""
        _, service = await self._read(await self._cluster.client())
        _, destinations = self._route_destinations(service)
        return {"route": destinations}

    async def finalize(self, *, retired: str, mode: str, original: dict[str, Any] | None) -> str:
        retirement = retiring.plan(router=self._name, retired=retired, mode=mode, original=original)
        client = await self._cluster.client()
        resource = await self._served(client)
        service = await kubeobjects.get(client, resource, namespace=self._namespace, name=self._virtual_service,
                                        what=self._what, cluster=self._cluster)
        if service is None:
            self._resource = None
            return f"{self._what} does not exist on {self._cluster}: nothing routes through it"
        _, destinations = self._route_destinations(service)
        return await self._entries.finalize(retirement, client=client, resource=resource, obj=service,
                                            entries=destinations, router=self._name, what=self._what,
                                            cluster=self._cluster)

    # --- reading -----------------------------------------------------------------------------------

    async def _served(self, client: kubeclient.KubeClient) -> kubeclient.Resource:
        if self._resource is not None:
            return self._resource
        for version in VERSIONS:
            try:
                resources = await client.resources(f"{GROUP}/{version}")
            except kubeclient.KubeError as exc:
                raise kubeobjects.failure(exc, doing="discovering", what=f"{GROUP}/{version}",
                                          cluster=self._cluster) from None
            if resources is not None and any(item.get("name") == PLURAL for item in resources):
                self._resource = kubeclient.Resource(GROUP, version, PLURAL)
                return self._resource
        raise base.RouterError(
            f"{self._cluster} serves no VirtualService API ({', '.join(f'{GROUP}/{v}' for v in VERSIONS)}); "
            "is Istio installed there?"
        )

    async def _read(self, client: kubeclient.KubeClient) -> tuple[kubeclient.Resource, dict[str, Any]]:
        resource = await self._served(client)
        try:
            service = await kubeobjects.read(client, resource, namespace=self._namespace,
                                             name=self._virtual_service, what=self._what, cluster=self._cluster)
        except base.RouterError:
            self._resource = None  # look the version up again next time: Istio may have changed
            raise
        return resource, service

    def _route_destinations(self, service: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        http = (service.get("spec") or {}).get("http")
        if not isinstance(http, list) or self._route >= len(http):
            count = len(http) if isinstance(http, list) else 0
            raise base.RouterError(
                f"{self._what} has {count} http route{'s' if count != 1 else ''}, so istio.route {self._route} "
                "names none; routes are counted from 0"
            )
        destinations = http[self._route].get("route") or []
        if not isinstance(destinations, list) or not all(isinstance(entry, dict) for entry in destinations):
            raise base.RouterError(f"{self._what} http[{self._route}].route is not a list of objects")
        return http, destinations

    def _find(
        self, destinations: list[dict[str, Any]], wanted: spec.IstioDestination, *, side: str
    ) -> int | None:
        found = [index for index, entry in enumerate(destinations) if _matches(entry, wanted)]
        if len(found) > 1:
            raise base.RouterError(
                f"{self._what} http[{self._route}] has {len(found)} destinations matching {side}'s "
                f"{_label(wanted)}; set istio.{side}Destination.port to tell them apart"
            )
        return found[0] if found else None

    def _destination(self, side: str) -> spec.IstioDestination:
        return self._blue if side == "blue" else self._green

    def _index(self, destinations: list[dict[str, Any]], side: str) -> int | None:
        return self._find(destinations, self._destination(side), side=side)

    def _missing(
        self, destinations: list[dict[str, Any]], wanted: spec.IstioDestination, *, side: str
    ) -> base.RouterError:
        present = ", ".join(_entry_label(entry) for entry in destinations) or "none"
        return base.RouterError(
            f"{self._what} http[{self._route}] has no destination for {side}'s {_label(wanted)}; "
            f"its destinations: {present}. bluegreen adds green's destination when missing, never blue's: "
            f"istio.{side}Destination must name the destination that serves traffic today"
        )

    def _weight(self, destinations: list[dict[str, Any]], index: int) -> int:
        weight = destinations[index].get("weight")
        if weight is None:
            return 100 if len(destinations) == 1 else 0
        if not kubeobjects.is_weight(weight, maximum=2**31 - 1):
            raise base.RouterError(
                f"{self._what} http[{self._route}] destination {_entry_label(destinations[index])} has weight "
                f"{weight!r}, not a non-negative integer"
            )
        if len(destinations) == 1:
            return 100  # a sole destination takes everything, whatever its weight
        return int(weight)


def _matches(entry: dict[str, Any], wanted: spec.IstioDestination) -> bool:
    destination = entry.get("destination")
    if not isinstance(destination, dict):
        return False
    port = destination.get("port")
    number = port.get("number") if isinstance(port, dict) else None
    return (
        destination.get("host") == wanted.host
        and (destination.get("subset") or None) == wanted.subset
        and (wanted.port is None or number == wanted.port)
    )


def _overlap(blue: spec.IstioDestination, green: spec.IstioDestination) -> bool:
    return (
        blue.host == green.host
        and blue.subset == green.subset
        and (blue.port is None or green.port is None or blue.port == green.port)
    )


def _destination(wanted: spec.IstioDestination) -> dict[str, Any]:
    destination: dict[str, Any] = {"host": wanted.host}
    if wanted.subset is not None:
        destination["subset"] = wanted.subset
    if wanted.port is not None:
        destination["port"] = {"number": wanted.port}
    return destination


def _label(wanted: spec.IstioDestination) -> str:
    subset = f" subset {wanted.subset}" if wanted.subset else ""
    port = f":{wanted.port}" if wanted.port is not None else ""
    return f"{wanted.host}{port}{subset}"


def _entry_label(entry: dict[str, Any]) -> str:
    destination = entry.get("destination")
    if not isinstance(destination, dict):
        destination = {}
    port = destination.get("port")
    number = f":{port.get('number')}" if isinstance(port, dict) and port.get("number") is not None else ""
    subset = f" subset {destination['subset']}" if destination.get("subset") else ""
    return f"{destination.get('host', '?')}{number}{subset}"

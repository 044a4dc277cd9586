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
  the route when missing. A missing destination counts as weight 0: blue's is
  gone after ``finalize``, which is the split 0/100; blue's is never added
  back, so asking blue for traffic without its destination is an error.
- The first write saves the route's destinations as they were, as JSON, in the
  annotation ``bluegreen.io/original-route.http-<n>``; a later write keeps it.
- ``finalize`` (at blue's retirement) removes blue's destination and drops
  the saved annotation (it routes to a cluster that is being deleted). It
  refuses to leave a route in which nothing carries traffic.
"""

from __future__ import annotations

import copy
from typing import Any

from bluegreen.api import spec
from bluegreen.kube import client as kubeclient
from bluegreen.traffic import base, kubeobjects

GROUP = "networking.istio.io"
VERSIONS = ("v1", "v1beta1")  # in order of preference
PLURAL = "virtualservices"


def original_annotation(route: int) -> str:
    return f"{kubeobjects.ORIGINAL_PREFIX}route.http-{route}"


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
        blue_index = self._find(destinations, self._blue, side="blue")
        green_index = self._find(destinations, self._green, side="green")
        current_blue = 0 if blue_index is None else self._weight(destinations, blue_index)
        current_green = 0 if green_index is None else self._weight(destinations, green_index)
        if kubeobjects.same_split(current=(current_blue, current_green), desired=(blue, green)):
            return base.RouterChange(
                changed=False, detail=self._describe(current_blue, current_green, blue_index, green_index))
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
        written = await kubeobjects.write(
            client, resource, read_back=service, spec_patch={"http": new_http},
            annotations=kubeobjects.save_original(service, key=original_annotation(self._route), value=destinations),
            what=self._what, cluster=self._cluster,
        )
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
        blue_index = self._find(destinations, self._blue, side="blue")
        green_index = self._find(destinations, self._green, side="green")
        if blue_index is None and green_index is None:
            raise self._missing(destinations, self._blue, side="blue")
        blue_weight = 0 if blue_index is None else self._weight(destinations, blue_index)
        green_weight = 0 if green_index is None else self._weight(destinations, green_index)
        if blue_weight + green_weight == 0:
            raise base.RouterError(
                f"{self._what} http[{self._route}] gives blue's and green's destinations weight 0: "
                "neither takes traffic"
            )
        return kubeobjects.percent(blue_weight=blue_weight, green_weight=green_weight)

    async def finalize(self) -> None:
        client = await self._cluster.client()
        resource = await self._served(client)
        try:
            service = await client.get(resource, namespace=self._namespace, name=self._virtual_service)
        except kubeclient.KubeError as exc:
            raise kubeobjects.failure(exc, doing="reading", what=self._what, cluster=self._cluster) from None
        if service is None:
            self._resource = None
            return  # no VirtualService, nothing routes to blue through it
        http, destinations = self._route_destinations(service)
        blue_index = self._find(destinations, self._blue, side="blue")
        forget = kubeobjects.forget_original(service, key=original_annotation(self._route))
        if blue_index is None and not forget:
            return
        remaining = [entry for index, entry in enumerate(destinations) if index != blue_index]
        if blue_index is not None:
            green_index = self._find(remaining, self._green, side="green")
            if green_index is None or self._weight(remaining, green_index) == 0:
                raise base.RouterError(
                    f"refusing to remove blue's destination {_label(self._blue)} from {self._what} "
                    f"http[{self._route}]: green's destination {_label(self._green)} "
                    f"{'is not in the route' if green_index is None else 'has weight 0'}, so the route would "
                    "send traffic nowhere; set green's weight to 100 first"
                )
        new_http = copy.deepcopy(http)
        new_http[self._route]["route"] = remaining
        await kubeobjects.write(
            client, resource, read_back=service, spec_patch={"http": new_http} if blue_index is not None else {},
            annotations=forget, what=self._what, cluster=self._cluster,
        )

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

    def _describe(self, blue_weight: int, green_weight: int, blue_index: int | None, green_index: int | None) -> str:
        blue_part = f"{_label(self._blue)} {blue_weight if blue_index is not None else 'absent'}"
        green_part = f"{_label(self._green)} {green_weight if green_index is not None else 'absent'}"
        return f"{self._what} http[{self._route}]: {blue_part}, {green_part}"


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

"""Contract-suite harnesses for the Kubernetes-object routers (see test_router_contract.py).

Gateway API and Istio edit objects on the "edge" cluster, reached through a
kubeconfig Secret on management; Emissary edits Mappings on management
itself. The back end is the strict emulated API server: ``effective`` reads the
objects through its in-process API and computes the split as the gateway, mesh
or ingress would (not with the router's code), ``snapshot`` is the part of
the objects the router takes over as stored, ``removed`` says whether the
side's entry is out of it, ``writes`` counts the PATCH requests it served,
and ``fail`` revokes the router's token so that every request is answered 401
until ``recover``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from bluegreen.api import spec
from bluegreen.sim import routing as sim_routing
from bluegreen.sim.kube import KubeEmulator
from bluegreen.traffic import base, registry
from tests.fixtures.routing_world import APP_NAMESPACE, RoutingWorld

MAPPINGS = f"{sim_routing.EMISSARY_GROUP}/v3alpha1/mappings"
VIRTUAL_SERVICES = f"{sim_routing.ISTIO_GROUP}/v1/virtualservices"


def _percent(blue: int, green: int) -> tuple[int, int]:
    blue_percent = round(100 * blue / (blue + green))
    return blue_percent, 100 - blue_percent


@dataclasses.dataclass
class KubeObjectHarness:
    router: base.Router
    emulator: KubeEmulator
    patches: tuple[str, str]  # (group, plural) whose PATCH requests are the router's writes
    read_split: Callable[[KubeEmulator], tuple[int, int]]
    read_entries: Callable[[KubeEmulator], Any]
    read_removed: Callable[[KubeEmulator, str], bool]
    _token: str | None = None

    async def effective(self) -> tuple[int, int]:
        return self.read_split(self.emulator)

    async def snapshot(self) -> Any:
        return self.read_entries(self.emulator)

    async def removed(self, side: str) -> bool:
        return self.read_removed(self.emulator, side)

    def writes(self) -> int:
        group, plural = self.patches
        return self.emulator.request_counts[("patch", group, plural)]

    async def fail(self) -> None:
        self._token, self.emulator.token = self.emulator.token, "revoked"

    async def recover(self) -> None:
        self.emulator.token = self._token


def _build(routing: RoutingWorld, entry: dict[str, Any]) -> base.Router:
    return registry.build_router(spec.Router.model_validate(entry), context=routing.context)


def _route_refs(emulator: KubeEmulator) -> list[dict[str, Any]]:
    route = emulator.get(sim_routing.HTTPROUTES, APP_NAMESPACE, "shop")
    assert route is not None
    refs: list[dict[str, Any]] = route["spec"]["rules"][0]["backendRefs"]
    return refs


def _route_split(emulator: KubeEmulator) -> tuple[int, int]:
    refs = {ref["name"]: ref.get("weight", 1) for ref in _route_refs(emulator)}
    return _percent(refs.get("prod-blue", 0), refs.get("prod-green", 0))


def _route_removed(emulator: KubeEmulator, side: str) -> bool:
    return all(ref["name"] != f"prod-{side}" for ref in _route_refs(emulator))


@pytest.fixture
def gatewayapi_harness(routing: RoutingWorld) -> KubeObjectHarness:
    routing.edge.create(sim_routing.HTTPROUTES, sim_routing.http_route(namespace=APP_NAMESPACE, name="shop", rules=[
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
         "backendRefs": [{"name": "prod-blue", "port": 443}, {"name": "sorry-page", "port": 80, "weight": 0}]},
    ]))
    router = _build(routing, {"name": "gateway", "gatewayAPI": {
        "cluster": routing.access("edge"), "httpRoute": {"namespace": APP_NAMESPACE, "name": "shop"},
        "blueBackend": {"name": "prod-blue", "port": 443}, "greenBackend": {"name": "prod-green", "port": 443}}})
    return KubeObjectHarness(router=router, emulator=routing.edge, patches=(sim_routing.GATEWAY_GROUP, "httproutes"),
                             read_split=_route_split, read_entries=_route_refs, read_removed=_route_removed)


def _mapping_weights(emulator: KubeEmulator) -> dict[str, int | None]:
    weights = {}
    for side in ("blue", "green"):
        found = emulator.get(MAPPINGS, APP_NAMESPACE, f"shop-prod-{side}")
        assert found is not None
        weights[side] = found["spec"].get("weight")
    return weights


def _mapping_split(emulator: KubeEmulator) -> tuple[int, int]:
    # Emissary's rule for a group of two: an unweighted Mapping takes what the other leaves.
    weights = _mapping_weights(emulator)
    blue, green = weights["blue"], weights["green"]
    if blue is None:
        blue = 100 - (green or 0)
    if green is None:
        green = 100 - blue
    assert blue + green == 100, f"Emissary would not split {blue}/{green} between the two"
    return blue, green


@pytest.fixture
def emissary_harness(routing: RoutingWorld) -> KubeObjectHarness:
    for name, weight in (("shop-prod-blue", None), ("shop-prod-green", 0)):
        routing.management.create(MAPPINGS, sim_routing.mapping(
            namespace=APP_NAMESPACE, name=name, prefix="/", hostname="shop.example.com",
            service=f"https://{name.removeprefix('shop-')}-ingress:443", weight=weight))
    router = _build(routing, {"name": "emissary", "emissary": {
        "blueMapping": {"namespace": APP_NAMESPACE, "name": "shop-prod-blue"},
        "greenMapping": {"namespace": APP_NAMESPACE, "name": "shop-prod-green"}}})
    # A Mapping is the user's and stays; weight 0 is what takes it out of the group's traffic.
    return KubeObjectHarness(router=router, emulator=routing.management,
                             patches=(sim_routing.EMISSARY_GROUP, "mappings"), read_split=_mapping_split,
                             read_entries=_mapping_weights,
                             read_removed=lambda emulator, side: _mapping_weights(emulator)[side] == 0)


def _destinations(emulator: KubeEmulator) -> list[dict[str, Any]]:
    service = emulator.get(VIRTUAL_SERVICES, APP_NAMESPACE, "shop")
    assert service is not None
    destinations: list[dict[str, Any]] = service["spec"]["http"][0]["route"]
    return destinations


def _virtual_service_split(emulator: KubeEmulator) -> tuple[int, int]:
    destinations = _destinations(emulator)
    if len(destinations) == 1:  # a sole destination takes everything, whatever its weight
        only = destinations[0]["destination"]["host"]
        return (100, 0) if only.startswith("shop.prod-blue") else (0, 100)
    weights = {entry["destination"]["host"]: entry.get("weight", 0) for entry in destinations}
    return _percent(weights.get("shop.prod-blue.global", 0), weights.get("shop.prod-green.global", 0))


@pytest.fixture
def istio_harness(routing: RoutingWorld) -> KubeObjectHarness:
    routing.edge.create(VIRTUAL_SERVICES, sim_routing.virtual_service(
        namespace=APP_NAMESPACE, name="shop", hosts=("shop.example.com",),
        http=[{"name": "main", "timeout": "10s", "route": [{"destination": {"host": "shop.prod-blue.global"}}]}]))
    router = _build(routing, {"name": "mesh", "istio": {
        "cluster": routing.access("edge"), "virtualService": {"namespace": APP_NAMESPACE, "name": "shop"},
        "blueDestination": {"host": "shop.prod-blue.global"}, "greenDestination": {"host": "shop.prod-green.global"}}})
    return KubeObjectHarness(
        router=router, emulator=routing.edge, patches=(sim_routing.ISTIO_GROUP, "virtualservices"),
        read_split=_virtual_service_split, read_entries=_destinations,
        read_removed=lambda emulator, side: all(entry["destination"]["host"] != f"shop.prod-{side}.global"
                                                for entry in _destinations(emulator)))

"""The routing CRDs in the emulator: upstream limits and defaults hold, the rest is kept as written."""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.sim import routing
from bluegreen.sim.kube import KubeApiError, KubeEmulator


@pytest.fixture
def emulator() -> KubeEmulator:
    created = KubeEmulator(name="edge")
    routing.install_all(created)
    created.create("v1/namespaces", {"metadata": {"name": "shop"}})
    return created


def route_with(refs: list[dict[str, Any]], **rule: Any) -> dict[str, Any]:
    return routing.http_route(namespace="shop", name="app", rules=[{"backendRefs": refs, **rule}])


def test_backend_refs_get_the_upstream_defaults(emulator: KubeEmulator) -> None:
    created = emulator.create(routing.HTTPROUTES, route_with([{"name": "app-blue", "port": 80}]))

    assert created["spec"]["rules"][0]["backendRefs"] == [
        {"name": "app-blue", "port": 80, "weight": 1, "kind": "Service", "group": ""}]


@pytest.mark.parametrize(("refs", "field"), [
    ([{"name": "app", "port": 80, "weight": 1_000_001}], "weight"),
    ([{"name": "app", "port": 80, "weight": -1}], "weight"),
    ([{"name": f"app-{index}", "port": 80} for index in range(17)], "backendRefs"),
    ([{"port": 80}], "name"),
])
def test_what_gateway_api_refuses_is_refused(emulator: KubeEmulator, refs: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(KubeApiError) as refused:
        emulator.create(routing.HTTPROUTES, route_with(refs))

    assert refused.value.status == 422
    assert field in refused.value.message


def test_fields_the_routers_do_not_know_are_kept(emulator: KubeEmulator) -> None:
    filters = [{"type": "URLRewrite", "urlRewrite": {"hostname": "internal"}}]
    created = emulator.create(routing.HTTPROUTES, route_with([{"name": "app", "port": 80}], filters=filters,
                                                             matches=[{"path": {"value": "/"}}]))
    mapping = emulator.create(f"{routing.EMISSARY_GROUP}/v3alpha1/mappings", routing.mapping(
        namespace="shop", name="app", prefix="/", service="app:80", weight=10, timeout_ms=3000,
        cors={"origins": ["*"]}))
    service = emulator.create(f"{routing.ISTIO_GROUP}/v1/virtualservices", routing.virtual_service(
        namespace="shop", name="app", hosts=("app",), http=[{"fault": {"abort": {"httpStatus": 503}},
                                                             "route": [{"destination": {"host": "app"},
                                                                        "headers": {"request": {}}}]}]))

    assert created["spec"]["rules"][0]["filters"] == filters
    assert (mapping["spec"]["timeout_ms"], mapping["spec"]["cors"]) == (3000, {"origins": ["*"]})
    assert service["spec"]["http"][0]["fault"] == {"abort": {"httpStatus": 503}}
    assert service["spec"]["http"][0]["route"][0]["headers"] == {"request": {}}


def test_versions_share_storage(emulator: KubeEmulator) -> None:
    emulator.create(f"{routing.ISTIO_GROUP}/v1/virtualservices", routing.virtual_service(
        namespace="shop", name="app", hosts=("app",), http=[{"route": [{"destination": {"host": "app"}}]}]))

    older = emulator.get(f"{routing.ISTIO_GROUP}/v1beta1/virtualservices", "shop", "app")

    assert older is not None and older["apiVersion"] == f"{routing.ISTIO_GROUP}/v1beta1"


def test_a_mapping_needs_a_prefix_and_a_service(emulator: KubeEmulator) -> None:
    with pytest.raises(KubeApiError, match="service"):
        emulator.create(f"{routing.EMISSARY_GROUP}/v3alpha1/mappings",
                        {"metadata": {"namespace": "shop", "name": "app"}, "spec": {"prefix": "/"}})

"""The Istio router against the strict emulated API server, on management and on an edge cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bluegreen.api import spec
from bluegreen.kube.client import KubeClient
from bluegreen.sim import routing as sim_routing
from bluegreen.sim.kube import KubeEmulator
from bluegreen.traffic import base, istio, kubeobjects
from tests.fixtures.routing_world import APP_NAMESPACE, UPGRADE_NAMESPACE, WHERE, RoutingWorld, kubeconfig_secret

pytestmark = pytest.mark.routers

SERVICE = "shop"
VIRTUAL_SERVICES = f"{sim_routing.ISTIO_GROUP}/v1/virtualservices"
BLUE_HOST = "shop.blue.svc.cluster.local"
GREEN_HOST = "shop.green.svc.cluster.local"
HEADER_ROUTE = {"name": "canary-header", "match": [{"headers": {"x-canary": {"exact": "1"}}}],
                "route": [{"destination": {"host": GREEN_HOST, "port": {"number": 80}}}]}


def make_router(routing: RoutingWorld, where: str, **overrides: Any) -> istio.IstioRouter:
    config = spec.IstioRouter.model_validate({
        "cluster": routing.access(where),
        "virtualService": {"namespace": APP_NAMESPACE, "name": SERVICE},
        "route": 1,
        "blueDestination": {"host": BLUE_HOST},
        "greenDestination": {"host": GREEN_HOST},
    } | overrides)
    return istio.IstioRouter.from_spec(name="mesh", config=config, context=routing.context)


def main_route(destinations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "main", "retries": {"attempts": 3, "perTryTimeout": "2s"}, "timeout": "10s",
            "route": destinations}


def seed(emulator: KubeEmulator, destinations: list[dict[str, Any]] | None = None,
         resource: str = VIRTUAL_SERVICES) -> None:
    destinations = destinations if destinations is not None else [
        {"destination": {"host": BLUE_HOST, "port": {"number": 80}},
         "headers": {"response": {"set": {"x-side": "blue"}}}}]
    emulator.create(resource, sim_routing.virtual_service(
        namespace=APP_NAMESPACE, name=SERVICE, hosts=("shop.example",), api_version=resource.rsplit("/", 1)[0],
        http=[HEADER_ROUTE, main_route(destinations)]))


def stored(emulator: KubeEmulator, resource: str = VIRTUAL_SERVICES) -> dict[str, Any]:
    found = emulator.get(resource, APP_NAMESPACE, SERVICE)
    assert found is not None
    return found


def weights(emulator: KubeEmulator) -> dict[str, Any]:
    return {entry["destination"]["host"]: entry.get("weight") for entry in stored(emulator)["spec"]["http"][1]["route"]}


@pytest.fixture(params=WHERE)
def where(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_sets_weights_adds_green_and_verifies(routing: RoutingWorld, where: str) -> None:
    emulator = routing.cluster(where)
    seed(emulator)
    router = make_router(routing, where)
    assert await router.verify() == base.RouterWeights(blue=100, green=0)

    change = await router.set_weights(blue=90, green=10)

    assert change.changed and "(added)" in change.detail
    assert weights(emulator) == {BLUE_HOST: 90, GREEN_HOST: 10}
    assert stored(emulator)["spec"]["http"][1]["route"][1] == {"destination": {"host": GREEN_HOST}, "weight": 10}
    assert await router.verify() == base.RouterWeights(blue=90, green=10)


async def test_everything_else_is_left_as_it_was(routing: RoutingWorld, where: str) -> None:
    emulator = routing.cluster(where)
    seed(emulator)
    before = stored(emulator)

    await make_router(routing, where).set_weights(blue=30, green=70)

    after = stored(emulator)
    assert after["spec"]["http"][0] == before["spec"]["http"][0]
    assert after["spec"]["hosts"] == before["spec"]["hosts"]
    main_before, main_after = before["spec"]["http"][1], after["spec"]["http"][1]
    assert main_after["route"][0] == dict(main_before["route"][0], weight=30)
    main_before.pop("route")
    assert {key: value for key, value in main_after.items() if key != "route"} == main_before


async def test_repeating_the_same_weights_writes_nothing(routing: RoutingWorld, where: str) -> None:
    emulator = routing.cluster(where)
    seed(emulator)
    router = make_router(routing, where)
    assert not (await router.set_weights(blue=100, green=0)).changed  # a sole destination takes everything
    await router.set_weights(blue=50, green=50)
    version = stored(emulator)["metadata"]["resourceVersion"]

    assert not (await router.set_weights(blue=50, green=50)).changed
    assert stored(emulator)["metadata"]["resourceVersion"] == version


async def test_save_reads_the_route_s_destinations_and_writes_nothing(routing: RoutingWorld, where: str) -> None:
    emulator = routing.cluster(where)
    seed(emulator)
    before = stored(emulator)

    saved = await make_router(routing, where).save()

    assert saved == {"route": before["spec"]["http"][1]["route"]}
    assert stored(emulator) == before


async def test_destinations_are_matched_by_host_subset_and_port(routing: RoutingWorld, where: str) -> None:
    emulator = routing.cluster(where)
    seed(emulator, [
        {"destination": {"host": "shop", "subset": "blue", "port": {"number": 80}}, "weight": 100},
        {"destination": {"host": "shop", "subset": "blue", "port": {"number": 9090}}, "weight": 0},
        {"destination": {"host": "shop", "port": {"number": 80}}, "weight": 0},
        {"destination": {"host": "shop", "subset": "green", "port": {"number": 80}}, "weight": 0},
    ])
    router = make_router(routing, where, blueDestination={"host": "shop", "subset": "blue", "port": 80},
                         greenDestination={"host": "shop", "subset": "green"})

    await router.set_weights(blue=60, green=40)

    assert [entry["weight"] for entry in stored(emulator)["spec"]["http"][1]["route"]] == [60, 0, 0, 40]

    ambiguous = make_router(routing, where, blueDestination={"host": "shop", "subset": "blue"})
    with pytest.raises(base.RouterError, match="2 destinations matching blue's shop subset blue; set istio"):
        await ambiguous.verify()


async def test_finalize_removes_blue_s_destination(routing: RoutingWorld, where: str) -> None:
    emulator = routing.cluster(where)
    seed(emulator)
    router = make_router(routing, where)
    await router.set_weights(blue=0, green=100)

    line = await router.finalize(retired="blue", mode="Remove", original=None)

    assert line == f"VirtualService {APP_NAMESPACE}/{SERVICE} http[1]: removed blue's destination {BLUE_HOST}"
    after = stored(emulator)
    assert after["spec"]["http"][1]["route"] == [{"destination": {"host": GREEN_HOST}, "weight": 100}]
    assert after["spec"]["http"][0] == HEADER_ROUTE
    version = after["metadata"]["resourceVersion"]
    assert "already removed" in await router.finalize(retired="blue", mode="Remove", original=None)
    assert stored(emulator)["metadata"]["resourceVersion"] == version

    # Without blue's destination the split is 0/100; blue cannot be given traffic again.
    assert await router.verify() == base.RouterWeights(blue=0, green=100)
    assert not (await router.set_weights(blue=0, green=100)).changed
    with pytest.raises(base.RouterError, match=r"no destination for blue's .* never blue's"):
        await router.set_weights(blue=50, green=50)


async def test_finalize_refuses_when_the_kept_side_carries_nothing(routing: RoutingWorld, where: str) -> None:
    emulator = routing.cluster(where)
    seed(emulator, [{"destination": {"host": BLUE_HOST}, "weight": 0},
                    {"destination": {"host": GREEN_HOST}, "weight": 0},
                    {"destination": {"host": "sorry.example"}, "weight": 100}])

    with pytest.raises(base.RouterError, match=r"refusing to retire blue .*: green takes no traffic there either "
                                               f"\\({BLUE_HOST} 0, {GREEN_HOST} 0\\)"):
        await make_router(routing, where).finalize(retired="blue", mode="Remove", original=None)
    assert len(stored(emulator)["spec"]["http"][1]["route"]) == 3


async def test_restore_after_a_rollback_puts_the_destinations_back_without_green_s(
    routing: RoutingWorld, where: str
) -> None:
    emulator = routing.cluster(where)
    seed(emulator)
    router = make_router(routing, where)
    before = stored(emulator)["spec"]
    saved = await router.save()
    await router.set_weights(blue=30, green=70)
    await router.set_weights(blue=100, green=0)

    line = await router.finalize(retired="green", mode="Restore", original=saved)

    assert line == (f"VirtualService {APP_NAMESPACE}/{SERVICE} http[1]: route restored as saved "
                    f"({BLUE_HOST} 100, {GREEN_HOST} absent)")
    assert stored(emulator)["spec"] == before
    assert await router.verify() == base.RouterWeights(blue=100, green=0)


async def test_restore_refuses_a_saved_route_that_is_not_a_list_of_destinations(
    routing: RoutingWorld, where: str
) -> None:
    seed(routing.cluster(where))

    with pytest.raises(base.RouterError, match=r"the route saved in status\.routers are not objects"):
        await make_router(routing, where).finalize(retired="green", mode="Restore", original={"route": ["x"]})
    with pytest.raises(base.RouterError, match=r"the original saved in status.routers has no usable 'route' \(its "
                                               r"keys: backendRefs\)"):
        await make_router(routing, where).finalize(retired="green", mode="Restore", original={"backendRefs": []})


async def test_a_concurrent_change_is_an_error_and_the_next_call_succeeds(
    routing: RoutingWorld, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = routing.cluster(where)
    seed(emulator)
    router = make_router(routing, where)
    client = await routing.client_for(where)
    real_patch = KubeClient.patch
    raced: list[bool] = []

    async def patch_after_someone_else(self: KubeClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not raced:
            raced.append(True)
            emulator.patch(VIRTUAL_SERVICES, APP_NAMESPACE, SERVICE, {"spec": {"gateways": ["mesh", "edge"]}})
        return await real_patch(self, *args, **kwargs)

    monkeypatch.setattr(client, "patch", patch_after_someone_else.__get__(client))

    with pytest.raises(base.RouterError, match=r"VirtualService shop/shop on .* changed while bluegreen was updating"):
        await router.set_weights(blue=90, green=10)
    assert weights(emulator) == {BLUE_HOST: None}

    assert (await router.set_weights(blue=90, green=10)).changed
    assert weights(emulator) == {BLUE_HOST: 90, GREEN_HOST: 10}
    assert stored(emulator)["spec"]["gateways"] == ["mesh", "edge"]


async def test_a_route_that_does_not_exist_is_named(routing: RoutingWorld, where: str) -> None:
    seed(routing.cluster(where))

    with pytest.raises(base.RouterError, match=r"has 2 http routes, so istio.route 5 names none"):
        await make_router(routing, where, route=5).verify()


async def test_blue_missing_is_an_error_that_lists_the_destinations(routing: RoutingWorld, where: str) -> None:
    seed(routing.cluster(where), [{"destination": {"host": "old.example", "port": {"number": 8080}}}])

    with pytest.raises(base.RouterError, match=r"no destination for blue's .*; its destinations: old.example:8080"):
        await make_router(routing, where).set_weights(blue=90, green=10)


@pytest.fixture
async def older_istio(routing: RoutingWorld) -> AsyncIterator[KubeEmulator]:
    """A cluster whose Istio serves VirtualService at v1beta1 only (before Istio 1.22)."""
    emulator = KubeEmulator(name="older-istio")
    await emulator.start()
    sim_routing.install_istio(emulator, versions=("v1beta1", "v1alpha3"))
    emulator.create("v1/namespaces", {"metadata": {"name": APP_NAMESPACE}})
    yield emulator
    await emulator.stop()


async def test_falls_back_to_v1beta1_where_v1_is_not_served(routing: RoutingWorld, older_istio: KubeEmulator) -> None:
    resource = f"{sim_routing.ISTIO_GROUP}/v1beta1/virtualservices"
    seed(older_istio, resource=resource)
    router = istio.IstioRouter(
        name="mesh", cluster=_direct(routing, older_istio), namespace=APP_NAMESPACE, virtual_service=SERVICE,
        route=1, blue=spec.IstioDestination(host=BLUE_HOST), green=spec.IstioDestination(host=GREEN_HOST))

    await router.set_weights(blue=80, green=20)

    assert [entry.get("weight") for entry in stored(older_istio, resource)["spec"]["http"][1]["route"]] == [80, 20]
    assert older_istio.request_counts[("patch", sim_routing.ISTIO_GROUP, "virtualservices")] == 1
    assert await router.verify() == base.RouterWeights(blue=80, green=20)


async def test_a_cluster_without_istio_is_named(routing: RoutingWorld) -> None:
    bare = KubeEmulator(name="bare")
    await bare.start()
    try:
        router = istio.IstioRouter(
            name="mesh", cluster=_direct(routing, bare), namespace=APP_NAMESPACE, virtual_service=SERVICE,
            route=0, blue=spec.IstioDestination(host=BLUE_HOST), green=spec.IstioDestination(host=GREEN_HOST))
        with pytest.raises(base.RouterError, match=r"serves no VirtualService API .* is Istio installed there"):
            await router.verify()
    finally:
        await bare.stop()


def _direct(routing: RoutingWorld, emulator: KubeEmulator) -> kubeobjects.Cluster:
    """The cluster of an emulator outside the routing world, reached through a kubeconfig Secret of its own."""
    routing.management.create("v1/secrets", kubeconfig_secret(emulator, namespace=UPGRADE_NAMESPACE,
                                                                name=emulator.name, key="value"))
    return kubeobjects.Cluster(context=routing.context, kubeconfig=spec.SecretKeyRef(name=emulator.name))

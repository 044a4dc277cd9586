"""The Gateway API router against the strict emulated API server, on management and on an edge cluster."""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.api import spec
from bluegreen.kube.client import KubeClient
from bluegreen.sim import routing as sim_routing
from bluegreen.traffic import base, gatewayapi
from tests.fixtures.routing_world import APP_NAMESPACE, WHERE, RoutingWorld

pytestmark = pytest.mark.routers

ROUTE = "app"
MATCHES = [{"path": {"type": "PathPrefix", "value": "/"}}]
FILTERS = [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-via", "value": "edge"}]}}]
ADMIN_RULE = {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
              "backendRefs": [{"name": "admin", "port": 8080, "weight": 3}]}


def make_router(routing: RoutingWorld, where: str, **overrides: Any) -> gatewayapi.GatewayAPIRouter:
    config = spec.GatewayAPIRouter.model_validate({
        "cluster": routing.access(where),
        "httpRoute": {"namespace": APP_NAMESPACE, "name": ROUTE},
        "blueBackend": {"name": "app-blue", "port": 80},
        "greenBackend": {"name": "app-green", "port": 80},
    } | overrides)
    return gatewayapi.GatewayAPIRouter.from_spec(name="gateway", config=config, context=routing.context)


def seed(routing: RoutingWorld, where: str, refs: list[dict[str, Any]] | None = None,
         rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    refs = refs if refs is not None else [{"name": "app-blue", "port": 80}]
    rules = rules if rules is not None else [
        {"matches": MATCHES, "filters": FILTERS, "backendRefs": refs}, ADMIN_RULE]
    route = sim_routing.http_route(namespace=APP_NAMESPACE, name=ROUTE, rules=rules, hostnames=("shop.example",))
    return routing.cluster(where).create(sim_routing.HTTPROUTES, route)


def stored(routing: RoutingWorld, where: str) -> dict[str, Any]:
    found = routing.cluster(where).get(sim_routing.HTTPROUTES, APP_NAMESPACE, ROUTE)
    assert found is not None
    return found


def weights(routing: RoutingWorld, where: str, rule: int = 0) -> dict[str, int]:
    return {ref["name"]: ref["weight"] for ref in stored(routing, where)["spec"]["rules"][rule]["backendRefs"]}


@pytest.fixture(params=WHERE)
def where(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_sets_weights_adds_green_and_verifies(routing: RoutingWorld, where: str) -> None:
    seed(routing, where)
    router = make_router(routing, where)

    change = await router.set_weights(blue=90, green=10)

    assert change.changed
    assert "app-blue:80 1->90" in change.detail and "app-green:80 0->10 (added)" in change.detail
    assert change.change_id == stored(routing, where)["metadata"]["resourceVersion"]
    assert weights(routing, where) == {"app-blue": 90, "app-green": 10}
    assert stored(routing, where)["spec"]["rules"][0]["backendRefs"][1] == {
        "name": "app-green", "port": 80, "weight": 10, "group": "", "kind": "Service"}
    assert await router.verify() == base.RouterWeights(blue=90, green=10)


async def test_the_other_cluster_is_not_touched(routing: RoutingWorld, where: str) -> None:
    seed(routing, where)
    other = "edge" if where == "management" else "management"
    seed(routing, other)
    before = stored(routing, other)

    await make_router(routing, where).set_weights(blue=50, green=50)

    assert stored(routing, other) == before
    assert weights(routing, where) == {"app-blue": 50, "app-green": 50}


async def test_everything_else_in_the_route_is_left_as_it_was(routing: RoutingWorld, where: str) -> None:
    refs = [{"name": "app-blue", "port": 80, "weight": 5, "filters": FILTERS},
            {"name": "mirror", "port": 9090, "weight": 0}]
    seed(routing, where, refs=refs)
    before = stored(routing, where)

    await make_router(routing, where).set_weights(blue=70, green=30)

    after = stored(routing, where)
    assert after["spec"]["rules"][1:] == before["spec"]["rules"][1:]
    assert after["spec"]["hostnames"] == before["spec"]["hostnames"]
    assert after["spec"]["parentRefs"] == before["spec"]["parentRefs"]
    rule_before, rule_after = before["spec"]["rules"][0], after["spec"]["rules"][0]
    assert {key: rule_after[key] for key in ("matches", "filters")} == {
        key: rule_before[key] for key in ("matches", "filters")}
    blue_after, mirror_after = rule_after["backendRefs"][0], rule_after["backendRefs"][1]
    assert blue_after == dict(rule_before["backendRefs"][0], weight=70)
    assert mirror_after == rule_before["backendRefs"][1]


async def test_repeating_the_same_weights_writes_nothing(routing: RoutingWorld, where: str) -> None:
    seed(routing, where)
    router = make_router(routing, where)
    await router.set_weights(blue=60, green=40)
    version = stored(routing, where)["metadata"]["resourceVersion"]

    change = await router.set_weights(blue=60, green=40)

    assert not change.changed
    assert stored(routing, where)["metadata"]["resourceVersion"] == version


async def test_the_split_in_effect_counts_not_the_numbers(routing: RoutingWorld, where: str) -> None:
    # Blue alone (default weight 1) is 100/0; blue 2 and green 2 are 50/50: neither needs a write.
    seed(routing, where)
    router = make_router(routing, where)
    assert not (await router.set_weights(blue=100, green=0)).changed
    assert await router.verify() == base.RouterWeights(blue=100, green=0)

    routing.cluster(where).delete(sim_routing.HTTPROUTES, APP_NAMESPACE, ROUTE)
    seed(routing, where, refs=[{"name": "app-blue", "port": 80, "weight": 2},
                               {"name": "app-green", "port": 80, "weight": 2}])
    version = stored(routing, where)["metadata"]["resourceVersion"]
    assert not (await router.set_weights(blue=50, green=50)).changed
    assert stored(routing, where)["metadata"]["resourceVersion"] == version


async def test_save_reads_the_rule_s_refs_and_writes_nothing(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, refs=[{"name": "app-blue", "port": 80, "weight": 9},
                               {"name": "app-green", "port": 80, "weight": 1}])
    before = stored(routing, where)

    saved = await make_router(routing, where).save()

    assert saved == {"backendRefs": before["spec"]["rules"][0]["backendRefs"]}
    assert stored(routing, where) == before
    assert "annotations" not in before["metadata"]


async def test_finalize_removes_blue_s_ref_and_keeps_the_others(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, refs=[{"name": "app-blue", "port": 80}, {"name": "mirror", "port": 9090, "weight": 0}])
    router = make_router(routing, where)
    await router.set_weights(blue=0, green=100)

    line = await router.finalize(retired="blue", mode="Remove", original=None)

    assert line == f"HTTPRoute {APP_NAMESPACE}/{ROUTE} rules[0]: removed blue's backend app-blue:80"
    after = stored(routing, where)
    assert [ref["name"] for ref in after["spec"]["rules"][0]["backendRefs"]] == ["mirror", "app-green"]
    assert after["spec"]["rules"][1] == ADMIN_RULE | {"backendRefs": [
        {"name": "admin", "port": 8080, "weight": 3, "group": "", "kind": "Service"}]}

    version = after["metadata"]["resourceVersion"]
    assert "already removed" in await router.finalize(retired="blue", mode="Remove", original=None)
    assert stored(routing, where)["metadata"]["resourceVersion"] == version

    # Without blue's ref the split is 0/100; blue cannot be given traffic again.
    assert await router.verify() == base.RouterWeights(blue=0, green=100)
    assert not (await router.set_weights(blue=0, green=100)).changed
    with pytest.raises(base.RouterError, match=r"no backendRef for blue's backend app-blue:80; .* never blue's"):
        await router.set_weights(blue=50, green=50)


async def test_finalize_refuses_to_leave_a_rule_that_sends_traffic_nowhere(
    routing: RoutingWorld, where: str
) -> None:
    seed(routing, where, refs=[{"name": "app-blue", "port": 80, "weight": 0}])
    router = make_router(routing, where)

    with pytest.raises(base.RouterError, match=r"refusing to retire green from HTTPRoute shop/app rules\[0\]: blue "
                                               r"takes no traffic there either \(app-blue:80 0, app-green:80 absent\)"):
        await router.finalize(retired="green", mode="Remove", original=None)
    with pytest.raises(base.RouterError, match=r"refusing to retire blue .*: green takes no traffic there either"):
        await router.finalize(retired="blue", mode="Remove", original=None)
    assert weights(routing, where) == {"app-blue": 0}


async def test_restore_after_a_rollback_puts_the_refs_back_without_green_s(routing: RoutingWorld, where: str) -> None:
    seed(routing, where)
    router = make_router(routing, where)
    before = stored(routing, where)["spec"]
    saved = await router.save()
    await router.set_weights(blue=20, green=80)
    await router.set_weights(blue=100, green=0)

    line = await router.finalize(retired="green", mode="Restore", original=saved)

    assert line == (f"HTTPRoute {APP_NAMESPACE}/{ROUTE} rules[0]: backendRefs restored as saved "
                    "(app-blue:80 1, app-green:80 absent)")
    assert stored(routing, where)["spec"] == before
    version = stored(routing, where)["metadata"]["resourceVersion"]
    again = await router.finalize(retired="green", mode="Restore", original=saved)
    assert again == f"HTTPRoute {APP_NAMESPACE}/{ROUTE} rules[0]: as saved before the upgrade"
    assert stored(routing, where)["metadata"]["resourceVersion"] == version


async def test_finalize_without_the_route_is_done(routing: RoutingWorld, where: str) -> None:
    line = await make_router(routing, where).finalize(retired="blue", mode="Remove", original=None)

    assert line.startswith(f"HTTPRoute {APP_NAMESPACE}/{ROUTE} does not exist on ")


async def test_a_concurrent_change_is_an_error_and_the_next_call_succeeds(
    routing: RoutingWorld, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(routing, where)
    router = make_router(routing, where)
    client = await routing.client_for(where)
    real_patch = KubeClient.patch
    raced: list[str] = []

    async def patch_after_someone_else(self: KubeClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not raced:  # someone changes the route between the router's read and its write
            raced.append("hostnames")
            routing.cluster(where).patch(sim_routing.HTTPROUTES, APP_NAMESPACE, ROUTE,
                                         {"spec": {"hostnames": ["shop.example", "new.example"]}})
        return await real_patch(self, *args, **kwargs)

    monkeypatch.setattr(client, "patch", patch_after_someone_else.__get__(client))

    with pytest.raises(base.RouterError, match=r"changed while bluegreen was updating it .*409"):
        await router.set_weights(blue=90, green=10)
    assert weights(routing, where) == {"app-blue": 1}

    assert (await router.set_weights(blue=90, green=10)).changed
    after = stored(routing, where)
    assert weights(routing, where) == {"app-blue": 90, "app-green": 10}
    assert after["spec"]["hostnames"] == ["shop.example", "new.example"]


async def test_missing_and_ambiguous_backends_are_errors_that_say_what_is_there(
    routing: RoutingWorld, where: str
) -> None:
    seed(routing, where, refs=[{"name": "app-old", "port": 80}])
    with pytest.raises(base.RouterError, match=r"rules\[0\] has no backendRef for blue's backend app-blue:80; "
                                               r"its backendRefs: app-old:80"):
        await make_router(routing, where).set_weights(blue=90, green=10)

    routing.cluster(where).delete(sim_routing.HTTPROUTES, APP_NAMESPACE, ROUTE)
    seed(routing, where, refs=[{"name": "app-blue", "port": 80}, {"name": "app-blue", "port": 8080}])
    router = make_router(routing, where, blueBackend={"name": "app-blue"})
    with pytest.raises(base.RouterError, match=r"2 backendRefs matching blue's backend app-blue .*blueBackend.port"):
        await router.verify()


async def test_refs_are_matched_by_namespace_kind_and_group(routing: RoutingWorld, where: str) -> None:
    refs: list[dict[str, Any]] = [{"name": "app-blue", "port": 80, "namespace": "elsewhere"},
            {"name": "app-blue", "group": "example.io", "kind": "Backend"},
            {"name": "app-blue", "port": 80, "namespace": APP_NAMESPACE}]
    seed(routing, where, refs=refs)

    await make_router(routing, where).set_weights(blue=50, green=50)

    rule = stored(routing, where)["spec"]["rules"][0]["backendRefs"]
    assert [ref["weight"] for ref in rule] == [1, 1, 50, 50]


async def test_a_rule_that_does_not_exist_is_named(routing: RoutingWorld, where: str) -> None:
    seed(routing, where)

    with pytest.raises(base.RouterError, match=r"has 2 rules, so gatewayAPI.rule 2 names none"):
        await make_router(routing, where, rule=2).set_weights(blue=90, green=10)


async def test_green_needs_a_port_to_be_added_and_room_in_the_rule(routing: RoutingWorld, where: str) -> None:
    seed(routing, where)
    with pytest.raises(base.RouterError, match=r"set gatewayAPI.greenBackend.port"):
        await make_router(routing, where, greenBackend={"name": "app-green"}).set_weights(blue=90, green=10)

    routing.cluster(where).delete(sim_routing.HTTPROUTES, APP_NAMESPACE, ROUTE)
    seed(routing, where, refs=[{"name": "app-blue", "port": 80}] + [
        {"name": f"other-{index}", "port": 80, "weight": 0} for index in range(15)])
    with pytest.raises(base.RouterError, match="already has 16 backendRefs"):
        await make_router(routing, where).set_weights(blue=90, green=10)


async def test_a_missing_route_is_an_error(routing: RoutingWorld, where: str) -> None:
    with pytest.raises(base.RouterError, match=f"HTTPRoute {APP_NAMESPACE}/{ROUTE} does not exist on"):
        await make_router(routing, where).verify()


async def test_verify_waits_for_the_gateway_controller_and_refuses_unresolved_refs(
    routing: RoutingWorld, where: str
) -> None:
    emulator = routing.cluster(where)
    for service in ("app-blue", "app-green", "admin"):
        emulator.create("v1/services", {"metadata": {"namespace": APP_NAMESPACE, "name": service},
                                        "spec": {"ports": [{"port": 80}]}})
    controller = sim_routing.GatewayController(emulator)
    await controller.start()
    try:
        seed(routing, where)
        await controller.idle()
        router = make_router(routing, where)
        assert await router.verify() == base.RouterWeights(blue=100, green=0)

        controller.paused = True
        await router.set_weights(blue=80, green=20)
        with pytest.raises(base.RouterPending, match=r"has not seen .* generation 2 yet"):
            await router.verify()

        controller.resume()
        await controller.idle()
        assert await router.verify() == base.RouterWeights(blue=80, green=20)

        emulator.delete("v1/services", APP_NAMESPACE, "app-green")
        await router.set_weights(blue=70, green=30)
        await controller.idle()
        with pytest.raises(base.RouterError, match=r"ResolvedRefs=False .*app-green not found"):
            await router.verify()
    finally:
        await controller.stop()


async def test_both_weights_zero_is_not_a_split(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, refs=[{"name": "app-blue", "port": 80, "weight": 0},
                               {"name": "app-green", "port": 80, "weight": 0}])
    router = make_router(routing, where)

    with pytest.raises(base.RouterError, match="weight 0: neither takes traffic"):
        await router.verify()
    assert (await router.set_weights(blue=100, green=0)).changed
    assert await router.verify() == base.RouterWeights(blue=100, green=0)


async def test_an_unreadable_kubeconfig_secret_is_a_router_error(routing: RoutingWorld) -> None:
    seed(routing, "edge")
    router = make_router(routing, "edge", cluster={"kubeconfigSecretRef": {"name": "no-such-secret"}})

    with pytest.raises(base.RouterError, match="cannot reach the cluster of kubeconfig Secret fleet/no-such-secret"):
        await router.set_weights(blue=90, green=10)


def test_blue_and_green_must_be_different_backends(routing: RoutingWorld) -> None:
    with pytest.raises(ValueError, match="both name app-blue"):
        make_router(routing, "management", greenBackend={"name": "app-blue"})

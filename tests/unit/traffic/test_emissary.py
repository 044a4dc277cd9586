"""The Emissary router against the strict emulated API server, on management and on an edge cluster."""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.api import spec
from bluegreen.kube.client import KubeClient
from bluegreen.sim import routing as sim_routing
from bluegreen.traffic import base, emissary
from tests.fixtures.routing_world import APP_NAMESPACE, WHERE, RoutingWorld

pytestmark = pytest.mark.routers

MAPPINGS = f"{sim_routing.EMISSARY_GROUP}/v3alpha1/mappings"


def make_router(routing: RoutingWorld, where: str, **overrides: Any) -> emissary.EmissaryRouter:
    config = spec.EmissaryRouter.model_validate({
        "cluster": routing.access(where),
        "blueMapping": {"namespace": APP_NAMESPACE, "name": "app-blue"},
        "greenMapping": {"namespace": APP_NAMESPACE, "name": "app-green"},
    } | overrides)
    return emissary.EmissaryRouter.from_spec(name="emissary", config=config, context=routing.context)


def seed(routing: RoutingWorld, where: str, *, blue: int | None = None, green: int | None = 0,
         green_prefix: str = "/shop/", resource: str = MAPPINGS, **extra: Any) -> None:
    emulator = routing.cluster(where)
    api_version = resource.rsplit("/", 1)[0]
    emulator.create(resource, sim_routing.mapping(
        namespace=APP_NAMESPACE, name="app-blue", prefix="/shop/", hostname="shop.example", service="blue-ingress",
        weight=blue, api_version=api_version, timeout_ms=3000, **extra))
    emulator.create(resource, sim_routing.mapping(
        namespace=APP_NAMESPACE, name="app-green", prefix=green_prefix, hostname="shop.example",
        service="green-ingress", weight=green, api_version=api_version, **extra))


def mapping(routing: RoutingWorld, where: str, name: str) -> dict[str, Any]:
    found = routing.cluster(where).get(MAPPINGS, APP_NAMESPACE, name)
    assert found is not None
    return found


def weights(routing: RoutingWorld, where: str) -> tuple[int | None, int | None]:
    return (mapping(routing, where, "app-blue")["spec"].get("weight"),
            mapping(routing, where, "app-green")["spec"].get("weight"))


@pytest.fixture(params=WHERE)
def where(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_sets_both_weights_and_verifies(routing: RoutingWorld, where: str) -> None:
    seed(routing, where)
    router = make_router(routing, where)
    assert await router.verify() == base.RouterWeights(blue=100, green=0)

    change = await router.set_weights(blue=90, green=10)

    assert change.changed
    assert "blue Mapping shop/app-blue unset->90" in change.detail
    assert "green Mapping shop/app-green 0->10" in change.detail
    assert weights(routing, where) == (90, 10)
    assert await router.verify() == base.RouterWeights(blue=90, green=10)


async def test_everything_else_in_the_mappings_is_left_as_it_was(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, rewrite="/")
    before = {name: mapping(routing, where, name)["spec"] for name in ("app-blue", "app-green")}

    await make_router(routing, where).set_weights(blue=40, green=60)

    for name, weight in (("app-blue", 40), ("app-green", 60)):
        assert mapping(routing, where, name)["spec"] == dict(before[name], weight=weight)


async def test_repeating_the_same_weights_writes_nothing(routing: RoutingWorld, where: str) -> None:
    seed(routing, where)
    router = make_router(routing, where)
    await router.set_weights(blue=50, green=50)
    versions = [mapping(routing, where, name)["metadata"]["resourceVersion"] for name in ("app-blue", "app-green")]

    assert not (await router.set_weights(blue=50, green=50)).changed
    assert [mapping(routing, where, name)["metadata"]["resourceVersion"]
            for name in ("app-blue", "app-green")] == versions


async def test_the_starting_split_is_recognised_as_emissary_computes_it(routing: RoutingWorld, where: str) -> None:
    # Blue without a weight takes what green leaves; both without one share equally.
    seed(routing, where, blue=None, green=0)
    router = make_router(routing, where)
    assert not (await router.set_weights(blue=100, green=0)).changed

    for name in ("app-blue", "app-green"):
        routing.cluster(where).patch(MAPPINGS, APP_NAMESPACE, name, {"spec": {"weight": None}})
    assert await router.verify() == base.RouterWeights(blue=50, green=50)
    assert not (await router.set_weights(blue=50, green=50)).changed


async def test_the_falling_side_is_written_first(
    routing: RoutingWorld, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Emissary refuses a group whose weights pass 100, so the state between
    # the two writes must stay at or below it, in both directions.
    seed(routing, where, blue=90, green=10)
    router = make_router(routing, where)
    client = await routing.client_for(where)
    real_patch = KubeClient.patch
    seen_between: list[tuple[int | None, int | None]] = []

    async def recording_patch(self: KubeClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = await real_patch(self, *args, **kwargs)
        seen_between.append(weights(routing, where))
        return result

    monkeypatch.setattr(client, "patch", recording_patch.__get__(client))

    await router.set_weights(blue=70, green=30)
    await router.set_weights(blue=95, green=5)

    assert seen_between == [(70, 10), (70, 30), (70, 5), (95, 5)]


async def test_save_reads_both_weights_and_writes_nothing(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, blue=None, green=0)
    versions = [mapping(routing, where, name)["metadata"]["resourceVersion"] for name in ("app-blue", "app-green")]

    assert await make_router(routing, where).save() == {"blue": None, "green": 0}
    assert [mapping(routing, where, name)["metadata"]["resourceVersion"]
            for name in ("app-blue", "app-green")] == versions


async def test_finalize_gives_blue_0_and_green_an_explicit_100(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, blue=0, green=None)  # green takes what blue leaves: everything
    router = make_router(routing, where)

    line = await router.finalize(retired="blue", mode="Remove", original=None)

    assert line == (f"Mappings {APP_NAMESPACE}/app-blue and {APP_NAMESPACE}/app-green: blue retired: "
                    f"green Mapping {APP_NAMESPACE}/app-green unset->100")
    assert weights(routing, where) == (0, 100)
    assert await router.verify() == base.RouterWeights(blue=0, green=100)

    versions = [mapping(routing, where, name)["metadata"]["resourceVersion"] for name in ("app-blue", "app-green")]
    assert "blue already retired (blue 0 and green 100)" in await router.finalize(
        retired="blue", mode="Remove", original=None)
    assert [mapping(routing, where, name)["metadata"]["resourceVersion"]
            for name in ("app-blue", "app-green")] == versions


async def test_finalize_refuses_while_the_retired_mapping_takes_a_share(routing: RoutingWorld, where: str) -> None:
    seed(routing, where)
    router = make_router(routing, where)
    await router.set_weights(blue=20, green=80)

    with pytest.raises(base.RouterError, match=r"refusing to retire blue from Mappings .*: blue still takes traffic "
                                               r"\(blue 20 and green 80\)"):
        await router.finalize(retired="blue", mode="Remove", original=None)
    assert weights(routing, where) == (20, 80)


async def test_finalize_after_the_retired_mapping_is_gone_gives_the_kept_one_everything(
    routing: RoutingWorld, where: str
) -> None:
    seed(routing, where)
    router = make_router(routing, where)
    await router.set_weights(blue=40, green=60)
    routing.cluster(where).delete(MAPPINGS, APP_NAMESPACE, "app-blue")

    line = await router.finalize(retired="blue", mode="Remove", original=None)

    assert line == f"Mapping {APP_NAMESPACE}/app-blue is gone; green Mapping {APP_NAMESPACE}/app-green 60->100"
    assert mapping(routing, where, "app-green")["spec"]["weight"] == 100


async def test_restore_after_a_rollback_writes_the_saved_weights_back(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, blue=None, green=0)
    router = make_router(routing, where)
    saved = await router.save()
    await router.set_weights(blue=50, green=50)
    await router.set_weights(blue=100, green=0)

    line = await router.finalize(retired="green", mode="Restore", original=saved)

    assert line.endswith(f"restored as saved: blue Mapping {APP_NAMESPACE}/app-blue 100->unset")
    assert weights(routing, where) == (None, 0)
    assert "weight" not in mapping(routing, where, "app-blue")["spec"]
    assert await router.verify() == base.RouterWeights(blue=100, green=0)


async def test_restore_refuses_saved_weights_emissary_would_refuse(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, blue=100, green=0)

    with pytest.raises(base.RouterError, match=r"with weights blue 90 and green 30 add up to more than 100"):
        await make_router(routing, where).finalize(retired="green", mode="Restore",
                                                   original={"blue": 90, "green": 30})
    assert weights(routing, where) == (100, 0)


async def test_a_concurrent_change_is_an_error_and_the_next_call_succeeds(
    routing: RoutingWorld, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(routing, where, blue=90, green=10)
    router = make_router(routing, where)
    client = await routing.client_for(where)
    real_patch = KubeClient.patch
    raced: list[bool] = []

    async def patch_after_someone_else(self: KubeClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not raced:
            raced.append(True)
            routing.cluster(where).patch(MAPPINGS, APP_NAMESPACE, "app-blue", {"spec": {"timeout_ms": 9000}})
        return await real_patch(self, *args, **kwargs)

    monkeypatch.setattr(client, "patch", patch_after_someone_else.__get__(client))

    with pytest.raises(base.RouterError, match=r"Mapping shop/app-blue on .* changed while bluegreen was updating"):
        await router.set_weights(blue=80, green=20)
    assert weights(routing, where) == (90, 10)

    assert (await router.set_weights(blue=80, green=20)).changed
    assert weights(routing, where) == (80, 20)
    assert mapping(routing, where, "app-blue")["spec"]["timeout_ms"] == 9000


async def test_a_failure_between_the_writes_says_what_was_applied(
    routing: RoutingWorld, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(routing, where, blue=90, green=10)
    router = make_router(routing, where)
    client = await routing.client_for(where)
    real_patch = KubeClient.patch
    calls: list[str] = []

    async def second_patch_races(self: KubeClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs["name"])
        if len(calls) == 2:
            routing.cluster(where).patch(MAPPINGS, APP_NAMESPACE, kwargs["name"], {"spec": {"timeout_ms": 1}})
        return await real_patch(self, *args, **kwargs)

    monkeypatch.setattr(client, "patch", second_patch_races.__get__(client))

    with pytest.raises(base.RouterError, match=r"\(already applied: blue Mapping shop/app-blue 90->80\)"):
        await router.set_weights(blue=80, green=20)
    with pytest.raises(base.RouterError, match="blue 80 and green 10, which add up to 90: Emissary leaves 10% of"):
        await router.verify()

    assert (await router.set_weights(blue=80, green=20)).changed
    assert await router.verify() == base.RouterWeights(blue=80, green=20)


async def test_mappings_of_different_prefixes_are_refused(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, green_prefix="/other/")

    with pytest.raises(base.RouterError, match=r"do not route the same requests .*'/shop/'.*'/other/'"):
        await make_router(routing, where).set_weights(blue=90, green=10)


async def test_weights_over_100_are_reported_as_emissary_refusing_them(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, blue=80, green=30)

    with pytest.raises(base.RouterError, match="blue 80 and green 30, which add up to more than 100: Emissary refuses"):
        await make_router(routing, where).verify()


async def test_a_missing_mapping_is_an_error(routing: RoutingWorld, where: str) -> None:
    with pytest.raises(base.RouterError, match="Mapping shop/app-blue does not exist on"):
        await make_router(routing, where).set_weights(blue=90, green=10)


async def test_another_api_version(routing: RoutingWorld, where: str) -> None:
    seed(routing, where, resource=f"{sim_routing.EMISSARY_GROUP}/v2/mappings")
    router = make_router(routing, where, apiVersion="getambassador.io/v2")

    await router.set_weights(blue=75, green=25)

    assert weights(routing, where) == (75, 25)
    assert "getambassador.io/v2" in repr(router)


def test_blue_and_green_must_be_different_mappings(routing: RoutingWorld) -> None:
    with pytest.raises(ValueError, match="are both shop/app-blue"):
        make_router(routing, "management", greenMapping={"namespace": APP_NAMESPACE, "name": "app-blue"})
    with pytest.raises(ValueError, match="is not group/version"):
        make_router(routing, "management", apiVersion="v3alpha1")

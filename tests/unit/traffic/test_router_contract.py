"""The contract every router keeps, run against each router kind's real back end.

Each router kind contributes one or more **harnesses**: a pytest fixture that
yields an object with this small interface (:class:`Harness`)::

    router                 the router under test, built against its real back end, which
                           starts at blue 100 % / green 0 %
    await effective()      (blue, green) percent as the back end itself holds them,
                           read WITHOUT the router (its own client, files, API...)
    writes()               how many changes the back end has received from the router
                           so far (count them at the back end or in a relay in front of it)
    await fail()           make the back end refuse the router or be unreachable to it
                           (the effective state stays readable through ``effective``)
    await recover()        undo ``fail``
    await snapshot()       what the router takes over, as the back end holds it, read WITHOUT
                           the router (records, the forward action, targets, server rows,
                           backendRefs...): a restore must bring back exactly this
    await removed(side)    whether the back end no longer holds ``side``'s entry (its record,
                           target group, targets, backendRef, destination are gone; its
                           HAProxy server is at weight 0 in maintenance; its Mapping has
                           weight 0; the webhook receiver was told it is retired)

To add a kind: write its harness fixture in a module of its own next to this
one (``harness_<kind>.py``), import the fixture here and add its name to
:data:`HARNESSES`. Keep the weights below reachable: a router that quantises
(ELBv2 target registration) is set up so that 75/25 and 50/50 are exact. Start
from a state bluegreen would not write itself where the back end allows it
(blue at weight 1 or 10, green absent, no weight at all), so that a restore has
something to put back.

The contract: weights set are the weights verified and the weights in effect;
asking again changes nothing and writes nothing; 0/100 works both ways; a
failure while applying is a RouterError (or RouterPending where it applies) and
the next call after recovery succeeds. ``save`` writes nothing, and what it
returns, kept as JSON in status, is what a Restore after a rollback puts back,
exactly as the back end held it. Finalize removes the retired side (blue after
a promotion, green after a rollback; Restore after a promotion is Remove),
refuses while the retired side still takes traffic, and a second call writes
nothing and still says what it found. ``settle`` plays the engine's part for
routers that move in several calls (RouterPending: call again).
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Protocol

import pytest

from bluegreen.traffic import base
from tests.unit.traffic.harness_aws import (  # noqa: F401
    elbv2_registration_harness,
    elbv2_weighted_harness,
    route53_harness,
)
from tests.unit.traffic.harness_haproxy import haproxy_harness  # noqa: F401
from tests.unit.traffic.harness_kube import emissary_harness, gatewayapi_harness, istio_harness  # noqa: F401
from tests.unit.traffic.harness_webhook import webhook_harness  # noqa: F401

pytestmark = pytest.mark.routers


class Harness(Protocol):
    @property
    def router(self) -> base.Router: ...

    async def effective(self) -> tuple[int, int]: ...

    def writes(self) -> int: ...

    async def fail(self) -> None: ...

    async def recover(self) -> None: ...

    async def snapshot(self) -> Any: ...

    async def removed(self, side: str) -> bool: ...


HARNESSES = [
    "haproxy_harness",
    "route53_harness",
    "elbv2_weighted_harness",
    "elbv2_registration_harness",
    "gatewayapi_harness",
    "emissary_harness",
    "istio_harness",
    "webhook_harness",
]


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest) -> Harness:
    value: Harness = request.getfixturevalue(request.param)
    return value


async def settle(router: base.Router, *, blue: int, green: int) -> tuple[base.RouterChange, base.RouterWeights | None]:
    """Set the weights and verify them, calling again while the router says it is not done yet."""
    change: base.RouterChange | None = None
    for attempt in itertools.count():
        assert attempt < 30, f"{router.name} still pending after {attempt} calls"
        try:
            if change is None:
                change = await router.set_weights(blue=blue, green=green)
            return change, await router.verify()
        except base.RouterPending:
            continue
    raise AssertionError("unreachable")


def expected(weights: base.RouterWeights | None, *, blue: int, green: int) -> bool:
    return weights is None or weights == base.RouterWeights(blue=blue, green=green)


async def test_starts_from_blue(harness: Harness) -> None:
    assert await harness.effective() == (100, 0)
    assert expected(await harness.router.verify(), blue=100, green=0)


@pytest.mark.parametrize("blue, green", [(75, 25), (50, 50)])
async def test_weights_set_are_the_weights_verified_and_in_effect(harness: Harness, blue: int, green: int) -> None:
    _, verified = await settle(harness.router, blue=blue, green=green)

    assert expected(verified, blue=blue, green=green)
    assert await harness.effective() == (blue, green)


async def test_asking_again_changes_and_writes_nothing(harness: Harness) -> None:
    await settle(harness.router, blue=50, green=50)
    writes = harness.writes()

    change = await harness.router.set_weights(blue=50, green=50)

    assert not change.changed
    assert harness.writes() == writes
    assert await harness.effective() == (50, 50)


async def test_all_the_way_and_back(harness: Harness) -> None:
    for blue, green in [(0, 100), (100, 0), (0, 100)]:
        _, verified = await settle(harness.router, blue=blue, green=green)
        assert expected(verified, blue=blue, green=green)
        assert await harness.effective() == (blue, green)


async def test_a_failure_while_applying_is_reported_and_the_next_call_succeeds(harness: Harness) -> None:
    await harness.fail()

    with pytest.raises((base.RouterError, base.RouterPending)):
        await settle(harness.router, blue=50, green=50)
    assert await harness.effective() == (100, 0)

    await harness.recover()
    _, verified = await settle(harness.router, blue=50, green=50)
    assert expected(verified, blue=50, green=50)
    assert await harness.effective() == (50, 50)


def as_status_keeps_it(saved: dict[str, Any]) -> dict[str, Any]:
    """``save``'s result after a trip through status.routers (JSON)."""
    kept: dict[str, Any] = json.loads(json.dumps(saved))
    return kept


async def finalize_twice(harness: Harness, *, retired: str, mode: str, original: dict[str, Any] | None) -> None:
    """Finalize, then again: the second call writes nothing and still returns a journal line."""
    first = await harness.router.finalize(retired=retired, mode=mode, original=original)
    writes = harness.writes()
    state = await harness.snapshot()

    second = await harness.router.finalize(retired=retired, mode=mode, original=original)

    assert isinstance(first, str) and first and "\n" not in first
    assert isinstance(second, str) and second and "\n" not in second
    assert harness.writes() == writes
    assert await harness.snapshot() == state


async def test_save_writes_nothing_and_a_restore_after_a_rollback_puts_back_exactly_what_it_read(
    harness: Harness,
) -> None:
    before = await harness.snapshot()
    saved = await harness.router.save()
    assert harness.writes() == 0
    assert await harness.snapshot() == before

    await settle(harness.router, blue=50, green=50)
    await settle(harness.router, blue=100, green=0)  # rolled back
    await finalize_twice(harness, retired="green", mode="Restore", original=as_status_keeps_it(saved))

    assert await harness.snapshot() == before
    assert await harness.router.save() == saved
    assert await harness.effective() == (100, 0)


@pytest.mark.parametrize("mode", ["Remove", "Restore"])
async def test_finalize_after_a_promotion_removes_blue(harness: Harness, mode: str) -> None:
    saved = as_status_keeps_it(await harness.router.save())
    await settle(harness.router, blue=0, green=100)

    await finalize_twice(harness, retired="blue", mode=mode, original=saved)

    assert await harness.removed("blue")
    assert not await harness.removed("green")
    assert await harness.effective() == (0, 100)
    assert expected(await harness.router.verify(), blue=0, green=100)
    assert not (await harness.router.set_weights(blue=0, green=100)).changed


async def test_finalize_remove_after_a_rollback_removes_green(harness: Harness) -> None:
    await settle(harness.router, blue=50, green=50)
    await settle(harness.router, blue=100, green=0)

    await finalize_twice(harness, retired="green", mode="Remove", original=None)

    assert await harness.removed("green")
    assert not await harness.removed("blue")
    assert await harness.effective() == (100, 0)
    assert expected(await harness.router.verify(), blue=100, green=0)
    assert not (await harness.router.set_weights(blue=100, green=0)).changed


@pytest.mark.parametrize("retired, mode", [("blue", "Remove"), ("blue", "Restore"), ("green", "Remove"),
                                           ("green", "Restore")])
async def test_finalize_refuses_while_the_retired_side_takes_traffic(harness: Harness, retired: str, mode: str) -> None:
    saved = as_status_keeps_it(await harness.router.save())
    await settle(harness.router, blue=50, green=50)
    writes, state = harness.writes(), await harness.snapshot()

    with pytest.raises(base.RouterError, match=f"refusing to retire {retired} .*{retired} still takes traffic"):
        await harness.router.finalize(retired=retired, mode=mode, original=saved)

    assert harness.writes() == writes
    assert await harness.snapshot() == state
    assert await harness.effective() == (50, 50)

"""Hypothesis properties of the engine over random sequences of world changes and human requests.

Each example drives the in-memory world through up to 60 random operations
(passes, time passing, clusters and Flux changing, annotations, spec.paused,
failing actions) and checks the safety invariants after every pass.
"""

from __future__ import annotations

import datetime

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bluegreen.api.spec import duration
from bluegreen.api.status import Phase
from bluegreen.engine.types import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    DeleteCluster,
    DeleteWorkloads,
    FinalizeRouters,
    Observed,
    SetWeights,
)
from tests.unit.engine.world import World, make_spec

ROLLBACK_PHASES = {Phase.ROLLING_BACK, Phase.ROLLED_BACK}

operations = st.one_of(
    st.just(("progress", None)),
    st.just(("progress", None)),
    st.just(("progress", None)),
    st.just(("pass", None)),
    st.just(("pass", None)),
    st.just(("pass", None)),
    st.tuples(st.just("advance"), st.sampled_from([1, 30, 61, 301, 3601])),
    st.just(("green_ready", None)),
    st.just(("green_unready", None)),
    st.tuples(st.just("flux"), st.booleans()),
    st.just(("blue_new_revision", None)),
    st.tuples(st.just("annotate"), st.sampled_from([(ANNOTATION_PROMOTE, "step"), (ANNOTATION_PROMOTE, "full"),
                                                   (ANNOTATION_ABORT, "true"), (ANNOTATION_RETRY, "true"),
                                                   (ANNOTATION_PROMOTE, "bogus")])),
    st.tuples(st.just("paused"), st.booleans()),
    st.tuples(st.just("fail_actions"), st.booleans()),
)


def green_may_take_traffic(observed: Observed) -> bool:
    green = observed.green
    if not (green.exists and green.ready):
        return False
    copies = {k.copy_of: k for k in observed.workloads.green}
    return bool(observed.workloads.blue) and all(
        (copy := copies.get(b.name)) is not None and copy.ready and copy.revision == b.revision
        for b in observed.workloads.blue
    )


def checked_pass(world: World) -> None:
    observed = world.observe()
    router_before = world.router_green
    phase_before = world.status.phase
    applied = not world.fail_actions
    decision = world.step()
    status = decision.status
    event(f"phase {status.phase.value}")

    assert status.weights.blue + status.weights.green == 100
    for action in decision.actions:
        if isinstance(action, SetWeights):
            assert action.green + action.blue == 100
            previous = router_before if router_before is not None else 0
            if action.green > previous:
                assert green_may_take_traffic(observed), "traffic moved toward an unhealthy or unsynced green"
                assert status.phase not in ROLLBACK_PHASES
            if action.green < previous:
                assert status.phase in ROLLBACK_PHASES, f"traffic moved back outside a rollback ({phase_before})"
        if isinstance(action, FinalizeRouters | DeleteCluster | DeleteWorkloads) and getattr(
                action, "side", "blue") == "blue":
            promoted_at = world.status.promoted_at if applied else status.promoted_at
            assert status.promoted_at is not None and promoted_at is not None
            assert world.now - status.promoted_at >= duration(world.spec.promotion.retain_blue_for)
            assert world.router_green == 100 or (not applied and router_before == 100)
            assert green_may_take_traffic(observed), "blue retired while green was unhealthy"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operations, max_size=80))
def test_safety_invariants_hold_for_any_sequence(ops: list[tuple[str, object]]) -> None:
    world = World(spec=make_spec(promotion={"retainBlueFor": "1h"}))
    for name, arg in ops:
        match name:
            case "pass":
                checked_pass(world)
            case "progress":  # the world does what the simulated controllers would, then a pass
                world.green_becomes_ready()
                world.flux_syncs()
                checked_pass(world)
            case "advance":
                assert isinstance(arg, int)
                world.advance(arg)
            case "green_ready":
                world.green_becomes_ready()
            case "green_unready":
                world.green_ready = False
            case "flux":
                world.flux_syncs(healthy=bool(arg))
            case "blue_new_revision":
                world.blue_kustomizations = {k: v + "x" for k, v in world.blue_kustomizations.items()}
            case "annotate":
                assert isinstance(arg, tuple)
                world.annotations[arg[0]] = arg[1]
            case "paused":
                world.spec = make_spec(promotion={"retainBlueFor": "1h"}, paused=bool(arg))
            case "fail_actions":
                world.fail_actions = bool(arg)
        if world.router_green is not None:
            assert 0 <= world.router_green <= 100


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(operations, max_size=40))
def test_an_abort_always_ends_with_blue_at_100_unless_blue_is_already_retiring(ops: list[tuple[str, object]]) -> None:
    world = World(spec=make_spec(promotion={"retainBlueFor": "1h"}))
    for name, arg in ops:
        if name == "pass":
            checked_pass(world)
        elif name == "progress":
            world.green_becomes_ready()
            world.flux_syncs()
            checked_pass(world)
        elif name == "advance" and isinstance(arg, int):
            world.advance(arg)
        elif name == "green_ready":
            world.green_becomes_ready()
        elif name == "flux":
            world.flux_syncs(healthy=bool(arg))
        elif name == "annotate" and isinstance(arg, tuple) and arg[0] == ANNOTATION_PROMOTE:
            world.annotations[arg[0]] = arg[1]
    world.fail_actions = False
    world.spec = make_spec(promotion={"retainBlueFor": "1h"})
    world.annotations[ANNOTATION_ABORT] = "true"
    world.run_until_settled()
    if world.status.phase in {Phase.RETIRING, Phase.COMPLETED}:
        return  # blue's retirement had begun: an abort is refused, by design
    if world.status.phase == Phase.FAILED:  # Failed is only reached while blue serves everything
        assert world.status.weights.green == 0 and world.router_green in (None, 0)
        return
    assert world.status.phase == Phase.ROLLED_BACK
    assert world.router_green == 0
    assert (world.status.weights.blue, world.status.weights.green) == (100, 0)


@settings(max_examples=100, deadline=None)
@given(pause=st.integers(min_value=0, max_value=7200), retain=st.integers(min_value=0, max_value=7200))
def test_wake_ups_are_never_later_than_what_the_spec_asks(pause: int, retain: int) -> None:
    spec = make_spec(
        traffic={"routers": [{"haproxy": {"runtimeAPI": "tcp://h:1", "backend": "b", "blueServer": "x",
                                          "greenServer": "y"}}],
                 "steps": [{"setWeight": 20}, {"pause": {"duration": f"{pause}s"}}, {"setWeight": 100}]},
        promotion={"retainBlueFor": f"{retain}s"},
    )
    world = World(spec=spec)
    world.run_until_settled()
    world.green_becomes_ready()
    world.run_until_settled()
    world.flux_syncs()
    world.run_until_settled()
    started = world.now
    while world.status.phase not in {Phase.COMPLETED}:
        wake = world.log[-1].wake_at
        assert wake is not None, f"stuck in {world.status.phase} with no wake-up"
        assert wake - started <= datetime.timedelta(seconds=pause + retain + 1)
        world.now = max(world.now, wake)
        world.run_until_settled()
    assert world.now - started == datetime.timedelta(seconds=pause + retain)

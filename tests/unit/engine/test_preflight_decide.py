"""The engine's preflight, Auto, InPlace and hooks: one scenario per rule, through the in-memory world."""

from __future__ import annotations

from typing import Any

from bluegreen.api.status import (
    CapacityStatus,
    CapacityVerdict,
    ConditionType,
    FindingStatus,
    HookPhase,
    Phase,
    PreflightStatus,
    StatefulStatus,
)
from bluegreen.engine.types import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    HookObservation,
    ProvisionGreen,
    RunHook,
    SetWeights,
)
from tests.unit.engine.test_decide import condition, reach_shifting
from tests.unit.engine.world import World, make_spec

PDB = FindingStatus(kind="PodDisruptionBudget", namespace="shop", name="web", api_version="policy/v1beta1",
                    removed_in="1.25", replacement="policy/v1", where="live on prod-blue")
ES = StatefulStatus(kind="StatefulSet", namespace="search", name="es", reason="volume claim data")


def found(*findings: FindingStatus, stateful: tuple[StatefulStatus, ...] = (), **more: Any) -> PreflightStatus:
    return PreflightStatus(findings=list(findings), findings_total=len(findings),
                           stateful_workloads=list(stateful), stateful_total=len(stateful), **more)


def events(world: World, reason: str) -> list[str]:
    return [e.message for d in world.log for e in d.events if e.reason == reason]


def in_place_world(*, blue: str = "v1.28.3", target: str = "1.31", world: dict[str, Any] | None = None,
                   **spec: Any) -> World:
    raw: dict[str, Any] = {"strategy": "InPlace", "target": {"kubernetesVersion": target}, "traffic": None}
    raw.update(spec)
    return World(spec=make_spec(**raw), blue_version=blue, **(world or {}))


def roll_out(world: World) -> None:
    """The provider finishes the rollout it was asked for."""
    world.blue_rolling_out = False
    world.run_until_settled()


# --- removed APIs -------------------------------------------------------------------------------


def test_removed_apis_block_naming_the_count_and_the_first_findings() -> None:
    world = World(scan=found(PDB))
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    status, reason, message = condition(world, ConditionType.PREFLIGHT_PASSED)
    assert (status, reason) == ("False", "PreflightFailed")
    assert "1 object(s) use APIs removed by 1.31" in message
    assert "PodDisruptionBudget shop/web uses policy/v1beta1 (use policy/v1; live on prod-blue)" in message
    assert world.green_exists is False, "nothing is created while blocked"


def test_blocked_then_fixed_then_unblocked_by_retry() -> None:
    world = World(scan=found(PDB))
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    world.scan = found()  # the person migrated the object
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED, "a fix alone is not seen until asked: the scan is not repeated"
    world.annotations[ANNOTATION_RETRY] = "1"
    world.run_until_settled()
    assert world.scans == 2
    assert world.status.phase == Phase.PROVISIONING
    assert condition(world, ConditionType.PREFLIGHT_PASSED)[0] == "True"


def test_removed_apis_warn_goes_on_with_a_warning() -> None:
    world = World(spec=make_spec(preflight={"removedAPIs": "Warn"}), scan=found(PDB))
    world.run_until_settled()
    assert world.status.phase == Phase.PROVISIONING
    assert any("PodDisruptionBudget shop/web" in message for message in events(world, "PreflightWarning"))
    assert "1 warning(s)" in condition(world, ConditionType.PREFLIGHT_PASSED)[2]


def test_a_source_that_could_not_be_scanned_blocks_like_a_finding() -> None:
    world = World(scan=found(problems=["GitRepository flux-system/apps: artifact not reachable"]))
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    assert "artifact not reachable" in world.status.message


# --- versions -----------------------------------------------------------------------------------


def test_a_version_the_provider_does_not_offer_is_refused() -> None:
    world = World(offered_versions=("1.29", "1.30"))
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    assert "not offered by the cluster provider (it offers 1.29, 1.30)" in world.status.message


def test_in_place_refuses_worker_groups_left_too_far_behind() -> None:
    world = in_place_world(blue="v1.28.3", target="1.29", world={"worker_versions": {"md-0": "1.26"}})
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    assert "worker group 'md-0' runs 1.26, 3 minors behind" in world.status.message


# --- Auto ---------------------------------------------------------------------------------------


def test_auto_chooses_in_place_for_one_clean_minor_and_says_why() -> None:
    world = World(spec=make_spec(strategy="Auto"), blue_version="v1.30.4")
    world.run_until_settled()
    choice = world.status.preflight.strategy
    assert choice is not None and choice.chosen == "InPlace"
    assert "one minor: 1.30 to 1.31" in choice.reasons
    assert world.status.phase == Phase.UPGRADING
    assert world.green_exists is False
    assert events(world, "StrategyChosen") == [f"strategy InPlace: {'; '.join(choice.reasons)}"]


def test_auto_chooses_blue_green_for_removed_apis_and_for_several_minors() -> None:
    warned = World(spec=make_spec(strategy="Auto", preflight={"removedAPIs": "Warn"}), scan=found(PDB))
    warned.run_until_settled()
    assert warned.status.preflight.strategy is not None
    assert warned.status.preflight.strategy.chosen == "BlueGreen"
    assert "1 object(s) use APIs 1.31 no longer serves" in warned.status.preflight.strategy.reasons[0]
    assert warned.status.phase == Phase.PROVISIONING

    far = World(spec=make_spec(strategy="Auto"), blue_version="v1.28.0")
    far.run_until_settled()
    assert far.status.preflight.strategy is not None
    assert far.status.preflight.strategy.chosen == "BlueGreen"
    assert "1.28 to 1.31 is 3 minors" in far.status.preflight.strategy.reasons[0]


def test_auto_choosing_blue_green_still_checks_greens_name() -> None:
    world = World(spec=make_spec(strategy="Auto"), blue_version="v1.28.0", green_exists=True, green_owner=None)
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    assert "already exists" in world.status.message


# --- InPlace ------------------------------------------------------------------------------------


def test_in_place_goes_one_minor_at_a_time_waiting_for_each_rollout() -> None:
    world = in_place_world(inPlace={"betweenMinors": [{"pause": {"duration": "1m"}}]})
    world.run_until_settled()
    assert world.status.phase == Phase.UPGRADING
    assert world.status.preflight.path == ["1.29", "1.30", "1.31"]
    for minor in ("1.29", "1.30", "1.31"):
        assert world.versions_asked[-1] == minor
        world.run_until_settled()
        assert world.versions_asked[-1] == minor, "the next minor waits for this rollout"
        roll_out(world)
        assert world.status.in_place is not None and world.status.in_place.rolled_out
        world.advance(59)
        world.run_until_settled()
        assert world.versions_asked[-1] == minor, "betweenMinors' pause holds the next minor"
        world.advance(1)
        world.run_until_settled()
    assert world.versions_asked == ["1.29", "1.30", "1.31"]
    assert world.status.phase == Phase.COMPLETED
    assert world.status.blue is not None and world.status.blue.version == "1.31"
    assert len(events(world, "MinorRolledOut")) == 3


def test_in_place_pause_without_duration_waits_for_promote() -> None:
    world = in_place_world(target="1.30", inPlace={"betweenMinors": [{"pause": {}}]})
    world.run_until_settled()
    roll_out(world)
    assert world.status.phase == Phase.PAUSED
    world.run_until_settled()
    assert world.versions_asked == ["1.29"]
    world.annotations[ANNOTATION_PROMOTE] = "step"
    world.run_until_settled()
    assert world.versions_asked == ["1.29", "1.30"]
    assert world.status.phase == Phase.UPGRADING


def test_in_place_abort_stops_where_the_cluster_is_and_retry_goes_on_from_there() -> None:
    world = in_place_world()
    world.run_until_settled()
    roll_out(world)  # at 1.29
    world.run_until_settled()
    assert world.versions_asked == ["1.29", "1.30"]
    world.annotations[ANNOTATION_ABORT] = "1"
    world.run_until_settled()
    assert world.status.phase == Phase.FAILED
    assert "in place has no way back" in world.status.message
    roll_out(world)  # the rollout under way finishes: the cluster is at 1.30
    world.annotations[ANNOTATION_RETRY] = "1"
    world.run_until_settled()
    assert world.status.preflight.path == ["1.31"]
    assert world.versions_asked == ["1.29", "1.30", "1.31"]
    roll_out(world)
    assert world.status.phase == Phase.COMPLETED


def test_in_place_rollout_timeout_fails_naming_the_minor() -> None:
    world = in_place_world(target="1.29", inPlace={"timeout": "10m"})
    world.run_until_settled()
    world.advance(600)
    world.run_until_settled()
    assert world.status.phase == Phase.FAILED
    assert "has not rolled out 1.29 after 10m" in world.status.message


# --- stateful workloads, capacity -----------------------------------------------------------------


def test_stateful_block_and_handoff_without_a_hook_block() -> None:
    blocked = World(spec=make_spec(preflight={"stateful": "Block"}), scan=found(stateful=(ES,)))
    blocked.run_until_settled()
    assert blocked.status.phase == Phase.BLOCKED
    assert "StatefulSet search/es (volume claim data)" in blocked.status.message

    uncovered = World(spec=make_spec(preflight={"stateful": "Handoff"}), scan=found(stateful=(ES,)))
    uncovered.run_until_settled()
    assert uncovered.status.phase == Phase.BLOCKED
    assert "1 stateful workload(s) have no handoff hook: StatefulSet search/es" in uncovered.status.message

    covered = ES.model_copy(update={"handoff": "es-move"})
    ok = World(spec=make_spec(preflight={"stateful": "Handoff"}, hooks=[HANDOFF]), scan=found(stateful=(covered,)))
    ok.run_until_settled()
    assert ok.status.phase == Phase.PROVISIONING


def test_capacity_block_refuses_a_green_that_is_too_small() -> None:
    small = CapacityStatus(verdict=CapacityVerdict.TOO_SMALL, message="green has 4 CPU, blue requests 6 CPU")
    world = World(spec=make_spec(preflight={"capacity": "Block"}), scan=found(capacity=small))
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    assert "capacity: green has 4 CPU, blue requests 6 CPU" in world.status.message
    unknown = CapacityStatus(verdict=CapacityVerdict.UNKNOWN, message="machine sizes unknown")
    warned = World(spec=make_spec(preflight={"capacity": "Block"}), scan=found(capacity=unknown))
    warned.run_until_settled()
    assert warned.status.phase == Phase.PROVISIONING, "what cannot be told warns, it does not block"


# --- hooks --------------------------------------------------------------------------------------

HANDOFF = {"name": "es-move", "at": "BeforeTraffic", "handoff": {"namespace": "search", "name": "es",
                                                                 "timeout": "5m"}}


def test_a_before_traffic_hook_runs_before_any_traffic_moves() -> None:
    world = World(spec=make_spec(hooks=[HANDOFF]))
    reach_shifting(world)
    assert world.status.phase == Phase.VERIFYING
    assert world.hooks_run and all(name == "es-move" and not back for name, back in world.hooks_run)
    assert world.router_green == 0, "no traffic before the hook succeeded"
    hook = world.status.hook("es-move")
    assert hook is not None and hook.phase == HookPhase.RUNNING
    world.hooks["es-move"] = HookObservation(state="Succeeded", message="search/es: 3 ready on green")
    world.run_until_settled()
    assert world.router_green == 10
    hook = world.status.hook("es-move")
    assert hook is not None and hook.phase == HookPhase.SUCCEEDED


def test_a_handoff_that_fails_rolls_back_and_is_handed_back() -> None:
    world = World(spec=make_spec(hooks=[HANDOFF]))
    reach_shifting(world)
    world.advance(601)  # past twice the handoff's timeout
    world.run_until_settled()
    assert world.status.phase == Phase.ROLLING_BACK
    assert world.hooks_run[-1] == ("es-move", True), "the handoff is handed back"
    hook = world.status.hook("es-move")
    assert hook is not None and hook.phase == HookPhase.REVERTING
    world.hooks["es-move"] = HookObservation(state="Succeeded", message="search/es: 3 ready on blue")
    world.run_until_settled()
    assert world.status.phase == Phase.ROLLED_BACK
    hook = world.status.hook("es-move")
    assert hook is not None and hook.phase == HookPhase.REVERTED
    assert not any(isinstance(a, SetWeights) and a.green > 0 for d in world.log for a in d.actions)


def test_a_rollback_after_the_handoff_hands_it_back_once_traffic_is_on_blue() -> None:
    world = World(spec=make_spec(hooks=[HANDOFF]))
    reach_shifting(world)
    world.hooks["es-move"] = HookObservation(state="Succeeded")
    world.run_until_settled()
    assert world.router_green == 10
    world.hooks["es-move"] = HookObservation(state="Running", message="green's search/es: 2 replicas left")
    world.annotations[ANNOTATION_ABORT] = "1"
    world.run_until_settled()
    assert world.router_green == 0, "traffic first"
    assert world.status.phase == Phase.ROLLING_BACK
    assert world.hooks_run[-1] == ("es-move", True)
    assert "green's search/es: 2 replicas left" in world.status.message
    world.hooks["es-move"] = HookObservation(state="Succeeded")
    world.run_until_settled()
    assert world.status.phase == Phase.ROLLED_BACK


def test_hooks_at_promotion_and_before_retirement_run_in_order() -> None:
    hooks = [{"name": "announce", "at": "AfterPromotion", "cluster": "green",
              "job": {"template": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}},
             {"name": "drain-queue", "at": "BeforeRetire", "cluster": "blue",
              "job": {"template": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}}]
    world = World(spec=make_spec(hooks=hooks, traffic={"routers": make_spec().traffic.to_wire()["routers"],
                                                       "steps": [{"setWeight": 100}]}))
    reach_shifting(world)
    assert world.status.phase == Phase.PROMOTED
    assert list(dict.fromkeys(name for name, _ in world.hooks_run)) == ["announce"]
    world.hooks["announce"] = HookObservation(state="Succeeded")
    world.advance(3600)
    world.run_until_settled()
    assert world.status.phase == Phase.RETIRING
    assert world.hooks_run[-1] == ("drain-queue", False)
    assert not world.routers_finalized, "blue stays in the routers until the hook is done"
    world.hooks["drain-queue"] = HookObservation(state="Succeeded")
    world.run_until_settled()
    assert world.status.phase == Phase.COMPLETED
    assert not any(isinstance(a, ProvisionGreen) for a in world.log[-1].actions)
    assert not any(isinstance(a, RunHook) and a.reverse for d in world.log for a in d.actions)


def test_a_handoff_that_cannot_be_handed_back_finishes_the_rollback_and_says_so() -> None:
    world = World(spec=make_spec(hooks=[HANDOFF]))
    reach_shifting(world)
    world.hooks["es-move"] = HookObservation(state="Succeeded")
    world.run_until_settled()
    world.hooks["es-move"] = HookObservation(state="Failed", message="blue has no StatefulSet search/es")
    world.annotations[ANNOTATION_ABORT] = "1"
    world.run_until_settled()
    assert world.status.phase == Phase.ROLLED_BACK, "traffic is back on blue; the rollback does not hang"
    hook = world.status.hook("es-move")
    assert hook is not None and hook.phase == HookPhase.HAND_BACK_FAILED
    assert "restore it by hand" in hook.message
    assert events(world, "HookHandBackFailed")
    assert ("es-move", True) not in world.hooks_run, "nothing is asked of a side that cannot do it"

"""Table tests of the engine: one scenario per behaviour, driven through the in-memory world."""

from __future__ import annotations

import pytest

from bluegreen.api import spec as api_spec
from bluegreen.api.status import ConditionType, Phase
from bluegreen.engine.types import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    DeleteCluster,
    DeleteWorkloads,
    FinalizeRouters,
    ProvisionGreen,
    SaveRouters,
    ScanPreflight,
    SetWeights,
    SyncWorkloads,
)
from tests.unit.engine.world import World, make_spec


def reach_shifting(world: World) -> None:
    world.run_until_settled()
    assert world.status.phase == Phase.PROVISIONING
    world.green_becomes_ready()
    world.run_until_settled()
    assert world.status.phase == Phase.SYNCING
    world.flux_syncs()
    world.run_until_settled()


def condition(world: World, type_: ConditionType) -> tuple[str, str, str]:
    found = world.status.condition(type_)
    assert found is not None, f"no {type_} condition"
    return found.status, found.reason, found.message


def test_happy_path_goes_through_every_phase_in_order() -> None:
    world = World()
    reach_shifting(world)
    # setWeight 10 applied, then a 1m pause started
    assert world.status.phase == Phase.SHIFTING
    assert world.router_green == 10
    assert world.status.step.index == 1
    world.advance(59)
    world.run_until_settled()
    assert world.status.step.index == 1, "a pause must not end early"
    world.advance(1)
    world.run_until_settled()
    # setWeight 50, then a pause without duration waits for a human
    assert world.router_green == 50
    assert world.status.phase == Phase.PAUSED
    world.annotations[ANNOTATION_PROMOTE] = "step"
    world.run_until_settled()
    assert ANNOTATION_PROMOTE not in world.annotations, "the promote annotation is consumed"
    assert world.router_green == 100
    assert world.status.phase == Phase.PROMOTED
    world.advance(3599)
    world.run_until_settled()
    assert world.status.phase == Phase.PROMOTED, "blue is kept for the whole window"
    assert world.blue_exists and world.blue_kustomizations
    world.advance(1)
    world.run_until_settled()
    assert world.status.phase == Phase.COMPLETED
    assert not world.blue_exists and not world.blue_kustomizations
    assert condition(world, ConditionType.READY)[0] == "True"
    assert condition(world, ConditionType.BLUE_RETIRED)[:2] == ("True", "Deleted")
    phases = [e.reason for d in world.log for e in d.events if e.reason in Phase.__members__.values()]
    assert phases == ["Preflight", "Provisioning", "Syncing", "Verifying", "Shifting", "Paused",
                      "Shifting", "Promoted", "Retiring", "Completed"]
    retired = [e.message for d in world.log for e in d.events if e.reason == "BlueRetired"]
    assert retired == ["blue cluster prod-blue deleted"], "one Event of its own when blue is retired"


def test_actions_come_one_kind_per_phase() -> None:
    world = World()
    decision = world.step()
    assert decision.actions == (ScanPreflight(),), "blue and its sources are scanned before anything is created"
    decision = world.step()
    assert decision.actions == (ProvisionGreen(name="prod-green", version="1.31"),)
    world.green_becomes_ready()
    decision = world.step()
    assert decision.actions == (SyncWorkloads(green_name="prod-green", kubeconfig_secret="prod-green-kubeconfig"),)
    world.flux_syncs()
    decision = world.step()
    assert decision.actions == (SaveRouters(),), "what the routers hold is saved before anything changes"
    decision = world.step()
    assert decision.actions == (SetWeights(green=0),), "verifying establishes blue 100 before any shift"


def test_dns_routers_hold_each_weight_for_one_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_spec, "IMPLEMENTED_ROUTER_KINDS", frozenset({"haproxy", "route53"}))
    route53 = {"route53": {"hostedZoneId": "Z1", "recordName": "app.example.com", "ttl": 30,
                           "blue": {"setIdentifier": "blue", "value": "lb-blue"},
                           "green": {"setIdentifier": "green", "value": "lb-green", "healthCheckId": "hc-green"}}}
    world = World(spec=make_spec(traffic={"routers": [route53], "steps": [{"setWeight": 10}, {"setWeight": 100}]}))
    reach_shifting(world)
    assert world.router_green == 10 and world.status.step.index == 0
    assert "one DNS TTL" in world.status.message
    world.advance(29)
    world.run_until_settled()
    assert world.router_green == 10, "resolvers may still hold the old answer"
    world.advance(1)
    world.run_until_settled()
    assert world.router_green == 100


def test_retirement_finalizes_routers_before_blue_goes() -> None:
    world = World(spec=make_spec(promotion={"retainBlueFor": "0s"}, traffic={
        "routers": [{"haproxy": {"runtimeAPI": "tcp://h:1", "backend": "b", "blueServer": "x", "greenServer": "y"}}],
        "steps": [{"setWeight": 100}]}))
    reach_shifting(world)
    kinds = [type(a) for d in world.log for a in d.actions]
    assert kinds.index(FinalizeRouters) < kinds.index(DeleteWorkloads) < kinds.index(DeleteCluster)
    assert kinds.count(FinalizeRouters) == 1 and world.status.phase == Phase.COMPLETED


def test_retirement_deletes_workloads_before_the_cluster() -> None:
    world = World(spec=make_spec(traffic={
        "routers": [{"haproxy": {"runtimeAPI": "tcp://h:1", "backend": "b", "blueServer": "x", "greenServer": "y"}}],
        "steps": [{"setWeight": 100}]}, promotion={"retainBlueFor": "0s"}))
    reach_shifting(world)
    kinds = [type(a) for d in world.log for a in d.actions]
    assert kinds.index(DeleteWorkloads) < kinds.index(DeleteCluster)
    assert world.status.phase == Phase.COMPLETED


def test_retain_policy_keeps_blue_cluster_but_removes_its_workloads() -> None:
    world = World(spec=make_spec(promotion={"retainBlueFor": "0s", "blueDeletionPolicy": "Retain"},
                                 traffic={"routers": [{"haproxy": {"runtimeAPI": "tcp://h:1", "backend": "b",
                                                                   "blueServer": "x", "greenServer": "y"}}],
                                          "steps": [{"setWeight": 100}]}))
    reach_shifting(world)
    assert world.status.phase == Phase.COMPLETED
    assert world.blue_exists and not world.blue_kustomizations
    assert condition(world, ConditionType.BLUE_RETIRED)[1] == "Retained"


def test_green_health_failing_keeps_all_traffic_on_blue_with_a_reason() -> None:
    world = World()
    world.run_until_settled()
    world.green_becomes_ready()
    world.run_until_settled()
    world.flux_syncs(healthy=False)
    world.run_until_settled()
    assert world.status.phase == Phase.SYNCING
    assert world.router_green is None, "no router was touched"
    status, reason, message = condition(world, ConditionType.WORKLOADS_IN_SYNC)
    assert (status, reason) == ("False", "NotInSync")
    assert "HealthCheckFailed" in message and "apps-green" in message
    assert "traffic stays on blue" in world.status.message


def test_revision_mismatch_holds_before_traffic() -> None:
    world = World()
    world.run_until_settled()
    world.green_becomes_ready()
    world.run_until_settled()
    world.flux_syncs()
    world.blue_kustomizations["apps"] = "main@sha1:bbb"  # blue moved on; green still at aaa
    world.run_until_settled()
    assert world.status.phase == Phase.SYNCING
    assert "revision main@sha1:aaa" in condition(world, ConditionType.WORKLOADS_IN_SYNC)[2]
    world.flux_syncs()
    world.run_until_settled()
    assert world.status.phase == Phase.SHIFTING


def test_sync_timeout_fails_while_blue_serves_everything() -> None:
    world = World()
    world.run_until_settled()
    world.green_becomes_ready()
    world.run_until_settled()
    decision = world.log[-1]
    assert decision.wake_at is not None, "the timeout is a wake-up time"
    world.now = decision.wake_at
    world.run_until_settled()
    assert world.status.phase == Phase.FAILED
    assert condition(world, ConditionType.WORKLOADS_IN_SYNC)[1] == "SyncTimeout"


def test_green_failing_while_it_serves_traffic_rolls_back_after_the_grace() -> None:
    world = World()
    reach_shifting(world)
    assert world.router_green == 10
    world.flux_syncs(healthy=False)
    world.run_until_settled()
    assert world.status.phase == Phase.SHIFTING and world.router_green == 10, "a blip holds, it does not roll back"
    world.advance(300)
    world.run_until_settled()
    assert world.status.phase == Phase.ROLLED_BACK
    assert world.router_green == 0


@pytest.mark.parametrize("phase_reached", ["provisioning", "shifting", "paused", "promoted"])
def test_abort_returns_blue_to_100(phase_reached: str) -> None:
    world = World()
    world.run_until_settled()
    if phase_reached != "provisioning":
        world.green_becomes_ready()
        world.run_until_settled()
        world.flux_syncs()
        world.run_until_settled()
    if phase_reached in {"paused", "promoted"}:
        world.advance(60)
        world.run_until_settled()
    if phase_reached == "promoted":
        world.annotations[ANNOTATION_PROMOTE] = "step"
        world.run_until_settled()
        assert world.status.phase == Phase.PROMOTED
    world.annotations[ANNOTATION_ABORT] = "true"
    world.run_until_settled()
    assert world.status.phase == Phase.ROLLED_BACK
    assert world.router_green == 0
    assert (world.status.weights.blue, world.status.weights.green) == (100, 0)
    assert ANNOTATION_ABORT not in world.annotations
    assert world.blue_exists and world.blue_kustomizations, "blue is untouched"


def test_retry_after_rollback_shifts_again_from_step_zero_on_the_same_green() -> None:
    world = World()
    reach_shifting(world)
    world.annotations[ANNOTATION_ABORT] = "true"
    world.run_until_settled()
    provisioned = sum(isinstance(a, ProvisionGreen) for d in world.log for a in d.actions)
    world.annotations[ANNOTATION_RETRY] = "true"
    world.run_until_settled()
    assert world.status.phase == Phase.SHIFTING
    assert world.router_green == 10 and world.status.step.index == 1
    assert sum(isinstance(a, ProvisionGreen) for d in world.log for a in d.actions) == provisioned


def test_promote_full_jumps_to_100() -> None:
    world = World()
    reach_shifting(world)
    world.annotations[ANNOTATION_PROMOTE] = "full"
    world.run_until_settled()
    assert world.router_green == 100
    assert world.status.phase == Phase.PROMOTED


def test_spec_paused_holds_and_resumes_where_it_was() -> None:
    world = World()
    reach_shifting(world)
    world.spec = make_spec(paused=True)
    world.advance(120)
    world.run_until_settled()
    assert world.status.phase == Phase.PAUSED and world.router_green == 10
    world.spec = make_spec()
    world.run_until_settled()
    assert world.status.phase == Phase.PAUSED, "resumed, then reached the pause that waits for a human"
    assert world.router_green == 50


@pytest.mark.parametrize(("change", "reason_part"), [
    ({"blue_exists": False}, "not found"),
    ({"blue_version": "v1.31.1"}, "the version the cluster already runs"),
    ({"green_exists": True, "green_owner": None}, "already exists"),
    ({"blue_kustomizations": {}}, "matches no Kustomization"),
])
def test_preflight_blocks_before_anything_is_created(change: dict[str, object], reason_part: str) -> None:
    world = World(**change)  # type: ignore[arg-type]
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    assert reason_part in condition(world, ConditionType.PREFLIGHT_PASSED)[2]
    assert not any(d.actions for d in world.log)


def test_provider_preflight_problems_block_with_their_fix() -> None:
    world = World(preflight_problems=("spec.target.overrides.controlPlaneConfiguration.endpoint.host: set it",
                                      "git credentials Secret env-repo not found"))
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    message = condition(world, ConditionType.PREFLIGHT_PASSED)[2]
    assert "endpoint.host: set it" in message and "env-repo not found" in message
    assert not any(d.actions for d in world.log), "nothing is created"
    world.preflight_problems = ()
    world.annotations[ANNOTATION_RETRY] = "true"
    world.run_until_settled()
    assert world.status.phase == Phase.PROVISIONING


def test_blocked_then_fixed_then_retry_proceeds() -> None:
    world = World(blue_exists=False)
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    world.blue_exists = True
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED, "no silent retry without a change"
    world.annotations[ANNOTATION_RETRY] = "1"
    world.run_until_settled()
    assert world.status.phase == Phase.PROVISIONING


def test_failed_actions_leave_status_untouched_and_are_decided_again() -> None:
    world = World()
    world.fail_actions = True
    world.step()
    world.step()
    assert world.status.phase == Phase.PENDING, "status is written only after the actions succeed"
    world.fail_actions = False
    world.run_until_settled()
    assert world.status.phase == Phase.PROVISIONING and world.green_exists


def test_provisioning_timeout_fails_with_the_reason() -> None:
    world = World()
    world.run_until_settled()
    world.advance(600)
    world.run_until_settled()
    assert world.status.phase == Phase.FAILED
    assert condition(world, ConditionType.GREEN_READY)[1] == "ProvisioningTimeout"


def test_invalid_spec_changes_nothing_and_says_why() -> None:
    world = World()
    from bluegreen.engine import decide
    from bluegreen.engine.types import Observed
    observed = world.observe()
    broken = Observed(**{**observed.__dict__, "spec_error": "spec.traffic.steps: no step sets weight 100"})
    decision = decide(None, world.status, broken, world.now, owner="fleet.demo")
    assert decision.actions == ()
    assert decision.status.phase == Phase.PENDING
    ready = decision.status.condition(ConditionType.READY)
    assert ready is not None and ready.reason == "InvalidSpec" and "no step sets weight 100" in ready.message


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    world = World()
    world.run_until_settled()
    world.green_becomes_ready()
    world.run_until_settled()
    world.flux_syncs(healthy=False)
    world.run_until_settled()
    first = world.status.condition(ConditionType.WORKLOADS_IN_SYNC)
    world.advance(10)
    world.run_until_settled()
    again = world.status.condition(ConditionType.WORKLOADS_IN_SYNC)
    assert first is not None and again is not None
    assert again.last_transition_time == first.last_transition_time


def test_the_upgrade_label_is_always_a_valid_label_value() -> None:
    import re

    from bluegreen.engine import upgrade_label

    assert upgrade_label("fleet", "prod-to-1-31") == "fleet.prod-to-1-31"
    long_name = "a" * 63
    first, second = upgrade_label("fleet", long_name), upgrade_label("fleet", long_name[:-1] + "b")
    for value in (first, second):
        assert len(value) <= 63 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", value), value
    assert first != second and first == upgrade_label("fleet", long_name)

"""Deleting a ClusterUpgrade (spec.onDelete), phase by phase and policy by policy, in the in-memory world.

Each scenario drives a real upgrade to a phase, deletes the resource, then passes until the engine
releases it, and checks what the world was left with: where traffic goes, what is left of green, and
that blue was never touched but to get its traffic back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from bluegreen.api import spec as api_spec
from bluegreen.api.spec import DeletePolicy
from bluegreen.api.status import ConditionType, DeletionStage, HookPhase, Phase, RotationStage
from bluegreen.engine import decide
from bluegreen.engine.deletion import needs_finalizer, stages_for
from bluegreen.engine.types import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    CordonNodes,
    Decision,
    DeleteCluster,
    DeleteWorkloads,
    DrainNode,
    EnsurePool,
    FinalizeRouters,
    HookObservation,
    Observed,
    ProvisionGreen,
    RunChecks,
    ScalePool,
    SetWeights,
)
from tests.unit.engine import test_nodepools_decide as rotation
from tests.unit.engine.world import OWNER, World, make_spec


@dataclasses.dataclass
class DeletableWorld(World):
    deleting: bool = False
    released: bool = False

    def observe(self) -> Observed:
        return dataclasses.replace(super().observe(), deleting=self.deleting)

    def step(self) -> Decision:
        decision = super().step()
        if decision.release and not (self.fail_actions and decision.actions):
            self.released = True
        return decision

    def step_deleted_once(self) -> Decision:
        self.deleting = True
        return self.step()

    def delete(self, limit: int = 30) -> list[Decision]:
        """Delete the resource and pass until the engine releases it; the decisions taken meanwhile."""
        self.deleting = True
        start = len(self.log)
        for _ in range(limit):
            self.step()
            if self.released:
                return self.log[start:]
            self.advance(30)  # time goes on (a gradual way back holds each weight for stepInterval)
        raise AssertionError(f"not released after {limit} passes: {self.status.phase} {self.status.message}")


def reach_shifting(world: World) -> None:
    world.run_until_settled()
    world.green_becomes_ready()
    world.run_until_settled()
    world.flux_syncs()
    world.run_until_settled()
    assert world.status.phase == Phase.SHIFTING and world.router_green == 10


def to_pending(world: World) -> None:
    pass


def to_blocked(world: World) -> None:
    world.preflight_problems = ("blue has no room for green",)  # a provider refuses: nothing is created
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED


def to_provisioning(world: World) -> None:
    world.run_until_settled()
    assert world.status.phase == Phase.PROVISIONING and world.green_exists


def to_syncing(world: World) -> None:
    world.run_until_settled()
    world.green_becomes_ready()
    world.run_until_settled()
    assert world.status.phase == Phase.SYNCING and world.green_copies


def to_paused(world: World) -> None:
    reach_shifting(world)
    world.advance(60)
    world.run_until_settled()
    assert world.status.phase == Phase.PAUSED and world.router_green == 50


def to_promoted(world: World) -> None:
    to_paused(world)
    world.annotations[ANNOTATION_PROMOTE] = "step"
    world.run_until_settled()
    assert world.status.phase == Phase.PROMOTED and world.router_green == 100


def to_rolling_back(world: World) -> None:
    to_paused(world)
    world.advance(60)
    world.annotations[ANNOTATION_ABORT] = "1"
    world.run_until_settled()
    assert world.status.phase == Phase.ROLLING_BACK and world.router_green == 10, "gradual: one step down"


def to_rolled_back(world: World) -> None:
    reach_shifting(world)
    world.annotations[ANNOTATION_ABORT] = "1"
    world.run_until_settled()
    assert world.status.phase == Phase.ROLLED_BACK and world.green_exists, "green kept for inspection"


def to_rolled_back_and_retired(world: World) -> None:
    to_rolled_back(world)
    world.advance(24 * 3600)
    world.run_until_settled()
    assert world.status.green_retired and not world.green_exists


def to_retiring(world: World) -> None:
    to_promoted(world)
    world.advance(3600)
    world.step()
    assert world.status.phase == Phase.RETIRING and world.routers_finalized and world.blue_exists


def to_completed(world: World) -> None:
    to_promoted(world)
    world.advance(3600)
    world.run_until_settled()
    assert world.status.phase == Phase.COMPLETED and not world.blue_exists


def to_failed(world: World) -> None:
    to_syncing(world)
    world.flux_syncs(healthy=False)
    world.advance(301)
    world.run_until_settled()
    assert world.status.phase == Phase.FAILED and world.green_exists


# phase reached -> (router green weight after a Rollback cleanup, green cluster left, routers finalized for green)
ROLLBACK_OUTCOMES: dict[str, tuple[Callable[[World], None], int | None, bool, bool]] = {
    "Pending": (to_pending, None, False, False),
    "Blocked": (to_blocked, None, False, False),
    "Provisioning": (to_provisioning, None, False, False),
    "Syncing": (to_syncing, None, False, False),
    "Shifting": (reach_shifting, 0, False, True),
    "Paused": (to_paused, 0, False, True),
    "Promoted": (to_promoted, 0, False, True),
    "RollingBack": (to_rolling_back, 0, False, True),
    "RolledBack": (to_rolled_back, 0, False, True),
    "RolledBack, green retired": (to_rolled_back_and_retired, 0, False, True),
    "Retiring": (to_retiring, 100, True, True),
    "Completed": (to_completed, 100, True, True),
    "Failed": (to_failed, None, False, False),
}


def world_for(policy: str, *, gradual: bool = False, **spec: Any) -> DeletableWorld:
    mode = {"mode": "Gradual", "stepInterval": "1m"} if gradual else {}
    return DeletableWorld(spec=make_spec(onDelete=policy, rollback=mode, **spec))


def blue_actions(decisions: list[Decision]) -> list[object]:
    return [action for decision in decisions for action in decision.actions
            if (isinstance(action, DeleteCluster | DeleteWorkloads) and action.side == "blue")
            or (isinstance(action, FinalizeRouters) and action.retired == "blue")]


@pytest.mark.parametrize("reached", list(ROLLBACK_OUTCOMES))
def test_rollback_on_delete_returns_traffic_and_removes_what_this_upgrade_made_for_green(reached: str) -> None:
    reach, router_green, green_left, finalized = ROLLBACK_OUTCOMES[reached]
    world = world_for("Rollback", gradual=reached == "RollingBack")
    reach(world)
    blue_before = (world.blue_exists, dict(world.blue_kustomizations))
    # When the ClusterUpgrade is deleted
    decisions = world.delete()
    # Then traffic is on blue wherever the upgrade had moved it, and green is gone unless blue's retirement began
    assert world.router_green == router_green
    assert world.green_exists == green_left
    if not green_left:
        assert world.green_copies == {}, "green's Kustomizations are deleted with it"
    assert ("green" in world.finalized_sides) == (finalized and reached not in {"Retiring", "Completed"})
    # and blue is exactly as the upgrade had left it
    assert (world.blue_exists, dict(world.blue_kustomizations)) == blue_before
    assert blue_actions(decisions) == []
    assert world.status.deletion is not None and world.status.deletion.stage == DeletionStage.DONE


@pytest.mark.parametrize("reached", list(ROLLBACK_OUTCOMES))
def test_leave_on_delete_changes_nothing(reached: str) -> None:
    reach = ROLLBACK_OUTCOMES[reached][0]
    world = world_for("Leave", gradual=reached == "RollingBack")
    reach(world)
    before = (world.router_green, world.green_exists, dict(world.green_copies), world.blue_exists,
              dict(world.blue_kustomizations), list(world.finalized_sides))
    decisions = world.delete()
    assert [action for decision in decisions for action in decision.actions] == []
    assert (world.router_green, world.green_exists, dict(world.green_copies), world.blue_exists,
            dict(world.blue_kustomizations), list(world.finalized_sides)) == before
    assert world.status.phase == Phase.DELETING
    assert "Leave" in world.status.message


def test_the_cleanup_is_shown_as_phase_deleting_with_events_and_a_plan() -> None:
    world = world_for("Rollback")
    to_paused(world)
    first = world.step_deleted_once()
    assert first.actions == (), "the first pass records the plan; the next acts on it"
    assert world.status.phase == Phase.DELETING
    deletion = world.status.deletion
    assert deletion is not None and deletion.from_phase == Phase.SHIFTING, "Paused counts as what it holds"
    assert deletion.stages == [DeletionStage.RETURNING_TRAFFIC, DeletionStage.RETIRING_GREEN]
    assert "blue prod-blue is not deleted" in world.status.message
    decisions = world.delete()
    reasons = [event.reason for decision in [first, *decisions] for event in decision.events]
    assert reasons[0] == "Deleting"
    assert {"TrafficWeightUpdated", "TrafficReturned", "RoutersFinalized", "CleanupDone"} <= set(reasons)
    progressing = world.status.condition(ConditionType.PROGRESSING)
    assert progressing is not None and (progressing.status, progressing.reason) == ("False", "CleanupDone")


def test_gradual_rollback_mode_is_honoured_on_the_way_back() -> None:
    world = world_for("Rollback", gradual=True)
    to_paused(world)
    world.advance(60)
    world.deleting = True
    world.run_until_settled()
    assert world.router_green == 10, "one step down, then held for stepInterval"
    world.advance(60)
    world.delete()
    weights = [action.green for decision in world.log for action in decision.actions if isinstance(action, SetWeights)]
    assert weights[-3:] == [50, 10, 0]


def test_a_failing_action_is_decided_again_and_nothing_is_skipped() -> None:
    world = world_for("Rollback")
    reach_shifting(world)
    world.deleting = True
    world.step()
    world.fail_actions = True
    for _ in range(3):
        decision = world.step()
        assert any(isinstance(action, SetWeights) and action.green == 0 for action in decision.actions)
    assert world.router_green == 10 and world.status.deletion is not None
    assert world.status.deletion.stage == DeletionStage.RETURNING_TRAFFIC
    world.fail_actions = False
    world.delete()
    assert world.router_green == 0 and not world.green_exists


def test_a_restart_resumes_the_cleanup_from_status_alone() -> None:
    world = world_for("Rollback")
    to_promoted(world)
    world.deleting = True
    world.step()
    world.step()
    assert world.router_green == 0
    # A new operator process: nothing but the stored status carries over
    resumed = DeletableWorld(spec=world.spec, status=world.status, now=world.now, green_exists=True,
                             green_ready=True, green_kubeconfig=True, green_copies=dict(world.green_copies),
                             router_green=world.router_green, deleting=True)
    decisions = resumed.delete()
    assert not resumed.green_exists and resumed.blue_exists
    assert not any(isinstance(action, SetWeights) and action.green > 0 for d in decisions for action in d.actions)


def test_setting_leave_during_the_cleanup_stops_it_where_it_is() -> None:
    world = world_for("Rollback")
    reach_shifting(world)
    world.deleting = True
    world.step()
    world.step()
    assert world.router_green == 0
    world.spec = world.spec.model_copy(update={"on_delete": DeletePolicy.LEAVE})
    decisions = world.delete()
    assert [action for decision in decisions for action in decision.actions] == []
    assert world.green_exists, "what was left stays"
    assert "changed to Leave" in world.status.message


def test_green_retain_policy_keeps_green_but_removes_its_kustomizations() -> None:
    world = DeletableWorld(spec=make_spec(rollback={"greenDeletionPolicy": "Retain"}))
    reach_shifting(world)
    world.delete()
    assert world.router_green == 0 and world.green_exists and world.green_copies == {}
    assert "retained" in " ".join(e.message for d in world.log for e in d.events if e.reason == "GreenRetired")


def test_a_green_this_upgrade_did_not_create_is_never_deleted() -> None:
    world = world_for("Rollback")
    reach_shifting(world)
    world.green_owner = "other.upgrade"
    decisions = world.delete()
    assert world.green_exists
    assert not [a for d in decisions for a in d.actions if isinstance(a, DeleteCluster)]


def test_handoffs_are_handed_back_before_green_goes() -> None:
    handoff = {"name": "es-move", "at": "BeforeTraffic", "handoff": {"namespace": "search", "name": "es"}}
    world = world_for("Rollback", hooks=[handoff])
    world.run_until_settled()
    world.green_becomes_ready()
    world.run_until_settled()
    world.flux_syncs()
    world.run_until_settled()
    world.hooks["es-move"] = HookObservation(state="Succeeded")
    world.run_until_settled()
    assert world.router_green == 10
    # Deleted: the world now reports the handoff in the direction back (the reconcile loop looks at it so)
    world.hooks["es-move"] = HookObservation(state="Running", message="green's search/es: 1 replica left")
    world.deleting = True
    world.run_until_settled()
    assert world.router_green == 0 and world.hooks_run[-1] == ("es-move", True)
    assert world.green_exists, "green stays until its handoff is back on blue"
    world.hooks["es-move"] = HookObservation(state="Succeeded")
    world.delete()
    hook = world.status.hook("es-move")
    assert hook is not None and hook.phase == HookPhase.REVERTED
    assert not world.green_exists


def test_in_place_has_nothing_to_undo() -> None:
    world = DeletableWorld(spec=make_spec(strategy="InPlace"), blue_version="v1.29.3")
    world.run_until_settled()
    assert world.status.phase == Phase.UPGRADING
    decisions = world.delete()
    assert [action for decision in decisions for action in decision.actions] == []
    assert not needs_finalizer(world.spec, world.status.model_copy(update={"phase": Phase.UPGRADING}))


def test_an_unreadable_spec_holds_the_cleanup_when_there_is_something_to_undo() -> None:
    world = world_for("Rollback")
    reach_shifting(world)
    observed = dataclasses.replace(world.observe(), deleting=True, spec_error="spec.traffic: required")
    held = decide(None, world.status, observed, world.now, owner=OWNER)
    assert not held.release and held.actions == ()
    assert "bluegreen.io/cleanup" in held.status.message and "spec.traffic: required" in held.status.message
    nothing = decide(None, world_for("Rollback").status, observed, world.now, owner=OWNER)
    assert nothing.release, "nothing was done yet: nothing to undo, the object goes"


@pytest.mark.parametrize("reached", list(ROLLBACK_OUTCOMES))
def test_the_finalizer_is_wanted_exactly_when_a_deletion_has_something_to_do(reached: str) -> None:
    reach = ROLLBACK_OUTCOMES[reached][0]
    world = world_for("Rollback", gradual=reached == "RollingBack")
    reach(world)
    has_work = reached not in {"Pending", "Blocked", "Retiring", "Completed", "RolledBack, green retired"}
    assert needs_finalizer(world.spec, world.status) == has_work
    assert not needs_finalizer(world.spec.model_copy(update={"on_delete": DeletePolicy.LEAVE}), world.status)


def test_the_finalizer_is_wanted_in_the_pass_that_creates_green_before_it_is_created() -> None:
    world = world_for("Rollback")
    decisions = [world.step() for _ in range(3)]
    creating = next(d for d in decisions if any(isinstance(a, ProvisionGreen) for a in d.actions))
    assert needs_finalizer(world.spec, creating.status)


def test_rollback_webhooks_are_told_when_traffic_moves_back_and_not_when_nothing_moves() -> None:
    webhooks = {"webhooks": [{"name": "tell", "type": "rollback", "url": "http://tester/rollback"}]}
    moved = world_for("Rollback", analysis=webhooks)
    reach_shifting(moved)
    moved.delete()
    told = [name for name, kind, _, _ in moved.checks if name == "tell"]
    assert told == ["tell"]
    still = world_for("Rollback", analysis=webhooks)
    to_failed(still)
    still.delete()
    assert [name for name, _, _, _ in still.checks if name == "tell"] == []
    assert not [a for d in still.log for a in d.actions if isinstance(a, RunChecks) and a.webhooks]


# --- NodePools -------------------------------------------------------------------------------------


def test_a_rotation_deleted_mid_drain_uncordons_the_old_nodes_and_keeps_the_new_pools() -> None:
    cluster = rotation.Cluster(rotation.make_spec())
    cluster.evicted_per_node = 3
    cluster.run_to(RotationStage.DRAINING)
    cluster.step()
    assert not any(node.schedulable for node in cluster.pools["md-0"].nodes)
    drains = len(cluster.of(DrainNode))
    observe = cluster.observe
    cluster.observe = lambda: dataclasses.replace(observe(), deleting=True)  # type: ignore[method-assign]
    released = False
    for _ in range(10):
        released = cluster.step().release
        if released:
            break
    assert released
    assert all(node.schedulable for node in cluster.pools["md-0"].nodes), "old nodes schedulable again"
    assert len(cluster.of(DrainNode)) == drains, "no eviction after the deletion"
    assert cluster.of(ScalePool) == [] and cluster.pools["md-0-green"].replicas == 3, "the new pool is kept"
    assert len(cluster.of(EnsurePool)) == 1
    assert [a for a in cluster.of(CordonNodes) if not a.unschedulable]


def test_no_plan_ever_touches_blue() -> None:
    """Whatever the phase, the strategy or the policy, a deletion's stages never include blue's retirement."""
    for reached, (reach, *_rest) in ROLLBACK_OUTCOMES.items():
        for policy in DeletePolicy:
            world = world_for(policy.value, gradual=reached == "RollingBack")
            reach(world)
            decisions = world.delete()
            assert blue_actions(decisions) == [], (reached, policy)
            assert set(stages_for(policy, world.status)) <= {
                DeletionStage.RETURNING_TRAFFIC, DeletionStage.UNCORDONING, DeletionStage.RETIRING_GREEN}


def test_spec_field_defaults_to_rollback_and_is_documented() -> None:
    assert make_spec().on_delete == DeletePolicy.ROLLBACK
    field = api_spec.ClusterUpgradeSpec.model_fields["on_delete"]
    assert field.alias == "onDelete" and field.description and "never deleted" in field.description

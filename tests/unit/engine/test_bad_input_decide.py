"""Bad input the engine sees: Secrets the spec names that do not exist, refused before any action; and spec
changes that would make the upgrade under way another one, refused while it runs."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from bluegreen.api.status import ConditionType, Phase
from bluegreen.engine.types import ANNOTATION_ABORT, Observed, ScanPreflight
from tests.unit.engine.test_decide import condition
from tests.unit.engine.world import World, make_spec

ROUTER: dict[str, Any] = {"haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "app", "blueServer": "blue",
                                   "greenServer": "green"}}
MISSING = ("spec.traffic.routers[0].webhook.bearerTokenSecretRef: Secret fleet/lb-token does not exist; create it "
           "in namespace fleet or name another Secret there")


@dataclasses.dataclass
class SecretsWorld(World):
    reference_problems: tuple[str, ...] = ()

    def observe(self) -> Observed:
        return dataclasses.replace(super().observe(), reference_problems=self.reference_problems)


def test_a_missing_secret_blocks_before_anything_is_asked_of_the_world() -> None:
    world = SecretsWorld(reference_problems=(MISSING,))
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    assert [action for decision in world.log for action in decision.actions] == []
    assert condition(world, ConditionType.PREFLIGHT_PASSED)[:2] == ("False", "MissingSecrets")
    assert MISSING in world.status.message


def test_once_the_secret_exists_the_blocked_upgrade_goes_on_by_itself() -> None:
    world = SecretsWorld(reference_problems=(MISSING,))
    world.run_until_settled()
    world.reference_problems = ()
    world.step()
    assert world.status.phase == Phase.PREFLIGHT
    assert world.log[-1].actions == (ScanPreflight(),)


def test_an_in_place_upgrade_is_blocked_too() -> None:
    world = SecretsWorld(spec=make_spec(strategy="InPlace"), reference_problems=(MISSING,))
    world.run_until_settled()
    assert world.status.phase == Phase.BLOCKED
    assert not [action for decision in world.log for action in decision.actions]


def test_other_problems_block_as_before_and_wait_for_a_spec_change_or_a_retry() -> None:
    world = SecretsWorld(reference_problems=(MISSING,), blue_version="v1.31.0")
    world.run_until_settled()
    _, reason, message = condition(world, ConditionType.PREFLIGHT_PASSED)
    assert reason == "PreflightFailed"
    assert "spec.target.kubernetesVersion" in message and MISSING in message
    world.reference_problems = ()
    world.step()
    assert world.status.phase == Phase.BLOCKED


# --- unsafe spec changes mid-upgrade --------------------------------------------------------------------


def shifting_at_10() -> World:
    world = World()
    for _ in range(30):
        world.green_becomes_ready()
        world.flux_syncs()
        world.step()
        if world.status.phase == Phase.SHIFTING and world.router_green == 10:
            return world
    raise AssertionError(f"never reached 10 %: {world.status.phase} {world.status.message}")


def go_on(world: World) -> None:
    """Passes with time going by, through the 1m pause after 10 %."""
    for _ in range(3):
        world.run_until_settled()
        world.advance(120)


def progressing(world: World) -> tuple[str, str, str]:
    return condition(world, ConditionType.PROGRESSING)


def test_the_snapshot_is_taken_with_the_first_change_not_with_reads() -> None:
    world = World()
    world.step()  # Pending -> Preflight: asks for a scan, which only reads
    assert world.log[-1].actions == (ScanPreflight(),)
    assert world.status.in_effect is None
    world.step()  # Provisioning: creates green
    assert world.status.in_effect is not None
    assert world.status.in_effect["spec.target.kubernetesVersion"] == '"1.31"'
    assert world.status.in_effect["spec.target.greenName"] == '"prod-green"'


def test_a_new_target_version_mid_shift_holds_everything_and_says_how_to_undo_it() -> None:
    world = shifting_at_10()
    status_before = world.status
    world.spec = make_spec(target={"kubernetesVersion": "1.32", "readyTimeout": "10m"})
    world.generation += 1
    world.advance(3600)
    decisions = [world.step() for _ in range(3)]
    assert [action for decision in decisions for action in decision.actions] == []
    assert world.router_green == 10
    assert (world.status.phase, world.status.weights, world.status.step) == \
        (status_before.phase, status_before.weights, status_before.step)
    status, reason, message = progressing(world)
    assert (status, reason) == ("False", "UnsafeSpecChange")
    assert 'spec.target.kubernetesVersion is "1.32" but the upgrade under way uses "1.31": set it back to "1.31"' \
        in message
    assert "create a new ClusterUpgrade" in message
    warnings = [event for decision in decisions for event in decision.events]
    assert [(event.reason, event.type) for event in warnings] == [("UnsafeSpecChange", "Warning")]


def test_setting_it_back_resumes_where_it_was() -> None:
    world = shifting_at_10()
    world.spec = make_spec(target={"kubernetesVersion": "1.32", "readyTimeout": "10m"})
    world.step()
    world.spec = make_spec()
    go_on(world)
    assert world.router_green == 50  # then the human pause after 50 %
    assert progressing(world)[:2] == ("False", "Paused")


def test_an_abort_asked_during_the_hold_waits_for_the_spec_to_be_set_back() -> None:
    world = shifting_at_10()
    world.spec = make_spec(target={"kubernetesVersion": "1.32", "readyTimeout": "10m"})
    world.annotations[ANNOTATION_ABORT] = "true"
    world.step()
    assert world.router_green == 10 and ANNOTATION_ABORT in world.annotations
    world.spec = make_spec()
    world.run_until_settled()
    assert world.router_green == 0 and world.status.phase == Phase.ROLLED_BACK


@pytest.mark.parametrize(("change", "field"), [
    ({"cluster": {"provider": "capi", "name": "other-blue", "namespace": "fleet"}}, "spec.cluster.name"),
    ({"cluster": {"provider": "eksa", "name": "prod-blue", "namespace": "fleet"}}, "spec.cluster.provider"),
    ({"target": {"kubernetesVersion": "1.31", "greenName": "prod-knife"}}, "spec.target.greenName"),
    ({"strategy": "Auto"}, "spec.strategy"),
    ({"workloads": {"flux": {"selector": {"matchLabels": {"tier": "web"}}}}}, "spec.workloads.flux.selector"),
    ({"traffic": {"routers": [{"haproxy": {"runtimeAPI": "tcp://10.0.0.9:9999", "backend": "app", "blueServer": "blue",
                                           "greenServer": "green"}}], "steps": [{"setWeight": 100}]}},
     "spec.traffic.routers[0]"),
    ({"traffic": {"routers": [ROUTER, {"webhook": {"url": "https://lb.example/w"}}], "steps": [{"setWeight": 100}]}},
     "spec.traffic.routers"),
])
def test_each_field_that_makes_the_upgrade_is_guarded(change: dict[str, Any], field: str) -> None:
    world = shifting_at_10()
    world.spec = make_spec(**change)
    world.step()
    assert world.log[-1].actions == ()
    assert f"{field} " in progressing(world)[2]


@pytest.mark.parametrize("change", [
    {"traffic": {"routers": [ROUTER], "steps": [{"setWeight": 10}, {"setWeight": 30}, {"setWeight": 100}]}},
    {"traffic": {"routers": [{**ROUTER, "name": "edge", "haproxy": {**ROUTER["haproxy"], "timeout": "9s"}}],
                 "steps": [{"setWeight": 10}, {"setWeight": 100}]}},
    {"promotion": {"retainBlueFor": "2h"}},
    {"rollback": {"mode": "Gradual"}},
    {"analysis": {"interval": "30s"}},
    {"workloads": {"flux": {"selector": {"matchLabels": {"bluegreen.io/cluster": "prod-blue"}}}, "timeout": "9m"}},
])
def test_safe_changes_keep_applying(change: dict[str, Any]) -> None:
    world = shifting_at_10()
    world.spec = make_spec(**change)
    go_on(world)
    assert progressing(world)[1] != "UnsafeSpecChange"
    assert world.router_green is not None and world.router_green > 10


def test_a_completed_upgrade_does_not_complain_about_a_new_spec() -> None:
    world = shifting_at_10()
    world.status = world.status.model_copy(update={"phase": Phase.COMPLETED})
    world.spec = make_spec(target={"kubernetesVersion": "1.32", "readyTimeout": "10m"})
    world.step()
    assert progressing(world)[1] != "UnsafeSpecChange"


def test_a_blocked_upgrade_missing_a_secret_looks_again_by_itself() -> None:
    world = SecretsWorld(reference_problems=(MISSING,))
    world.run_until_settled()
    assert world.log[-1].wake_at == world.now + datetime.timedelta(seconds=10)

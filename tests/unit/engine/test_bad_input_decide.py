"""Bad input the engine sees: Secrets the spec names that do not exist, refused before any action."""

from __future__ import annotations

import dataclasses

from bluegreen.api.status import ConditionType, Phase
from bluegreen.engine.types import Observed, ScanPreflight
from tests.unit.engine.test_decide import condition
from tests.unit.engine.world import World, make_spec

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

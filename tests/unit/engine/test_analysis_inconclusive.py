"""AnalysisPassing while the checks cannot measure: Unknown from the first inconclusive result, never a pass.

Given green taking traffic with a metric measured every 10 s, when the metric's
source stops answering (Prometheus unreachable: the result is Inconclusive),
then AnalysisPassing turns Unknown with reason Inconclusive at once, naming the
metric and why, although earlier measurements passed and the inconclusiveLimit
is not reached (the upgrade is not held yet); and it is True/Passing again as
soon as a measurement passes. No pass is ever shown from no data.
"""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.api.status import CheckPhase, ConditionType, Phase
from tests.unit.engine.test_analysis import ERROR_RATE, run, spec_with
from tests.unit.engine.test_decide import condition, reach_shifting
from tests.unit.engine.world import World

pytestmark = pytest.mark.reliability

UNREACHABLE = "Prometheus at http://prom:9090 unreachable: connection refused"


class Outage:
    """An oracle whose next answers a test switches: passing, or no data with why."""

    def __init__(self) -> None:
        self.down = False

    def __call__(self, name: str, kind: str, world: World) -> tuple[CheckPhase, float | None, str]:
        if self.down:
            return CheckPhase.INCONCLUSIVE, None, UNREACHABLE
        return CheckPhase.SUCCESSFUL, 0.0, f"{name} 0 <= max 0.01"


def measured(world: World) -> int:
    return len(world.checks)


def test_the_first_inconclusive_result_makes_it_unknown_and_a_pass_makes_it_true_again() -> None:
    outage = Outage()
    world = World(spec=spec_with({"interval": "10s", "inconclusiveLimit": 3, "metrics": [ERROR_RATE]}),
                  oracle=outage)
    reach_shifting(world)
    run(world, seconds=10)
    assert condition(world, ConditionType.ANALYSIS_PASSING)[:2] == ("True", "Passing")

    outage.down = True
    before = measured(world)
    run(world, seconds=10)
    assert measured(world) - before == 1, "exactly one measurement in the outage so far"
    status, reason, message = condition(world, ConditionType.ANALYSIS_PASSING)
    assert (status, reason) == ("Unknown", "Inconclusive")
    assert message == ("no measurement, so no pass: error-rate's latest result is inconclusive (1 of "
                       f"inconclusiveLimit 3 in this run): {UNREACHABLE}")
    assert world.status.phase != Phase.PAUSED or world.status.analysis.held is None, "not held below the limit"

    outage.down = False
    run(world, seconds=10)
    status, reason, message = condition(world, ConditionType.ANALYSIS_PASSING)
    assert (status, reason) == ("True", "Passing") and "error-rate" in message


def test_no_data_from_the_start_is_never_shown_as_a_pass_up_to_the_hold() -> None:
    outage = Outage()
    outage.down = True
    world = World(spec=spec_with({"interval": "10s", "inconclusiveLimit": 3, "metrics": [ERROR_RATE]}),
                  oracle=outage)
    reach_shifting(world)
    run(world, seconds=40)

    # From the pass that reads the first measurement on (before it, Verifying's own verdict stands).
    shown = [found.status for decision in world.log
             if decision.status.analysis.metric("error-rate") is not None
             and (found := decision.status.condition(ConditionType.ANALYSIS_PASSING)) is not None]
    assert measured(world) >= 3 and len(shown) >= 3, "measured, and the condition was set each time"
    assert set(shown) == {"Unknown"}
    assert world.status.phase == Phase.PAUSED and world.status.analysis.held, "held at inconclusiveLimit"
    assert condition(world, ConditionType.ANALYSIS_PASSING)[:2] == ("Unknown", "Inconclusive")


def test_a_rollout_webhook_without_an_answer_is_named_like_a_metric() -> None:
    hook: dict[str, Any] = {"name": "load", "type": "rollout", "url": "http://tester/run"}
    outage = Outage()
    world = World(spec=spec_with({"interval": "10s", "inconclusiveLimit": 3, "metrics": [ERROR_RATE],
                                  "webhooks": [hook]}), oracle=outage)
    reach_shifting(world)
    run(world, seconds=10)
    assert condition(world, ConditionType.ANALYSIS_PASSING)[:2] == ("True", "Passing")

    world.oracle = lambda name, kind, w: ((CheckPhase.INCONCLUSIVE, None, "tester answered 503") if kind == "webhook"
                                          else (CheckPhase.SUCCESSFUL, 0.0, "ok"))
    run(world, seconds=10)
    status, reason, message = condition(world, ConditionType.ANALYSIS_PASSING)
    assert (status, reason) == ("Unknown", "Inconclusive")
    assert "webhook:load's latest result is inconclusive" in message and message.endswith(": tester answered 503")
    assert "error-rate" not in message, "only what could not measure is named"

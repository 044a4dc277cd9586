"""Engine tests for analysis, gates, smoke Jobs and rollback, driven through the in-memory world."""

from __future__ import annotations

import datetime
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bluegreen.api.status import CheckPhase, ConditionType, Phase
from bluegreen.engine.types import ANNOTATION_PROMOTE, ANNOTATION_RETRY, JobObservation
from tests.unit.engine.test_decide import reach_shifting
from tests.unit.engine.world import World, make_spec

ERROR_RATE = {"name": "error-rate", "thresholdRange": {"max": 0.01},
              "prometheus": {"address": "http://prom:9090", "query": "rate(errors[1m])"}}
STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50},
                               {"pause": {"duration": "1m"}}, {"setWeight": 100}]


def spec_with(analysis: dict[str, Any], *, steps: list[dict[str, Any]] | None = None,
              rollback: dict[str, Any] | None = None) -> Any:
    traffic = {"routers": [{"haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "app",
                                        "blueServer": "blue", "greenServer": "green"}}],
               "steps": steps or STEPS}
    extra: dict[str, Any] = {"analysis": analysis, "traffic": traffic}
    if rollback is not None:
        extra["rollback"] = rollback
    return make_spec(**extra)


def failing_above(weight: int) -> Any:
    """A green that breaks once it takes more than ``weight`` percent."""
    def oracle(name: str, kind: str, world: World) -> tuple[CheckPhase, float | None, str]:
        if world.status.weights.green > weight:
            return CheckPhase.FAILED, 0.2, f"{name} 0.2 > max 0.01"
        return CheckPhase.SUCCESSFUL, 0.0, "ok"
    return oracle


def run(world: World, *, seconds: int, tick: int = 5) -> None:
    for _ in range(seconds // tick):
        world.run_until_settled(limit=200)
        world.advance(tick)
    world.run_until_settled(limit=200)


def test_metrics_are_measured_every_interval_after_the_initial_delay() -> None:
    world = World(spec=spec_with({"interval": "20s", "initialDelay": "10s", "metrics": [ERROR_RATE]}))
    reach_shifting(world)
    assert world.router_green == 10
    assert world.checks == [], "nothing is measured before initialDelay has passed since the weight change"
    run(world, seconds=55)
    times = [(when - world.checks[0][2]).total_seconds() for _, _, when, _ in world.checks]
    assert times[:3] == [0, 20, 40]
    assert world.checks[0][3] == 10, "measured while green took 10 %"
    passing = world.status.condition(ConditionType.ANALYSIS_PASSING)
    assert passing is not None and passing.status == "True" and "error-rate" in passing.message


def test_failures_reaching_the_limit_roll_back_to_blue_at_once() -> None:
    world = World(spec=spec_with({"interval": "10s", "failureLimit": 2, "metrics": [ERROR_RATE]}),
                  oracle=failing_above(0))
    reach_shifting(world)
    run(world, seconds=10)
    assert world.status.phase == Phase.ROLLED_BACK
    assert world.router_green == 0 and world.status.weights.verified
    assert world.status.analysis.metric("error-rate") is not None
    assert world.status.analysis.metric("error-rate").failures == 2  # type: ignore[union-attr]
    passing = world.status.condition(ConditionType.ANALYSIS_PASSING)
    assert passing is not None and (passing.status, passing.reason) == ("False", "AnalysisFailed")
    assert "error-rate failed 2 time(s)" in passing.message and "0.2 > max 0.01" in passing.message
    failed = [e for d in world.log for e in d.events if e.reason == "AnalysisFailed"]
    assert len(failed) == 1 and failed[0].type == "Warning" and "error-rate failed 2 time(s)" in failed[0].message


def test_gradual_rollback_holds_each_lower_weight_for_the_step_interval() -> None:
    steps = [{"setWeight": 10}, {"setWeight": 25}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    world = World(spec=spec_with({"interval": "10s", "metrics": [ERROR_RATE]}, steps=steps,
                                 rollback={"mode": "Gradual", "stepInterval": "30s"}))
    reach_shifting(world)
    assert world.status.phase == Phase.PAUSED and world.router_green == 50
    world.oracle = failing_above(0)
    history: list[tuple[int, int]] = []
    start = world.now
    for _ in range(30):
        world.run_until_settled(limit=200)
        if not history or history[-1][1] != world.router_green:
            history.append((int((world.now - start).total_seconds()), world.router_green or 0))
        world.advance(5)
    weights = [weight for _, weight in history]
    assert weights == [50, 25, 10, 0], history
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(history[1:])]
    assert all(gap >= 30 for gap in gaps), history
    assert world.status.phase == Phase.ROLLED_BACK


def test_an_analysis_step_needs_count_successes_in_a_row() -> None:
    results = iter([CheckPhase.SUCCESSFUL, CheckPhase.INCONCLUSIVE] + [CheckPhase.SUCCESSFUL] * 10)

    def oracle(name: str, kind: str, world: World) -> tuple[CheckPhase, float | None, str]:
        return next(results), 0.0, ""

    steps = [{"setWeight": 10}, {"analysis": {"count": 3}}, {"setWeight": 100}]
    world = World(spec=spec_with({"interval": "10s", "metrics": [ERROR_RATE]}, steps=steps), oracle=oracle)
    reach_shifting(world)
    for expected_index in (1, 1, 1, 1):
        assert world.status.step.index == expected_index
        world.advance(10)
        world.run_until_settled(limit=200)
    # measurements: ok, inconclusive (streak broken), ok, ok, ok -> passed on the fifth
    assert world.status.step.index >= 2
    assert len([c for c in world.checks if c[1] == "metric"]) == 5


def test_inconclusive_results_hold_for_a_person_and_promote_lets_it_go_on() -> None:
    def oracle(name: str, kind: str, world: World) -> tuple[CheckPhase, float | None, str]:
        return CheckPhase.INCONCLUSIVE, None, "no data"

    world = World(spec=spec_with({"interval": "10s", "inconclusiveLimit": 2, "metrics": [ERROR_RATE]}),
                  oracle=oracle)
    reach_shifting(world)
    run(world, seconds=20)
    assert world.status.phase == Phase.PAUSED
    assert world.status.analysis.held and "inconclusive 2 time(s)" in world.status.analysis.held
    assert world.router_green == 10, "holding is not rolling back"
    world.oracle = lambda name, kind, w: (CheckPhase.SUCCESSFUL, 0.0, "ok")
    world.annotations[ANNOTATION_PROMOTE] = "step"
    world.run_until_settled(limit=200)
    assert world.status.phase == Phase.SHIFTING
    assert world.status.analysis.held is None


def test_confirm_promotion_holds_below_100_until_it_answers_yes() -> None:
    answers = {"open": False}

    def oracle(name: str, kind: str, world: World) -> tuple[CheckPhase, float | None, str]:
        if kind == "webhook":
            return (CheckPhase.SUCCESSFUL, None, "200") if answers["open"] else (CheckPhase.FAILED, None, "HTTP 500")
        return CheckPhase.SUCCESSFUL, 0.0, "ok"

    world = World(spec=spec_with({"interval": "15s", "webhooks": [
        {"name": "gate", "type": "confirm-promotion", "url": "http://tester/gate"}]}), oracle=oracle)
    reach_shifting(world)
    run(world, seconds=170)
    assert world.router_green == 50 and world.status.phase == Phase.SHIFTING
    assert "waiting for confirm-promotion" in world.status.message and "HTTP 500" in world.status.message
    asked = [when for name, kind, when, _ in world.checks if name == "gate"]
    assert len(asked) >= 3 and all((b - a).total_seconds() >= 15 for a, b in itertools.pairwise(asked))
    passing = world.status.condition(ConditionType.ANALYSIS_PASSING)
    assert passing is None or passing.status != "False", "a closed gate is not a failed analysis"
    answers["open"] = True
    run(world, seconds=15)
    assert world.router_green == 100 and world.status.phase == Phase.PROMOTED


def test_confirm_traffic_increase_gates_every_increase_and_confirm_rollout_the_start() -> None:
    open_gates: set[str] = set()

    def oracle(name: str, kind: str, world: World) -> tuple[CheckPhase, float | None, str]:
        return (CheckPhase.SUCCESSFUL, None, "200") if name in open_gates else (CheckPhase.FAILED, None, "403")

    world = World(spec=spec_with({"interval": "10s", "webhooks": [
        {"name": "start", "type": "confirm-rollout", "url": "http://t/start"},
        {"name": "more", "type": "confirm-traffic-increase", "url": "http://t/more"}]}), oracle=oracle)
    run(world, seconds=20)
    assert world.status.phase == Phase.PREFLIGHT and not world.green_exists, "no cluster before confirm-rollout"
    open_gates.add("start")
    run(world, seconds=10)
    assert world.green_exists
    world.green_becomes_ready()
    world.run_until_settled(limit=200)
    world.flux_syncs()
    run(world, seconds=20)
    assert world.status.phase == Phase.SHIFTING and world.router_green == 0
    open_gates.add("more")
    run(world, seconds=10)
    assert world.router_green == 10


def test_pre_rollout_failure_rolls_back_before_any_traffic_moves() -> None:
    def oracle(name: str, kind: str, world: World) -> tuple[CheckPhase, float | None, str]:
        return CheckPhase.FAILED, None, "HTTP 500: smoke test failed"

    world = World(spec=spec_with({"interval": "10s", "failureLimit": 2, "webhooks": [
        {"name": "smoke", "type": "pre-rollout", "url": "http://t/smoke"},
        {"name": "told", "type": "rollback", "url": "http://t/rollback"},
        {"name": "after", "type": "post-rollout", "url": "http://t/after"}]}), oracle=oracle)
    reach_shifting(world)
    run(world, seconds=15)
    assert world.status.phase == Phase.ROLLED_BACK
    assert world.router_green == 0
    assert all(weight == 0 for _, _, _, weight in world.checks)
    names = [name for name, _, _, _ in world.checks]
    assert names.count("smoke") == 2 and names.count("told") == 1 and names.count("after") == 1


def test_http_probes_must_pass_at_zero_before_shifting() -> None:
    probe = {"name": "probe", "thresholdRange": {"min": 0.95},
             "httpProbe": {"url": "http://green-lb/healthz", "host": "app.example.com"}}
    world = World(spec=spec_with({"interval": "10s", "metrics": [probe]}))
    reach_shifting(world)
    assert world.checks and world.checks[0][:2] == ("probe", "metric") and world.checks[0][3] == 0
    assert world.router_green == 10


def test_smoke_jobs_run_at_verifying_and_a_failure_rolls_back_with_the_log_tail() -> None:
    job = {"name": "smoke", "template": {"template": {"spec": {"containers": [{"name": "t", "image": "curl"}]}}}}
    world = World(spec=spec_with({"jobs": [job]}))
    reach_shifting(world)
    assert world.jobs_started == ["smoke"] and world.status.phase == Phase.VERIFYING
    world.jobs["smoke"] = JobObservation(state="Failed", message="BackoffLimitExceeded; log: curl: (7) refused")
    world.run_until_settled(limit=200)
    assert world.status.phase == Phase.ROLLED_BACK and world.router_green == 0
    condition = world.status.condition(ConditionType.ANALYSIS_PASSING)
    assert condition is not None and "curl: (7) refused" in condition.message


def test_smoke_job_success_lets_traffic_move() -> None:
    job = {"name": "smoke", "template": {"template": {"spec": {"containers": [{"name": "t", "image": "curl"}]}}}}
    world = World(spec=spec_with({"jobs": [job]}))
    reach_shifting(world)
    world.jobs["smoke"] = JobObservation(state="Succeeded")
    world.run_until_settled(limit=200)
    assert world.status.phase == Phase.SHIFTING and world.router_green == 10


def test_rolled_back_green_is_kept_for_inspection_then_retired() -> None:
    world = World(spec=spec_with({"interval": "10s", "metrics": [ERROR_RATE]},
                                 rollback={"retainGreenFor": "1h"}), oracle=failing_above(0))
    reach_shifting(world)
    run(world, seconds=10)
    assert world.status.phase == Phase.ROLLED_BACK
    rolled_back_at = world.status.rolled_back_at
    assert rolled_back_at is not None
    world.now = rolled_back_at + datetime.timedelta(seconds=3599)
    world.run_until_settled(limit=200)
    assert world.green_exists and world.finalized_sides == []
    world.advance(1)
    world.run_until_settled(limit=200)
    assert world.finalized_sides == ["green"]
    assert not world.green_exists and world.green_copies == {}
    assert world.status.green_retired and world.status.phase == Phase.ROLLED_BACK
    # a retry after the retirement builds green again
    world.annotations[ANNOTATION_RETRY] = "true"
    world.oracle = lambda name, kind, w: (CheckPhase.SUCCESSFUL, 0.0, "ok")
    world.run_until_settled(limit=200)
    assert world.status.phase == Phase.PROVISIONING
    assert world.status.analysis.run == 1 and world.status.analysis.metrics == []


def test_retry_within_the_window_shifts_again_from_step_zero_on_the_same_green() -> None:
    world = World(spec=spec_with({"interval": "10s", "metrics": [ERROR_RATE]}), oracle=failing_above(0))
    reach_shifting(world)
    run(world, seconds=10)
    assert world.status.phase == Phase.ROLLED_BACK
    world.oracle = lambda name, kind, w: (CheckPhase.SUCCESSFUL, 0.0, "ok")
    world.annotations[ANNOTATION_RETRY] = "true"
    world.run_until_settled(limit=200)
    assert world.status.phase == Phase.SHIFTING and world.router_green == 10
    assert world.status.analysis.run == 1
    assert world.green_exists


def test_routers_are_saved_once_before_the_first_change() -> None:
    world = World(spec=spec_with({}))
    reach_shifting(world)
    assert world.status.routers is not None and world.status.routers[0].original == {"green": None}


@settings(max_examples=60, deadline=None)
@given(verdicts=st.lists(st.sampled_from(list(CheckPhase)), min_size=1, max_size=40),
       gradual=st.booleans())
def test_analysis_never_breaks_the_traffic_invariants(verdicts: list[CheckPhase], gradual: bool) -> None:
    feed = iter(verdicts)

    def oracle(name: str, kind: str, world: World) -> tuple[CheckPhase, float | None, str]:
        return next(feed, CheckPhase.SUCCESSFUL), 0.0, ""

    world = World(spec=spec_with({"interval": "10s", "failureLimit": 2, "inconclusiveLimit": 3,
                                  "metrics": [ERROR_RATE]},
                                 rollback={"mode": "Gradual" if gradual else "Immediate", "stepInterval": "10s"}),
                  oracle=oracle)
    reach_shifting(world)
    failed_at: int | None = None
    for tick in range(80):
        world.run_until_settled(limit=300)
        weights = world.status.weights
        assert weights.blue + weights.green == 100
        state = world.status.analysis.metric("error-rate")
        if state is not None and state.failures >= 2 and failed_at is None:
            failed_at = tick
        if world.status.phase == Phase.PAUSED and world.status.analysis.held:
            world.annotations[ANNOTATION_PROMOTE] = "step"
        world.advance(5)
    if failed_at is not None:
        assert world.status.phase == Phase.ROLLED_BACK and world.router_green == 0, \
            "a metric at its failure limit always ends with blue at 100"


def test_a_retained_green_stays_but_is_no_longer_deployed_to() -> None:
    world = World(spec=spec_with({"interval": "10s", "metrics": [ERROR_RATE]},
                                 rollback={"retainGreenFor": "10m", "greenDeletionPolicy": "Retain"}),
                  oracle=failing_above(0))
    reach_shifting(world)
    run(world, seconds=10)
    assert world.status.phase == Phase.ROLLED_BACK
    world.advance(600)
    world.run_until_settled(limit=200)
    assert world.green_exists and world.green_copies == {}
    assert world.status.green_retired and "retained" in world.status.message


def test_a_green_not_made_by_this_upgrade_is_never_deleted() -> None:
    world = World(spec=spec_with({"interval": "10s", "metrics": [ERROR_RATE]}, rollback={"retainGreenFor": "1m"}),
                  oracle=failing_above(0))
    reach_shifting(world)
    run(world, seconds=10)
    world.green_owner = "someone.else"
    world.advance(60)
    world.run_until_settled(limit=200)
    assert world.green_exists and world.status.green_retired


def test_a_timed_analysis_step_waits_for_its_first_measurement_without_spinning() -> None:
    steps = [{"setWeight": 10}, {"analysis": {"duration": "1m"}}, {"setWeight": 100}]
    world = World(spec=spec_with({"interval": "1m", "initialDelay": "5m", "metrics": [ERROR_RATE]}, steps=steps))
    reach_shifting(world)
    world.advance(90)
    decision = world.step()
    assert world.status.step.index == 1 and "first measurement" in world.status.message
    assert decision.wake_at is not None and decision.wake_at > world.now, "no pass before the measurement is due"
    world.advance(300)
    world.run_until_settled(limit=200)
    assert world.status.step.index >= 2


def test_comparative_metrics_rest_while_blue_has_no_traffic() -> None:
    latency = {"name": "latency-vs-blue", "thresholdRange": {"max": 1.5}, "comparative": {"mode": "Ratio"},
               "prometheus": {"address": "http://prom:9090", "query": 'avg(latency{server="{{cluster}}"})'}}
    steps = [{"setWeight": 50}, {"pause": {"duration": "30s"}}, {"setWeight": 100}]
    world = World(spec=spec_with({"interval": "10s", "metrics": [ERROR_RATE, latency]}, steps=steps))
    reach_shifting(world)
    run(world, seconds=120)
    assert world.status.phase == Phase.PROMOTED
    at_full = [(name, weight) for name, _, _, weight in world.checks if weight == 100]
    assert ("error-rate", 100) in at_full and ("latency-vs-blue", 100) not in at_full
    assert ("latency-vs-blue", 50) in [(name, weight) for name, _, _, weight in world.checks]


def test_inconclusive_at_a_human_pause_resumes_to_that_pause() -> None:
    def oracle(name: str, kind: str, world: World) -> tuple[CheckPhase, float | None, str]:
        return CheckPhase.INCONCLUSIVE, None, "no data"

    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]
    world = World(spec=spec_with({"interval": "10s", "inconclusiveLimit": 2, "metrics": [ERROR_RATE]}, steps=steps),
                  oracle=oracle)
    reach_shifting(world)
    run(world, seconds=20)
    assert world.status.phase == Phase.PAUSED and world.status.analysis.held
    assert world.status.held_phase == Phase.SHIFTING
    world.oracle = lambda name, kind, w: (CheckPhase.SUCCESSFUL, 0.0, "ok")
    world.annotations[ANNOTATION_PROMOTE] = "step"
    world.run_until_settled(limit=200)
    assert world.status.analysis.held is None
    assert world.status.phase == Phase.PAUSED and world.router_green == 10, "the human pause still waits"
    world.annotations[ANNOTATION_PROMOTE] = "step"
    world.run_until_settled(limit=200)
    assert world.router_green == 100

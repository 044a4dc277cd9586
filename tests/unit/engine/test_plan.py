"""The plan: actions in the engine's order, and minimums that agree with the engine's own clocks.

Totals of the examples are computed by hand in the table. The agreement tests
drive the real engine (``decide``) through the in-memory world on the path
where everything the world decides is instant (providers, Flux, Jobs, gates,
a person promoting) and compare the time it took with the plan's total.
"""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bluegreen.api import spec as api
from bluegreen.api.status import Phase
from bluegreen.engine.plan import PlannedAction, open_ended, plan, rollback_summary, total_minimum
from bluegreen.engine.types import ANNOTATION_PROMOTE, HookObservation, JobObservation
from tests.fixtures.examples import clusterupgrade_examples
from tests.unit.engine.world import T0, World, make_spec

ROOT = pathlib.Path(__file__).resolve().parents[3]
MINUTE, HOUR = 60, 3600

HAPROXY = {"name": "edge", "haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "app",
                                       "blueServer": "blue", "greenServer": "green"}}


def route53(name: str, ttl: int) -> dict[str, Any]:
    return {"name": name, "route53": {"hostedZoneId": "Z1", "recordName": "app.example.com", "ttl": ttl,
                                      "blue": {"setIdentifier": "blue", "value": "blue.example.net"},
                                      "green": {"setIdentifier": "green", "value": "green.example.net",
                                                "healthCheckId": "hc-green"}}}


def metric(name: str, *, interval: str | None = None, probe: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "thresholdRange": {"max": 0.01}}
    if probe:
        found["httpProbe"] = {"url": "http://green.example.net/healthz"}
        found["thresholdRange"] = {"min": 0.99}
    else:
        found["prometheus"] = {"address": "http://prom:9090", "query": "errors"}
    if interval:
        found["interval"] = interval
    return found


def spec_of(*, steps: list[dict[str, Any]], routers: list[dict[str, Any]] | None = None,
            analysis: dict[str, Any] | None = None, retain: str = "1h") -> api.ClusterUpgradeSpec:
    return make_spec(traffic={"routers": routers or [HAPROXY], "steps": steps},
                     analysis=analysis or {}, promotion={"retainBlueFor": retain})


def seconds(value: datetime.timedelta) -> float:
    return value.total_seconds()


def example_specs(path: str) -> list[tuple[str, api.ClusterUpgradeSpec]]:
    documents = yaml.safe_load_all((ROOT / path).read_text())
    return [(doc["metadata"]["name"], api.parse_spec(doc["spec"]))
            for doc in documents if doc and doc.get("kind") == api.KIND]


# --- the engine on its least-time path ----------------------------------------------------------


def engine_minimum(spec: api.ClusterUpgradeSpec, *, limit: int = 5000) -> datetime.timedelta:
    """How long the engine takes from Pending to Completed when nothing in the world takes time."""
    world = World(spec=spec)
    for _ in range(limit):
        world.run_until_settled(limit=500)
        if world.status.phase == Phase.COMPLETED:
            return world.now - T0
        assert world.status.phase not in {Phase.FAILED, Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.BLOCKED}, \
            world.status.message
        before = (world.status.phase, world.status.step.index, world.status.weights, dict(world.jobs),
                  dict(world.hooks))
        # Everything the world (or a person) decides happens at once.
        world.green_becomes_ready()
        world.flux_syncs()
        for name in world.jobs:
            world.jobs[name] = JobObservation(state="Succeeded")
        for name, _ in world.hooks_run:
            world.hooks[name] = HookObservation(state="Succeeded")
        if world.status.phase == Phase.PAUSED:
            world.annotations[ANNOTATION_PROMOTE] = "step"
        world.run_until_settled(limit=500)
        if (world.status.phase, world.status.step.index, world.status.weights, dict(world.jobs),
                dict(world.hooks)) != before:
            continue
        wake = world.log[-1].wake_at
        assert wake is not None, f"the engine neither waits nor moves: {world.status.message}"
        # A duration analysis step that is over but still waits for a first measurement asks to be woken
        # now (not when the measurement falls due); creeping forward a second at a time still lands exactly
        # on the due time, which is all these tests measure.
        world.now = wake if wake > world.now else world.now + datetime.timedelta(seconds=1)
    raise AssertionError("the upgrade did not complete")


# --- tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "name", "total"), [
    # pauses 10m + 15m (the third pause waits for a person), then the 24h window
    ("examples/clusterupgrade-capi.yaml", "prod-to-1-31", 24 * HOUR + 25 * MINUTE),
    ("examples/clusterupgrade-eksa.yaml", "prod-to-1-31", 24 * HOUR + 20 * MINUTE),
    # setWeight 5, then 3 measurements a minute apart from initialDelay 2m on: 4m; then 10m of analysis
    ("examples/clusterupgrade-analysis.yaml", "prod-to-1-31", 24 * HOUR + 14 * MINUTE),
    # three weight changes dwell one 60 s TTL each, plus a 5m pause
    ("examples/routers/route53.yaml", "prod-to-1-31", 24 * HOUR + 8 * MINUTE),
    ("examples/routers/elbv2.yaml", "shop-to-1-31", 24 * HOUR + 10 * MINUTE),
    ("examples/routers/elbv2.yaml", "api-to-1-31", 24 * HOUR + 15 * MINUTE),
    ("examples/routers/emissary.yaml", "prod-to-1-31", 24 * HOUR + 20 * MINUTE),
    ("examples/routers/gatewayapi.yaml", "prod-to-1-31", 24 * HOUR + 10 * MINUTE),
    ("examples/routers/istio.yaml", "prod-to-1-31", 12 * HOUR + 20 * MINUTE),
    ("examples/routers/webhook.yaml", "prod-to-1-31", 24 * HOUR + 10 * MINUTE),
])
def test_examples_total_the_hand_computed_minimum(path: str, name: str, total: int) -> None:
    spec = dict(example_specs(path))[name]
    assert seconds(total_minimum(plan(spec))) == total


@pytest.mark.parametrize("path", [str(path.relative_to(ROOT)) for path in clusterupgrade_examples()])
def test_every_example_agrees_with_the_engine(path: str) -> None:
    upgrades = example_specs(path)
    assert upgrades, f"{path} holds no ClusterUpgrade"
    for name, spec in upgrades:
        if spec.strategy != api.Strategy.BLUE_GREEN:
            continue  # plan() is the blue/green plan; the plugin lists in-place minors itself (cli.sections)
        assert total_minimum(plan(spec)) == engine_minimum(spec), f"{path} {name}"


@pytest.mark.parametrize(("routers", "dwell"), [
    ([HAPROXY], 0),
    ([route53("dns", 60)], 60),
    ([route53("dns", 30), HAPROXY, route53("dns-eu", 300)], 300),  # the longest TTL of all
    ([route53("dns", 0)], 0),
])
def test_each_weight_change_dwells_the_longest_route53_ttl(routers: list[dict[str, Any]], dwell: int) -> None:
    spec = spec_of(routers=routers, steps=[{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}])
    weights = [action for action in plan(spec) if "setWeight" in action.action]
    assert [seconds(action.minimum) for action in weights if action.minimum is not None] == [dwell] * 3
    assert seconds(total_minimum(plan(spec))) == 3 * dwell + HOUR
    assert total_minimum(plan(spec)) == engine_minimum(spec)


def test_weights_are_set_on_every_router_in_order_and_finalized_in_reverse() -> None:
    spec = spec_of(routers=[route53("dns", 60), HAPROXY], steps=[{"setWeight": 100}])
    actions = plan(spec)
    step = next(action for action in actions if action.action.startswith("step 1/1"))
    assert "routers dns (route53), edge (haproxy), in this order" in step.action
    finalized = [action.action for action in actions if action.action.startswith("finalize router")]
    assert finalized[0].startswith("finalize router edge") and finalized[1].startswith("finalize router dns")
    assert "delete blue's record blue" in finalized[1]


@pytest.mark.parametrize(("analysis", "step", "minimum"), [
    # initialDelay 0: measured at the change, so the step's own count starts one interval later
    ({"interval": "1m", "count": 3}, {}, 3 * MINUTE),
    ({"interval": "1m"}, {}, MINUTE),  # count defaults to 1
    ({"interval": "1m", "count": 5}, {"count": 2}, 2 * MINUTE),  # the step's count wins
    # initialDelay 2m: the first measurement is 2m after the change, then count - 1 intervals
    ({"interval": "1m", "initialDelay": "2m"}, {"count": 3}, 4 * MINUTE),
    ({"interval": "30s", "initialDelay": "2m"}, {"count": 1}, 2 * MINUTE),
    # duration: exactly that long when measurements fall inside it
    ({"interval": "1m"}, {"duration": "10m"}, 10 * MINUTE),
    ({"interval": "1m", "duration": "7m"}, {}, 7 * MINUTE),
    # ...and longer when the first measurement comes after it
    ({"interval": "1m", "initialDelay": "5m"}, {"duration": "1m"}, 5 * MINUTE),
])
def test_an_analysis_step_right_after_a_weight_change(analysis: dict[str, Any], step: dict[str, Any],
                                                      minimum: int) -> None:
    spec = spec_of(steps=[{"setWeight": 10}, {"analysis": step}, {"setWeight": 100}],
                   analysis={**analysis, "metrics": [metric("error-rate")]})
    found = next(action for action in plan(spec) if action.action.startswith("step 2/3"))
    assert found.minimum is not None and seconds(found.minimum) == minimum
    assert seconds(total_minimum(plan(spec))) == minimum + HOUR
    assert total_minimum(plan(spec)) == engine_minimum(spec)


def test_the_slowest_metric_interval_decides_a_counted_step() -> None:
    spec = spec_of(steps=[{"setWeight": 10}, {"analysis": {"count": 2}}, {"setWeight": 100}],
                   analysis={"interval": "1m", "metrics": [metric("fast", interval="10s"),
                                                           metric("slow", interval="2m")]})
    found = next(action for action in plan(spec) if action.action.startswith("step 2/3"))
    assert found.minimum == datetime.timedelta(minutes=4)
    assert total_minimum(plan(spec)) == engine_minimum(spec)


def test_a_pause_before_an_analysis_step_shifts_its_measurements() -> None:
    # measured at 0, 1m, 2m (the pause's end, before the step): the step needs 3m, 4m
    spec = spec_of(steps=[{"setWeight": 10}, {"pause": {"duration": "2m"}}, {"analysis": {"count": 2}},
                          {"setWeight": 100}],
                   analysis={"interval": "1m", "metrics": [metric("error-rate")]})
    found = next(action for action in plan(spec) if action.action.startswith("step 3/4"))
    assert found.minimum == datetime.timedelta(minutes=2)
    assert total_minimum(plan(spec)) == engine_minimum(spec)


def test_an_analysis_step_without_metrics_or_rollout_webhooks_passes_at_once() -> None:
    spec = spec_of(steps=[{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 100}],
                   analysis={"metrics": [metric("error-rate")]})
    # Validation refuses an analysis step with nothing to measure; the plan of a valid spec never has one.
    assert not any("nothing to measure" in action.action for action in plan(spec))


def test_rollout_webhooks_are_measured_like_metrics() -> None:
    hook = {"name": "load", "type": "rollout", "url": "http://tester/run"}
    spec = spec_of(steps=[{"setWeight": 10}, {"analysis": {"count": 2}}, {"setWeight": 100}],
                   analysis={"interval": "45s", "webhooks": [hook]})
    found = next(action for action in plan(spec) if action.action.startswith("step 2/3"))
    assert found.minimum == datetime.timedelta(seconds=90)
    assert total_minimum(plan(spec)) == engine_minimum(spec)


def test_human_pauses_providers_flux_and_jobs_have_no_minimum() -> None:
    job = {"name": "smoke", "template": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}],
                                                               "restartPolicy": "Never"}}}}
    spec = spec_of(steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}], analysis={"jobs": [job]})
    waits = open_ended(plan(spec))
    assert [action.phase for action in waits] == [Phase.PROVISIONING, Phase.SYNCING, Phase.VERIFYING,
                                                  Phase.SHIFTING, Phase.RETIRING]
    assert "waits for a person" in waits[3].note
    assert seconds(total_minimum(plan(spec))) == HOUR


def test_the_order_of_phases_and_gates_follows_the_engine() -> None:
    hooks = [{"name": f"{kind}-hook", "type": kind, "url": "http://gates/x"}
             for kind in ("confirm-rollout", "pre-rollout", "confirm-traffic-increase", "confirm-promotion",
                          "post-rollout")]
    job = {"name": "after", "at": "Promoted", "template": {"template": {"spec": {
        "containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}
    spec = spec_of(steps=[{"setWeight": 50}, {"setWeight": 100}],
                   analysis={"webhooks": hooks, "metrics": [metric("probe", probe=True)], "jobs": [job]})
    actions = plan(spec)
    phases = [str(action.phase) for action in actions]
    assert phases == sorted(phases, key=[p.value for p in (
        Phase.PREFLIGHT, Phase.PROVISIONING, Phase.SYNCING, Phase.VERIFYING, Phase.SHIFTING, Phase.PROMOTED,
        Phase.RETIRING, Phase.COMPLETED)].index)
    texts = [action.action for action in actions]

    def where(fragment: str) -> int:
        return next(i for i, text in enumerate(texts) if fragment in text)

    assert actions[where("confirm-rollout")].phase == Phase.PREFLIGHT, "asked before green is created"
    assert where("confirm-rollout") < where("create green")
    assert where("set weight 0") < where("pre-rollout webhook") < where("HTTP probe probe") < where("step 1/2")
    increases = [i for i, text in enumerate(texts) if "confirm-traffic-increase" in text]
    assert len(increases) == 2 and increases[0] < where("step 1/2") < increases[1] < where("step 2/2")
    assert increases[1] < where("confirm-promotion") < where("step 2/2")
    assert where("step 2/2") < where("post-rollout webhook") < where("smoke Job after") < where("rollback window")
    assert actions[where("smoke Job after")].minimum == datetime.timedelta(0), "it runs within the window"
    assert total_minimum(actions) == engine_minimum(spec)


def test_retained_blue_and_paused_specs_say_so() -> None:
    spec = make_spec(promotion={"retainBlueFor": "2h", "blueDeletionPolicy": "Retain"}, paused=True)
    actions = plan(spec)
    assert actions[0] == PlannedAction(Phase.PREFLIGHT, "held: spec.paused is true", None,
                                       "nothing moves until `kubectl bluegreen resume`")
    assert any(action.action == "retain blue cluster prod-blue" and action.minimum == datetime.timedelta(0)
               for action in actions)


def test_the_rollback_summary_follows_spec_rollback() -> None:
    gradual = make_spec(rollback={"mode": "Gradual", "stepInterval": "2m", "retainGreenFor": "6h",
                                  "greenDeletionPolicy": "Retain"})
    assert "2m at each weight" in rollback_summary(gradual)
    assert "kept 6h" in rollback_summary(gradual) and rollback_summary(gradual).endswith("retained")
    assert "at once" in rollback_summary(make_spec())


# --- properties -------------------------------------------------------------------------------

durations = st.sampled_from(["0s", "10s", "30s", "1m", "90s", "2m", "5m"])
intervals = st.sampled_from(["10s", "20s", "30s", "1m", "2m"])


@st.composite
def specs(draw: st.DrawFn) -> api.ClusterUpgradeSpec:
    weights = sorted(draw(st.lists(st.integers(min_value=0, max_value=99), max_size=4)))
    steps: list[dict[str, Any]] = []
    for weight in [*weights, 100]:
        steps.append({"setWeight": weight})
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            kind = draw(st.sampled_from(["pause", "human", "count", "duration"]))
            if kind == "pause":
                steps.append({"pause": {"duration": draw(durations)}})
            elif kind == "human":
                steps.append({"pause": {}})
            elif kind == "count":
                steps.append({"analysis": {"count": draw(st.integers(min_value=1, max_value=4))}})
            else:
                steps.append({"analysis": {"duration": draw(st.sampled_from(["20s", "1m", "3m"]))}})
    if draw(st.booleans()):  # sometimes an analysis step before any traffic moves
        steps.insert(0, {"analysis": {"count": draw(st.integers(min_value=1, max_value=3))}})
    metrics = [metric("error-rate", interval=draw(st.one_of(st.none(), intervals)))]
    if draw(st.booleans()):
        metrics.append(metric("probe", interval=draw(st.one_of(st.none(), intervals)), probe=True))
    hooks = [{"name": "load", "type": "rollout", "url": "http://tester/run"}] if draw(st.booleans()) else []
    ttl = draw(st.sampled_from([None, 0, 30, 60]))
    routers = [HAPROXY] if ttl is None else [route53("dns", ttl), HAPROXY]
    return spec_of(steps=steps, routers=routers, retain=draw(st.sampled_from(["0s", "5m", "1h"])), analysis={
        "interval": draw(intervals), "initialDelay": draw(durations), "metrics": metrics, "webhooks": hooks,
    })


@settings(max_examples=60, deadline=None)
@given(specs())
def test_the_plan_total_is_the_time_the_engine_takes_when_the_world_is_instant(spec: api.ClusterUpgradeSpec) -> None:
    assert total_minimum(plan(spec)) == engine_minimum(spec)

"""Validation messages: every problem names the field to change and how to change it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from bluegreen.api import spec


def valid() -> dict[str, Any]:
    return {
        "cluster": {"provider": "capi", "name": "prod-blue", "namespace": "fleet"},
        "target": {"kubernetesVersion": "1.31"},
        "workloads": {"flux": {"selector": {"matchLabels": {"bluegreen.io/cluster": "prod-blue"}}}},
        "traffic": {
            "routers": [{"haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "app",
                                     "blueServer": "blue", "greenServer": "green"}}],
            "steps": [{"setWeight": 10}, {"pause": {"duration": "5m"}}, {"setWeight": 50}, {"setWeight": 100}],
        },
    }


def with_(path: str, value: Any) -> dict[str, Any]:
    """The valid spec with ``value`` at dotted ``path`` (numbers index lists)."""
    raw = valid()
    node: Any = raw
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return raw


_DELETE = object()
HANDOFF_HOOK = {"name": "es-move", "at": "BeforeTraffic", "handoff": {"namespace": "search", "name": "es"}}


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse_spec(raw)
    return caught.value.problems


# (raw spec, the one line's field path, words that must be in the fix)
CASES: list[tuple[str, Callable[[], dict[str, Any]], str, list[str]]] = [
    ("unknown router kind",
     lambda: with_("traffic.routers.0", {"nginx": {"upstream": "app"}}),
     "spec.traffic.routers[0].nginx", ["unknown router kind 'nginx'; use one of: haproxy"]),
    ("router without a kind",
     lambda: with_("traffic.routers.0", {"name": "edge"}),
     "spec.traffic.routers[0]", ["needs a kind", "haproxy"]),
    ("runtime API without scheme",
     lambda: with_("traffic.routers.0.haproxy.runtimeAPI", "10.0.0.5:9999"),
     "spec.traffic.routers[0].haproxy.runtimeAPI", ["'10.0.0.5:9999'", "unix://", "tcp://host:port"]),
    ("haproxy name that would smuggle a second command",
     lambda: with_("traffic.routers.0.haproxy.backend", "app;shutdown sessions"),
     "spec.traffic.routers[0].haproxy.backend", ["is not an HAProxy name", "letters, digits"]),
    ("duration in words",
     lambda: with_("traffic.steps.1.pause.duration", "5 minutes"),
     "spec.traffic.steps[1].pause.duration", ["'5 minutes' is not a duration", "30s, 5m, 1h30m"]),
    ("duration without unit",
     lambda: with_("workloads.timeout", "30"),
     "spec.workloads.timeout", ["30s, 5m, 1h30m"]),
    ("version in words",
     lambda: with_("target.kubernetesVersion", "latest"),
     "spec.target.kubernetesVersion", ["'latest' is not a Kubernetes version", '"1.31" or "v1.31.2"']),
    ("version as a YAML number",
     lambda: with_("target.kubernetesVersion", 1.3),
     "spec.target.kubernetesVersion", ["is a number", "quotes", '"1.30"']),
    ("name with capitals",
     lambda: with_("cluster.name", "Prod_Blue"),
     "spec.cluster.name", ["'Prod_Blue'", "lowercase RFC 1123"]),
    ("name too long",
     lambda: with_("target.greenName", "g" * 64),
     "spec.target.greenName", ["at most 63 characters"]),
    ("green named like blue",
     lambda: with_("target.greenName", "prod-blue"),
     "spec.target.greenName", ["blue's name", "a name of its own or leave it unset"]),
    ("unknown provider",
     lambda: with_("cluster.provider", "gke"),
     "spec.cluster.provider", ["'gke' is not allowed; use one of: capi, eksa"]),
    ("unknown provider",
     lambda: with_("cluster.provider", "gke"),
     "spec.cluster.provider", ["'gke' is not allowed", "capi, eksa"]),
    ("git mode without a repository",
     lambda: with_("workloads.flux.mode", "git"),
     "spec.workloads.flux", ["mode git needs git:", "url"]),
    ("remote mode with an empty selector",
     lambda: with_("workloads.flux.selector", {"matchLabels": {}}),
     "spec.workloads.flux", ["selector.matchLabels is required in remote mode"]),
    ("NodePools without pools",
     lambda: with_("strategy", "NodePools"),
     "spec.nodePools", ["required for strategy NodePools", "pools: [{name: md-0}]"]),
    ("pools for another strategy",
     lambda: with_("nodePools", {"pools": [{"name": "md-0"}]}),
     "spec.nodePools", ["used by strategy NodePools only"]),
    ("a Cluster API pool with an EKS Anywhere machine config",
     lambda: with_("strategy", "NodePools") | {"nodePools": {"pools": [{"name": "md-0", "machineConfig": {
         "name": "workers-v2"}}]}},
     "spec.nodePools.pools[0].machineConfig", ["for EKS Anywhere worker groups", "set class"]),
    ("the same pool twice",
     lambda: with_("strategy", "NodePools") | {"nodePools": {"pools": [{"name": "md-0"}, {"name": "md-0-green"}]}},
     "spec.nodePools.pools[1].name", ["same pool as pools[0] (md-0)"]),
    ("a load balancer that is neither",
     lambda: with_("strategy", "NodePools") | {"nodePools": {"pools": [{"name": "md-0"}], "loadBalancers": [{}]}},
     "spec.nodePools.loadBalancers[0]", ["one of haproxy or elbv2"]),
    ("blue/green without traffic",
     lambda: with_("traffic", _DELETE),
     "spec.traffic", ["required for strategy BlueGreen", "routers and steps"]),
    ("hooks in place",
     lambda: {**with_("strategy", "InPlace"), "hooks": [HANDOFF_HOOK]},
     "spec.hooks[0]", ["strategy InPlace has none", "use BlueGreen or Auto"]),
    ("a handoff in git mode",
     lambda: {**with_("workloads.flux", {"mode": "git", "git": {"url": "https://git.example.com/fleet.git"}}),
              "hooks": [HANDOFF_HOOK]},
     "spec.hooks[0].handoff", ["needs spec.workloads.flux.mode remote"]),
    ("two hooks of one name",
     lambda: {**valid(), "hooks": [HANDOFF_HOOK, HANDOFF_HOOK]},
     "spec.hooks[1].name", ["also the name of hooks[0]"]),
    ("a hook doing two things",
     lambda: {**valid(), "hooks": [{**HANDOFF_HOOK, "job": {"template": {"template": {"spec": {
         "containers": [{"name": "c", "image": "x"}]}}}}}]},
     "spec.hooks[0]", ["set job or handoff (not both)"]),
    ("a weight between minors",
     lambda: {**with_("strategy", "InPlace"), "inPlace": {"betweenMinors": [{"setWeight": 50}]}},
     "spec.inPlace.betweenMinors[0].setWeight", ["moves no traffic", "pause or analysis"]),
    ("strategy in the wrong case",
     lambda: with_("strategy", "bluegreen"),
     "spec.strategy", ["use one of: BlueGreen, InPlace, NodePools, Auto", "case-sensitive: BlueGreen"]),
    ("deletion policy not in the enum",
     lambda: {**valid(), "promotion": {"blueDeletionPolicy": "Keep"}},
     "spec.promotion.blueDeletionPolicy", ["use one of: Delete, Retain"]),
    ("flux mode not in the enum",
     lambda: with_("workloads.flux.mode", "push"),
     "spec.workloads.flux.mode", ["use one of: remote, git"]),
    ("step with two keys",
     lambda: with_("traffic.steps.1", {"setWeight": 20, "pause": {}}),
     "spec.traffic.steps[1]", ["found setWeight and pause", "split them into separate steps"]),
    ("empty step",
     lambda: with_("traffic.steps.1", {}),
     "spec.traffic.steps[1]", ["needs one of setWeight, pause, analysis"]),
    ("decreasing weight",
     lambda: with_("traffic.steps.2", {"setWeight": 5}),
     "spec.traffic.steps[2].setWeight", ["5 is below 10 set by steps[0]", "must not decrease",
                                         "raise it to at least 10"]),
    ("no step reaches 100",
     lambda: with_("traffic.steps.3", {"setWeight": 90}),
     "spec.traffic.steps", ["no step sets weight 100", "`- setWeight: 100`"]),
    ("weight above 100",
     lambda: with_("traffic.steps.3", {"setWeight": 110}),
     "spec.traffic.steps[3].setWeight", ["110 is above the maximum; use at most 100"]),
    ("weight in words",
     lambda: with_("traffic.steps.0", {"setWeight": "ten"}),
     "spec.traffic.steps[0].setWeight", ["'ten' is not a whole number"]),
    ("no routers",
     lambda: with_("traffic.routers", []),
     "spec.traffic.routers", ["at least 1 item"]),
    ("misspelt field",
     lambda: {**valid(), "traffic": {**valid()["traffic"], "stepz": []}},
     "spec.traffic.stepz", ["unknown field; did you mean steps?"]),
    ("field that does not exist",
     lambda: {**valid(), "canary": True},
     "spec.canary", ["unknown field; the fields here are: strategy, cluster, target"]),
    ("missing field",
     lambda: with_("cluster.name", _DELETE),
     "spec.cluster.name", ["required field is missing", "add `name:`"]),
    ("label value as a number",
     lambda: with_("workloads.flux.selector.matchLabels", {"tier": 1}),
     "spec.workloads.flux.selector.matchLabels.tier", ['put it in quotes: "1"']),
    ("overrides not a mapping",
     lambda: with_("target.overrides", "endpoint=10.0.0.1"),
     "spec.target.overrides", ["is not a mapping"]),
    ("analysis step with nothing to judge",
     lambda: with_("traffic.steps.1", {"analysis": {}}),
     "spec.traffic.steps[1].analysis", ["add spec.analysis.metrics or a webhook of type rollout"]),
    ("threshold without a bound",
     lambda: {**valid(), "analysis": {"metrics": [{**METRIC, "thresholdRange": {}}]}},
     "spec.analysis.metrics[0].thresholdRange", ["set min, max or both"]),
    ("threshold upside down",
     lambda: {**valid(), "analysis": {"metrics": [{**METRIC, "thresholdRange": {"min": 2, "max": 1}}]}},
     "spec.analysis.metrics[0].thresholdRange", ["min 2.0 is above max 1.0; swap them"]),
    ("metric with two providers",
     lambda: {**valid(), "analysis": {"metrics": [{**METRIC, "httpProbe": {"url": "http://green/"}}]}},
     "spec.analysis.metrics[0]", ["exactly one of prometheus, httpProbe"]),
    ("comparative metric without {{cluster}}",
     lambda: {**valid(), "analysis": {"metrics": [{**METRIC, "comparative": {"mode": "Ratio"}}]}},
     "spec.analysis.metrics[0]", ["put {{cluster}} in prometheus.query"]),
    ("two metrics of one name",
     lambda: {**valid(), "analysis": {"metrics": [METRIC, METRIC]}},
     "spec.analysis.metrics[1].name", ["also the name of metrics[0]; names must be unique"]),
    ("webhook type not Flagger's",
     lambda: {**valid(), "analysis": {"webhooks": [{"name": "g", "type": "confirm", "url": "http://g/"}]}},
     "spec.analysis.webhooks[0].type", ["use one of: confirm-rollout, pre-rollout, rollout"]),
    ("smoke Job without containers",
     lambda: {**valid(), "analysis": {"jobs": [{"name": "smoke", "template": {"backoffLimit": 0}}]}},
     "spec.analysis.jobs[0].template", ["needs template.spec.containers"]),
    ("rollback mode in lower case",
     lambda: {**valid(), "rollback": {"mode": "gradual"}},
     "spec.rollback.mode", ["use one of: Immediate, Gradual"]),
    ("webhook router restoring without readURL",
     lambda: with_("traffic.routers.0", {"onFinalize": "Restore", "webhook": {"url": "https://f5.example/weights"}}),
     "spec.traffic.routers[0].onFinalize", ["set readURL or use Remove"]),
    ("router onFinalize unknown",
     lambda: with_("traffic.routers.0.onFinalize", "Delete"),
     "spec.traffic.routers[0].onFinalize", ["use one of: Remove, Restore"]),
]

METRIC = {"name": "error-rate", "thresholdRange": {"max": 0.01},
          "prometheus": {"address": "http://prometheus:9090", "query": "sum(rate(errors[1m]))"}}


def test_the_valid_spec_is_valid() -> None:
    parsed = spec.parse_spec(valid())
    assert parsed.green_name == "prod-green"


@pytest.mark.parametrize(("raw", "path", "fix"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_one_problem_named_by_path_with_its_fix(raw: Callable[[], dict[str, Any]], path: str, fix: list[str]) -> None:
    [line] = problems_of(raw())
    where, _, message = line.partition(": ")
    assert where == path
    for words in fix:
        assert words in message


def test_every_problem_is_reported_at_once() -> None:
    raw = with_("strategy", "Canary")
    raw["cluster"]["name"] = "Prod"
    raw["traffic"]["steps"] = [{"setWeight": 50}, {"setWeight": 20}, {"setWeight": 30}, {"setWeight": 10}]
    problems = problems_of(raw)
    assert [line.partition(": ")[0] for line in problems] == [
        "spec.strategy",
        "spec.cluster.name",
        "spec.traffic.steps[1].setWeight",
        "spec.traffic.steps[2].setWeight",
        "spec.traffic.steps[3].setWeight",
        "spec.traffic.steps",
    ]


def test_weights_may_repeat_and_pauses_may_follow_100() -> None:
    raw = with_("traffic.steps", [{"setWeight": 50}, {"setWeight": 50}, {"setWeight": 100}, {"pause": {}}])
    assert spec.parse_spec(raw).traffic.steps[-1].pause == spec.Pause()


def test_target_registration_steps_must_be_reachable_shares() -> None:
    router = {"name": "alb", "elbv2": {
        "mode": "TargetRegistration", "targetGroupARN": "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/t/1",
        "blueTargets": [{"id": f"i-b{n}"} for n in range(3)], "greenTargets": [{"id": f"i-g{n}"} for n in range(3)]}}
    raw = with_("traffic", {"routers": [router], "steps": [{"setWeight": 25}, {"setWeight": 40}, {"setWeight": 100}]})
    assert problems_of(raw) == [
        "spec.traffic.steps[1].setWeight: 40 % cannot be reached by router alb (TargetRegistration with 3 blue "
        "and 3 green targets); use one of: 0, 25, 33, 50, 66, 75, 100"]
    raw["traffic"]["steps"][1]["setWeight"] = 50
    assert spec.parse_spec(raw).traffic.steps[1].set_weight == 50


def test_two_unknown_router_kinds_are_two_problems() -> None:
    problems = problems_of(with_("traffic.routers.0", {"nginx": {}, "envoy": {}}))
    # The kinds offered are those this build implements, in the API's order.
    known = ", ".join(kind for kind in spec.ROUTER_KINDS if kind in spec.IMPLEMENTED_ROUTER_KINDS)
    assert problems == [
        f"spec.traffic.routers[0].nginx: unknown router kind 'nginx'; use one of: {known}",
        f"spec.traffic.routers[0].envoy: unknown router kind 'envoy'; use one of: {known}",
    ]


def test_in_place_needs_no_traffic_and_auto_needs_it() -> None:
    raw = with_("strategy", "InPlace")
    del raw["traffic"]
    parsed = spec.parse_spec(raw)
    assert parsed.routers == [] and parsed.traffic_spec is None
    with pytest.raises(ValueError, match="strategy InPlace moves no traffic"):
        _ = parsed.traffic
    raw["strategy"] = "Auto"
    assert problems_of(raw) == [
        "spec.traffic: required for strategy Auto: add routers and steps "
        "(see `kubectl explain clusterupgrade.spec.traffic`)"]


def test_spec_error_reads_as_its_problems() -> None:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse_spec(with_("strategy", "Canary"))
    assert str(caught.value) == "; ".join(caught.value.problems)
    assert str(caught.value).startswith("spec.strategy: ")


def test_the_input_is_not_changed() -> None:
    raw = with_("traffic.steps.1", {})
    before = copy.deepcopy(raw)
    problems_of(raw)
    assert raw == before


def test_semantics_need_a_newer_minor() -> None:
    parsed = spec.parse_spec(valid())
    assert spec.validate_semantics(parsed, blue_version="v1.30.4") == []
    [problem] = spec.validate_semantics(parsed, blue_version="1.31")
    assert problem.startswith("spec.target.kubernetesVersion: ")
    assert "set a later minor version" in problem


def test_node_pools_needs_neither_workloads_nor_traffic_and_takes_each_provider_s_change() -> None:
    capi = spec.parse_spec({
        "strategy": "NodePools", "cluster": {"provider": "capi", "name": "prod", "namespace": "fleet"},
        "target": {"kubernetesVersion": "1.30"},
        "nodePools": {"pools": [{"name": "md-0", "class": "worker-v2"}]},
    })
    assert capi.workloads_spec is None and capi.routers == []
    assert capi.pools.pools[0].class_ == "worker-v2" and capi.pools.drain.local_storage == spec.LocalStorage.EVICT
    assert capi.flux_namespace == "fleet"
    eksa = {"strategy": "NodePools", "cluster": {"provider": "eksa", "name": "prod"},
            "target": {"kubernetesVersion": "1.29"},
            "nodePools": {"pools": [{"name": "md-0", "class": "worker-v2"}]}}
    assert problems_of(eksa) == ["spec.nodePools.pools[0].class: class is a Cluster API machineDeployment class; "
                                 "for EKS Anywhere set machineConfig"]
    eksa["nodePools"] = {"pools": [{"name": "md-0-blue", "machineConfig": {"overrides": {"spec": {"template": "t2"}}}}]}
    assert spec.parse_spec(eksa).pools.pools[0].family == "md-0"

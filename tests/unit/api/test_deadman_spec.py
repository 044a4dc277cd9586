"""Spec validation for the dead-man's switch (Route 53 health checks) and for the URLs the operator calls."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bluegreen.api import spec

pytestmark = pytest.mark.reliability

BASE: dict[str, Any] = {
    "cluster": {"provider": "capi", "name": "prod-blue", "namespace": "fleet"},
    "target": {"kubernetesVersion": "1.31"},
    "workloads": {"flux": {"mode": "remote", "selector": {"matchLabels": {"bluegreen.io/cluster": "prod-blue"}}}},
    "traffic": {"routers": [{"name": "dns", "route53": {
        "hostedZoneId": "Z1", "recordName": "app.example.com",
        "blue": {"setIdentifier": "prod-blue", "value": "lb-blue.example.net"},
        "green": {"setIdentifier": "prod-green", "value": "lb-green.example.net", "healthCheckId": "hc-green"},
    }}], "steps": [{"setWeight": 50}, {"setWeight": 100}]},
}


def with_changes(**route53: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    raw["traffic"]["routers"][0]["route53"].update(route53)
    return raw


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(spec.SpecError) as refused:
        spec.parse_spec(raw)
    return refused.value.problems


def test_greens_record_without_a_health_check_is_refused_naming_the_field_and_both_fixes() -> None:
    raw = with_changes(green={"setIdentifier": "prod-green", "value": "lb-green.example.net"})

    [problem] = problems(raw)

    assert problem.startswith("spec.traffic.routers[0].route53.green.healthCheckId: green's record has no health check")
    assert "evaluateTargetHealth: true" in problem and "greenHealthCheck: Warn" in problem


@pytest.mark.parametrize("green", [
    {"setIdentifier": "prod-green", "value": "lb-green.example.net", "healthCheckId": "hc-green"},
    {"setIdentifier": "prod-green", "aliasTarget": {"hostedZoneId": "Z2", "dnsName": "green-alb.example.net",
                                                     "evaluateTargetHealth": True}},
])
def test_a_health_check_or_an_alias_evaluating_its_target_is_accepted(green: dict[str, Any]) -> None:
    parsed = spec.parse_spec(with_changes(green=green))
    route53 = parsed.traffic.routers[0].route53
    assert route53 is not None and route53.green.health_checked


def test_an_alias_that_does_not_evaluate_its_target_is_no_health_check() -> None:
    raw = with_changes(green={"setIdentifier": "prod-green", "aliasTarget": {
        "hostedZoneId": "Z2", "dnsName": "green-alb.example.net", "evaluateTargetHealth": False}})
    assert [p.split(":")[0] for p in problems(raw)] == ["spec.traffic.routers[0].route53.green.healthCheckId"]


def test_warn_accepts_a_record_without_a_health_check() -> None:
    raw = with_changes(green={"setIdentifier": "prod-green", "value": "lb-green.example.net"}, greenHealthCheck="Warn")
    route53 = spec.parse_spec(raw).traffic.routers[0].route53
    assert route53 is not None and route53.green_health_check == spec.HealthCheckPolicy.WARN


def test_haproxy_requires_greens_health_check_unless_told_otherwise() -> None:
    raw = copy.deepcopy(BASE)
    raw["traffic"]["routers"] = [{"name": "edge", "haproxy": {"runtimeAPI": "tcp://127.0.0.1:9999", "backend": "app",
                                                              "blueServer": "blue", "greenServer": "green"}}]
    haproxy = spec.parse_spec(raw).traffic.routers[0].haproxy
    assert haproxy is not None and haproxy.green_health_check == spec.HealthCheckPolicy.REQUIRE


def url_fields(url: str) -> dict[str, dict[str, Any]]:
    """Every URL field of the spec, set to ``url``, by the path a message names."""
    return {
        "spec.analysis.webhooks[0].url": {"analysis": {"webhooks": [{"name": "gate", "url": url}]}},
        "spec.analysis.metrics[0].prometheus.address": {"analysis": {"metrics": [{
            "name": "errors", "thresholdRange": {"max": 1}, "prometheus": {"address": url, "query": "vector(0)"}}]}},
        "spec.analysis.metrics[0].httpProbe.url": {"analysis": {"metrics": [{
            "name": "probe", "thresholdRange": {"min": 0.9}, "httpProbe": {"url": url}}]}},
        "spec.traffic.routers[0].webhook.url": {"traffic": {**BASE["traffic"], "routers": [
            {"name": "lb", "webhook": {"url": url}}]}},
        "spec.traffic.routers[0].webhook.readURL": {"traffic": {**BASE["traffic"], "routers": [
            {"name": "lb", "webhook": {"url": "https://lb.example.net/weights", "readURL": url}}]}},
        "spec.traffic.routers[0].route53.aws.endpointURL": with_changes(aws={"endpointURL": url}),
    }


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.net/x", "gopher://example.net/",
                                 "unix:///run/receiver.sock", "HTTPS//example.net", "//example.net/hook",
                                 "javascript:alert(1)"])
@pytest.mark.parametrize("field", list(url_fields("x")))
def test_urls_other_than_http_and_https_are_refused_naming_the_field(field: str, url: str) -> None:
    raw = {**copy.deepcopy(BASE), **url_fields(url)[field]}

    found = problems(raw)

    assert [problem for problem in found
            if problem.startswith(f"{field}: {url!r} is not an http or https URL; write http://")], found


@pytest.mark.parametrize("field", list(url_fields("x")))
def test_http_and_https_urls_are_accepted(field: str) -> None:
    for url in ("http://receiver.example.net:8080/hook", "https://receiver.example.net/hook"):
        spec.parse_spec({**copy.deepcopy(BASE), **url_fields(url)[field]})

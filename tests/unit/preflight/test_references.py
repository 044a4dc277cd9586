"""Secrets the spec names: found from the spec, checked against what the namespace holds."""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.api import spec as api
from bluegreen.kube.client import Resource
from bluegreen.preflight import references
from tests.unit.engine.world import make_spec

PROMETHEUS = {"name": "errors", "thresholdRange": {"max": 0.01},
              "prometheus": {"address": "http://prometheus:9090", "query": "x", "secretRef": {"name": "prom"}}}
WEBHOOK_ROUTER = {"webhook": {"url": "https://lb.example/weights", "bearerTokenSecretRef": {"name": "lb-token"}}}
ISTIO_ROUTER = {"istio": {"cluster": {"kubeconfigSecretRef": {"name": "edge", "key": "config"}},
                          "virtualService": {"namespace": "shop", "name": "app"},
                          "blueDestination": {"host": "blue"}, "greenDestination": {"host": "green"}}}


def spec_with(*routers: dict[str, Any], metrics: tuple[dict[str, Any], ...] = ()) -> api.ClusterUpgradeSpec:
    return make_spec(traffic={"routers": list(routers), "steps": [{"setWeight": 100}]},
                     analysis={"metrics": list(metrics)})


def test_every_reference_is_named_by_its_field_with_the_key_it_needs() -> None:
    spec = spec_with({"haproxy": {"runtimeAPI": "tcp://h:1", "backend": "b", "blueServer": "x", "greenServer": "y"}},
                     WEBHOOK_ROUTER, ISTIO_ROUTER, metrics=(PROMETHEUS,))
    assert references.secret_references(spec) == [
        references.SecretReference("spec.traffic.routers[1].webhook.bearerTokenSecretRef", "lb-token", (("token",),)),
        references.SecretReference("spec.traffic.routers[2].istio.cluster.kubeconfigSecretRef", "edge", (("config",),)),
        references.SecretReference("spec.analysis.metrics[0].prometheus.secretRef", "prom",
                                   (("token",), ("username", "password"))),
    ]


def test_a_spec_naming_no_secret_has_nothing_to_check() -> None:
    assert references.secret_references(make_spec()) == []


def test_missing_secret_and_missing_key_each_name_the_field_and_the_fix() -> None:
    spec = spec_with(WEBHOOK_ROUTER, ISTIO_ROUTER, metrics=(PROMETHEUS,))
    lines = references.problems(references.secret_references(spec), namespace="fleet",
                                found={"lb-token": None, "edge": ["value"], "prom": ["username", "password"]})
    assert lines == [
        "spec.traffic.routers[0].webhook.bearerTokenSecretRef: Secret fleet/lb-token does not exist; create it in "
        "namespace fleet or name another Secret there",
        "spec.traffic.routers[1].istio.cluster.kubeconfigSecretRef: Secret fleet/edge has no key config (it has: "
        "value); add the key or set spec.traffic.routers[1].istio.cluster.kubeconfigSecretRef.key",
    ]


def test_either_set_of_prometheus_keys_will_do_and_neither_is_named() -> None:
    spec = spec_with(WEBHOOK_ROUTER, metrics=(PROMETHEUS,))
    refs = references.secret_references(spec)
    assert references.problems(refs, namespace="fleet", found={"lb-token": ["token"], "prom": ["token"]}) == []
    [line] = references.problems(refs, namespace="fleet", found={"lb-token": ["token"], "prom": ["username"]})
    assert "has no key token or username and password (it has: username)" in line


class FakeClient:
    def __init__(self, secrets: dict[str, dict[str, Any]]) -> None:
        self.secrets = secrets
        self.asked: list[tuple[str | None, str]] = []

    async def get(self, resource: Resource, *, namespace: str | None = None, name: str) -> dict[str, Any] | None:
        assert resource == references.SECRETS
        self.asked.append((namespace, name))
        return self.secrets.get(name)


@pytest.mark.parametrize(("secrets", "expected"), [
    ({}, ["lb-token does not exist"]),
    ({"lb-token": {"data": {"token": "dG9r"}}}, []),
    ({"lb-token": {"stringData": {"token": "tok"}}}, []),
    ({"lb-token": {"data": {"other": "eA=="}}}, ["has no key token (it has: other)"]),
])
async def test_the_secrets_are_read_in_the_upgrade_s_namespace_once_each(
        secrets: dict[str, dict[str, Any]], expected: list[str]) -> None:
    spec = spec_with(WEBHOOK_ROUTER, {"webhook": {"url": "https://lb2.example/w",
                                                  "bearerTokenSecretRef": {"name": "lb-token"}}})
    client = FakeClient(secrets)
    lines = await references.missing_secrets(client, namespace="fleet", spec=spec)  # type: ignore[arg-type]
    assert client.asked == [("fleet", "lb-token")]
    assert len(lines) == 2 * len(expected)
    for line, words in zip(lines, expected * 2, strict=True):
        assert words in line

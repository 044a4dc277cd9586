"""The world's counted API faults: which requests a rule matches, and that it ends by itself."""

from __future__ import annotations

import pytest

from bluegreen.sim.kube_faults import KubeFaults, RequestKey, request_key

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    ("GET", "/api/v1/namespaces/fleet/secrets/a", {}, RequestKey("get", "secrets", "fleet", "a")),
    ("GET", "/api/v1/namespaces/fleet/secrets", {}, RequestKey("list", "secrets", "fleet", None)),
    ("GET", "/api/v1/pods", {"watch": "true"}, RequestKey("watch", "pods", None, None)),
    ("GET", "/apis/apps/v1/watch/namespaces/x/deployments", {}, RequestKey("watch", "deployments", "x", None)),
    ("POST", "/apis/cluster.x-k8s.io/v1beta2/namespaces/fleet/clusters", {},
     RequestKey("create", "clusters", "fleet", None)),
    ("PATCH", "/apis/bluegreen.io/v1alpha1/namespaces/fleet/clusterupgrades/demo/status", {},
     RequestKey("patch", "clusterupgrades/status", "fleet", "demo")),
    ("PUT", "/api/v1/namespaces/a", {}, RequestKey("update", "namespaces", None, "a")),
    ("DELETE", "/api/v1/namespaces/fleet/pods", {}, RequestKey("deletecollection", "pods", "fleet", None)),
])
def test_request_key_reads_verb_and_resource_from_the_request_line(
    method: str, path: str, query: dict[str, str], expected: RequestKey
) -> None:
    assert request_key(method, path, query) == expected


@pytest.mark.parametrize("path", ["/version", "/apis", "/apis/apps/v1", "/openapi/v3", "/healthz"])
def test_discovery_is_never_faulted(path: str) -> None:
    assert request_key("GET", path, {}) is None


def test_a_rule_is_used_up_after_count_matches_and_others_pass() -> None:
    faults = KubeFaults()
    faults.add(verb="patch", resource="clusterupgrades/status", status=409, count=2)
    status_patch = RequestKey("patch", "clusterupgrades/status", "fleet", "demo")
    spec_patch = RequestKey("patch", "clusterupgrades", "fleet", "demo")
    assert faults.take(spec_patch) is None
    taken = [faults.take(status_patch) for _ in range(3)]
    assert [rule.status if rule else None for rule in taken] == [409, 409, None]
    assert not faults and len(faults.served) == 2


@pytest.mark.parametrize("bad", [
    {"verb": "poke"}, {"status": 200}, {"status": None, "stall": 0}, {"status": 500, "count": 0},
])
def test_nonsense_rules_are_refused(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {"status": 500, **bad}
    with pytest.raises(ValueError):
        KubeFaults().add(**fields)  # type: ignore[arg-type]


"""The comparison behind the RBAC check: a role against the calls a run made, with exceptions."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from bluegreen.sim.api_usage import Call
from tests.fixtures import rbac
from tests.fixtures.rbac import Exemption, Rule

PODS_READ = Rule(("",), ("pods",), ("get", "list"))


def test_a_used_call_no_rule_grants_is_missing() -> None:
    comparison = rbac.compare(rules=[PODS_READ], used=[Call("get", "", "pods"), Call("list", "", "pods"),
                                                       Call("create", "", "pods/eviction")])

    assert comparison.missing == [Call("create", "", "pods/eviction")]
    assert comparison.unused == [] and not comparison.ok


def test_a_grant_no_call_used_is_unused() -> None:
    comparison = rbac.compare(rules=[PODS_READ], used=[Call("get", "", "pods")])

    assert comparison.unused == [Call("list", "", "pods")]
    assert comparison.missing == []


def test_the_group_and_the_subresource_count() -> None:
    rules = [Rule(("apps",), ("deployments",), ("patch",))]

    comparison = rbac.compare(rules=rules, used=[Call("patch", "", "deployments"),
                                                 Call("patch", "apps", "deployments/scale")])

    assert comparison.missing == [Call("patch", "", "deployments"), Call("patch", "apps", "deployments/scale")]
    assert comparison.unused == [Call("patch", "apps", "deployments")]


def test_exactly_what_is_used_passes() -> None:
    used = [Call("get", "", "pods"), Call("list", "", "pods")]

    assert rbac.compare(rules=[PODS_READ], used=used).ok


@pytest.mark.parametrize("rule", [
    Rule(("",), ("pods",), ("*",)),
    Rule(("*",), ("pods",), ("get",)),
    Rule(("",), ("*",), ("get",)),
])
def test_a_wildcard_covers_calls_but_is_always_broader_than_use(rule: Rule) -> None:
    comparison = rbac.compare(rules=[rule], used=[Call("get", "", "pods")])

    assert comparison.missing == []
    assert comparison.unused == sorted(rule.grants(), key=str)


def test_a_subresource_wildcard_covers_that_subresource_only() -> None:
    rule = Rule(("apps",), ("*/scale",), ("patch",))

    comparison = rbac.compare(rules=[rule], used=[Call("patch", "apps", "deployments/scale"),
                                                  Call("patch", "apps", "deployments/status")])

    assert comparison.missing == [Call("patch", "apps", "deployments/status")]


def test_an_exception_excuses_an_unused_grant_and_a_wildcard() -> None:
    rules = [PODS_READ, Rule(("",), ("*",), ("list",))]
    exceptions = [Exemption(Call("list", "", "pods"), "listed by a controller not under test"),
                  Exemption(Call("list", "", "*"), "a reason")]

    comparison = rbac.compare(rules=rules, used=[Call("get", "", "pods")], exceptions=exceptions)

    assert comparison.ok


def test_an_exception_that_is_used_is_accepted() -> None:
    exceptions = [Exemption(Call("list", "", "pods"), "only a two-replica test calls it")]

    assert rbac.compare(rules=[PODS_READ], used=[Call("get", "", "pods"), Call("list", "", "pods")],
                        exceptions=exceptions).ok


def test_an_exception_for_a_grant_the_role_does_not_make_is_stale() -> None:
    stale = Exemption(Call("delete", "", "pods"), "no longer granted")

    comparison = rbac.compare(rules=[PODS_READ], used=[Call("get", "", "pods"), Call("list", "", "pods")],
                              exceptions=[stale])

    assert comparison.stale == [stale] and not comparison.ok


def test_rules_of_a_role_leave_non_resource_urls_out() -> None:
    role = {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                      {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}

    assert rbac.rules_of(role) == [Rule(("",), ("pods",), ("get",))]


def test_exceptions_are_read_per_role_and_need_a_reason(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "exceptions.yaml"
    path.write_text(yaml.safe_dump({"management": [
        {"apiGroups": ["x.io"], "resources": ["a", "b"], "verbs": ["get"], "reason": "never exercised"}]}))

    assert rbac.load_exceptions(path) == {"management": [Exemption(Call("get", "x.io", "a"), "never exercised"),
                                                         Exemption(Call("get", "x.io", "b"), "never exercised")]}
    path.write_text(yaml.safe_dump({"remote": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}))
    with pytest.raises(ValueError, match=r"remote\[0\] has no reason"):
        rbac.load_exceptions(path)


def test_the_report_names_the_role_file_and_the_rule_to_add() -> None:
    comparison = rbac.compare(rules=[PODS_READ], used=[Call("get", "", "pods"), Call("watch", "", "pods"),
                                                       Call("create", "", "pods/eviction")])

    text = rbac.report(comparison, role_file="files/remote-clusterrole.yaml")

    assert "files/remote-clusterrole.yaml misses 2 call(s) the operator made:\n  create pods/eviction.core\n" in text
    assert yaml.safe_load(text.split("add to its rules:\n", 1)[1].split("\nfiles/", 1)[0]) == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["watch"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    ]
    assert "grants 1 call(s) no test made:\n  list pods.core\n" in text


def test_the_chart_files_parse() -> None:
    """The remote role and the exceptions file are well formed (their match with use is tests/rbac's job)."""
    role = rbac.load_role(rbac.REMOTE_ROLE)
    exceptions = rbac.load_exceptions()

    assert role["kind"] == "ClusterRole" and rbac.rules_of(role)
    assert set(exceptions) <= {"management", "remote"}

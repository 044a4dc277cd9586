"""The chart's roles grant exactly what the operator used in the test suite, plus documented exceptions.

The emulated API servers recorded every call the operator process made (``sim.api_usage``) while the
rest of the suite ran; this test runs after it (``make test`` runs it third) and compares, per role:

- ``management``: the chart's ClusterRole, rendered by Helm's own engine (the operator's ServiceAccount);
- ``remote``: ``charts/bluegreen/files/remote-clusterrole.yaml``, for the identity in the kubeconfig
  Secrets of blue, green and the routers' clusters.

A call used but not granted would be a Forbidden in a real cluster; a grant never used is privilege
nobody needs. Grants the suite cannot exercise are in ``charts/bluegreen/files/rbac-exceptions.yaml``,
each with its reason. The check is only as wide as the run: after a partial run, grants look unused.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from bluegreen.sim import api_usage
from tests.fixtures import helm, rbac

pytestmark = pytest.mark.rbac_usage

CHART_ROLE_FILE = "charts/bluegreen/templates/clusterrole.yaml"
REMOTE_ROLE_FILE = "charts/bluegreen/files/remote-clusterrole.yaml"


@pytest.fixture(scope="module")
def records() -> list[api_usage.Record]:
    directory = os.environ.get(api_usage.ENV)
    if not directory:
        pytest.skip(f"{api_usage.ENV} is not set: run `make test`, which records the suite's API calls "
                    "and then runs this check")
    found = api_usage.read(pathlib.Path(directory)) if pathlib.Path(directory).is_dir() else []
    if not found:
        pytest.skip(f"no API usage recorded in {directory}: run `make test` (the whole suite records it first)")
    return found


def _check(records: list[api_usage.Record], *, role: api_usage.Role, rules: list[rbac.Rule], role_file: str) -> None:
    used = api_usage.union(records, role)
    assert used, f"no {role} cluster recorded any call by the operator: was the suite run with {api_usage.ENV}?"
    comparison = rbac.compare(rules=rules, used=used, exceptions=rbac.load_exceptions().get(role, []))
    assert comparison.ok, rbac.report(comparison, role_file=role_file)


def test_the_chart_cluster_role_matches_the_management_calls(records: list[api_usage.Record]) -> None:
    role = helm.find(helm.render(), "ClusterRole")

    _check(records, role="management", rules=rbac.rules_of(role), role_file=CHART_ROLE_FILE)


def test_the_remote_cluster_role_matches_the_calls_on_blue_green_and_router_clusters(
        records: list[api_usage.Record]) -> None:
    role = rbac.load_role(rbac.REMOTE_ROLE)

    _check(records, role="remote", rules=rbac.rules_of(role), role_file=REMOTE_ROLE_FILE)

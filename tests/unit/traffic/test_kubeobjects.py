"""What the Kubernetes-object routers share: the split comparison and the error vocabulary."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.api import spec
from bluegreen.kube import client as kubeclient
from bluegreen.kube import config
from bluegreen.kube.remote import RemoteClients
from bluegreen.traffic import base, kubeobjects

_NOWHERE = kubeclient.KubeClient(config.Connection(server="http://127.0.0.1:9"))
CONTEXT = base.RouterContext(management=_NOWHERE, remote=RemoteClients(_NOWHERE), namespace="fleet")


@pytest.mark.parametrize(("current", "desired", "same"), [
    ((1, 0), (100, 0), True),        # a lone default-weight ref is all the traffic
    ((2, 2), (50, 50), True),
    ((9, 1), (90, 10), True),
    ((2, 1), (67, 33), False),       # 66.7 % is not 67 %: exact proportion, not rounded
    ((0, 0), (50, 50), False),       # nothing goes anywhere: never a split anyone asked for
    ((0, 5), (0, 100), True),
    ((1, 0), (0, 100), False),
])
def test_same_split(current: tuple[int, int], desired: tuple[int, int], same: bool) -> None:
    assert kubeobjects.same_split(current=current, desired=desired) is same


@given(green=st.integers(min_value=0, max_value=100), scale=st.integers(min_value=1, max_value=10_000))
def test_percent_written_at_any_scale_reads_back_as_the_same_percent(green: int, scale: int) -> None:
    blue = 100 - green
    assert kubeobjects.same_split(current=(blue * scale, green * scale), desired=(blue, green))
    assert kubeobjects.percent(blue_weight=blue * scale, green_weight=green * scale) == base.RouterWeights(
        blue=blue, green=green)


def test_errors_name_the_object_the_cluster_and_the_fix() -> None:
    cluster = kubeobjects.Cluster.from_access(
        spec.ClusterAccess.model_validate({"kubeconfigSecretRef": {"name": "edge-kubeconfig"}}), context=CONTEXT)
    what = "HTTPRoute shop/app"

    conflict = kubeobjects.failure(kubeclient.ConflictError(409, "Conflict", "the object has been modified"),
                                   doing="updating", what=what, cluster=cluster)
    forbidden = kubeobjects.failure(kubeclient.ApiError(403, "Forbidden", "cannot patch httproutes"),
                                    doing="updating", what=what, cluster=cluster)
    unreachable = kubeobjects.failure(kubeclient.UnreachableError("GET https://edge: connection refused"),
                                      doing="reading", what=what, cluster=cluster)

    assert str(conflict) == (
        "HTTPRoute shop/app on the cluster of kubeconfig Secret fleet/edge-kubeconfig changed while bluegreen was "
        "updating it (409 Conflict: stale resourceVersion); nothing was written, the next attempt reads it again")
    assert str(forbidden) == (
        "the operator is forbidden from updating HTTPRoute shop/app on the cluster of kubeconfig Secret "
        "fleet/edge-kubeconfig (403: cannot patch httproutes); grant its identity there get and patch on that "
        "resource")
    assert str(unreachable) == ("reading HTTPRoute shop/app on the cluster of kubeconfig Secret "
                                "fleet/edge-kubeconfig failed: GET https://edge: connection refused")
    assert str(kubeobjects.Cluster.from_access(spec.ClusterAccess(), context=CONTEXT)) == "the management cluster"


def test_weights_must_be_percent_summing_to_100() -> None:
    with pytest.raises(ValueError, match="blue=60 green=60"):
        kubeobjects.check_percent(blue=60, green=60)

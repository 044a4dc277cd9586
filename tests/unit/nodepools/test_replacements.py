"""replacements_ready: an evicted pod's controller is back to strength on nodes that are not being drained."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from bluegreen.nodepools.plan import ControllerRef, PodRef
from bluegreen.nodepools.replacements import EvictedPod, replacements_ready
from tests.unit.nodepools.pods import pod

T0 = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)
WEB = ControllerRef("ReplicaSet", "shop", "web-7d9")
DB = ControllerRef("StatefulSet", "shop", "db")
OLD = {"old-1", "old-2"}


def evicted(name: str, controller: ControllerRef = WEB, *, before: int, elsewhere: int, node: str = "old-1",
            uid: str = "") -> EvictedPod:
    return EvictedPod(pod=PodRef("shop", name, uid or f"uid-{name}"), node=node, controller=controller, at=T0,
                      ready_before=before, ready_elsewhere_before=elsewhere)


def web(name: str, node: str, **kwargs: Any) -> dict[str, Any]:
    return pod(name, node=node, owner=("ReplicaSet", "web-7d9"), **kwargs)


def test_nothing_evicted_is_ready() -> None:
    assert replacements_ready([], [], draining_nodes=OLD) == (True, "no pods were evicted")


@pytest.mark.parametrize(("pods_now", "ready"), [
    ([web("web-a", "new-1"), web("web-b", "new-2"), web("web-c", "new-1")], True),
    ([web("web-a", "new-1"), web("web-b", "new-2"), web("web-c", "new-1"), web("web-d", "new-2")], True),
    ([web("web-a", "new-1"), web("web-b", "new-2")], False),
    ([web("web-a", "new-1"), web("web-b", "new-2"), web("web-c", "old-2")], False),  # on a draining node
    ([web("web-a", "new-1"), web("web-b", "new-2"), web("web-c", "new-1", ready=False)], False),
    ([web("web-a", "new-1"), web("web-b", "new-2"), web("web-c", "new-1", phase="Pending", ready=False)], False),
    ([web("web-a", "new-1"), web("web-b", "new-2"), web("web-c", "new-1", terminating=True)], False),
    ([web("web-a", "new-1"), web("web-b", "new-2"), pod("other", node="new-1", owner=("ReplicaSet", "api"))], False),
    ([web("web-a", "new-1"), web("web-b", "new-2"), web("web-c", "")], False),  # not scheduled
], ids=["three-of-three", "more-than-before", "two-of-three", "one-on-draining-node", "not-ready",
        "pending", "terminating", "another-controller", "unscheduled"])
def test_counts_running_ready_pods_of_the_controller_on_new_nodes(
        pods_now: list[dict[str, Any]], ready: bool) -> None:
    # Three Ready before, two of them already on new nodes: one eviction wants three on new nodes.
    journal = [evicted("web-old", before=3, elsewhere=2)]
    done, message = replacements_ready(journal, pods_now, draining_nodes=OLD)
    assert done is ready
    assert message.startswith("ReplicaSet shop/web-7d9: ")
    assert message.endswith(" of 3 Ready on new nodes")


def test_the_message_names_each_missing_controller_with_its_counts() -> None:
    journal = [evicted("web-x", before=3, elsewhere=1), evicted("web-y", before=3, elsewhere=1),
               evicted("db-0", DB, before=2, elsewhere=0)]
    pods_now = [web("web-a", "new-1"), web("web-b", "new-2"),
                pod("db-0", node="new-1", owner=("StatefulSet", "db"), uid="new-uid"),
                pod("db-1", node="old-2", owner=("StatefulSet", "db"))]
    done, message = replacements_ready(journal, pods_now, draining_nodes=OLD)
    assert not done
    assert message == "ReplicaSet shop/web-7d9: 2 of 3 Ready on new nodes"
    pods_now.append(web("web-c", "new-1"))
    assert replacements_ready(journal, pods_now, draining_nodes=OLD) == (
        True, "ReplicaSet shop/web-7d9: 3 of 3 Ready on new nodes; StatefulSet shop/db: 1 of 1 Ready on new nodes")


def test_both_controllers_missing_are_both_named() -> None:
    journal = [evicted("web-x", before=2, elsewhere=0), evicted("db-0", DB, before=1, elsewhere=0)]
    done, message = replacements_ready(journal, [], draining_nodes=OLD)
    assert not done
    assert message == ("ReplicaSet shop/web-7d9: 0 of 1 Ready on new nodes; "
                       "StatefulSet shop/db: 0 of 1 Ready on new nodes")


def test_a_workload_spread_over_old_nodes_is_judged_by_what_was_evicted() -> None:
    # web had 3 pods, 2 on old-1 and 1 on old-2; draining old-1 evicts two. The one on old-2 is not awaited.
    journal = [evicted("web-a", before=3, elsewhere=0), evicted("web-b", before=3, elsewhere=0)]
    pods_now = [web("web-c", "old-2"), web("web-d", "new-1")]
    assert replacements_ready(journal, pods_now, draining_nodes=OLD)[0] is False
    pods_now.append(web("web-e", "new-2"))
    assert replacements_ready(journal, pods_now, draining_nodes=OLD) == (
        True, "ReplicaSet shop/web-7d9: 2 of 2 Ready on new nodes")


def test_never_more_than_were_ready_before() -> None:
    # A pod evicted while not Ready is not expected to come back Ready: 2 Ready before, 3 evicted.
    journal = [evicted(name, before=2, elsewhere=0) for name in ("web-a", "web-b", "web-c")]
    pods_now = [web("web-d", "new-1"), web("web-e", "new-1"), web("web-f", "new-2", ready=False)]
    assert replacements_ready(journal, pods_now, draining_nodes=OLD) == (
        True, "ReplicaSet shop/web-7d9: 2 of 2 Ready on new nodes")


def test_a_stateful_pod_evicted_twice_under_one_name_counts_twice() -> None:
    journal = [evicted("db-0", DB, before=2, elsewhere=0, uid="first"),
               evicted("db-0", DB, before=2, elsewhere=0, node="old-2", uid="second")]
    pods_now = [pod("db-0", node="new-1", owner=("StatefulSet", "db"))]
    assert replacements_ready(journal, pods_now, draining_nodes=OLD) == (
        False, "StatefulSet shop/db: 1 of 2 Ready on new nodes")


def test_the_journal_survives_status() -> None:
    entry = evicted("web-x", before=3, elsewhere=2)
    status = entry.to_status()
    assert status["readyBefore"] == 3
    assert status["readyElsewhereBefore"] == 2
    assert status["controller"] == {"kind": "ReplicaSet", "namespace": "shop", "name": "web-7d9"}
    assert EvictedPod.from_status(status) == entry

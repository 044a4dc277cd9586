"""A NodePools upgrade as ``get`` and ``plan`` show it: pools, stage, nodes drained, the pod blocking, evictions.

``statuses/nodepools-draining.json`` is written the way the engine writes a
rotation: two pools rotated, two of five old nodes drained, the third held by a
PodDisruptionBudget. The spec has no workloads and no traffic, as NodePools allows.
"""

from __future__ import annotations

import copy
import datetime
import pathlib
from typing import Any

import pytest
import yaml

from bluegreen.api.status import parse_status
from bluegreen.cli import main, planview, view
from bluegreen.cli.text import Style
from bluegreen.engine import plan as planner
from tests.unit.cli.test_sections import plan_of
from tests.unit.cli.test_view import line_with, recorded, section

NAME = "nodepools-draining"


def draining() -> tuple[dict[str, Any], list[dict[str, Any]], datetime.datetime]:
    obj, events, now = recorded(NAME)
    return copy.deepcopy(obj), events, now


def bare_manifest(**drain: Any) -> dict[str, Any]:
    """A NodePools upgrade as a person writes it: no workloads, no traffic, no status."""
    obj, _, _ = draining()
    del obj["status"]
    obj["spec"]["nodePools"]["drain"].update(drain)
    assert "workloads" not in obj["spec"] and "traffic" not in obj["spec"]
    return obj


def states(text: str) -> list[tuple[str, str]]:
    """(STATE, ACTION with its wrapped lines joined) of every row of the plan's action table."""
    return [(state, action) for _, state, action in plan_rows(text)]


def plan_rows(text: str) -> list[tuple[str, str, str]]:
    """(MINIMUM, STATE or "", ACTION with its wrapped lines joined; notes left out) of every row of the table."""
    lines = text.splitlines()
    header = next(line for line in lines if line.split()[:2] == ["PHASE", "MINIMUM"])
    minimum_at, action_at = header.index("MINIMUM"), header.index("ACTION")
    state_at = header.index("STATE") if "STATE" in header else action_at
    rows: list[tuple[str, str, str]] = []
    for line in lines[lines.index(header) + 1:]:
        if not line:
            break
        if line[:action_at].strip():
            rows.append((line[minimum_at:state_at].strip(), line[state_at:action_at].strip(), line[action_at:]))
        elif line[action_at:action_at + 2] != "  ":  # the action goes on; a note is indented further
            minimum, state, action = rows[-1]
            rows[-1] = (minimum, state, f"{action} {line[action_at:]}")
    return rows


def test_the_fixture_is_a_status_the_operator_can_write() -> None:
    obj, _, _ = draining()
    state = parse_status(obj["status"]).node_pools
    assert state is not None and state.nodes_drained == 2 and len(state.old_nodes) == state.nodes_total == 5


# --- get ------------------------------------------------------------------------------------------


def test_get_shows_the_pools_the_stage_and_the_nodes_drained() -> None:
    obj, events, now = draining()
    text = view.render(obj, events=events, now=now)
    assert line_with(text, "Phase:")[1:] == ["Rotating", "for", "37m"]
    assert " ".join(line_with(text, "Clusters:")[1:]) == (
        "prod (v1.31.2), worker pools md-0 -> md-0-green, md-1-blue -> md-1-green to 1.31")
    rotation = section(text, "Rotation:")
    assert rotation.splitlines()[0] == "Rotation:  Draining: node 3 of 5 (prod-md-0-c8w1p), for 8m30s"
    assert line_with(rotation, "POOL") == ["POOL", "OLD", "NEW", "REPLICAS", "OLD", "NODES", "NEW", "NODES"]
    assert line_with(rotation, "md-0") == ["md-0", "md-0", "md-0-green", "3", "3", "3/3", "Ready"]
    assert line_with(rotation, "md-1-blue") == ["md-1-blue", "md-1-blue", "md-1-green", "2", "2", "2/2", "Ready"]
    assert " ".join(line_with(rotation, "Load balancers:")) == (
        "Load balancers: every new node is registered and healthy in haproxy ingress-nodes")
    assert " ".join(line_with(rotation, "Drained:")) == "Drained: 2 of 5 old node(s): prod-md-0-7x2kq, prod-md-0-9fz4m"
    draining_line = " ".join(rotation.split("Draining:  ", 1)[1].split())
    assert draining_line.startswith("prod-md-0-c8w1p: BlockedByBudget, 2 pod(s) left, refused for 5m, asked again "
                                    "after 5s: Cannot evict pod")


def test_the_blocking_pod_is_under_the_phase_with_the_budget_timeout() -> None:
    obj, events, now = draining()
    lines = view.render(obj, events=events, now=now).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Blocking:"))
    assert lines[at - 1].startswith("Message:") and lines[at + 2].startswith("Age:")
    assert " ".join(" ".join(lines[at:at + 2]).split()) == (
        "Blocking: shop/web-5d9f8-4j8mx on prod-md-0-c8w1p, refused by PodDisruptionBudget shop/web (for 5m; "
        "budgetTimeout 10m, then Wait: reported, still asking)")
    yellow = view.render(obj, events=events, now=now, style=Style(enabled=True))
    assert "\x1b[33mBlocking:  shop/web-5d9f8-4j8mx" in yellow
    obj["status"]["nodePools"]["blockedReported"] = True
    obj["spec"]["nodePools"]["drain"]["onBudgetTimeout"] = "Abort"
    red = view.render(obj, events=events, now=now, style=Style(enabled=True))
    assert "\x1b[31mBlocking:  shop/web-5d9f8-4j8mx" in red
    assert "then Abort: the old nodes are made schedulable again" in " ".join(red.split())
    obj["status"]["nodePools"]["blockingPod"] = None
    assert "Blocking:" not in view.render(obj, events=events, now=now)


def test_the_last_evictions_are_listed_oldest_first() -> None:
    obj, events, now = draining()
    rotation = section(view.render(obj, events=events, now=now), "Rotation:").splitlines()
    title = next(i for i, line in enumerate(rotation) if line.strip().startswith("Evictions:"))
    assert rotation[title].strip() == "Evictions: 7 in all; the last 5:"
    assert rotation[title + 1].split() == ["WHEN", "POD", "NODE", "CONTROLLER"]
    rows = [line.split() for line in rotation[title + 2:] if line.split()[1:2] == ["ago"]]
    assert [row[2] for row in rows] == ["monitoring/kube-state-metrics-6b7-hh2", "shop/web-5d9f8-9wq7c",
                                        "shop/search-0", "shop/cart-77c4b-k2v9x", "shop/queue-6fd-5lq2w"]
    assert rows[-1] == ["8m20s", "ago", "shop/queue-6fd-5lq2w", "prod-md-0-c8w1p", "ReplicaSet", "queue-6fd"]
    assert rows[2][3:] == ["prod-md-0-9fz4m", "StatefulSet", "search"]
    assert rotation[title + 2].split()[-1] == "ReplicaSet", "a long controller is wrapped within 100 columns"
    assert rotation[title + 3].split() == ["kube-state-metrics-6b7"]


def test_no_weights_no_steps_and_no_green_for_a_rotation() -> None:
    obj, events, now = draining()
    text = view.render(obj, events=events, now=now)
    assert "Weights:" not in text and "Steps:" not in text and "green prod-green" not in text
    assert "Removed APIs" not in text and "Capacity" not in text, "NodePools scans nothing"
    assert "  Strategy: NodePools (as the spec asks)" in text.splitlines()


@pytest.mark.parametrize(("stage", "changes", "summary"), [
    ("CreatingPools", {"pools": [{"pool": "md-0", "old": "md-0", "new": "md-0-green", "replicas": 3,
                                  "oldNodes": ["a", "b", "c"]}], "nodesDrained": 0, "drained": [], "current": None,
                       "blockingPod": None, "nodesTotal": 3},
     "CreatingPools: waiting for the new pools' nodes to be Ready, for 8m30s"),
    ("WaitingForReplacements", {"current": None, "blockingPod": None},
     "WaitingForReplacements: node 3 of 5 (prod-md-0-c8w1p) is empty; waiting for its pods on new nodes, for 8m30s"),
    ("Pausing", {"current": None, "blockingPod": None, "pauseUntil": "2026-11-23T10:01:30Z"},
     "Pausing: 2 of 5 node(s) drained; next node in 90s, for 8m30s"),
    ("Done", {"current": None, "blockingPod": None, "nodesDrained": 5},
     "Done: 5 node(s) drained, 7 pod(s) evicted"),
    ("Aborted", {"current": None, "blockingPod": None}, "Aborted: aborted after 2 of 5 node(s); the old nodes are "
                                                        "schedulable again"),
])
def test_each_stage_says_what_it_waits_for(stage: str, changes: dict[str, Any], summary: str) -> None:
    obj, events, now = draining()
    obj["status"]["nodePools"].update({"stage": stage, **changes})
    text = view.render(obj, events=events, now=now)
    assert section(text, "Rotation:").splitlines()[0] == f"Rotation:  {summary}"
    if stage == "CreatingPools":
        assert line_with(text, "md-0")[-2:] == ["coming", "up"]
        assert "Evictions: 7 in all" in text  # the journal is kept; only the node counts restart


def test_a_failed_or_paused_rotation_says_so_on_its_stage() -> None:
    obj, events, now = draining()
    obj["status"]["phase"] = "Failed"
    assert section(view.render(obj, events=events, now=now), "Rotation:").splitlines()[0].endswith(" (failed here)")
    obj["status"].update({"phase": "Paused", "heldPhase": "Rotating"})
    assert section(view.render(obj, events=events, now=now), "Rotation:").splitlines()[0].endswith(" (paused)")


def test_a_nodepools_spec_without_status_renders_in_get() -> None:
    _, _, now = draining()
    text = view.render(bare_manifest(), now=now)
    assert line_with(text, "Phase:")[1] == "Pending"
    assert " ".join(line_with(text, "Clusters:")[1:]) == "prod, worker pools md-0, md-1-blue to 1.31"
    assert "Preflight: preflight has not run yet (once the cluster is ready); it checks:" in text
    assert section(text, "Rotation:").splitlines()[0] == (
        "Rotation:  not started; pools md-0, md-1-blue are rotated once preflight has found each one's live entry")
    assert "Weights:" not in text


def test_a_rotation_keeps_within_100_columns() -> None:
    obj, events, now = draining()
    text = view.render(obj, events=events, now=now)
    for title in ("Preflight:", "Rotation:"):
        assert all(len(line) <= 100 for line in section(text, title).splitlines()), title
    assert all(len(line) <= 100 for line in plan_of(obj, now=now).splitlines())


# --- plan -----------------------------------------------------------------------------------------


def test_the_plan_of_a_bare_spec_lists_every_stage_with_its_timeouts() -> None:
    text = plan_of(bare_manifest())
    flat = " ".join(text.split())
    assert text.splitlines()[0] == ("Plan for clusterupgrade fleet/prod-workers: prod's worker pools md-0, md-1-blue "
                                    "to 1.31 (capi,")
    assert "Node pools:" in text.splitlines()
    actions = [action.strip() for _, _, action in plan_rows(text)]
    assert actions == [
        "check cluster fleet/prod (capi) exists, is ready and reports its version",
        "pool md-0: find its live entry, the one of md-0, md-0-blue, md-0-green with replicas",
        "pool md-1-blue: find its live entry, the one of md-1, md-1-blue, md-1-green with replicas",
        "check capi can make each new pool at 1.31",
        "create the new pool beside md-0's live entry, as many nodes, at 1.31",
        "create the new pool beside md-1-blue's live entry, as many nodes, at 1.31 with class large",
        "wait until every new node is registered and healthy in haproxy ingress-nodes",
        "cordon every old node",
        "drain the old nodes one at a time: evict each one's pods through the Eviction API",
        "after each node: wait until its evicted pods' replacements are Running and Ready on new nodes",
        "between nodes: pause 2m",
        "scale the old entries to 0 replicas, kept for the next rotation",
        "done: prod's workers run 1.31 in the new pools",
    ]
    assert "fails after 30m (nodesTimeout)" in flat
    assert "after 10m (budgetTimeout) it is reported (NodesDrained=False, DrainBlocked) and asked again" in flat
    assert "reported after 10m (replacementTimeout); the drain keeps waiting" in flat
    assert "emptyDir pods: Evict" in flat
    # how many nodes there are is the world's: the pauses have no minimum yet
    assert "Total minimum: 0s, plus 7 wait(s) the world or a person decides (MINIMUM -)" in text
    assert "On abort (bluegreen.io/abort, or onBudgetTimeout Abort): draining stops and the old nodes are made " \
           "schedulable again; nothing is deleted or scaled" in flat


def test_abort_on_budget_timeout_local_storage_and_grace_are_in_the_drain_note() -> None:
    text = " ".join(plan_of(bare_manifest(onBudgetTimeout="Abort", localStorage="Block",
                                          gracePeriodSeconds=30)).split())
    assert "after 10m (budgetTimeout) it aborts (old nodes uncordoned); gracePeriodSeconds 30" in text
    assert "emptyDir pods: Block" in text


def test_without_load_balancers_or_pause_those_rows_are_left_out() -> None:
    manifest = bare_manifest(pauseBetweenNodes="0s")
    del manifest["spec"]["nodePools"]["loadBalancers"]
    text = plan_of(manifest)
    assert "registered and healthy" not in text and "between nodes" not in text


def test_with_status_the_plan_names_pools_and_nodes_and_marks_how_far_it_is() -> None:
    obj, _, now = draining()
    text = plan_of(obj, now=now)
    found = states(text)
    assert found[0] == ("done", "check cluster fleet/prod (capi) exists, is ready and reports its version")
    assert ("done", "pool md-0: md-0 (3 node(s)) is replaced by md-0-green") in found
    assert ("done", "create pool md-0-green beside md-0: 3 node(s) at 1.31") in found
    assert ("done", "cordon every old node (5): prod-md-0-7x2kq, prod-md-0-9fz4m, prod-md-0-c8w1p, "
                    "prod-md-1-blue-h3k9d, prod-md-1-blue-q5r2t") in found
    assert ("> node 3/5", "drain the 5 old node(s) one at a time: evict each one's pods through the Eviction "
                          "API") in found
    assert [state for state, action in found if action.startswith(("  after each", "  between"))] == ["", ""]
    assert [state for state, action in found if action.startswith("scale ")] == ["", ""]
    assert [action for _, action in found if action.startswith("scale ")] == [
        "scale md-0 to 0 replicas, kept for the next rotation",
        "scale md-1-blue to 0 replicas, kept for the next rotation"]
    assert found[-1] == ("", "done: prod's workers run 1.31 in md-0-green, md-1-green")
    minimums = {action.strip(): minimum for minimum, _, action in plan_rows(text)}
    assert minimums["between nodes: pause 2m"] == "8m", "four pauses between five nodes"
    assert minimums["cordon every old node (5): prod-md-0-7x2kq, prod-md-0-9fz4m, prod-md-0-c8w1p, "
                    "prod-md-1-blue-h3k9d, prod-md-1-blue-q5r2t"] == "0s"
    assert "Total minimum: 8m" in text


@pytest.mark.parametrize(("phase", "stage", "drain", "replacements", "pause"), [
    ("Rotating", "WaitingForReplacements", "2/5 drained", "> node 3/5", ""),
    ("Rotating", "Pausing", "2/5 drained", "", "> 2/5 drained"),
    ("Failed", "Draining", "failed: node 3/5", "", ""),
])
def test_the_drain_rows_follow_the_node_being_drained(phase: str, stage: str, drain: str, replacements: str,
                                                      pause: str) -> None:
    obj, _, now = draining()
    obj["status"]["phase"] = phase
    obj["status"]["nodePools"]["stage"] = stage
    found = dict((action.split(":")[0].strip(), state) for state, action in states(plan_of(obj, now=now)))
    assert (found["drain the 5 old node(s) one at a time"], found["after each node"], found["between nodes"]) == (
        drain, replacements, pause)


def test_a_completed_rotation_is_done_throughout_and_an_aborted_one_uncordons() -> None:
    obj, _, now = draining()
    obj["status"]["phase"] = "Completed"
    obj["status"]["nodePools"].update({"stage": "Done", "nodesDrained": 5})
    assert {state for state, _ in states(plan_of(obj, now=now))} == {"done"}
    obj["status"]["phase"] = "RollingBack"
    obj["status"]["nodePools"].update({"stage": "Uncordoning", "nodesDrained": 2})
    found = states(plan_of(obj, now=now))
    assert found[-1] == ("> current", "aborted: uncordon the old nodes (2 of 5 were drained)")
    assert all(state in ("done", "") for state, _ in found[:-1])


def test_the_blue_green_planner_refuses_a_nodepools_spec() -> None:
    document = planview.document_of(bare_manifest())
    assert document.spec is not None
    with pytest.raises(ValueError, match="strategy NodePools has no blue/green plan"):
        planner.plan(document.spec)


# --- the command line -----------------------------------------------------------------------------


def test_plan_dash_f_of_a_nodepools_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rotate.yaml"
    path.write_text(yaml.safe_dump(bare_manifest()))
    assert main.main(["plan", "-f", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "drain the old nodes one at a time" in captured.out


def test_plan_dash_f_of_kubectl_get_output_of_a_rotation(tmp_path: pathlib.Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    obj, _, _ = draining()
    path = tmp_path / "rotating.yaml"
    path.write_text(yaml.safe_dump(obj))
    assert main.main(["plan", "-f", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Phase: Rotating: draining node 3/5 (prod-md-0-c8w1p)" in " ".join(out.split())
    assert "node 3/5" in out and "2026-11-23 09:51:30 UTC" not in out

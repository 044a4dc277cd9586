"""Preflight findings, the strategy chosen, the in-place path and hooks, as ``plan`` and ``get`` show them.

The statuses are written the way the engine writes them for issue 6:
``blocked-findings`` (Auto asked; removed APIs, stateful workloads, a problem
and too little capacity; Blocked), ``auto-in-place`` (Auto chose InPlace; the
analysis after the minor runs) and ``promoted-hooks`` (a handoff before
traffic succeeded, a Job after promotion runs).
"""

from __future__ import annotations

import copy
import datetime
import pathlib
from typing import Any

import pytest
import yaml

from bluegreen.api.status import LIST_LIMIT
from bluegreen.cli import planview, view
from bluegreen.cli.text import Style
from tests.fixtures.examples import clusterupgrade_examples
from tests.unit.cli.test_view import line_with, recorded, section

ROOT = pathlib.Path(__file__).resolve().parents[3]
NEW = ["blocked-findings", "auto-in-place", "promoted-hooks"]


def plan_of(obj: dict[str, Any], *, now: datetime.datetime | None = None, style: Style | None = None) -> str:
    document = planview.document_of(obj)
    assert not document.problems, document.problems
    return planview.render_plan(document, now=now, style=style or Style(enabled=False))


def planned(name: str) -> str:
    obj, _, now = recorded(name)
    return plan_of(obj, now=now)


def block(text: str, start: str) -> list[str]:
    """The lines from the one starting with ``start`` up to the next blank line."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    end = next((i for i in range(first, len(lines)) if not lines[i]), len(lines))
    return lines[first:end]


def in_place_spec(**changes: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "clusterupgrade-capi.yaml").read_text())
    spec = manifest["spec"]
    del spec["traffic"]
    spec.update({"strategy": "InPlace", "analysis": {"interval": "1m", "initialDelay": "30s", "metrics": [
        {"name": "error-rate", "prometheus": {"address": "http://prometheus:9090", "query": "sum(rate(e[1m]))"},
         "thresholdRange": {"max": 0.01}}]},
        "inPlace": {"betweenMinors": [{"analysis": {"count": 3}}, {"pause": {"duration": "10m"}}]}})
    spec.update(changes)
    return manifest


# --- preflight --------------------------------------------------------------------------------


def test_findings_are_a_table_grouped_by_where_they_were_seen() -> None:
    text = planned("blocked-findings")
    lines = block(text, "  Removed APIs:")
    assert lines[0] == "  Removed APIs: 3 found; removedAPIs Block: the upgrade stops until they are fixed"
    assert lines[1].split() == ["KIND", "OBJECT", "APIVERSION", "REMOVED", "USE"]
    live = lines.index("  live on prod-blue:")
    source = lines.index("  in fleet/shop-apps: apps/shop/hpa.yaml:")
    assert [line.split()[:2] for line in lines[live + 1:source]] == [["FlowSchema", "api-priority"],
                                                                     ["FlowSchema", "batch-low"]]
    assert lines[live + 1].split()[2:] == ["flowcontrol.apiserver.k8s.io/v1beta2", "1.29", ".../v1"]
    assert lines[source + 1].split() == ["HorizontalPodAutoscaler", "shop/web", "autoscaling/v2beta2", "1.26",
                                         ".../v2"]


def test_a_replacement_in_another_group_is_written_out() -> None:
    obj, _, now = recorded("blocked-findings")
    obj = copy.deepcopy(obj)
    obj["status"]["preflight"]["findings"] = [{
        "kind": "PodSecurityPolicy", "name": "restricted", "apiVersion": "policy/v1beta1", "removedIn": "1.25",
        "replacement": "none (use Pod Security Admission)", "where": "live on prod-blue"}]
    obj["status"]["preflight"]["findingsTotal"] = 1
    row = line_with(plan_of(obj, now=now), "PodSecurityPolicy")
    assert row == ["PodSecurityPolicy", "restricted", "policy/v1beta1", "1.25", "none", "(use", "Pod", "Security",
                   "Admission)"]


def many_findings(total: int) -> dict[str, Any]:
    obj, _, _ = recorded("blocked-findings")
    obj = copy.deepcopy(obj)
    obj["status"]["preflight"]["findings"] = [
        {"kind": "Ingress", "namespace": "shop", "name": f"web-{index}", "apiVersion": "networking.k8s.io/v1beta1",
         "removedIn": "1.22", "replacement": "networking.k8s.io/v1", "where": "live on prod-blue"}
        for index in range(LIST_LIMIT)]
    obj["status"]["preflight"]["findingsTotal"] = total
    return obj


def test_plan_lists_what_status_holds_and_counts_the_rest() -> None:
    _, _, now = recorded("blocked-findings")
    text = plan_of(many_findings(57), now=now)
    assert "  Removed APIs: 57 found; removedAPIs Block: the upgrade stops until they are fixed" in text
    assert sum(1 for line in text.splitlines() if line.strip().startswith("Ingress")) == LIST_LIMIT
    assert "    ... and 7 more (status lists the first 50 of 57)" in text.splitlines()


def test_get_shows_the_first_findings_and_points_to_plan_for_the_others() -> None:
    _, events, now = recorded("blocked-findings")
    text = view.render(many_findings(57), events=events, now=now)
    rows = [line for line in section(text, "Preflight:").splitlines() if line.strip().startswith("Ingress")]
    assert [row.split()[1] for row in rows] == [f"shop/web-{index}" for index in range(view.PREFLIGHT_ROWS_SHOWN)]
    assert "    ... and 47 more (kubectl bluegreen plan NAME lists the 50 status holds)" in text.splitlines()


def test_no_more_line_when_everything_is_listed() -> None:
    assert "more (" not in planned("blocked-findings")


def test_stateful_workloads_say_which_hook_hands_them_off() -> None:
    text = planned("blocked-findings")
    lines = block(text, "  Stateful workloads:")
    assert lines[0] == "  Stateful workloads: 3 found; stateful Handoff: each needs a handoff hook"
    assert lines[1].split() == ["KIND", "OBJECT", "HANDOFF", "REASON"]
    assert line_with(text, "StatefulSet")[:5] == ["StatefulSet", "shop/search", "hook", "move-search", "volume"]
    assert line_with(text, "CronJob")[:4] == ["CronJob", "shop/invoices", "no", "handoff"]
    assert line_with(text, "Deployment")[:4] == ["Deployment", "shop/order-leader", "no", "handoff"]
    # the reason wraps under its own column rather than past 100 columns
    reason = next(i for i, line in enumerate(lines) if line.strip().startswith("StatefulSet"))
    assert lines[reason + 1].strip() == "on this cluster's volumes"
    assert lines[reason + 1].index("on") == lines[reason].index("volume claims")


def test_a_missing_handoff_is_red_only_when_the_policy_asks_for_handoffs() -> None:
    obj, _, now = recorded("blocked-findings")
    red_no_handoff = "\x1b[31mno handoff\x1b[0m"
    assert red_no_handoff in plan_of(obj, now=now, style=Style(enabled=True))
    obj = copy.deepcopy(obj)
    obj["spec"]["preflight"]["stateful"] = "Warn"
    warned = plan_of(obj, now=now, style=Style(enabled=True))
    assert red_no_handoff not in warned and "stateful Warn: listed, the upgrade goes on" in warned


def test_problems_capacity_and_the_strategy_with_its_reasons() -> None:
    lines = planned("blocked-findings").splitlines()
    problems = lines.index("  Problems: 1 (a scan that could not be done counts as a finding)")
    assert lines[problems + 1].startswith("    - source fleet/shop-apps (GitRepository): artifact digest mismatch;")
    capacity = next(i for i, line in enumerate(lines) if line.startswith("  Capacity:"))
    assert lines[capacity].startswith("  Capacity: TooSmall (capacity Warn): green's workers have 12000m CPU")
    assert lines[capacity + 1].startswith("      raise the MachineDeployment's replicas")
    strategy = lines.index("  Strategy: BlueGreen (chosen by Auto)")
    assert lines[strategy + 1:strategy + 3] == [
        "    - 3 removed-API finding(s): in place the apiserver would stop serving them",
        "    - 1.28 -> 1.31 is 3 minors; InPlace is chosen for one minor only",
    ]


def test_the_scan_time_is_an_age_with_a_clock_and_utc_without() -> None:
    obj, _, now = recorded("blocked-findings")
    assert "Preflight: scanned 18m ago" in plan_of(obj, now=now)
    assert "Preflight: scanned 2026-11-23 09:41:08 UTC" in plan_of(obj)


def test_before_preflight_the_plan_says_so_and_shows_what_the_spec_asks() -> None:
    obj, _, _ = recorded("blocked-findings")
    text = plan_of({**obj, "status": {}})
    lines = block(text, "Preflight:")
    assert lines[0] == "Preflight: preflight has not run yet (it scans blue once blue is ready); the spec asks for:"
    assert lines[1].split()[:3] == ["removed", "APIs", "Block:"]
    assert " ".join(line_with(text, "stateful")) == ("stateful Handoff: StatefulSets with volume claims, CronJobs, "
                                                     "declared singletons")
    assert line_with(text, "singletons")[1:] == ["Deployment", "shop/order-leader"]
    assert line_with(text, "handoffs")[1:] == ["StatefulSet", "shop/search", "(hook", "move-search)"]
    assert line_with(text, "capacity")[1] == "Warn:"
    assert line_with(text, "timeout")[1] == "2m"
    assert "  Strategy: Auto, not chosen yet: InPlace when preflight finds no removed APIs,\n    no blocked stateful " \
           "workloads" in text
    assert "Phase:" not in text, "a file without status has no phase"


def test_get_leaves_preflight_out_for_an_upgrade_past_it_without_a_record() -> None:
    obj, events, now = recorded("recorded-completed")
    assert "Preflight:" not in view.render(obj, events=events, now=now)
    obj, events, now = recorded("recorded-syncing-retrying")
    pending = copy.deepcopy(obj)
    pending["status"] = {"phase": "Pending"}
    assert "preflight has not run yet" in view.render(pending, events=events, now=now)


# --- strategies -------------------------------------------------------------------------------


def test_auto_before_its_choice_plans_both_ways() -> None:
    manifest = yaml.safe_load((ROOT / "examples" / "clusterupgrade-capi.yaml").read_text())
    manifest["spec"]["strategy"] = "Auto"
    text = plan_of(manifest)
    lines = text.splitlines()
    in_place, blue_green = lines.index("If Auto chooses InPlace:"), lines.index("If Auto chooses BlueGreen:")
    assert in_place < blue_green
    assert any("raise prod-blue one minor at a time from blue's version" in line for line in lines[in_place:blue_green])
    assert any("step 1/7: setWeight 5" in line for line in lines[blue_green:])
    assert [line.split(",")[0] for line in lines if line.startswith("Total minimum")] == [
        "Total minimum: 0s", "Total minimum: 24h25m"]


def test_once_auto_chose_in_place_only_that_plan_is_shown() -> None:
    text = planned("auto-in-place")
    assert text.splitlines()[0] == "Plan for clusterupgrade fleet/prod-to-1-31: prod-blue in place at 1.31 (capi, Auto)"
    assert "If Auto chooses" not in text and "setWeight" not in text
    assert "  Strategy: InPlace (chosen by Auto)" in text
    assert "  Path:     1.30 -> 1.31, one minor at a time" in text.splitlines()


def test_an_in_place_spec_has_no_traffic_and_plans_each_minor_with_the_steps_after_it() -> None:
    manifest = in_place_spec()
    manifest["status"] = {"phase": "Preflight", "blue": {"name": "prod-blue", "version": "v1.28.9"}}
    text = plan_of(manifest)
    actions = [" ".join(line.split()[2:]) for line in text.splitlines() if line.startswith("Upgrading")]
    assert actions == [
        "minor 1/3: raise prod-blue to 1.29 via capi", "after 1.29: analysis count 3", "after 1.29: pause 10m",
        "minor 2/3: raise prod-blue to 1.30 via capi", "after 1.30: analysis count 3", "after 1.30: pause 10m",
        "minor 3/3: raise prod-blue to 1.31 via capi", "after 1.31: analysis count 3", "after 1.31: pause 10m",
    ]
    analysis = next(line for line in text.splitlines() if "after 1.29: analysis" in line)
    assert analysis.split()[1] == "2m30s", "initialDelay 30s, then 3 measurements a minute apart"
    # 3 x (2m30s + 10m); the rollouts are the provider's
    assert "Total minimum: 37m30s, plus 3 wait(s) the world or a person decides (MINIMUM -)" in text


def test_without_blues_version_the_minors_are_not_guessed() -> None:
    text = plan_of(in_place_spec())
    assert "Upgrading - raise prod-blue one minor at a time from blue's version (read at preflight) to 1.31 " \
           "each as long as capi takes; fails after 60m" in " ".join(text.split())
    assert "after each minor: analysis count 3" in text


@pytest.mark.parametrize(("progress", "states"), [
    ({"index": 1, "rolledOut": False}, ["done", "done", "done", "> rolling out", "", "", "", "", ""]),
    ({"index": 1, "rolledOut": True, "step": 1}, ["done", "done", "done", "rolled out", "done", "> current",
                                                  "", "", ""]),
    ({"index": 2, "rolledOut": True, "step": 0}, ["done"] * 6 + ["rolled out", "> current", ""]),
])
def test_the_in_place_plan_marks_how_far_it_is(progress: dict[str, Any], states: list[str]) -> None:
    manifest = in_place_spec()
    path = ["1.29", "1.30", "1.31"]
    manifest["status"] = {"phase": "Upgrading", "blue": {"name": "prod-blue", "version": "v1.29.3"},
                          "preflight": {"scannedAt": "2026-11-23T09:00:00Z", "path": path,
                                        "strategy": {"chosen": "InPlace", "reasons": ["the spec asks for InPlace"]}},
                          "inPlace": {"path": path, **progress}}
    lines = plan_of(manifest).splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["PHASE", "MINIMUM", "STATE", "ACTION"])
    state_at = lines[header].index("STATE")
    action_at = lines[header].index("ACTION")
    found = [line[state_at:action_at].strip() for line in lines if line.startswith("Upgrading")]
    assert found == states
    assert all(line[state_at:action_at].strip() == "done" for line in lines if line.startswith("Preflight  "))


def test_get_shows_the_in_place_path_instead_of_traffic_steps() -> None:
    obj, events, now = recorded("auto-in-place")
    text = view.render(obj, events=events, now=now)
    assert line_with(text, "Phase:")[1] == "Upgrading"
    assert line_with(text, "Clusters:")[1:] == ["prod-blue", "(v1.31.0),", "in", "place", "to", "1.31"]
    progress = section(text, "In place:").splitlines()
    assert progress[0] == "In place:  minor 1 of 1 (1.31), rolled out since 3m ago"
    assert progress[1].split() == ["1", "raise", "to", "1.31", "rolled", "out"]
    assert progress[2].split() == [">", "analysis", "count", "3", "current"]
    assert progress[3].split() == ["pause", "10m"]
    assert "Steps:" not in text and "Weights:" not in text, "in place no traffic moves"
    # the analysis step after the minor counts its streak like a traffic step's
    assert " ".join(line_with(text, "error-rate")).endswith("2/3 in a row")


def test_upgrading_is_coloured_and_an_in_place_spec_without_status_renders() -> None:
    obj, events, now = recorded("auto-in-place")
    coloured = view.render(obj, events=events, now=now, style=Style(enabled=True))
    assert "\x1b[34mUpgrading\x1b[0m" in coloured
    manifest = in_place_spec()
    text = view.render(manifest, now=now)
    assert "In place:  to 1.31, one minor at a time; the path is known once preflight has run" in text
    assert "  Strategy: InPlace (as the spec asks)" in text


# --- hooks ------------------------------------------------------------------------------------


def test_hooks_are_planned_at_their_points_with_their_state() -> None:
    lines = planned("promoted-hooks").splitlines()
    phases = [(line.split()[0], i) for i, line in enumerate(lines) if line and line.split()[0] in (
        "Verifying", "Shifting", "Promoted", "Retiring")]
    hook_rows = {line.split()[3]: i for i, line in enumerate(lines) if line.split()[2:3] == ["hook"]}
    last_verifying = max(i for phase, i in phases if phase == "Verifying")
    first_shifting = min(i for phase, i in phases if phase == "Shifting")
    assert hook_rows["move-search"] == last_verifying < first_shifting, "BeforeTraffic: before the first weight"
    assert hook_rows["warm-caches"] == min(i for phase, i in phases if phase == "Promoted")
    assert hook_rows["final-backup"] == min(i for phase, i in phases if phase == "Retiring")
    assert " ".join(lines[hook_rows["move-search"]].split()[2:]) == (
        "hook move-search (BeforeTraffic): hand off StatefulSet shop/search: blue's to")
    assert lines[hook_rows["move-search"] + 1].strip() == "0, then green's to 3 replica(s)"
    assert lines[hook_rows["move-search"] + 2].strip() == (
        "Succeeded: shop/search: blue 0 replicas, green 3/3 ready; fails after 10m")
    assert lines[hook_rows["warm-caches"] + 1].strip() == "Running: Job ops/warm-caches-1 running; fails after 10m"
    assert lines[hook_rows["final-backup"] + 1].strip() == "fails after 10m", "not run yet: no state"
    assert lines[hook_rows["final-backup"]].split()[5:] == ["Job", "in", "blue", "prod-blue", "(namespace", "ops)"]


def test_get_lists_each_hook_with_its_state_and_message() -> None:
    obj, events, now = recorded("promoted-hooks")
    hooks = section(view.render(obj, events=events, now=now), "Hooks:").splitlines()
    assert hooks[1].split() == ["HOOK", "AT", "STATE", "WHEN", "DOES"]
    assert hooks[2].split() == ["move-search", "BeforeTraffic", "Succeeded", "12m", "ago", "handoff", "StatefulSet",
                                "shop/search"]
    assert hooks[3].strip() == "shop/search: blue 0 replicas, green 3/3 ready"
    assert hooks[4].split()[:4] == ["warm-caches", "AfterPromotion", "Running", "115s"]
    assert hooks[6].split() == ["final-backup", "BeforeRetire", "not", "run", "yet", "-", "Job", "in", "blue"]


def test_a_failed_hook_is_red() -> None:
    obj, events, now = recorded("promoted-hooks")
    obj = copy.deepcopy(obj)
    obj["status"]["hooks"][1].update({"phase": "Failed", "message": "Job ops/warm-caches-1 failed: exit 1"})
    text = view.render(obj, events=events, now=now, style=Style(enabled=True))
    assert "\x1b[31mFailed\x1b[0m" in text


# --- width ------------------------------------------------------------------------------------


EXAMPLES = clusterupgrade_examples()


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_every_example_plans_within_100_columns(path: pathlib.Path) -> None:
    for document in planview.read_documents(path.read_text(), source=str(path)):
        for line in planview.render_plan(document).splitlines():
            assert len(line) <= 100, line


@pytest.mark.parametrize("name", NEW)
def test_new_sections_keep_within_100_columns(name: str) -> None:
    obj, events, now = recorded(name)
    assert all(len(line) <= 100 for line in plan_of(obj, now=now).splitlines())
    text = view.render(obj, events=events, now=now)
    for title in ("Preflight:", "In place:", "Hooks:"):
        if title in text:
            assert all(len(line) <= 100 for line in section(text, title).splitlines()), title


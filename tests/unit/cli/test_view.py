"""``kubectl bluegreen get`` rendered from recorded statuses, and never broken by a partial one.

``statuses/recorded-*.json`` are objects and their Events as real operator
runs against the emulated world left them (at a human pause with analysis
running, completed, and retrying a failing action); the others are statuses
written the way the engine writes them (Shifting with analysis, an
inconclusive hold, a rollback, a NodePools rotation held by a budget), with
their Events.
"""

from __future__ import annotations

import copy
import datetime
import json
import pathlib
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bluegreen.api.status import parse_status
from bluegreen.cli import view
from bluegreen.cli.text import Style, parse_time

STATUSES = pathlib.Path(__file__).parent / "statuses"


def recorded(name: str) -> tuple[dict[str, Any], list[dict[str, Any]], datetime.datetime]:
    data = json.loads((STATUSES / f"{name}.json").read_text())
    now = parse_time(data["now"])
    assert now is not None
    return data["object"], data["events"], now


def rendered(name: str) -> str:
    obj, events, now = recorded(name)
    return view.render(obj, events=events, now=now)


def line_with(text: str, start: str) -> list[str]:
    """The whitespace-separated cells of the first line starting (after indentation) with ``start``."""
    found = next((line for line in text.splitlines() if line.strip().startswith(start)), None)
    assert found is not None, f"no line starting with {start!r} in:\n{text}"
    return found.split()


def section(text: str, title: str) -> str:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")), len(lines))
    return "\n".join(lines[start:end])


ALL = ["shifting-analysis", "rolled-back", "held-inconclusive", "recorded-paused", "recorded-completed",
       "recorded-syncing-retrying", "blocked-findings", "auto-in-place", "promoted-hooks", "nodepools-draining"]


@pytest.mark.parametrize("name", ALL)
def test_every_fixture_is_a_status_the_operator_can_write(name: str) -> None:
    obj, _, _ = recorded(name)
    parse_status(obj["status"])  # a fixture the model refuses would test the fallback, not the view


def test_shifting_shows_phase_the_current_step_and_each_router() -> None:
    text = rendered("shifting-analysis")
    assert line_with(text, "Phase:")[1:] == ["Shifting", "for", "6m38s"]
    assert line_with(text, "Age:")[1] == "46m"
    steps = section(text, "Steps:")
    assert line_with(steps, ">") == [">", "4", "analysis", "10m", "current,", "for", "3m30s"]
    assert line_with(steps, "3")[-1] == "done" and line_with(steps, "5") == ["5", "setWeight", "50"]
    assert line_with(steps, "2")[:4] == ["2", "analysis", "count", "3"]
    assert line_with(steps, "6")[:4] == ["6", "pause", "until", "promoted"]
    assert line_with(text, "Weights:")[1:] == ["blue", "75%", "green", "25%", "verified"]
    assert line_with(text, "edge") == ["edge", "haproxy", "75%", "25%", "verified", "3m30s", "ago"]
    # the webhook router has no readURL: its journal entries say unverified
    assert line_with(text, "f5") == ["f5", "webhook", "75%", "25%", "unverified", "3m29s", "ago"]


def test_metrics_show_value_threshold_verdict_and_counts() -> None:
    text = rendered("shifting-analysis")
    assert " ".join(line_with(text, "Analysis:")) == "Analysis: run 2 (counts restarted by retry)"
    assert line_with(text, "error-rate") == ["error-rate", "0.0021", "<=", "0.01", "ok", "(7", "ok,", "0", "failed,",
                                             "0", "inconclusive)"]
    assert line_with(text, "green-probe")[:4] == ["green-probe", "1", ">=", "0.99"]
    comparative = " ".join(line_with(text, "latency-vs-blue"))
    assert "1.08 (ratio of green 0.135 to blue 0.125) <= 1.3 ok (6 ok, 1 failed, 0 inconclusive)" in comparative


def test_at_a_counted_analysis_step_the_streak_is_shown() -> None:
    obj, events, now = recorded("shifting-analysis")
    obj = copy.deepcopy(obj)
    obj["status"]["step"]["index"] = 1  # analysis {count: 3}
    text = view.render(obj, events=events, now=now)
    assert " ".join(line_with(text, "error-rate")).endswith("(7 ok, 0 failed, 0 inconclusive), 2/3 in a row")
    duration_step = " ".join(line_with(rendered("shifting-analysis"), "error-rate"))
    assert duration_step.endswith("inconclusive)"), "a duration step needs no streak"


def test_webhooks_and_jobs_show_their_latest_result() -> None:
    text = rendered("shifting-analysis")
    assert line_with(text, "load-test") == ["load-test", "pre-rollout", "ok", "8m", "ago", "200", "OK:", "2000",
                                            "requests,", "0", "errors"]
    assert line_with(text, "product-owner")[1:] == ["confirm-promotion", "-", "-", "not", "run", "yet"]
    assert line_with(text, "smoke")[:6] == ["smoke", "green,", "at", "Verifying", "ok", "6m42s"]


def test_a_rollback_marks_where_it_stopped_and_the_failed_metric() -> None:
    text = rendered("rolled-back")
    assert line_with(text, "Phase:")[1] == "RolledBack"
    assert " ".join(line_with(section(text, "Steps:"), ">")) == "> 4 analysis 10m rolled back from here"
    assert line_with(text, "latency-vs-blue")[1] == "1.62"
    assert "failed (6 ok, 2 failed, 0 inconclusive)" in " ".join(line_with(text, "latency-vs-blue"))
    # the latest setWeights of each router, after the failed attempt in between
    assert line_with(text, "f5")[:5] == ["f5", "webhook", "100%", "0%", "unverified"]
    conditions = section(text, "Conditions:")
    assert line_with(conditions, "AnalysisPassing")[:3] == ["AnalysisPassing", "False", "AnalysisFailed"]
    events = section(text, "Events:")
    assert "RetryingAfterError (x3)" in events
    assert events.splitlines()[-1].split()[:3] == ["7m30s", "Warning", "RolledBack"], "newest last"


def test_an_inconclusive_hold_says_why_and_who_moves_next() -> None:
    text = rendered("held-inconclusive")
    assert line_with(text, "Held:")[1:3] == ["green-probe", "inconclusive"]
    assert " ".join(line_with(section(text, "Steps:"), ">")).endswith(
        "held by analysis: kubectl bluegreen promote prod-to-1-31 -n fleet to accept, or abort")
    assert line_with(text, "green-probe")[1:5] == ["-", ">=", "0.99", "inconclusive"]


def test_a_recorded_status_before_shifting_marks_no_step() -> None:
    text = rendered("recorded-syncing-retrying")
    assert line_with(text, "Phase:")[1] == "Syncing"
    assert line_with(text, "Retrying:")[1] == "1024"
    assert not any(line.lstrip().startswith(">") for line in section(text, "Steps:").splitlines())
    assert line_with(text, "edge")[2:] == ["-", "-", "not", "changed", "yet", "-"]
    assert line_with(text, "WorkloadsInSync")[:3] == ["WorkloadsInSync", "False", "NotInSync"]


def test_a_recorded_human_pause_says_who_moves_next_and_what_analysis_measured() -> None:
    text = rendered("recorded-paused")
    assert line_with(text, "Phase:")[1:] == ["Paused", "for", "3s"]
    assert " ".join(line_with(section(text, "Steps:"), ">")) == (
        "> 7 pause until promoted waiting: kubectl bluegreen promote prod-to-1-31 -n fleet")
    assert [line_with(section(text, "Steps:"), str(n))[-1] for n in range(1, 7)] == ["done"] * 6
    assert line_with(text, "edge") == ["edge", "haproxy", "50%", "50%", "verified", "6s", "ago"]
    assert line_with(text, "error-rate") == ["error-rate", "0", "<=", "0.05", "ok", "(6", "ok,", "0", "failed,", "0",
                                             "inconclusive)"]
    assert line_with(text, "green-answers")[:5] == ["green-answers", "1", ">=", "0.95", "ok"]


def test_a_recorded_completed_upgrade_shows_every_step_done_and_blue_retired() -> None:
    text = rendered("recorded-completed")
    assert line_with(text, "Steps:")[1:] == ["all", "8", "done"]
    assert line_with(text, "Promoted:")[1:] == ["17s", "ago;", "rollback", "window", "15s"]
    edge = " ".join(line_with(text, "edge"))
    assert edge.startswith("edge haproxy 0% 100% verified 17s ago finalize 2s ago:")
    assert line_with(text, "BlueRetired")[:3] == ["BlueRetired", "True", "Deleted"]
    assert section(text, "Events:").splitlines()[-1].split()[2] == "Completed"


def test_spec_paused_before_shifting_marks_no_step() -> None:
    obj, events, now = recorded("recorded-syncing-retrying")
    obj = copy.deepcopy(obj)
    obj["spec"]["paused"] = True
    obj["status"].update({"phase": "Paused", "heldPhase": "Syncing"})
    text = view.render(obj, events=events, now=now)
    assert line_with(text, "Steps:")[1:] == ["5,", "none", "started", "yet"]
    assert not any(line.lstrip().startswith(">") for line in section(text, "Steps:").splitlines())
    assert "spec.paused is true (kubectl bluegreen resume)" in text


def test_events_of_one_second_keep_the_order_they_were_posted_in() -> None:
    obj, events, now = recorded("shifting-analysis")
    text = view.render(obj, events=list(reversed(events)), now=now)
    reasons = [line.split()[2] for line in section(text, "Events:").splitlines()[2:]]
    assert reasons[-3:] == ["AnalysisStepPassed", "StepCompleted", "TrafficWeightUpdated"]


def test_only_the_latest_events_are_shown() -> None:
    obj, events, now = recorded("rolled-back")
    text = view.render(obj, events=events, now=now)
    assert len(section(text, "Events:").splitlines()) == 2 + view.EVENTS_SHOWN
    assert "checking fleet/prod-blue" not in text


def test_colour_only_when_asked_and_alignment_survives_it() -> None:
    obj, events, now = recorded("rolled-back")
    plain = view.render(obj, events=events, now=now)
    coloured = view.render(obj, events=events, now=now, style=Style(enabled=True))
    assert "\x1b[" not in plain and "\x1b[31m" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_an_invalid_spec_is_shown_with_the_operators_problems() -> None:
    obj, events, now = recorded("shifting-analysis")
    obj = copy.deepcopy(obj)
    obj["spec"]["traffic"]["steps"][0] = {"setWeight": 500}
    text = view.render(obj, events=events, now=now)
    assert "Spec:      invalid" in text
    assert "spec.traffic.steps[0].setWeight: 500 is above the maximum; use at most 100" in text
    assert line_with(text, "Phase:")[1] == "Shifting", "the status is still shown"
    assert line_with(text, "f5")[:4] == ["f5", "-", "75%", "25%"], "routers come from the journal then"


def test_status_parts_of_another_version_are_named_not_fatal() -> None:
    obj, events, now = recorded("shifting-analysis")
    obj = copy.deepcopy(obj)
    obj["status"]["journal"][1]["weights"] = {"blue": "lots"}
    obj["status"]["weights"] = "fifty-fifty"
    obj["status"]["analysis"]["results"][0]["phase"] = "Maybe"
    text = view.render(obj, events=events, now=now)
    assert line_with(text, "Phase:")[1] == "Shifting"
    last = text.splitlines()[-1]
    assert "status.weights" in last and "status.journal[1]" in last and "status.analysis.results[0]" in last
    assert line_with(text, "change-window")[2:] == ["-", "-", "not", "run", "yet"]


# --- robustness ---------------------------------------------------------------------------------

junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def mutate(status: dict[str, Any], path: tuple[Any, ...], how: str, value: Any) -> None:
    node: Any = status
    for part in path[:-1]:
        node = node[part]
    if how == "drop":
        del node[path[-1]]
    else:
        node[path[-1]] = value


FULL = [recorded(name) for name in ALL]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(range(len(FULL))), st.data())
def test_any_partial_or_damaged_status_still_renders(which: int, data: st.DataObject) -> None:
    obj, events, now = FULL[which]
    obj = copy.deepcopy(obj)
    status = obj["status"]
    for _ in range(data.draw(st.integers(min_value=1, max_value=6))):
        candidates = paths(status)
        if not candidates:
            break
        path = data.draw(st.sampled_from(candidates))
        mutate(status, path, data.draw(st.sampled_from(["drop", "replace"])), data.draw(junk))
    damaged_events = data.draw(st.lists(st.one_of(st.sampled_from(events), st.dictionaries(
        st.sampled_from(["type", "reason", "message", "count", "lastTimestamp", "metadata"]), junk)), max_size=4))
    text = view.render(obj, events=damaged_events, now=now)
    assert text.startswith(f"Name:      fleet/{obj['metadata']['name']}\n")
    phase = status.get("phase")
    if phase in ("Shifting", "RolledBack", "Paused", "Syncing", "Completed", "Blocked", "Upgrading", "Promoted",
                 "Rotating"):
        assert line_with(text, "Phase:")[1] == phase


@settings(max_examples=100, deadline=None)
@given(junk)
def test_a_status_that_is_not_a_mapping_renders_as_new(status: Any) -> None:
    obj, events, now = FULL[0]
    obj = {**obj, "status": status}
    text = view.render(obj, events=events, now=now)
    assert line_with(text, "Phase:")[1] == "Pending"

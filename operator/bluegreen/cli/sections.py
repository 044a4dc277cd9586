"""Parts both ``get`` and ``plan`` show: the preflight's findings and choice, the in-place path, the hooks.

Shared so the two commands say the same thing the same way. Pure, like the
views: spec and status in, lines out. A status not written yet (``plan -f``
of a file, an upgrade the operator has not reached) shows what the spec asks
for instead, and says that preflight has not run.

Lines stay within :data:`WIDTH` columns for the usual names: the long free
text (a finding's file, a workload's reason) goes last or on a line of its own.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from bluegreen.api import spec as api
from bluegreen.api import versions
from bluegreen.api.durations import format_duration
from bluegreen.api.status import (
    CapacityVerdict,
    ClusterUpgradeStatus,
    FindingStatus,
    HookPhase,
    HookStatus,
    InPlaceStatus,
    Phase,
    PreflightStatus,
    StatefulStatus,
)
from bluegreen.cli.text import Style, age, one_line, table, wrap
from bluegreen.engine.plan import ZERO, PlannedAction

WIDTH = 100
HOOK_COLOURS = {HookPhase.SUCCEEDED: "green", HookPhase.RUNNING: None, HookPhase.FAILED: "red",
                HookPhase.REVERTING: "yellow", HookPhase.REVERTED: "yellow"}
_CAPACITY_COLOURS = {CapacityVerdict.ENOUGH: "green", CapacityVerdict.TOO_SMALL: "red",
                     CapacityVerdict.UNKNOWN: "yellow"}
_AUTO_RULE = ("InPlace when preflight finds no removed APIs,\n"
              "no blocked stateful workloads and the jump is one minor; otherwise BlueGreen")


def when(moment: datetime.datetime | None, *, now: datetime.datetime | None) -> str:
    """``3m ago`` with a clock; the UTC time without one (a plan printed from a file)."""
    if moment is None:
        return "-"
    if now is None:
        return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{age(now - moment)} ago"


# --- the strategy actually run --------------------------------------------------------------


def chosen_strategy(spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus | None) -> api.Strategy | None:
    """The strategy the upgrade runs with; None while Auto has not chosen yet."""
    if spec.strategy != api.Strategy.AUTO:
        return spec.strategy
    choice = status.preflight.strategy if status is not None else None
    if choice is not None:
        try:
            return api.Strategy(choice.chosen)
        except ValueError:
            return None  # a strategy this plugin does not know: shown as text, not planned
    if status is not None and status.in_place is not None:
        return api.Strategy.IN_PLACE
    return None


def runs_in_place(spec: api.ClusterUpgradeSpec | None, status: ClusterUpgradeStatus) -> bool:
    if status.in_place is not None or status.phase == Phase.UPGRADING or status.held_phase == Phase.UPGRADING:
        return True
    return spec is not None and chosen_strategy(spec, status) == api.Strategy.IN_PLACE


def minors(spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus | None) -> list[str]:
    """The minors an in-place upgrade goes through, from what status knows; [] while blue's version is unknown."""
    if status is not None:
        if status.in_place is not None and status.in_place.path:
            return list(status.in_place.path)
        if status.preflight.path:
            return list(status.preflight.path)
        blue = status.blue.version if status.blue else None
        if blue:
            try:
                current, target = versions.parse_version(blue), versions.parse_version(spec.target.kubernetes_version)
            except ValueError:
                return []
            if current.major == target.major and current.minor < target.minor:
                return [f"{current.major}.{minor}" for minor in range(current.minor + 1, target.minor + 1)]
    return []


# --- preflight --------------------------------------------------------------------------------


def preflight(
    spec: api.ClusterUpgradeSpec | None, status: ClusterUpgradeStatus | None, *, style: Style,
    now: datetime.datetime | None, limit: int | None = None, asked: bool = True,
) -> list[str]:
    """The ``Preflight:`` section: what was found and chosen, or what the spec asks while it has not run.

    ``limit`` caps the rows of each list (``get`` keeps its view short; ``plan`` shows all status holds);
    ``asked`` False leaves the section out when nothing was recorded (an upgrade past preflight, written by
    an operator older than status.preflight).
    """
    found = status.preflight if status is not None else PreflightStatus()
    if found.scanned_at is None and found.strategy is None and not found.problems:
        return _preflight_asked(spec, status, style=style) if asked else []
    lines = ["", f"Preflight: scanned {when(found.scanned_at, now=now)}" if found.scanned_at else "Preflight:"]
    policies = spec.preflight if spec is not None else None
    pools_only = _pools_only(spec, found)
    if not pools_only:
        lines += _findings(found, policy=policies.removed_apis if policies else None, style=style, limit=limit)
        lines += _stateful(found, policy=policies.stateful if policies else None, style=style, limit=limit)
    if found.problems:
        lines.append(style.paint(f"  Problems: {len(found.problems)} (a scan that could not be done counts as a "
                                 "finding)", "yellow"))
        for problem in found.problems:
            lines += wrap(f"- {one_line(problem)}", width=WIDTH, indent=4)
    if not pools_only:
        lines += _capacity(found, policy=policies.capacity if policies else None, style=style)
    lines += _strategy(spec, status, style=style)
    return lines


def _pools_only(spec: api.ClusterUpgradeSpec | None, found: PreflightStatus) -> bool:
    """NodePools scans nothing (the version and the workloads stay): its preflight only finds the pools."""
    if spec is not None:
        return spec.strategy == api.Strategy.NODE_POOLS
    return found.strategy is not None and found.strategy.chosen == api.Strategy.NODE_POOLS.value


def _preflight_asked(
    spec: api.ClusterUpgradeSpec | None, status: ClusterUpgradeStatus | None, *, style: Style,
) -> list[str]:
    if spec is None:
        return ["", "Preflight: preflight has not run yet"]
    if spec.strategy == api.Strategy.NODE_POOLS:
        return _pools_asked(spec, status, style=style)
    lines = ["", "Preflight: preflight has not run yet (it scans blue once blue is ready); the spec asks for:"]
    asked = spec.preflight
    where = "live on blue and in Flux's sources" if asked.scan_sources else "live on blue only"
    rows = [
        ["removed APIs", f"{asked.removed_apis.value}: APIs {spec.target.kubernetes_version} no longer serves, "
                         f"{where}"],
        ["stateful", f"{asked.stateful.value}: StatefulSets with volume claims, CronJobs, declared singletons"],
    ]
    if asked.singletons:
        named = ", ".join(f"{ref.kind.value} {ref.namespace}/{ref.name}" for ref in asked.singletons)
        rows.append(["singletons", named])
    handoffs = [hook for hook in spec.hooks if hook.handoff is not None]
    if handoffs:
        rows.append(["handoffs", ", ".join(f"{_handoff_target(hook)} (hook {hook.name})" for hook in handoffs)])
    rows.append(["capacity", asked.capacity.value + ("" if asked.capacity == api.CapacityPolicy.OFF
                                                      else ": green's nodes against blue's allocatable and requests")])
    rows.append(["timeout", asked.timeout])
    lines += table(rows, width=WIDTH)
    return lines + _strategy(spec, status, style=style)


def _pools_asked(
    spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus | None, *, style: Style,
) -> list[str]:
    provider = spec.cluster.provider.value
    rows = [["pools", "each of " + ", ".join(pool.name for pool in spec.pools.pools) + " has one live entry "
                      "(<pool>, <pool>-blue or <pool>-green with replicas)"],
            ["provider", f"{provider} can make each new pool at {spec.target.kubernetes_version}"],
            ["scans", "none: the cluster's version and its workloads stay as they are"]]
    lines = ["", "Preflight: preflight has not run yet (once the cluster is ready); it checks:"]
    return lines + table(rows, width=WIDTH) + _strategy(spec, status, style=style)


def _findings(
    found: PreflightStatus, *, policy: api.RemovedAPIsPolicy | None, style: Style, limit: int | None,
) -> list[str]:
    total = max(found.findings_total, len(found.findings))
    if not total:
        return ["  Removed APIs: none found"]
    effect = {api.RemovedAPIsPolicy.BLOCK: "Block: the upgrade stops until they are fixed",
              api.RemovedAPIsPolicy.WARN: "Warn: listed, the upgrade goes on"}.get(policy) if policy else None
    title = f"  Removed APIs: {total} found" + (f"; removedAPIs {effect}" if effect else "")
    lines = [style.paint(title, "red" if policy == api.RemovedAPIsPolicy.BLOCK else "yellow")]
    # Grouped by where they were seen: one file often holds many, and the path is the longest part.
    groups: dict[str, list[FindingStatus]] = {}
    shown = found.findings[:limit]
    for finding in shown:
        groups.setdefault(finding.where, []).append(finding)
    ordered = [finding for group in groups.values() for finding in group]
    rows = [[finding.kind, _object(finding.namespace, finding.name), finding.api_version, finding.removed_in,
             _replacement(finding)] for finding in ordered]
    rendered = table(rows, header=["KIND", "OBJECT", "APIVERSION", "REMOVED", "USE"], indent=4)
    lines.append(rendered[0])
    position = 1
    for where, group in groups.items():
        lines.append(f"  {where}:")
        lines += rendered[position:position + len(group)]
        position += len(group)
    return lines + _more(total, shown=len(shown), listed=len(found.findings))


def _more(total: int, *, shown: int, listed: int) -> list[str]:
    if total <= shown:
        return []
    if shown < listed:
        return [f"    ... and {total - shown} more (kubectl bluegreen plan NAME lists the {listed} status holds)"]
    return [f"    ... and {total - shown} more (status lists the first {listed} of {total})"]


def _stateful(
    found: PreflightStatus, *, policy: api.StatefulPolicy | None, style: Style, limit: int | None,
) -> list[str]:
    total = max(found.stateful_total, len(found.stateful_workloads))
    if not total:
        return ["  Stateful workloads: none found"]
    effect = {api.StatefulPolicy.BLOCK: "Block: the upgrade stops (they cannot run on both clusters)",
              api.StatefulPolicy.WARN: "Warn: listed, the upgrade goes on",
              api.StatefulPolicy.HANDOFF: "Handoff: each needs a handoff hook"}.get(policy) if policy else None
    title = f"  Stateful workloads: {total} found" + (f"; stateful {effect}" if effect else "")
    uncovered = [workload for workload in found.stateful_workloads if not workload.handoff]
    blocking = policy == api.StatefulPolicy.BLOCK or (policy == api.StatefulPolicy.HANDOFF and uncovered)
    lines = [style.paint(title, "red" if blocking else "yellow")]
    shown = found.stateful_workloads[:limit]
    rows = [_stateful_row(workload, policy=policy, style=style) for workload in shown]
    lines += table(rows, header=["KIND", "OBJECT", "HANDOFF", "REASON"], indent=4, width=WIDTH)
    return lines + _more(total, shown=len(shown), listed=len(found.stateful_workloads))


def _stateful_row(workload: StatefulStatus, *, policy: api.StatefulPolicy | None, style: Style) -> list[str]:
    if workload.handoff:
        handoff = f"hook {workload.handoff}"
    else:
        handoff = style.paint("no handoff", "red" if policy == api.StatefulPolicy.HANDOFF else None)
    return [workload.kind, _object(workload.namespace, workload.name), handoff, one_line(workload.reason)]


def _capacity(found: PreflightStatus, *, policy: api.CapacityPolicy | None, style: Style) -> list[str]:
    if found.capacity is None:
        if policy == api.CapacityPolicy.OFF:
            return ["  Capacity: not checked (capacity Off)"]
        return ["  Capacity: not measured"]
    verdict = style.paint(found.capacity.verdict.value, _CAPACITY_COLOURS.get(found.capacity.verdict))
    suffix = f" (capacity {policy.value})" if policy is not None else ""
    # Wrapped on the plain text, so colour cannot shift the line breaks.
    plain = wrap(f"Capacity: {found.capacity.verdict.value}{suffix}: {one_line(found.capacity.message)}",
                 width=WIDTH, indent=2, hanging=4)
    return [plain[0].replace(found.capacity.verdict.value, verdict, 1), *plain[1:]]


def _strategy(spec: api.ClusterUpgradeSpec | None, status: ClusterUpgradeStatus | None, *, style: Style) -> list[str]:
    choice = status.preflight.strategy if status is not None else None
    asked = spec.strategy if spec is not None else None
    if choice is None:
        if asked is None:
            return []
        if asked == api.Strategy.AUTO:
            rule = _AUTO_RULE.splitlines()
            return [f"  Strategy: Auto, not chosen yet: {rule[0]}", *(f"    {line}" for line in rule[1:])]
        return [f"  Strategy: {asked.value} (as the spec asks)"]
    how = "chosen by Auto" if asked == api.Strategy.AUTO else "as the spec asks"
    lines = [f"  Strategy: {style.bold(choice.chosen)} ({how})"]
    for reason in choice.reasons:
        lines += wrap(f"- {one_line(reason)}", width=WIDTH, indent=4)
    path = status.preflight.path if status is not None else []
    if path:
        lines.append(f"  Path:     {' -> '.join([*_before(path[0]), *path])}, one minor at a time")
    return lines


def _before(first: str) -> list[str]:
    """The minor a path starts from: the one before its first (blue's version changes as the path is taken)."""
    try:
        version = versions.parse_version(first)
    except ValueError:
        return []
    return [f"{version.major}.{version.minor - 1}"] if version.minor > 0 else []


def _replacement(finding: FindingStatus) -> str:
    """The replacement, its group left out when it is the finding's own (the longest part of the line)."""
    group, _, _ = finding.api_version.rpartition("/")
    other, _, version = finding.replacement.rpartition("/")
    return f".../{version}" if group and other == group else finding.replacement


def _object(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _handoff_target(hook: api.Hook) -> str:
    assert hook.handoff is not None
    return f"{hook.handoff.kind.value} {hook.handoff.namespace}/{hook.handoff.name}"


# --- steps ------------------------------------------------------------------------------------


def describe_step(step: api.Step, analysis: api.Analysis) -> str:
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.pause is not None:
        return f"pause {step.pause.duration}" if step.pause.duration else "pause until promoted"
    assert step.analysis is not None
    length = step.analysis.duration or (analysis.duration if step.analysis.count is None else None)
    if length is not None:
        return f"analysis {length}"
    return f"analysis count {step.analysis.count or analysis.count or 1}"


def _step_minimum(step: api.Step, analysis: api.Analysis) -> tuple[datetime.timedelta | None, str]:
    """The least a between-minors step takes, and why."""
    if step.pause is not None:
        if step.pause.duration is None:
            return None, "waits for a person: kubectl bluegreen promote"
        return api.duration(step.pause.duration), ""
    assert step.analysis is not None
    length = step.analysis.duration or (analysis.duration if step.analysis.count is None else None)
    if length is not None:
        return api.duration(length), f"measures for {length}"
    count = step.analysis.count or analysis.count or 1
    intervals = [api.duration(analysis.metric_interval(metric)) for metric in analysis.metrics]
    if analysis.hooks(api.WebhookType.ROLLOUT):
        intervals.append(api.duration(analysis.interval))
    slowest = max(intervals, default=ZERO)
    # The first measurement comes initialDelay after the minor is rolled out, then one per interval.
    least = api.duration(analysis.initial_delay) + slowest * (count - 1)
    return least, f"{count} passing measurement(s) in a row, slowest every {format_duration(slowest)}"


# --- in place ---------------------------------------------------------------------------------


def in_place_plan(
    spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus | None,
) -> list[tuple[PlannedAction, str]]:
    """Every action of an in-place upgrade with its state from status.inPlace ("" when not reached)."""
    provider = spec.cluster.provider.value
    target = spec.target.kubernetes_version
    path = minors(spec, status)
    progress = status.in_place if status is not None else None
    completed = status is not None and status.phase == Phase.COMPLETED
    started = completed or progress is not None
    blue = f"{spec.cluster.namespace}/{spec.cluster.name}"
    preflight_state = "done" if started else ""
    actions: list[tuple[PlannedAction, str]] = []
    if spec.paused and not started:
        actions.append((PlannedAction(Phase.PREFLIGHT, "held: spec.paused is true", None,
                                      "nothing moves until `kubectl bluegreen resume`"), ""))
    sources = " and its Flux sources" if spec.preflight.scan_sources else ""
    actions += [
        (PlannedAction(Phase.PREFLIGHT, f"check cluster {blue} ({provider}) exists, is ready and reports its "
                                        "version", ZERO), preflight_state),
        (PlannedAction(Phase.PREFLIGHT, f"scan {spec.cluster.name}{sources} for APIs {target} removes", ZERO,
                       f"removedAPIs {spec.preflight.removed_apis.value}"), preflight_state),
        (PlannedAction(Phase.PREFLIGHT, f"check the path to {target}: one minor at a time, never down, offered "
                                        f"by {provider}, worker groups within skew", ZERO), preflight_state),
    ]
    between = spec.in_place.between_minors
    if not path:
        actions.append((PlannedAction(Phase.UPGRADING, f"raise {spec.cluster.name} one minor at a time from blue's "
                                                       f"version (read at preflight) to {target}", None,
                                      f"each as long as {provider} takes; fails after {spec.in_place.timeout}"), ""))
        for step in between:
            least, note = _step_minimum(step, spec.analysis)
            actions.append((PlannedAction(Phase.UPGRADING, f"  after each minor: {describe_step(step, spec.analysis)}",
                                          least, note), ""))
    for index, minor in enumerate(path):
        label = f"minor {index + 1}/{len(path)}:"
        actions.append((PlannedAction(Phase.UPGRADING, f"{label} raise {spec.cluster.name} to {minor} via {provider}",
                                      None, f"until rolled out, as long as {provider} takes; fails after "
                                            f"{spec.in_place.timeout}"),
                        _minor_state(index, progress, completed=completed)))
        for position, step in enumerate(between):
            least, note = _step_minimum(step, spec.analysis)
            actions.append((PlannedAction(Phase.UPGRADING, f"  after {minor}: {describe_step(step, spec.analysis)}",
                                          least, note),
                            _between_state(index, position, progress, completed=completed)))
    actions.append((PlannedAction(Phase.COMPLETED, f"done: {spec.cluster.name} runs {target}", ZERO),
                    "done" if completed else ""))
    return actions


def _minor_state(index: int, progress: InPlaceStatus | None, *, completed: bool) -> str:
    if completed or (progress is not None and index < progress.index):
        return "done"
    if progress is None or index > progress.index:
        return ""
    return "rolled out" if progress.rolled_out else "> rolling out"


def _between_state(index: int, position: int, progress: InPlaceStatus | None, *, completed: bool) -> str:
    if completed or (progress is not None and index < progress.index):
        return "done"
    if progress is None or index > progress.index or not progress.rolled_out:
        return ""
    if position < progress.step:
        return "done"
    return "> current" if position == progress.step else ""


IN_PLACE_ROLLBACK = ("in place nothing rolls back: a version once rolled out stays (clusters are never downgraded); "
                     "a failed check or an abort stops before the next minor")


def in_place_progress(
    spec: api.ClusterUpgradeSpec | None, status: ClusterUpgradeStatus, *, style: Style,
    now: datetime.datetime | None,
) -> list[str]:
    """``get``'s ``In place:`` section: each minor and the betweenMinors steps after it, the current one marked."""
    progress = status.in_place
    path = minors(spec, status) if spec is not None else (list(progress.path) if progress else [])
    if not path:
        target = spec.target.kubernetes_version if spec else "the target"
        return ["", f"In place:  to {target}, one minor at a time; the path is known once preflight has run"]
    completed = status.phase == Phase.COMPLETED
    between = spec.in_place.between_minors if spec is not None else []
    if completed:
        summary = f"all {len(path)} minor(s) done"
    elif progress is None:
        summary = f"{len(path)} minor(s), none started yet"
    else:
        index = min(progress.index, len(path) - 1)
        summary = f"minor {index + 1} of {len(path)} ({path[index]}), " + (
            "rolled out" if progress.rolled_out else "rolling out")
        if progress.since is not None:
            summary += f" since {when(progress.since, now=now)}"
    rows = []
    for index, minor in enumerate(path):
        state = _minor_state(index, progress, completed=completed)
        marker = ">" if state.startswith(">") and not (progress and progress.rolled_out) else " "
        rows.append([f"{marker} {index + 1}", f"raise to {minor}", _paint_state(state.lstrip("> "), style)])
        for position, step in enumerate(between):
            state = _between_state(index, position, progress, completed=completed)
            marker = ">" if state.startswith(">") else " "
            shown = state.lstrip("> ")
            if shown == "current" and status.phase == Phase.PAUSED:
                shown = style.paint("paused", "yellow")
            rows.append([marker, f"  {describe_step(step, spec.analysis if spec else api.Analysis())}", shown])
    return ["", f"In place:  {summary}", *table(rows)]


def _paint_state(state: str, style: Style) -> str:
    return style.paint(state, "green" if state == "rolled out" else None)


# --- hooks ------------------------------------------------------------------------------------


HOOK_PHASES = {api.HookPoint.BEFORE_TRAFFIC: Phase.VERIFYING, api.HookPoint.AFTER_PROMOTION: Phase.PROMOTED,
               api.HookPoint.BEFORE_RETIRE: Phase.RETIRING}


def hook_action(spec: api.ClusterUpgradeSpec, hook: api.Hook, status: ClusterUpgradeStatus | None) -> PlannedAction:
    """One hook as a planned action, its state (from status.hooks) first in the note."""
    if hook.job is not None:
        cluster = spec.green_name if hook.cluster == api.Side.GREEN else spec.cluster.name
        what = f"Job in {hook.cluster.value} {cluster} (namespace {hook.job.namespace})"
        timeout = hook.job.timeout
    else:
        assert hook.handoff is not None
        replicas = hook.handoff.replicas or "blue's"
        what = f"hand off {_handoff_target(hook)}: blue's to 0, then green's to {replicas} replica(s)"
        timeout = hook.handoff.timeout
    note = f"fails after {timeout}"
    found = status.hook(hook.name) if status is not None else None
    if found is not None:
        note = f"{found.phase.value}" + (f": {one_line(found.message)}" if found.message else "") + f"; {note}"
    return PlannedAction(HOOK_PHASES[hook.at], f"hook {hook.name} ({hook.at.value}): {what}", None, note)


def with_hooks(
    spec: api.ClusterUpgradeSpec, actions: Sequence[PlannedAction], status: ClusterUpgradeStatus | None,
) -> list[PlannedAction]:
    """The blue/green plan with spec.hooks at their points.

    BeforeTraffic after Verifying's checks (before the first weight change), AfterPromotion at the start
    of Promoted (green at 100 %), BeforeRetire at the start of Retiring (before routers are finalized).
    A hook the plan already lists is not added twice.
    """
    result = list(actions)
    listed = " ".join(action.action for action in actions)
    for point in (api.HookPoint.BEFORE_TRAFFIC, api.HookPoint.AFTER_PROMOTION, api.HookPoint.BEFORE_RETIRE):
        hooks = [hook for hook in spec.hooks_at(point) if f"hook {hook.name} " not in listed]
        if not hooks:
            continue
        phase = HOOK_PHASES[point]
        if point == api.HookPoint.BEFORE_TRAFFIC:
            at = max((i + 1 for i, action in enumerate(result) if action.phase == phase), default=len(result))
        else:
            at = next((i for i, action in enumerate(result) if action.phase == phase), len(result))
        result[at:at] = [hook_action(spec, hook, status) for hook in hooks]
    return result


def hooks(
    spec: api.ClusterUpgradeSpec | None, status: ClusterUpgradeStatus, *, style: Style, now: datetime.datetime | None,
) -> list[str]:
    """``get``'s ``Hooks:`` section: every hook of the spec (then any only status knows) with its state."""
    listed: list[tuple[str, str, str]] = []
    if spec is not None:
        for hook in spec.hooks:
            what = (f"Job in {hook.cluster.value}" if hook.job is not None else f"handoff {_handoff_target(hook)}")
            listed.append((hook.name, hook.at.value, what))
    known = {name for name, _, _ in listed}
    listed += [(found.name, found.at, "") for found in status.hooks if found.name not in known]
    if not listed:
        return []
    rows, messages = [], []
    for name, at, what in listed:
        found: HookStatus | None = status.hook(name)
        if found is None:
            rows.append([name, at, "not run yet", "-", what])
            messages.append("")
            continue
        state = style.paint(found.phase.value, HOOK_COLOURS.get(found.phase))
        rows.append([name, at, state, when(found.finished_at or found.started_at, now=now), what])
        messages.append(one_line(found.message))
    lines = ["", "Hooks:"]
    rendered = table(rows, header=["HOOK", "AT", "STATE", "WHEN", "DOES"])
    lines.append(rendered[0])
    # The hook's own message under it: it is the longest part, and often what a person needs.
    for row, message in zip(rendered[1:], messages, strict=True):
        lines.append(row)
        if message:
            lines += wrap(message, width=WIDTH, indent=4)
    return lines


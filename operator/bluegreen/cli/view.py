"""``kubectl bluegreen get``: one ClusterUpgrade as a person reads it, from the object and its Events.

Pure: the object, its Events and the time in, text out, so the view is tested
from recorded statuses. It must never fail on what it is shown: a status being
written by an older or newer operator, one cut short, or a spec the operator
refuses. Parts of the status that do not read as the current model are left
out and named at the end instead of stopping the whole view.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from bluegreen.api import spec as api
from bluegreen.api.status import (
    CheckPhase,
    CheckResult,
    ClusterUpgradeStatus,
    JournalEntry,
    MetricState,
    Phase,
    parse_status,
)
from bluegreen.cli import rotation, sections
from bluegreen.cli.text import PLAIN, Style, age, one_line, parse_time, table

EVENTS_SHOWN = 10
PREFLIGHT_ROWS_SHOWN = 10
_PHASE_COLOURS = {
    Phase.COMPLETED: "green", Phase.PROMOTED: "green",
    Phase.PAUSED: "yellow", Phase.BLOCKED: "yellow", Phase.UPGRADING: "blue", Phase.ROTATING: "blue",
    Phase.ROLLING_BACK: "red", Phase.ROLLED_BACK: "red", Phase.FAILED: "red",
}
_CHECK_WORDS = {CheckPhase.SUCCESSFUL: ("ok", "green"), CheckPhase.FAILED: ("failed", "red"),
                CheckPhase.INCONCLUSIVE: ("inconclusive", "yellow")}
# Phases after the last step: every step is behind.
_AFTER_STEPS = frozenset({Phase.PROMOTED, Phase.RETIRING, Phase.COMPLETED})
_DURING_STEPS = frozenset({Phase.SHIFTING, Phase.ROLLING_BACK, Phase.ROLLED_BACK})


def _steps_phase(status: ClusterUpgradeStatus) -> Phase:
    """Where the steps are: a Paused upgrade is held in the phase it will resume (Shifting by default)."""
    if status.phase == Phase.PAUSED:
        return status.held_phase or Phase.SHIFTING
    return status.phase


def lenient_status(raw: object) -> tuple[ClusterUpgradeStatus, list[str]]:
    """Read a status as far as it reads: bad list items and then bad fields are dropped and named."""
    if not isinstance(raw, Mapping):
        return ClusterUpgradeStatus(), ([] if raw is None else ["status is not a mapping"])
    data: dict[str, Any] = dict(raw)
    dropped: list[str] = []
    while True:  # every round removes an item or a field, so this ends
        try:
            return parse_status(data), dropped
        except pydantic.ValidationError as exc:
            removed = _drop_first_error(data, exc.errors(include_url=False))
        if removed is None:
            return ClusterUpgradeStatus(), ["status"]
        dropped.append(removed)


def _drop_first_error(data: dict[str, Any], errors: Sequence[Any]) -> str | None:
    """Remove the list item (or else the field) the first error is about; say which, or None."""
    for error in errors:
        loc = tuple(error.get("loc") or ())
        if not loc or loc[0] not in data:
            continue
        field, value = loc[0], data[loc[0]]
        if len(loc) > 2 and isinstance(value, list) and isinstance(loc[1], int) and loc[1] < len(value):
            data[field] = value[: loc[1]] + value[loc[1] + 1:]
            return f"status.{field}[{loc[1]}]"
        if len(loc) > 3 and isinstance(value, dict) and isinstance(value.get(loc[1]), list) \
                and isinstance(loc[2], int) and loc[2] < len(value[loc[1]]):
            items = list(value[loc[1]])
            del items[loc[2]]
            data[field] = {**value, loc[1]: items}
            return f"status.{field}.{loc[1]}[{loc[2]}]"
        del data[field]
        return f"status.{field}"
    return None


def render(
    obj: Mapping[str, Any],
    *,
    events: Sequence[Mapping[str, Any]] = (),
    now: datetime.datetime,
    style: Style = PLAIN,
) -> str:
    """The whole view of one ClusterUpgrade, ending with a newline."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    status, unreadable = lenient_status(obj.get("status"))
    spec, spec_problems = _spec(obj.get("spec"))
    view = _View(now=now, style=style, namespace=namespace, name=name, status=status, spec=spec)

    lines = view.header(namespace=namespace, created=parse_time(meta.get("creationTimestamp")),
                        generation=meta.get("generation"))
    if spec_problems:
        lines += ["", style.paint("Spec:      invalid; the operator holds until it is fixed", "red")]
        lines += [f"  {problem}" for problem in spec_problems]
    lines += sections.preflight(spec, status, style=style, now=now, limit=PREFLIGHT_ROWS_SHOWN,
                                asked=status.phase in (Phase.PENDING, Phase.PREFLIGHT))
    if sections.runs_in_place(spec, status):
        lines += sections.in_place_progress(spec, status, style=style, now=now)
    elif rotation.rotates_nodes(spec, status):
        lines += rotation.progress(spec, status, style=style, now=now)
    else:
        lines += view.steps()
    lines += sections.hooks(spec, status, style=style, now=now)
    lines += view.weights()
    lines += view.analysis()
    lines += view.conditions()
    lines += view.events(events)
    if unreadable:
        lines += ["", style.paint(f"Not shown (not readable as this version's status): {', '.join(unreadable)}",
                                  "yellow")]
    return "\n".join(lines) + "\n"


def _spec(raw: object) -> tuple[api.ClusterUpgradeSpec | None, list[str]]:
    if not isinstance(raw, Mapping):
        return None, ["spec is missing"]
    try:
        return api.parse_spec(dict(raw)), []
    except api.SpecError as exc:
        return None, exc.problems


class _View:
    def __init__(self, *, now: datetime.datetime, style: Style, namespace: str, name: str,
                 status: ClusterUpgradeStatus, spec: api.ClusterUpgradeSpec | None) -> None:
        self.now = now
        self.style = style
        self.namespace = namespace
        self.name = name
        self.status = status
        self.spec = spec

    def ago(self, moment: datetime.datetime | None) -> str:
        return "-" if moment is None else age(self.now - moment)

    # --- sections ------------------------------------------------------------------------------

    def header(self, *, namespace: str, created: datetime.datetime | None, generation: object) -> list[str]:
        status, style = self.status, self.style
        phase = style.paint(status.phase.value, _PHASE_COLOURS.get(status.phase))
        since = f" for {self.ago(status.phase_since)}" if status.phase_since else ""
        lines = [
            f"Name:      {namespace}/{self.name}",
            f"Phase:     {style.bold(phase)}{since}",
        ]
        if status.message:
            lines.append(f"Message:   {one_line(status.message)}")
        lines += rotation.blocking(self.spec, status, style=style, now=self.now)
        lines.append(f"Age:       {self.ago(created)}")
        lines.append(f"Clusters:  {self._clusters()}")
        if self.spec is not None and self.spec.paused:
            lines.append(style.paint("Paused:    spec.paused is true (kubectl bluegreen resume)", "yellow"))
        if status.promoted_at is not None:
            window = f"; rollback window {self.spec.promotion.retain_blue_for}" if self.spec else ""
            lines.append(f"Promoted:  {self.ago(status.promoted_at)} ago{window}")
        if status.rolled_back_at is not None:
            lines.append(f"Rollback:  blue serves 100% again since {self.ago(status.rolled_back_at)} ago")
        if status.failures:
            lines.append(style.paint(f"Retrying:  {status.failures} failed attempt(s) of the current action",
                                     "yellow"))
        if isinstance(generation, int) and status.observed_generation is not None \
                and status.observed_generation < generation:
            lines.append(f"Observed:  generation {status.observed_generation} of {generation} (operator catching up)")
        return lines

    def _clusters(self) -> str:
        status, spec = self.status, self.spec
        if rotation.rotates_nodes(spec, status):
            return rotation.clusters(spec, status)
        if sections.runs_in_place(spec, status):
            name = status.blue.name if status.blue else (spec.cluster.name if spec else "?")
            version = f" ({status.blue.version})" if status.blue and status.blue.version else ""
            goal = f" to {spec.target.kubernetes_version}" if spec else ""
            return f"{name}{version}, in place{goal}"
        blue = status.blue.name if status.blue else (spec.cluster.name if spec else "?")
        green = status.green.name if status.green else (spec.green_name if spec else "?")
        blue_version = f" ({status.blue.version})" if status.blue and status.blue.version else ""
        target = status.green.version if status.green and status.green.version else (
            spec.target.kubernetes_version if spec else None)
        green_version = f" ({target})" if target else ""
        return f"blue {blue}{blue_version} -> green {green}{green_version}"

    def steps(self) -> list[str]:
        if self.spec is None or self.spec.traffic_spec is None:
            return []
        steps = self.spec.traffic_spec.steps
        status = self.status
        index = status.step.index
        rows = []
        phase = _steps_phase(status)
        for position, step in enumerate(steps):
            state, marker = "", " "
            if phase in _AFTER_STEPS or (phase in _DURING_STEPS and position < index):
                state = "done"
            elif phase in _DURING_STEPS and position == index:
                marker = ">"
                state = self._current_state(step)
            rows.append([f"{marker} {position + 1}", sections.describe_step(step, self.spec.analysis), state])
        lines = ["", f"Steps:     {_step_summary(status, len(steps))}"]
        return lines + table(rows)

    def _current_state(self, step: api.Step) -> str:
        phase, style = self.status.phase, self.style
        if phase == Phase.ROLLING_BACK:
            return style.paint("rolling back from here", "red")
        if phase == Phase.ROLLED_BACK:
            return style.paint("rolled back from here", "red")
        if phase == Phase.PAUSED:
            if self.status.analysis.held:
                return style.paint(f"held by analysis: kubectl bluegreen promote {self.name} -n {self.namespace} "
                                   "to accept, or abort", "yellow")
            if step.pause is not None and step.pause.duration is None and self.status.held_phase in (
                    None, Phase.SHIFTING) and not (self.spec and self.spec.paused):
                return style.paint(f"waiting: kubectl bluegreen promote {self.name} -n {self.namespace}", "yellow")
            return style.paint("paused", "yellow")
        started = self.status.step.started_at
        return f"current, for {self.ago(started)}" if started else "current"

    def weights(self) -> list[str]:
        weights = self.status.weights
        routers = self.spec.routers if self.spec else []
        applied = any(entry.action == "setWeights" for entry in self.status.journal)
        if not applied and (sections.runs_in_place(self.spec, self.status)
                            or rotation.rotates_nodes(self.spec, self.status)):
            return []  # in place, and rotating worker pools, no traffic moves
        verified = "verified" if weights.verified else self.style.paint("not verified", "yellow")
        lines = ["", f"Weights:   blue {weights.blue}%  green {weights.green}%  {verified}"]
        names = [router.display_name for router in routers]
        kinds = {router.display_name: router.kind for router in routers}
        for entry in self.status.journal:
            if entry.action == "setWeights" and entry.target not in names:
                names.append(entry.target)
        rows = [self._router_row(router, kinds.get(router, "-")) for router in names]
        if rows:
            header = ["ROUTER", "KIND", "BLUE", "GREEN", "STATE", "CHANGED"]
            if any(len(row) > len(header) for row in rows):
                header.append("LAST")
            lines += table(rows, header=header)
        return lines

    def _router_row(self, router: str, kind: str) -> list[str]:
        entries = [entry for entry in self.status.journal if entry.target == router]
        applied = _latest(entry for entry in entries if entry.action == "setWeights")
        if applied is None or applied.weights is None:
            row = [router, kind, "-", "-", "not changed yet", "-"]
        else:
            state = "verified" if applied.weights.verified else self.style.paint("unverified", "yellow")
            row = [router, kind, f"{applied.weights.blue}%", f"{applied.weights.green}%", state,
                   f"{self.ago(applied.time)} ago"]
        later = _latest(entry for entry in entries if entry is not applied
                        and (applied is None or entry.time >= applied.time))
        if later is not None:
            colour = "red" if "failed" in later.action else None
            text = one_line(f"{later.action} {self.ago(later.time)} ago: {later.detail}".rstrip(": "))
            row.append(self.style.paint(text, colour))
        return row

    def analysis(self) -> list[str]:
        analysis = self.status.analysis
        spec_analysis = self.spec.analysis if self.spec else None
        metric_names = [metric.name for metric in spec_analysis.metrics] if spec_analysis else []
        metric_names += [m.name for m in analysis.metrics if m.name not in metric_names]
        metric_names += [r.name for r in analysis.results if r.kind == "metric" and r.name not in metric_names]
        hook_names = [(hook.name, hook.type.value) for hook in spec_analysis.webhooks] if spec_analysis else []
        hook_names += [(r.name, "") for r in analysis.results
                       if r.kind == "webhook" and r.name not in {name for name, _ in hook_names}]
        job_names = [(job.name, f"{job.cluster.value}, at {job.at.value}") for job in spec_analysis.jobs] \
            if spec_analysis else []
        job_names += [(r.name, "") for r in analysis.results
                      if r.kind == "job" and r.name not in {name for name, _ in job_names}]
        if not (metric_names or hook_names or job_names or analysis.held):
            return []
        # Counts are of the current run; each bluegreen.io/retry starts a new one.
        lines = ["", f"Analysis:  run {analysis.run + 1} (counts restarted by retry)" if analysis.run else "Analysis:"]
        if metric_names:
            rows = [self._metric_row(name) for name in metric_names]
            lines += table(rows, header=["METRIC", "VALUE", "THRESHOLD", "LAST", "COUNTS"])
        extra: list[str] = []
        for title, names, kind in (("WEBHOOK", hook_names, "webhook"), ("JOB", job_names, "job")):
            if not names:
                continue
            rows = []
            for name, what in names:
                result = analysis.latest(name, kind)
                if result is None:
                    rows.append([name, what, "-", "-", "not run yet"])
                    continue
                word, colour = _CHECK_WORDS[result.phase]
                message_lines = result.message.splitlines() or [""]
                rows.append([name, what, self.style.paint(word, colour), f"{self.ago(result.time)} ago",
                             message_lines[0]])
                if result.phase == CheckPhase.FAILED and len(message_lines) > 1:
                    extra += [f"  {name}:"] + [f"    {line}" for line in message_lines[1:]]
            lines += table(rows, header=[title, "KIND" if kind == "webhook" else "WHERE", "RESULT", "WHEN",
                                         "MESSAGE"])
        lines += extra
        if analysis.held:
            lines.append(self.style.paint(f"  Held:    {one_line(analysis.held)}", "yellow"))
        return lines

    def _metric_row(self, name: str) -> list[str]:
        analysis = self.status.analysis
        state: MetricState | None = analysis.metric(name)
        result: CheckResult | None = analysis.latest(name, "metric")
        spec_metric = next((m for m in self.spec.analysis.metrics if m.name == name), None) if self.spec else None
        value = state.last_value if state is not None else None
        phase = state.last_phase if state is not None else None
        if result is not None and (state is None or state.last_time is None or result.time >= state.last_time):
            value, phase = result.value, result.phase
        shown = _number(value)
        if spec_metric is not None and spec_metric.comparative is not None and result is not None:
            mode = spec_metric.comparative.mode.value.lower()
            shown = f"{shown} ({mode} of green {_number(result.green_value)} to blue {_number(result.blue_value)})"
        if phase is None:
            last = "not measured yet"
        else:
            word, colour = _CHECK_WORDS[phase]
            last = self.style.paint(word, colour)
        counts = f"({state.successes} ok, {state.failures} failed, {state.inconclusive} inconclusive)" \
            if state is not None else "-"
        needed = self._count_needed()
        if state is not None and needed is not None:
            counts += f", {state.consecutive_successes}/{needed} in a row"
        threshold = _threshold(spec_metric.threshold_range) if spec_metric is not None else "-"
        return [name, shown, threshold, last, counts]

    def _count_needed(self) -> int | None:
        """At an analysis step that counts measurements in a row: how many it needs."""
        if self.spec is None:
            return None
        progress = self.status.in_place
        if self.status.phase == Phase.UPGRADING and progress is not None and progress.rolled_out:
            steps, index = self.spec.in_place.between_minors, progress.step
        elif self.status.phase == Phase.SHIFTING and self.spec.traffic_spec is not None:
            steps, index = self.spec.traffic_spec.steps, self.status.step.index
        else:
            return None
        step = steps[index].analysis if index < len(steps) else None
        if step is None or step.duration or (step.count is None and self.spec.analysis.duration):
            return None
        return step.count or self.spec.analysis.count or 1

    def conditions(self) -> list[str]:
        if not self.status.conditions:
            return []
        rows = []
        for condition in self.status.conditions:
            # Ready and Progressing are False in the normal course (working; paused, done).
            colour = "red" if condition.status == "False" and condition.type not in {"Ready", "Progressing"} else None
            rows.append([condition.type, self.style.paint(condition.status, colour), condition.reason,
                         self.ago(condition.last_transition_time), one_line(condition.message)])
        return ["", "Conditions:", *table(rows, header=["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"])]

    def events(self, events: Sequence[Mapping[str, Any]]) -> list[str]:
        if not events:
            return ["", "Events:    none"]
        # Timestamps have whole seconds; the resourceVersion orders Events of the same second.
        dated = sorted(((_event_time(event), _version(event), event) for event in events),
                       key=lambda item: (item[0] or datetime.datetime.min.replace(tzinfo=datetime.UTC), item[1]))
        rows = []
        for moment, _, event in dated[-EVENTS_SHOWN:]:
            type_ = str(event.get("type") or "")
            count = event.get("count")
            reason = str(event.get("reason") or "")
            if isinstance(count, int) and count > 1:
                reason += f" (x{count})"
            rows.append([self.ago(moment), self.style.paint(type_, "yellow" if type_ == "Warning" else None),
                         reason, one_line(str(event.get("message") or ""))])
        return ["", "Events:", *table(rows, header=["AGE", "TYPE", "REASON", "MESSAGE"])]


def _version(event: Mapping[str, Any]) -> int:
    meta = event.get("metadata") if isinstance(event.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    version = str(meta.get("resourceVersion") or "")
    return int(version) if version.isdigit() else 0


def _latest(entries: Any) -> JournalEntry | None:
    found: JournalEntry | None = None
    for entry in entries:
        if found is None or entry.time >= found.time:
            found = entry
    return found


def _step_summary(status: ClusterUpgradeStatus, total: int) -> str:
    if _steps_phase(status) in _AFTER_STEPS:
        return f"all {total} done"
    if _steps_phase(status) in _DURING_STEPS:
        return f"{min(status.step.index + 1, total)} of {total}"
    return f"{total}, none started yet"


def _threshold(threshold: api.ThresholdRange) -> str:
    if threshold.min is not None and threshold.max is not None:
        return f"{_number(threshold.min)}..{_number(threshold.max)}"
    if threshold.max is not None:
        return f"<= {_number(threshold.max)}"
    return f">= {_number(threshold.min)}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _event_time(event: Mapping[str, Any]) -> datetime.datetime | None:
    meta = event.get("metadata") if isinstance(event.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    for value in (event.get("lastTimestamp"), event.get("eventTime"), event.get("firstTimestamp"),
                  meta.get("creationTimestamp")):
        moment = parse_time(value)
        if moment is not None:
            return moment
    return None

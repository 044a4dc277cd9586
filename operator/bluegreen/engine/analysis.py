"""Analysis bookkeeping, pure: what is due, what the results add up to.

The I/O layer runs the checks the engine asks for (``RunChecks``) and folds
their results into status with :func:`record`; the engine reads the counts back
on the next pass. Counting lives here, next to the decisions that use it, so a
restarted operator judges from status alone, exactly as before the restart.

Counting rules (documented in the README):

- failures and inconclusive results of a metric add up over one analysis run
  (a run starts at Verifying and again with every ``bluegreen.io/retry``);
  reaching the metric's ``failureLimit`` rolls back, reaching its
  ``inconclusiveLimit`` holds the upgrade for a person;
- ``rollout`` webhooks count like metrics (a non-2xx answer is a failure);
- an analysis step needs ``count`` successful measurements in a row of every
  metric, counted from the step's start (or no failure for ``duration``).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from bluegreen.api.durations import parse_duration
from bluegreen.api.spec import AnalysisStep, ClusterUpgradeSpec, WebhookType
from bluegreen.api.status import (
    RESULTS_LIMIT,
    AnalysisStatus,
    CheckPhase,
    CheckResult,
    ClusterUpgradeStatus,
    MetricState,
)

WEBHOOK_STATE_PREFIX = "webhook:"  # rollout webhooks are counted like metrics, under this prefix


def counted_names(spec: ClusterUpgradeSpec) -> list[str]:
    """Everything counted toward the limits: the metrics, then the rollout webhooks."""
    analysis = spec.analysis
    return [m.name for m in analysis.metrics] + [
        WEBHOOK_STATE_PREFIX + hook.name for hook in analysis.hooks(WebhookType.ROLLOUT)
    ]


def record(
    status: ClusterUpgradeStatus, spec: ClusterUpgradeSpec, results: Sequence[CheckResult]
) -> ClusterUpgradeStatus:
    """Fold check results into status.analysis: keep the latest results, update the counts."""
    if not results:
        return status
    analysis = status.analysis
    states = {state.name: state for state in analysis.metrics}
    rollout = {hook.name for hook in spec.analysis.hooks(WebhookType.ROLLOUT)}
    for result in results:
        if result.kind == "metric":
            key = result.name
        elif result.kind == "webhook" and result.name in rollout:
            key = WEBHOOK_STATE_PREFIX + result.name
        else:
            continue
        states[key] = _count(states.get(key) or MetricState(name=key), result)
    order = {name: index for index, name in enumerate(counted_names(spec))}
    metrics = sorted(states.values(), key=lambda state: order.get(state.name, len(order)))
    updated = analysis.model_copy(update={
        "metrics": metrics,
        "results": (list(analysis.results) + list(results))[-RESULTS_LIMIT:],
    })
    return status.model_copy(update={"analysis": updated})


def _count(state: MetricState, result: CheckResult) -> MetricState:
    ok = result.phase == CheckPhase.SUCCESSFUL
    return state.model_copy(update={
        "successes": state.successes + ok,
        "failures": state.failures + (result.phase == CheckPhase.FAILED),
        "inconclusive": state.inconclusive + (result.phase == CheckPhase.INCONCLUSIVE),
        "consecutive_successes": state.consecutive_successes + 1 if ok else 0,
        "last_time": result.time,
        "last_phase": result.phase,
        "last_value": result.value,
    })


def new_run(analysis: AnalysisStatus) -> AnalysisStatus:
    """A fresh run (retry): counts start again; the latest results stay for reference."""
    return AnalysisStatus(run=analysis.run + 1, results=list(analysis.results))


def restart_streaks(analysis: AnalysisStatus) -> AnalysisStatus:
    """An analysis step counts successes in a row from its own start."""
    return analysis.model_copy(update={
        "metrics": [state.model_copy(update={"consecutive_successes": 0}) for state in analysis.metrics],
    })


def forgive_inconclusive(analysis: AnalysisStatus) -> AnalysisStatus:
    """A person looked at an inconclusive hold and let it go on: those counts start again."""
    return analysis.model_copy(update={
        "held": None,
        "metrics": [state.model_copy(update={"inconclusive": 0}) for state in analysis.metrics],
    })


@dataclasses.dataclass(frozen=True)
class Verdict:
    failed: tuple[str, ...] = ()  # "name: why" for each check at its failure limit
    inconclusive: tuple[str, ...] = ()  # same, at its inconclusive limit


def verdict(spec: ClusterUpgradeSpec, status: ClusterUpgradeStatus) -> Verdict:
    analysis = spec.analysis
    limits: dict[str, tuple[int, int]] = {
        metric.name: (analysis.metric_failure_limit(metric), analysis.metric_inconclusive_limit(metric))
        for metric in analysis.metrics
    }
    for hook in analysis.hooks(WebhookType.ROLLOUT):
        limits[WEBHOOK_STATE_PREFIX + hook.name] = (analysis.failure_limit, analysis.inconclusive_limit)
    failed: list[str] = []
    inconclusive: list[str] = []
    for state in status.analysis.metrics:
        if state.name not in limits:
            continue
        failure_limit, inconclusive_limit = limits[state.name]
        last = _last_message(status.analysis, state.name)
        if state.failures >= failure_limit:
            failed.append(f"{state.name} failed {state.failures} time(s) (failureLimit {failure_limit}){last}")
        elif state.inconclusive >= inconclusive_limit:
            inconclusive.append(
                f"{state.name} inconclusive {state.inconclusive} time(s) (inconclusiveLimit {inconclusive_limit}){last}"
            )
    return Verdict(failed=tuple(failed), inconclusive=tuple(inconclusive))


def _last_message(analysis: AnalysisStatus, key: str) -> str:
    if key.startswith(WEBHOOK_STATE_PREFIX):
        result = analysis.latest(key.removeprefix(WEBHOOK_STATE_PREFIX), "webhook")
    else:
        result = analysis.latest(key, "metric")
    return f": {result.message}" if result is not None and result.message else ""


def measure_from(spec: ClusterUpgradeSpec, status: ClusterUpgradeStatus) -> datetime.datetime | None:
    """No measurement before initialDelay has passed since the last weight change (DNS, autoscalers)."""
    changed = status.step.weights_changed_at or status.step.started_at or status.phase_since
    if changed is None:
        return None
    return changed + parse_duration(spec.analysis.initial_delay)


def due(
    spec: ClusterUpgradeSpec, status: ClusterUpgradeStatus, now: datetime.datetime
) -> tuple[tuple[str, ...], datetime.datetime | None]:
    """Metrics to measure now, and when the next one falls due (None: nothing to measure).

    Comparative metrics pause while green has everything (Promoted): blue's side would read no data.
    """
    checks = [(metric.name, metric.name, parse_duration(spec.analysis.metric_interval(metric)))
              for metric in spec.analysis.metrics if metric.comparative is None or status.weights.blue > 0]
    return _schedule(checks, status, now, start=measure_from(spec, status))


def rollout_hooks_due(
    spec: ClusterUpgradeSpec, status: ClusterUpgradeStatus, now: datetime.datetime
) -> tuple[tuple[str, ...], datetime.datetime | None]:
    """rollout webhooks run every analysis interval (with the metrics when there are any)."""
    interval = parse_duration(spec.analysis.interval)
    checks = [(hook.name, WEBHOOK_STATE_PREFIX + hook.name, interval)
              for hook in spec.analysis.hooks(WebhookType.ROLLOUT)]
    return _schedule(checks, status, now, start=measure_from(spec, status))


def _schedule(
    checks: Sequence[tuple[str, str, datetime.timedelta]],
    status: ClusterUpgradeStatus,
    now: datetime.datetime,
    *,
    start: datetime.datetime | None,
) -> tuple[tuple[str, ...], datetime.datetime | None]:
    """(name, counted as, interval) each: due at ``start``, then one interval after its last result."""
    if start is None:
        return (), None
    due_now: list[str] = []
    next_due: datetime.datetime | None = None
    for name, key, interval in checks:
        state = status.analysis.metric(key)
        at = start
        if state is not None and state.last_time is not None and state.last_time >= start:
            at = state.last_time + interval
        if now >= at:
            due_now.append(name)
            at = now + interval
        next_due = at if next_due is None else min(next_due, at)
    return tuple(due_now), next_due


def step_passed(
    spec: ClusterUpgradeSpec, status: ClusterUpgradeStatus, step: AnalysisStep, now: datetime.datetime
) -> tuple[bool, str]:
    """Whether an analysis step is done: count successes in a row per check, or a duration without failure."""
    names = counted_names(spec)
    if not names:
        return True, "no metrics or rollout webhooks to analyse"
    started = status.step.started_at or now
    length = step.duration or (None if step.count is not None else spec.analysis.duration)
    if length is not None:
        until = started + parse_duration(length)
        if now < until:
            return False, f"analysing until {until.isoformat()}"
        unmeasured = [name for name in names if (state := status.analysis.metric(name)) is None
                      or state.last_time is None or state.last_time < started]
        if unmeasured:
            return False, f"waiting for a first measurement of {', '.join(unmeasured)}"
        return True, f"analysed for {length}"
    count = step.count or spec.analysis.count or 1
    short = []
    for name in names:
        state = status.analysis.metric(name)
        streak = state.consecutive_successes if state is not None else 0
        if streak < count:
            short.append(f"{name} {streak}/{count}")
    if short:
        return False, "successful measurements in a row: " + ", ".join(short)
    return True, f"every check passed {count} time(s) in a row"


def gate(
    status: ClusterUpgradeStatus,
    names: Sequence[str],
    *,
    since: datetime.datetime,
    now: datetime.datetime,
    interval: datetime.timedelta,
) -> tuple[tuple[str, ...], tuple[str, ...], datetime.datetime | None]:
    """Webhook gates asked since ``since``: (to ask now, closed ones with why, when to ask again).

    A gate is open once its latest answer since ``since`` was a 2xx. A closed one is asked
    again one interval after its last answer; until then the upgrade holds.
    """
    ask: list[str] = []
    closed: list[str] = []
    again: datetime.datetime | None = None
    for name in names:
        latest = status.analysis.latest(name, "webhook")
        if latest is None or latest.time < since:
            ask.append(name)
            closed.append(f"{name}: not asked yet")
            continue
        if latest.phase == CheckPhase.SUCCESSFUL:
            continue
        closed.append(f"{name}: {latest.message or latest.phase.value}")
        if now >= latest.time + interval:
            ask.append(name)
        else:
            at = latest.time + interval
            again = at if again is None else min(again, at)
    return tuple(ask), tuple(closed), again


def asked_since(status: ClusterUpgradeStatus, names: Sequence[str], since: datetime.datetime) -> tuple[str, ...]:
    """Which of these webhooks have no result since ``since`` (for one-shot notifications)."""
    return tuple(name for name in names
                 if (latest := status.analysis.latest(name, "webhook")) is None or latest.time < since)


def passing_summary(spec: ClusterUpgradeSpec, status: ClusterUpgradeStatus) -> str:
    """One line for the AnalysisPassing condition: each metric's last value and verdict."""
    parts = []
    for state in status.analysis.metrics:
        if state.last_phase is None:
            continue
        value = "" if state.last_value is None else f" {state.last_value:.4g}"
        parts.append(f"{state.name}{value} {state.last_phase.value}")
    return "; ".join(parts) or "no measurement yet"

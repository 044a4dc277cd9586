"""What an upgrade would do, in order, and the least time each part takes: ``kubectl bluegreen plan``.

Pure, like the rest of the engine: a function of the spec alone, so it can be
shown for a file before anything is applied, and tested with tables.

The minimums follow the engine's own clocks and nothing else:

- a ``setWeight`` step lasts at least the router dwell (the longest Route 53
  TTL, :func:`bluegreen.engine.rollback.router_dwell`), counted from the change;
- a ``pause`` with a duration lasts exactly that; one without a duration
  waits for a person (``bluegreen.io/promote``) and has no minimum;
- an ``analysis`` step lasts its ``duration``, or ``count`` measurements
  (step's, else ``spec.analysis``'s, else 1) at the slowest measuring
  interval, after what is left of ``initialDelay`` since the last weight
  change;
- analysis *during* the other steps measures alongside them and adds nothing
  to the minimum: it can only stop the upgrade, not lengthen it;
- ``promotion.retainBlueFor`` runs from the moment green holds 100 %.

What the world decides (how long the provider takes to create or delete a
cluster, Flux to sync, a smoke Job to run, a person to promote) has no minimum
here: ``PlannedAction.minimum`` is None and :func:`total_minimum` leaves it out.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Sequence

from bluegreen.api.durations import format_duration
from bluegreen.api.spec import (
    Analysis,
    AnalysisStep,
    BlueDeletionPolicy,
    CapacityPolicy,
    ClusterUpgradeSpec,
    FinalizeMode,
    FluxMode,
    GreenDeletionPolicy,
    JobPhase,
    RollbackMode,
    Router,
    Strategy,
    WebhookType,
    duration,
)
from bluegreen.api.status import Phase
from bluegreen.engine.rollback import router_dwell

ZERO = datetime.timedelta(0)


@dataclasses.dataclass(frozen=True)
class PlannedAction:
    """One thing the upgrade does; ``minimum`` None: as long as the world (or a person) takes."""

    phase: str
    action: str
    minimum: datetime.timedelta | None
    note: str = ""


def total_minimum(actions: Iterable[PlannedAction]) -> datetime.timedelta:
    """The least time the whole upgrade takes: every known minimum, in sequence."""
    return sum((action.minimum for action in actions if action.minimum is not None), ZERO)


def open_ended(actions: Iterable[PlannedAction]) -> list[PlannedAction]:
    """The actions whose length the world or a person decides, which the total leaves out."""
    return [action for action in actions if action.minimum is None]


def plan(spec: ClusterUpgradeSpec) -> list[PlannedAction]:
    """Every action of a blue/green upgrade of ``spec`` in the order the engine takes them.

    Raises ValueError for a spec whose strategy never creates a green cluster (InPlace, NodePools): the
    plugin lists those itself (``bluegreen.cli.sections``, ``bluegreen.cli.rotation``).
    """
    if spec.strategy not in (Strategy.BLUE_GREEN, Strategy.AUTO):
        raise ValueError(f"strategy {spec.strategy.value} has no blue/green plan: it creates no green cluster")
    actions: list[PlannedAction] = []
    actions += _preflight(spec)
    actions += _provisioning(spec)
    actions += _syncing(spec)
    actions += _verifying(spec)
    actions += _shifting(spec)
    actions += _promoted(spec)
    actions += _retiring(spec)
    actions.append(PlannedAction(Phase.COMPLETED, f"done: {spec.green_name} at {spec.target.kubernetes_version} "
                                                  "is the live cluster", ZERO))
    return actions


def rollback_summary(spec: ClusterUpgradeSpec) -> str:
    """What happens instead when analysis fails or a person aborts, in one sentence."""
    rollback = spec.rollback
    if rollback.mode == RollbackMode.GRADUAL:
        way = f"back down the steps already taken, {rollback.step_interval} at each weight"
    else:
        way = "blue back to 100 % at once"
    return (f"on failure or abort (before blue is retired): {way}; green {spec.green_name} kept "
            f"{rollback.retain_green_for} for inspection (retry works meanwhile), then "
            f"{'deleted' if rollback.green_deletion_policy == GreenDeletionPolicy.DELETE else 'retained'}")


# --- phases ------------------------------------------------------------------------------------


def _preflight(spec: ClusterUpgradeSpec) -> list[PlannedAction]:
    phase = Phase.PREFLIGHT
    blue = f"{spec.cluster.namespace}/{spec.cluster.name}"
    actions = []
    if spec.paused:
        actions.append(PlannedAction(phase, "held: spec.paused is true", None,
                                     "nothing moves until `kubectl bluegreen resume`"))
    actions += [
        PlannedAction(phase, f"check blue cluster {blue} ({spec.cluster.provider.value}) exists, is ready "
                             "and reports its version", ZERO),
        PlannedAction(phase, f"check {spec.target.kubernetes_version} is a newer minor version than blue's", ZERO),
        PlannedAction(phase, f"check no other cluster is named {spec.green_name}", ZERO,
                      "spec.target.greenName" if spec.target.green_name else "default name for " + spec.cluster.name),
        PlannedAction(phase, f"check blue's workloads: {_workloads_source(spec)}", ZERO, _flux_mode(spec)),
    ]
    actions += _scans(spec)
    actions += gate(phase, spec.analysis, WebhookType.CONFIRM_ROLLOUT)
    return actions


def _scans(spec: ClusterUpgradeSpec) -> list[PlannedAction]:
    """What preflight reads of blue before anything is created (once blue is ready)."""
    policy = spec.preflight
    where = "live on blue and in its Flux sources" if policy.scan_sources else "live on blue"
    actions = [
        PlannedAction(Phase.PREFLIGHT, f"scan for APIs {spec.target.kubernetes_version} no longer serves, {where}",
                      ZERO, f"removedAPIs {policy.removed_apis.value}"),
        PlannedAction(Phase.PREFLIGHT, "list stateful workloads (StatefulSets with volume claims, CronJobs, "
                                       "declared singletons)", ZERO, f"stateful {policy.stateful.value}"),
    ]
    if policy.capacity != CapacityPolicy.OFF:
        actions.append(PlannedAction(Phase.PREFLIGHT, "compare green's worker capacity with what blue's pods "
                                                      "request", ZERO, f"capacity {policy.capacity.value}"))
    return actions


def _provisioning(spec: ClusterUpgradeSpec) -> list[PlannedAction]:
    provider = spec.cluster.provider.value
    overrides = " with spec.target.overrides" if spec.target.overrides else ""
    return [PlannedAction(
        Phase.PROVISIONING,
        f"create green {spec.green_name} at {spec.target.kubernetes_version} via {provider} "
        f"(a clone of {spec.cluster.name}{overrides})",
        None, f"as long as {provider} takes; fails after {spec.target.ready_timeout} (readyTimeout)",
    )]


def _syncing(spec: ClusterUpgradeSpec) -> list[PlannedAction]:
    phase = Phase.SYNCING
    flux = spec.workloads.flux
    if flux.mode == FluxMode.GIT and flux.git is not None:
        git = flux.git
        paths = "{" + ",".join(git.paths) + "}" if git.paths else "*"
        copy = (f"commit {git.root}/{spec.cluster.name}/{paths} as {git.root}/{spec.green_name}/ to {git.url} "
                f"(branch {git.branch})")
        note = f"{_flux_mode(spec)}, {len(git.substitutions)} substitution(s)" if git.substitutions else \
            _flux_mode(spec)
    else:
        copy = f"copy blue's {_workloads_source(spec)} to deploy to {spec.green_name}"
        note = _flux_mode(spec)
    revision = "at blue's revision" if spec.workloads.require_same_revision else "(any revision)"
    return [
        PlannedAction(phase, copy, ZERO, note),
        PlannedAction(phase, f"wait until green's Kustomizations are Ready {revision}", None,
                      f"as long as Flux takes; fails after {spec.workloads.timeout}"),
    ]


def _verifying(spec: ClusterUpgradeSpec) -> list[PlannedAction]:
    phase = Phase.VERIFYING
    analysis = spec.analysis
    actions = [PlannedAction(phase, f"set weight 0 on {_routers(spec.traffic.routers)}", ZERO,
                             "a known starting point; what each router held is saved first")]
    for hook in analysis.hooks(WebhookType.PRE_ROLLOUT):
        actions.append(PlannedAction(phase, f"pre-rollout webhook {hook.name}", ZERO,
                                     f"must answer 2xx; {_attempts(hook.retries)}"))
    for name in _probed_at_zero(analysis):
        actions.append(PlannedAction(phase, f"HTTP probe {name} of green at 0 %", ZERO,
                                     f"until it passes, every {analysis.interval}"))
    actions += _jobs(spec, JobPhase.VERIFYING, minimum=None)
    return actions


def _shifting(spec: ClusterUpgradeSpec) -> list[PlannedAction]:
    phase = Phase.SHIFTING
    analysis = spec.analysis
    steps = spec.traffic.steps
    dwell = router_dwell(spec)
    schedule = _Schedule(analysis)
    actions: list[PlannedAction] = []
    for index, step in enumerate(steps):
        label = f"step {index + 1}/{len(steps)}:"
        schedule.begin_step()
        if step.set_weight is not None:
            if step.set_weight > schedule.green:
                actions += gate(phase, analysis, WebhookType.CONFIRM_TRAFFIC_INCREASE)
                if step.set_weight == 100:
                    actions += gate(phase, analysis, WebhookType.CONFIRM_PROMOTION)
            changed = schedule.set_weight(step.set_weight)
            # The dwell runs from the last change: a step repeating the weight may find it over.
            wait = max(ZERO, schedule.anchor + dwell - schedule.now)
            note = f"DNS dwell {format_duration(dwell)} (longest route53 ttl)" if dwell else ""
            if dwell and not changed:
                note = f"already at {step.set_weight} %; what is left of the {format_duration(dwell)} DNS dwell"
            actions.append(PlannedAction(
                phase, f"{label} setWeight {step.set_weight} on {_routers(spec.traffic.routers)}", wait, note,
            ))
            schedule.advance(wait)
            if changed and schedule.green > 0 and schedule.names:
                first = not any(action.action.startswith("analysis at") for action in actions)
                actions.append(_background_analysis(analysis, green=schedule.green, first=first))
        elif step.pause is not None:
            if step.pause.duration is None:
                actions.append(PlannedAction(phase, f"{label} pause until promoted", None,
                                             "waits for a person: kubectl bluegreen promote"))
            else:
                wait = duration(step.pause.duration)
                actions.append(PlannedAction(phase, f"{label} pause {step.pause.duration}", wait))
                schedule.advance(wait)
        elif step.analysis is not None:
            actions.append(_analysis_step(analysis, step.analysis, label=label, schedule=schedule,
                                          first_step=index == 0))
    return actions


def _promoted(spec: ClusterUpgradeSpec) -> list[PlannedAction]:
    phase = Phase.PROMOTED
    actions = [PlannedAction(phase, f"post-rollout webhook {hook.name}", ZERO, "recorded, does not gate")
               for hook in spec.analysis.hooks(WebhookType.POST_ROLLOUT)]
    actions += _jobs(spec, JobPhase.PROMOTED, minimum=ZERO)
    window = spec.promotion.retain_blue_for
    actions.append(PlannedAction(
        phase, f"green serves 100 %; blue {spec.cluster.name} kept intact as the rollback window",
        duration(window), f"promotion.retainBlueFor {window}; `kubectl bluegreen abort` returns traffic to blue",
    ))
    return actions


def _retiring(spec: ClusterUpgradeSpec) -> list[PlannedAction]:
    phase = Phase.RETIRING
    actions = []
    for router in reversed(spec.traffic.routers):
        note = f"onFinalize {router.on_finalize.value}"
        if router.on_finalize == FinalizeMode.RESTORE:
            note += " (after a promotion the same as Remove: nothing may route to a deleted cluster)"
        actions.append(PlannedAction(phase, f"finalize router {router.display_name} ({router.kind}): "
                                            f"{_removal(router)}", ZERO, note))
    flux = spec.workloads.flux
    if flux.mode == FluxMode.GIT and flux.git is not None:
        workloads = f"remove {flux.git.root}/{spec.cluster.name}/ from {flux.git.url} in one commit"
    else:
        workloads = f"delete blue's {_workloads_source(spec)}"
    actions.append(PlannedAction(phase, workloads, ZERO))
    provider = spec.cluster.provider.value
    if spec.promotion.blue_deletion_policy == BlueDeletionPolicy.DELETE:
        actions.append(PlannedAction(phase, f"delete blue cluster {spec.cluster.name} via {provider}", None,
                                     f"as long as {provider} takes; blueDeletionPolicy Delete"))
    else:
        actions.append(PlannedAction(phase, f"retain blue cluster {spec.cluster.name}", ZERO,
                                     "blueDeletionPolicy Retain"))
    return actions


# --- pieces -----------------------------------------------------------------------------------


def gate(phase: str, analysis: Analysis, type_: WebhookType) -> list[PlannedAction]:
    """The gate of ``type_`` (confirm-rollout...) as an action of ``phase``; [] without such webhooks."""
    hooks = analysis.hooks(type_)
    if not hooks:
        return []
    names = ", ".join(hook.name for hook in hooks)
    return [PlannedAction(phase, f"{type_.value} gate: webhook {names}", ZERO,
                          "waits until every one answers 2xx (a person may hold it)")]


def _jobs(spec: ClusterUpgradeSpec, at: JobPhase, *, minimum: datetime.timedelta | None) -> list[PlannedAction]:
    actions = []
    for job in spec.analysis.jobs:
        if job.at != at:
            continue
        cluster = spec.green_name if job.cluster == "green" else spec.cluster.name
        note = f"as long as the Job runs; fails after {job.timeout}" if minimum is None else \
            f"runs at the start of the rollback window; fails after {job.timeout}"
        phase = Phase.VERIFYING if at == JobPhase.VERIFYING else Phase.PROMOTED
        actions.append(PlannedAction(phase, f"smoke Job {job.name} in {job.cluster.value} {cluster} "
                                               f"(namespace {job.namespace})", minimum, note))
    return actions


def _probed_at_zero(analysis: Analysis) -> list[str]:
    """HTTP probes reach green's own endpoint, so they are judged before any traffic moves."""
    return [metric.name for metric in analysis.metrics if metric.http_probe is not None and metric.comparative is None]


class _Schedule:
    """When each check is measured on the path where everything takes its least time, as the engine decides it.

    Times count from the start of Shifting. A check is due ``initialDelay`` after the last weight change,
    then one interval after its previous measurement; nothing is measured while green has no traffic except
    during an analysis step. A check due at the moment a step ends is measured before the next step starts.
    Until the first weight change of Shifting (Verifying's 0 % is not carried over), the engine counts the
    dwell and the initial delay from the start of the current step instead.
    """

    def __init__(self, analysis: Analysis) -> None:
        self.delay = duration(analysis.initial_delay)
        # Metrics, then rollout webhooks (measured at spec.analysis.interval), as the engine counts them.
        self.intervals = {metric.name: duration(analysis.metric_interval(metric)) for metric in analysis.metrics}
        self.intervals.update({f"webhook {hook.name}": duration(analysis.interval)
                               for hook in analysis.hooks(WebhookType.ROLLOUT)})
        self.now = ZERO
        self.step_start = ZERO
        self.changed_at: datetime.timedelta | None = None
        self.green = 0
        # HTTP probes passed at Verifying, at the very start.
        self.last: dict[str, datetime.timedelta | None] = {name: None for name in self.intervals}
        for name in _probed_at_zero(analysis):
            self.last[name] = ZERO

    @property
    def names(self) -> list[str]:
        return list(self.intervals)

    @property
    def anchor(self) -> datetime.timedelta:
        """What the dwell and initialDelay count from (status.step.weightsChangedAt, else the step's start)."""
        return self.step_start if self.changed_at is None else self.changed_at

    def begin_step(self) -> None:
        self.step_start = self.now

    def set_weight(self, green: int) -> bool:
        """The weight change of a step starting now; False when green is already there."""
        if green == self.green:
            return False
        self.green, self.changed_at = green, self.now
        return True

    def next_due(self, name: str, *, enabled_from: datetime.timedelta) -> datetime.timedelta:
        start = self.anchor + self.delay
        last = self.last[name]
        at = start if last is None or last < start else last + self.intervals[name]
        return max(at, enabled_from)

    def advance(self, wait: datetime.timedelta, *, enabled_from: datetime.timedelta | None = None) -> None:
        """Let ``wait`` pass, measuring what falls due (up to and including its end)."""
        end = self.now + wait
        if self.green > 0 or enabled_from is not None:
            for name, interval in self.intervals.items():
                at = self.next_due(name, enabled_from=enabled_from or ZERO)
                while at <= end:
                    self.last[name] = at
                    at += interval
        self.now = end


def _background_analysis(analysis: Analysis, *, green: int, first: bool) -> PlannedAction:
    measured = [(metric.name, analysis.metric_interval(metric)) for metric in analysis.metrics]
    measured += [(f"webhook {hook.name}", analysis.interval) for hook in analysis.hooks(WebhookType.ROLLOUT)]
    every = {interval for _, interval in measured}
    if len(every) == 1:
        schedule = f"every {every.pop()}"
    else:
        schedule = ", ".join(f"{name} every {interval}" for name, interval in measured)
    if duration(analysis.initial_delay):
        schedule += f" from {analysis.initial_delay} after the change"
    if green == 100:
        schedule += ", through the rollback window"
    limits = f"; failureLimit {analysis.failure_limit} rolls back, inconclusiveLimit {analysis.inconclusive_limit} " \
        "holds for a person" if first else ""
    return PlannedAction(Phase.SHIFTING, f"analysis at {green} %: {', '.join(name for name, _ in measured)}", ZERO,
                         f"{schedule}{limits}")


def _analysis_step(
    analysis: Analysis, step: AnalysisStep, *, label: str, schedule: _Schedule, first_step: bool
) -> PlannedAction:
    start = schedule.now
    names = schedule.names
    if not names:
        return PlannedAction(Phase.SHIFTING, f"{label} analysis: nothing to measure", ZERO,
                             "spec.analysis has no metrics and no rollout webhooks")
    # Without traffic on green, checks run only for the step itself, from its start.
    enabled_from = start if schedule.green == 0 else ZERO
    length = step.duration or (analysis.duration if step.count is None else None)
    if length is not None:
        # The step lasts its duration and until every check was measured at least once since it began.
        ends = [start + duration(length)]
        for name in names:
            last = schedule.last[name]
            if last is None or last < start:
                ends.append(schedule.next_due(name, enabled_from=enabled_from))
        end = max(ends)
        what, why = f"analysis for {length}", f"duration {length}"
    else:
        count = step.count or analysis.count or 1
        ends = []
        for name in names:
            first = schedule.next_due(name, enabled_from=enabled_from)
            needed = count
            # A first step is not entered through an advance, so its streaks start with Verifying's probes.
            if first_step and schedule.last[name] == start:
                needed -= 1
            ends.append(start if needed <= 0 else first + (needed - 1) * schedule.intervals[name])
        end = max(ends)
        slowest = max(schedule.intervals.values())
        what = f"analysis: {count} passing measurement(s) in a row of {', '.join(names)}"
        why = f"count {count}, slowest every {format_duration(slowest)}"
    if schedule.anchor + schedule.delay > start:
        why += f"; first measured {analysis.initial_delay} after the last weight change (initialDelay)"
    schedule.advance(end - start, enabled_from=enabled_from if schedule.green == 0 else None)
    return PlannedAction(Phase.SHIFTING, f"{label} {what}", end - start, why)


def _routers(routers: Sequence[Router]) -> str:
    named = [f"{router.display_name} ({router.kind})" if router.name else router.kind for router in routers]
    if len(named) == 1:
        return f"router {named[0]}"
    return f"routers {', '.join(named)}, in this order"


def _removal(router: Router) -> str:
    if router.route53 is not None:
        return f"delete blue's record {router.route53.blue.set_identifier} ({router.route53.record_name})"
    if router.elbv2 is not None and router.elbv2.mode == "TargetRegistration":
        return "deregister blue's targets"
    return "remove blue's entry"


def _workloads_source(spec: ClusterUpgradeSpec) -> str:
    flux = spec.workloads.flux
    if flux.mode == FluxMode.GIT and flux.git is not None:
        return f"{flux.git.root}/{spec.cluster.name}/ in {flux.git.url} (branch {flux.git.branch})"
    labels = ",".join(f"{key}={value}" for key, value in sorted(flux.selector.match_labels.items()))
    return f"Kustomizations {labels} in namespace {spec.flux_namespace}"


def _flux_mode(spec: ClusterUpgradeSpec) -> str:
    return f"Flux {spec.workloads.flux.mode.value} mode"


def _attempts(retries: int) -> str:
    return f"{retries} retr{'y' if retries == 1 else 'ies'}" if retries else "no retries"

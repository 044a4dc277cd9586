"""The decision function: what to do next, from (spec, status, observed world, now).

Pure: no I/O, no clock reads, no sleeps. One call is one pass; the I/O layer
carries out the actions and writes the returned status only if all succeed, so
a crash or a failed action makes the next pass decide the same thing again.

Invariants the property tests hold this module to:

- weights always sum to 100;
- traffic moves toward green only while green is Ready and its workloads are
  in sync (Ready at blue's revision), and only up the steps (or to 100 on a
  full promote); it moves back only when rolling back;
- rolling back always ends with blue at 100;
- blue's workloads and cluster are never deleted before green has held 100 %
  for ``promotion.retainBlueFor`` while healthy;
- a failure while green serves traffic rolls back; ``Failed`` is reached only
  while blue still serves everything.

A pass may run several phases in a row (Pending -> Preflight -> Provisioning)
when nothing in between needs the world; it stops at the first phase that
needs an action carried out or a change observed.
"""

from __future__ import annotations

import datetime
import hashlib

from bluegreen.api.durations import format_duration
from bluegreen.api.spec import (
    BlueDeletionPolicy,
    ClusterUpgradeSpec,
    HookPoint,
    JobPhase,
    Step,
    Strategy,
    WebhookType,
    duration,
)
from bluegreen.api.status import (
    CheckPhase,
    ClusterStatus,
    ClusterUpgradeStatus,
    ConditionType,
    InPlaceStatus,
    Phase,
    PreflightStatus,
    StepStatus,
    StrategyChoice,
)
from bluegreen.engine import analysis, deletion, hooks, nodepools, preflight, rollback, spec_changes
from bluegreen.engine import conditions as cond
from bluegreen.engine.rollback import router_dwell
from bluegreen.engine.types import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    Decision,
    DeleteCluster,
    DeleteWorkloads,
    Event,
    FinalizeRouters,
    JobObservation,
    Observed,
    ProvisionGreen,
    RemoveAnnotation,
    ScanPreflight,
    StartJob,
    SyncWorkloads,
    UpgradeInPlace,
)
from bluegreen.engine.work import Pass
from bluegreen.preflight import versions as version_rules

# Phases where the upgrade moves forward on its own; spec.paused holds them.
FORWARD_PHASES = frozenset({
    Phase.PREFLIGHT, Phase.PROVISIONING, Phase.SYNCING, Phase.VERIFYING,
    Phase.SHIFTING, Phase.PROMOTED, Phase.RETIRING, Phase.UPGRADING, Phase.ROTATING,
})
# Phases in which green may carry traffic, so an abort has something to undo. An in-place
# upgrade has no other side to go back to: an abort there stops it (see _consume_annotations).
ABORTABLE_PHASES = FORWARD_PHASES - {Phase.RETIRING, Phase.UPGRADING} | {Phase.PENDING, Phase.PAUSED, Phase.BLOCKED}
# PreflightPassed's reason when only Secrets the spec names are missing (Blocked goes on once they exist).
MISSING_SECRETS = "MissingSecrets"
# Secrets are not watched (any Secret could be the one): a Blocked upgrade missing some looks again this often.
SECRETS_POLL = datetime.timedelta(seconds=10)
# Phases in which the upgrade is not progressing (Progressing=False), as Pass.goto sets it.
HELD_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.ROLLED_BACK, Phase.BLOCKED, Phase.PAUSED})
# A pass never needs more transitions than there are phases; this bounds the loop.
MAX_TRANSITIONS_PER_PASS = 2 * len(Phase)


LABEL_VALUE_LIMIT = 63


def upgrade_label(namespace: str, name: str) -> str:
    """Value of the bluegreen.io/upgrade label on what an upgrade creates.

    ``namespace.name`` (no '/' in label values); when that is longer than a label value may be
    (63), its start and a hash of the whole, so it stays unique, valid and the same on every pass.
    """
    value = f"{namespace}.{name}"
    if len(value) <= LABEL_VALUE_LIMIT:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{value[: LABEL_VALUE_LIMIT - len(digest) - 1].rstrip('.-_')}-{digest}"


def decide(
    spec: ClusterUpgradeSpec | None,
    status: ClusterUpgradeStatus,
    observed: Observed,
    now: datetime.datetime,
    *,
    owner: str,
) -> Decision:
    """Decide the next step of one upgrade. ``owner`` is the upgrade's ``namespace.name`` label value."""
    if observed.deleting:  # the ClusterUpgrade was deleted: spec.onDelete, nothing else
        return deletion.decide_deleting(spec, status, observed, now, owner=owner)
    if spec is None or observed.spec_error:
        return _hold_for_invalid_spec(status, observed, now)
    if spec_changes.guarded(status):
        changes = spec_changes.unsafe_changes(spec, status.in_effect or {})
        if changes:
            return spec_changes.hold(status, observed, now, changes)

    work = Pass(spec=spec, observed=observed, now=now, owner=owner, status=status)
    work.update(observed_generation=observed.generation)
    if spec_changes.resumed(work.status):
        phase = work.status.phase
        work.condition(ConditionType.PROGRESSING, phase not in HELD_PHASES, phase.value,
                       "the spec is back to the upgrade under way: going on")
    _consume_annotations(work)
    for _ in range(MAX_TRANSITIONS_PER_PASS):
        before = _progress(work)
        _HANDLERS[work.status.phase](work)
        if work.done or _progress(work) == before:
            break
    decision = Decision(status=work.status, actions=tuple(work.actions), events=tuple(work.events),
                        wake_at=work.wake_at)
    return spec_changes.remember(spec, decision)


def _progress(work: Pass) -> tuple[object, ...]:
    """What a handler moves on when it is done with its part: another pass of the loop looks again."""
    rotation = work.status.node_pools
    return (work.status.phase, work.status.step.index, work.status.in_place,
            None if rotation is None else (rotation.stage, rotation.nodes_drained))


def _hold_for_invalid_spec(status: ClusterUpgradeStatus, observed: Observed, now: datetime.datetime) -> Decision:
    message = f"spec is invalid, nothing is changed until it is fixed: {observed.spec_error}"
    conditions = cond.set_condition(
        list(status.conditions), type_=ConditionType.READY, status=False, reason="InvalidSpec",
        message=message, now=now, generation=observed.generation,
    )
    conditions = cond.set_condition(
        conditions, type_=ConditionType.PROGRESSING, status=False, reason="InvalidSpec",
        message=message, now=now, generation=observed.generation,
    )
    events: tuple[Event, ...] = ()
    if status.message != message:
        events = (Event(reason="InvalidSpec", message=message, type="Warning"),)
    new = status.model_copy(update={"conditions": conditions, "message": message,
                                    "observed_generation": observed.generation})
    return Decision(status=new, events=events)


# --- human control ------------------------------------------------------------------------------


def _consume_annotations(work: Pass) -> None:
    annotations = work.observed.annotations
    phase = work.status.phase

    if ANNOTATION_ABORT in annotations:
        work.actions.append(RemoveAnnotation(ANNOTATION_ABORT))
        retiring = phase == Phase.PAUSED and work.status.held_phase == Phase.RETIRING
        if _rotating_now(work):
            nodepools.abort(work)
        elif _in_place(work):
            _stop_in_place(work)
        elif phase in ABORTABLE_PHASES and not retiring:
            work.update(held_phase=None)
            work.goto(Phase.ROLLING_BACK, "aborted by request (bluegreen.io/abort): returning traffic to blue",
                      warning=True)
        else:
            work.event("AbortIgnored", f"abort ignored in phase {phase.value}", warning=True)

    if ANNOTATION_RETRY in annotations:
        work.actions.append(RemoveAnnotation(ANNOTATION_RETRY))
        if _rotation_to_resume(work):
            nodepools.resume(work)
        elif phase in {Phase.BLOCKED, Phase.FAILED}:
            if work.status.in_place is not None:  # in place resumes from the version the cluster reached
                work.update(in_place=None, step=StepStatus(), analysis=analysis.new_run(work.status.analysis))
            _restart_preflight(work, "retry requested: running preflight again")
        elif phase == Phase.ROLLED_BACK:
            again = work.status.green_retired
            work.update(step=StepStatus(index=0, started_at=None), analysis=analysis.new_run(work.status.analysis),
                        rolled_back_at=None, promoted_at=None, green_retired=False, routers_finalized=False,
                        hooks=[])
            work.condition(ConditionType.ANALYSIS_PASSING, None, "Retrying", "a new analysis run starts")
            if again:
                _restart_preflight(work, "retry requested: green was retired, creating it again")
            else:
                work.goto(Phase.SYNCING, "retry requested: checking green again, then shifting from step 0")
        else:
            work.event("RetryIgnored", f"retry applies to Blocked, Failed or RolledBack, not {phase.value}",
                       warning=True)

    promote = annotations.get(ANNOTATION_PROMOTE)
    if promote is not None:
        work.actions.append(RemoveAnnotation(ANNOTATION_PROMOTE))
        if work.spec.paused:
            work.event("PromoteIgnored", "promote ignored: spec.paused is true", warning=True)
        elif work.status.phase not in {Phase.SHIFTING, Phase.PAUSED}:
            work.event("PromoteIgnored", f"promote applies while shifting, not in {work.status.phase.value}",
                       warning=True)
        elif promote == "full":
            _promote_full(work)
        elif promote == "step":
            _promote_step(work)
        else:
            work.event("PromoteIgnored", f"bluegreen.io/promote must be 'step' or 'full', not {promote!r}",
                       warning=True)


def _promote_step(work: Pass) -> None:
    if work.status.analysis.held:
        held = work.status.held_phase or Phase.SHIFTING
        work.event("PromoteRequested", f"inconclusive analysis accepted by request: {work.status.analysis.held}")
        work.update(analysis=analysis.forgive_inconclusive(work.status.analysis), held_phase=None)
        work.condition(ConditionType.ANALYSIS_PASSING, None, "Accepted", "inconclusive results accepted by a person")
        work.goto(held, f"resumed by promote: back to {held.value}")
        return
    step = _current_step(work)
    if step is None or step.pause is None:
        work.event("PromoteIgnored", "promote step: the current step is not a pause", warning=True)
        return
    work.event("PromoteRequested", f"step {work.status.step.index + 1} promoted by request")
    _advance(work)
    if work.status.phase == Phase.PAUSED:
        resume = Phase.UPGRADING if _in_place(work) else Phase.SHIFTING
        work.update(held_phase=None)
        work.goto(resume, "resumed by promote")


def _promote_full(work: Pass) -> None:
    if _in_place(work):
        work.event("PromoteIgnored", "promote full applies to traffic; in place, promote step goes past a pause",
                   warning=True)
        return
    healthy, why = work.green_healthy()
    if not healthy:
        work.event("PromoteIgnored", f"full promote refused: {why}", warning=True)
        return
    work.event("PromoteRequested", "full promotion requested: green to 100%")
    work.update(step=StepStatus(index=len(work.spec.traffic.steps), started_at=work.now))
    work.goto(Phase.SHIFTING, "full promotion")


# --- phases -----------------------------------------------------------------------------------


def _pending(work: Pass) -> None:
    if _held_by_spec(work):
        return
    green = None if work.spec.strategy == Strategy.NODE_POOLS else \
        ClusterStatus(name=work.spec.green_name, version=work.spec.target.kubernetes_version)
    work.update(blue=ClusterStatus(name=work.spec.cluster.name), green=green)
    work.goto(Phase.PREFLIGHT, f"checking {work.spec.cluster.namespace}/{work.spec.cluster.name}")


def _preflight(work: Pass) -> None:
    if _held_by_spec(work):
        return
    spec, blue = work.spec, work.observed.blue
    problems: list[str] = []
    path: list[str] = []
    if not blue.exists:
        problems.append(
            f"blue cluster {spec.cluster.namespace}/{spec.cluster.name} not found; "
            "check spec.cluster.name and spec.cluster.namespace"
        )
    elif blue.version is None:
        problems.append(f"blue cluster {blue.name} reports no Kubernetes version")
    elif spec.strategy == Strategy.NODE_POOLS:
        pass  # the workers' version rules are the provider's (pool_problems)
    else:
        try:
            path = version_rules.in_place_path(current=blue.version, target=spec.target.kubernetes_version)
        except ValueError as exc:
            problems.append(str(exc))
    if spec.strategy == Strategy.BLUE_GREEN:
        problems.extend(preflight.green_problems(work))  # known before any scan: no need to scan to refuse
    if problems or work.observed.reference_problems:
        only_secrets = not problems
        _block(work, [*problems, *work.observed.reference_problems],
               reason=MISSING_SECRETS if only_secrets else "PreflightFailed")
        if only_secrets:
            work.wake(work.now + SECRETS_POLL)
        return
    if not blue.ready:
        work.condition(ConditionType.PREFLIGHT_PASSED, None, "BlueNotReady", blue.reason)
        work.wait(f"waiting for blue cluster {blue.name} to be ready: {blue.reason}")
        return
    work.update(blue=ClusterStatus(name=blue.name, version=blue.version))
    if spec.strategy == Strategy.NODE_POOLS:
        _preflight_node_pools(work)
        return
    if work.status.preflight.scanned_at is None:
        work.condition(ConditionType.PREFLIGHT_PASSED, None, "Scanning",
                       f"scanning {blue.name} and its Flux sources for {spec.target.kubernetes_version}")
        work.act(ScanPreflight())
        work.update(message=f"scanning {blue.name} (removed APIs, stateful workloads) before anything changes")
        return
    chosen, reasons = preflight.choose_strategy(work, path)
    blocking, warnings = preflight.verdict(work, chosen, path)
    report = work.status.preflight
    choice = StrategyChoice(chosen=chosen.value, reasons=reasons)
    first = report.strategy != choice
    if first:
        work.update(preflight=report.model_copy(update={
            "strategy": choice, "path": path if chosen == Strategy.IN_PLACE else []}))
        work.event("StrategyChosen", f"strategy {chosen.value}: {'; '.join(reasons)}")
    if blocking:
        _block(work, blocking)
        return
    if first:
        for warning in warnings:
            work.event("PreflightWarning", warning, warning=True)
    summary = f"{blue.name} {blue.version} -> {spec.target.kubernetes_version}, strategy {chosen.value}"
    if warnings:
        summary += f"; {len(warnings)} warning(s): " + "; ".join(warnings)
    work.condition(ConditionType.PREFLIGHT_PASSED, True, "Passed", summary)
    if chosen == Strategy.IN_PLACE:
        what = f"upgrading {blue.name} in place"
        if not _gate_open(work, WebhookType.CONFIRM_ROLLOUT, since=work.status.phase_since or work.now, what=what):
            return
        work.update(in_place=InPlaceStatus(path=path, since=work.now), step=StepStatus())
        work.goto(Phase.UPGRADING, f"upgrading {blue.name} in place, one minor at a time: "
                  f"{' -> '.join([preflight.minor_of(blue.version), *path])}")
        return
    if not _gate_open(work, WebhookType.CONFIRM_ROLLOUT, since=work.status.phase_since or work.now,
                      what=f"creating green {spec.green_name}"):
        return
    work.goto(Phase.PROVISIONING, f"creating green cluster {spec.green_name} at {spec.target.kubernetes_version}")


def _preflight_node_pools(work: Pass) -> None:
    """NodePools changes no cluster version and no workload: no scans, only whether the pools can be rotated."""
    rotations, problems = nodepools.plan_rotation(work.spec, work.observed.pools)
    problems.extend(work.observed.preflight_problems)
    if problems:
        _block(work, problems)
        return
    choice = StrategyChoice(chosen=Strategy.NODE_POOLS.value, reasons=[
        f"{rotation.old} ({len(rotation.old_nodes)} node(s)) is replaced by {rotation.new}" for rotation in rotations])
    if work.status.preflight.strategy != choice:
        work.update(preflight=work.status.preflight.model_copy(update={"strategy": choice}))
        work.event("StrategyChosen", f"strategy NodePools: {'; '.join(choice.reasons)}")
    work.condition(ConditionType.PREFLIGHT_PASSED, True, "Passed", "; ".join(choice.reasons))
    if not _gate_open(work, WebhookType.CONFIRM_ROLLOUT, since=work.status.phase_since or work.now,
                      what="creating the new worker pools"):
        return
    nodepools.start(work, rotations)


def _rotating(work: Pass) -> None:
    if _held_by_spec(work):
        return
    nodepools.rotating(work)


def _rotating_now(work: Pass) -> bool:
    """A NodePools rotation is under way (phase Rotating, or held from it)."""
    phase = work.status.phase
    return work.status.node_pools is not None and (
        phase == Phase.ROTATING or (phase == Phase.PAUSED and work.status.held_phase == Phase.ROTATING))


def _rotation_to_resume(work: Pass) -> bool:
    """An aborted or failed rotation that a retry goes on with (a Blocked one never started)."""
    return work.status.node_pools is not None and work.status.phase in {Phase.ROLLED_BACK, Phase.FAILED}


def _block(work: Pass, problems: list[str], *, reason: str = "PreflightFailed") -> None:
    message = "; ".join(problems)
    work.condition(ConditionType.PREFLIGHT_PASSED, False, reason, message)
    work.goto(Phase.BLOCKED, message, warning=True)
    work.done = True


def _restart_preflight(work: Pass, message: str) -> None:
    """Preflight from scratch: the scans run again, and Auto chooses again."""
    work.update(preflight=PreflightStatus())
    work.goto(Phase.PREFLIGHT, message)


def _blocked(work: Pass) -> None:
    # A changed spec is a new request: check again without waiting for a retry annotation.
    checked = work.status.condition(ConditionType.PREFLIGHT_PASSED)
    if checked is not None and checked.observed_generation != work.observed.generation:
        _restart_preflight(work, "spec changed: running preflight again")
        return
    # Secrets are created beside the upgrade, not in its spec: once they are there, go on by itself.
    if checked is not None and checked.reason == MISSING_SECRETS:
        if not work.observed.reference_problems:
            _restart_preflight(work, "the Secrets the spec names exist now: running preflight again")
            return
        work.wake(work.now + SECRETS_POLL)
    work.done = True


def _provisioning(work: Pass) -> None:
    if _held_by_spec(work):
        return
    spec, green = work.spec, work.observed.green
    deadline = (work.status.phase_since or work.now) + duration(spec.target.ready_timeout)
    if not green.exists:
        work.condition(ConditionType.GREEN_READY, False, "Provisioning", f"creating {green.name}")
        work.act(ProvisionGreen(name=spec.green_name, version=spec.target.kubernetes_version))
        work.wake(deadline)
        return
    if green.failed:
        _fail(work, ConditionType.GREEN_READY, "ProvisioningFailed",
              f"green cluster {green.name} failed: {green.reason}")
        return
    if not green.ready or green.kubeconfig_secret is None:
        why = (green.reason or "not ready") if not green.ready else "its kubeconfig Secret does not exist yet"
        if work.now >= deadline:
            _fail(work, ConditionType.GREEN_READY, "ProvisioningTimeout",
                  f"green cluster {green.name} not ready after {spec.target.ready_timeout}: {why}")
            return
        work.condition(ConditionType.GREEN_READY, False, "Provisioning", f"{green.name}: {why}")
        work.wake(deadline)
        work.wait(f"waiting for green cluster {green.name}: {why}")
        return
    work.condition(ConditionType.GREEN_READY, True, "ClusterReady", f"{green.name} is ready at {green.version}")
    work.update(green=ClusterStatus(name=green.name, version=green.version,
                                    kubeconfig_secret=green.kubeconfig_secret))
    work.goto(Phase.SYNCING, f"deploying blue's workloads to {green.name} with Flux")


def _syncing(work: Pass) -> None:
    if _held_by_spec(work):
        return
    spec, green = work.spec, work.observed.green
    deadline = (work.status.phase_since or work.now) + duration(spec.workloads.timeout)
    if not green.exists or not green.ready or green.kubeconfig_secret is None:
        work.record_health()
        work.wait(f"green cluster {green.name} is not ready: {green.reason}")
        return
    workloads = work.observed.workloads
    if workloads.blue and (workloads.green_missing or not workloads.green):
        work.act(SyncWorkloads(green_name=green.name, kubeconfig_secret=green.kubeconfig_secret))
        work.wake(deadline)
        return
    healthy = work.record_health()
    if healthy:
        work.goto(Phase.VERIFYING, f"green {green.name} is in sync with blue; checking it at 0% traffic")
        return
    _, why = work.workloads_in_sync()
    if work.now >= deadline:
        _fail(work, ConditionType.WORKLOADS_IN_SYNC, "SyncTimeout",
              f"workloads not in sync after {spec.workloads.timeout}: {why}")
        return
    work.wake(deadline)
    work.wait(f"traffic stays on blue: {why}")


def _verifying(work: Pass) -> None:
    if _held_by_spec(work):
        return
    if not work.record_health():
        _, why = work.green_healthy()
        work.goto(Phase.SYNCING, f"green is no longer in sync: {why}")
        return
    # Establish a known starting point on every router before any traffic moves.
    if work.status.weights.green != 0 or not work.status.weights.verified:
        work.set_weights(0)
        return
    if not _checks_at_zero(work):
        return
    if not hooks.run_at(work, HookPoint.BEFORE_TRAFFIC):
        return
    work.condition(ConditionType.ANALYSIS_PASSING, True, "Verified", "green passed its checks at 0 % traffic")
    work.update(step=StepStatus(index=0, started_at=work.now))
    work.condition(ConditionType.TRAFFIC_SHIFTED, False, "Shifting", "traffic starts moving to green")
    work.goto(Phase.SHIFTING, f"shifting traffic in {len(work.spec.traffic.steps)} steps")


def _shifting(work: Pass) -> None:
    if _held_by_spec(work):
        return
    if not _guard_green(work):
        return
    if not _analyse(work):
        return
    step = _current_step(work)
    index = work.status.step.index
    total = len(work.spec.traffic.steps)
    since = work.status.step.started_at or work.now
    if step is None:  # past the last step (or a full promote): green takes everything
        if work.status.weights.green != 100:
            if not _gate_open(work, WebhookType.CONFIRM_PROMOTION, since=since, what="green to 100 %"):
                return
            work.set_weights(100)
            return
        work.update(promoted_at=work.status.promoted_at or work.now)
        work.condition(ConditionType.TRAFFIC_SHIFTED, True, "Promoted", "green serves 100% of traffic")
        window = work.spec.promotion.retain_blue_for
        work.goto(Phase.PROMOTED, f"green serves 100%; blue kept for {window} as the rollback window")
        return
    label = f"step {index + 1}/{total}"
    if step.set_weight is not None:
        if work.status.weights.green != step.set_weight or not work.status.weights.verified:
            if step.set_weight < work.status.weights.green:
                # Steps never go down (validated); a lower step after a full promote is skipped.
                _advance(work)
                return
            if step.set_weight > work.status.weights.green:
                what = f"green to {step.set_weight} %"
                if not _gate_open(work, WebhookType.CONFIRM_TRAFFIC_INCREASE, since=since, what=what):
                    return
                if step.set_weight == 100 and not _gate_open(work, WebhookType.CONFIRM_PROMOTION, since=since,
                                                             what=what):
                    return
            work.set_weights(step.set_weight)
            work.update(message=f"{label}: green at {step.set_weight}%")
            return
        dwell = router_dwell(work.spec)
        changed_at = work.status.step.weights_changed_at or work.status.step.started_at
        if dwell and changed_at is not None and work.now < changed_at + dwell:
            work.wake(changed_at + dwell)
            work.wait(f"{label}: green at {step.set_weight}%; dwelling {format_duration(dwell)} "
                      "(one DNS TTL) so resolvers see the change")
            return
        _advance(work)
        return
    _run_step(work, step, label)


def _run_step(work: Pass, step: Step, label: str) -> None:
    """A pause or analysis step (of spec.traffic.steps, or of spec.inPlace.betweenMinors)."""
    since = work.status.step.started_at or work.now
    if step.pause is not None:
        if step.pause.duration is None:
            work.update(held_phase=work.status.phase)
            work.goto(Phase.PAUSED, f"{label}: paused until promoted (annotate bluegreen.io/promote=step)")
            work.done = True
            return
        until = since + duration(step.pause.duration)
        if work.now >= until:
            _advance(work)
            return
        work.wake(until)
        work.wait(f"{label}: pause {step.pause.duration} until {until.isoformat()}")
        return
    assert step.analysis is not None  # a step is exactly one of setWeight, pause, analysis (validated)
    passed, why = analysis.step_passed(work.spec, work.status, step.analysis, work.now)
    if passed:
        work.event("AnalysisStepPassed", f"{label}: {why}")
        _advance(work)
        return
    length = step.analysis.duration or (None if step.analysis.count is not None else work.spec.analysis.duration)
    if length is not None and work.now < since + duration(length):
        work.wake(since + duration(length))  # after that, the next measurement's due time wakes it
    where = "in place" if _in_place(work) else f"at green {work.status.weights.green}%"
    work.wait(f"{label}: analysis {where}: {why}")


def _paused(work: Pass) -> None:
    held = work.status.held_phase or Phase.SHIFTING
    if work.spec.paused:
        work.done = True
        return
    step = _current_step(work)
    waiting_for_human = held in {Phase.SHIFTING, Phase.UPGRADING} and step is not None and step.pause is not None \
        and step.pause.duration is None
    in_place = held == Phase.UPGRADING  # no green to guard: the cluster itself is what was upgraded
    if work.status.analysis.held:  # inconclusive analysis: a person decides (promote or abort)
        if in_place or _guard_green(work):
            work.done = True
        return
    if waiting_for_human:
        if not in_place and not _guard_green(work):
            return
        if not _analyse(work):
            return
        work.done = True
        return
    work.update(held_phase=None)
    work.goto(held, f"resumed: back to {held.value}")


def _promoted(work: Pass) -> None:
    if _held_by_spec(work):
        return
    promoted_at = work.status.promoted_at or work.now
    until = promoted_at + duration(work.spec.promotion.retain_blue_for)
    healthy = work.record_health()
    if not healthy:
        _, why = work.green_healthy()
        work.wait(f"green serves 100% but is unhealthy ({why}); blue is kept; abort to roll back")
        return
    if not hooks.run_at(work, HookPoint.AFTER_PROMOTION):
        return
    post = analysis.asked_since(work.status, _hook_names(work, WebhookType.POST_ROLLOUT), promoted_at)
    if post:
        work.check(webhooks=post)
        return
    if not _jobs_passed(work, JobPhase.PROMOTED):
        return
    if not _analyse(work):
        return
    if work.now < until:
        work.wake(until)
        work.wait(f"green serves 100%; blue kept until {until.isoformat()} (rollback window)")
        return
    work.goto(Phase.RETIRING, f"rollback window over; retiring blue {work.spec.cluster.name}")


def _retiring(work: Pass) -> None:
    if _held_by_spec(work):
        return
    blue = work.observed.blue
    if not work.status.routers_finalized and not hooks.run_at(work, HookPoint.BEFORE_RETIRE):
        return
    if not work.status.routers_finalized:
        work.act(FinalizeRouters())
        work.update(routers_finalized=True)
        work.event("RoutersFinalized", "routers no longer route to blue (e.g. blue's DNS record deleted)")
        work.wait("removing blue from every router")
        return
    if work.observed.workloads.blue:
        work.act(DeleteWorkloads(side="blue"))
        work.wait("removing blue's Flux Kustomizations")
        return
    if work.spec.promotion.blue_deletion_policy == BlueDeletionPolicy.DELETE and blue.exists:
        # Asked again while the deletion runs: deleting is idempotent, and a provider whose
        # cleanup was cut short (machine configs after the Cluster) finishes it.
        work.act(DeleteCluster(side="blue", name=blue.name))
        work.wait(f"deleting blue cluster {blue.name}")
        return
    retained = work.spec.promotion.blue_deletion_policy == BlueDeletionPolicy.RETAIN and blue.exists
    message = f"blue cluster {blue.name} retained (policy Retain)" if retained else f"blue cluster {blue.name} deleted"
    work.condition(ConditionType.BLUE_RETIRED, True, "Retained" if retained else "Deleted", message)
    work.event("BlueRetired", message)
    work.goto(Phase.COMPLETED, f"upgrade complete: {work.spec.green_name} serves all traffic; {message}")
    work.done = True


def _rolling_back(work: Pass) -> None:
    if work.status.node_pools is not None:
        nodepools.rolling_back(work)
        return
    if not rollback.return_traffic(work):
        return
    work.condition(ConditionType.TRAFFIC_SHIFTED, False, "RolledBack", "blue serves 100% of traffic")
    window = work.spec.rollback.retain_green_for
    work.update(promoted_at=None, rolled_back_at=work.now)
    work.goto(Phase.ROLLED_BACK, f"blue serves 100%; green {work.spec.green_name} kept for inspection for {window} "
              "(annotate bluegreen.io/retry to shift again)", warning=True)


def _rolled_back(work: Pass) -> None:
    if work.status.node_pools is not None:  # an aborted rotation: no green cluster, nothing to retire
        work.done = True
        return
    since = work.status.rolled_back_at or work.now
    if work.status.rolled_back_at is None:
        work.update(rolled_back_at=since)
    post = analysis.asked_since(work.status, _hook_names(work, WebhookType.POST_ROLLOUT), since)
    if post:
        work.check(webhooks=post)
        return
    if work.status.green_retired or work.spec.paused:
        work.done = True
        return
    until = since + duration(work.spec.rollback.retain_green_for)
    if work.now < until:
        work.wake(until)
        work.wait(f"blue serves 100%; green {work.spec.green_name} kept for inspection until {until.isoformat()} "
                  "(annotate bluegreen.io/retry to shift again)")
        return
    message = rollback.retire_green(work, when="after the inspection window")
    if message is None:
        return
    work.update(message=f"blue serves 100%; {message} after the inspection window")
    work.done = True


def _upgrading(work: Pass) -> None:
    """InPlace: raise the cluster's version one minor at a time; after each, spec.inPlace.betweenMinors."""
    if _held_by_spec(work):
        return
    spec, blue = work.spec, work.observed.blue
    state = work.status.in_place or InPlaceStatus(path=work.status.preflight.path, since=work.now)
    total = len(state.path)
    if state.index >= total:
        work.update(blue=ClusterStatus(name=blue.name, version=blue.version))
        message = f"upgrade complete: {blue.name} runs {spec.target.kubernetes_version}, upgraded in place " \
                  f"through {total} minor(s)"
        work.goto(Phase.COMPLETED, message)
        work.done = True
        return
    minor = state.path[state.index]
    label = f"minor {state.index + 1}/{total} ({minor})"
    since = state.since or work.now
    if not state.rolled_out:
        deadline = since + duration(spec.in_place.timeout)
        reached = blue.version is not None and preflight.minor_of(blue.version) == minor
        if not reached:
            work.act(UpgradeInPlace(name=blue.name, version=minor))
            work.update(in_place=state.model_copy(update={"since": since}))
            work.condition(ConditionType.GREEN_READY, False, "RollingOut", f"{blue.name}: asked for {minor}")
            work.wake(deadline)
            work.wait(f"{label}: asking {blue.name} for {minor}")
            return
        if blue.failed:
            _stop_in_place(work, f"{label}: {blue.name} failed while rolling out {minor}: {blue.reason}",
                           reason="RolloutFailed")
            return
        if blue.rolling_out or not blue.ready:
            why = blue.reason or "rolling out"
            if work.now >= deadline:
                _stop_in_place(work, f"{label}: {blue.name} has not rolled out {minor} after "
                               f"{spec.in_place.timeout}: {why}", reason="RolloutTimeout")
                return
            work.condition(ConditionType.GREEN_READY, False, "RollingOut", f"{blue.name}: {why}")
            work.wake(deadline)
            work.wait(f"{label}: {blue.name} rolling out {minor}: {why}")
            return
        work.condition(ConditionType.GREEN_READY, True, "RolledOut", f"{blue.name} runs {blue.version}")
        work.event("MinorRolledOut", f"{blue.name} runs {blue.version} ({label})")
        work.update(in_place=state.model_copy(update={"rolled_out": True, "step": 0, "since": work.now}),
                    blue=ClusterStatus(name=blue.name, version=blue.version),
                    step=StepStatus(index=0, started_at=work.now, weights_changed_at=work.now),
                    analysis=analysis.restart_streaks(work.status.analysis))
        return
    if not _analyse(work):
        return
    step = _current_step(work)
    if step is None:
        work.update(in_place=state.model_copy(update={"index": state.index + 1, "rolled_out": False, "step": 0,
                                                      "since": work.now}), step=StepStatus())
        return
    _run_step(work, step, f"after {minor}: step {work.status.step.index + 1}/{len(spec.in_place.between_minors)}")


def _stop_in_place(work: Pass, message: str | None = None, *, reason: str = "Aborted") -> None:
    """In place cannot go back: stop where the cluster is, say where that is, and let a person decide."""
    blue = work.observed.blue
    if message is None:
        message = (f"aborted by request (bluegreen.io/abort): {blue.name} stays at {blue.version or 'its version'}; "
                   "a rollout under way is finished by the provider (in place has no way back); annotate "
                   "bluegreen.io/retry to go on from there")
    work.update(held_phase=None)
    work.condition(ConditionType.PROGRESSING, False, reason, message)
    work.goto(Phase.FAILED, message, warning=True)
    work.done = True


def _in_place(work: Pass) -> bool:
    """This upgrade is in place (phase Upgrading, or held from it)."""
    phase = work.status.phase
    return phase == Phase.UPGRADING or (phase == Phase.PAUSED and work.status.held_phase == Phase.UPGRADING)


def _terminal(work: Pass) -> None:
    work.done = True


_HANDLERS = {
    Phase.PENDING: _pending,
    Phase.PREFLIGHT: _preflight,
    Phase.BLOCKED: _blocked,
    Phase.PROVISIONING: _provisioning,
    Phase.SYNCING: _syncing,
    Phase.VERIFYING: _verifying,
    Phase.SHIFTING: _shifting,
    Phase.UPGRADING: _upgrading,
    Phase.ROTATING: _rotating,
    Phase.PAUSED: _paused,
    Phase.PROMOTED: _promoted,
    Phase.RETIRING: _retiring,
    Phase.COMPLETED: _terminal,
    Phase.ROLLING_BACK: _rolling_back,
    Phase.ROLLED_BACK: _rolled_back,
    Phase.FAILED: _terminal,
}


# --- helpers ----------------------------------------------------------------------------------


def _steps(work: Pass) -> list[Step]:
    """The steps the upgrade walks: traffic steps, or in place the steps after each minor."""
    if _in_place(work):
        return work.spec.in_place.between_minors
    if work.spec.strategy == Strategy.NODE_POOLS:
        return []
    return work.spec.traffic.steps


def _current_step(work: Pass) -> Step | None:
    steps = _steps(work)
    index = work.status.step.index
    return steps[index] if index < len(steps) else None


def _advance(work: Pass) -> None:
    index = work.status.step.index
    total = len(_steps(work))
    if index < total:
        work.event("StepCompleted", f"step {index + 1}/{total} completed")
    work.update(step=StepStatus(index=index + 1, started_at=work.now,
                                weights_changed_at=work.status.step.weights_changed_at))
    if work.status.in_place is not None and _in_place(work):
        work.update(in_place=work.status.in_place.model_copy(update={"step": index + 1}))
    following = _current_step(work)
    if following is not None and following.analysis is not None:
        work.update(analysis=analysis.restart_streaks(work.status.analysis))


def _held_by_spec(work: Pass) -> bool:
    """spec.paused holds every forward phase where it is; Paused remembers which."""
    if not work.spec.paused:
        return False
    work.update(held_phase=work.status.phase)
    work.goto(Phase.PAUSED, f"paused by spec.paused in {work.status.phase.value}")
    work.done = True
    return True


def _guard_green(work: Pass) -> bool:
    """While traffic may be on green, hold on any doubt and roll back on a lasting failure."""
    if work.record_health():
        return True
    _, why = work.green_healthy()
    if work.status.weights.green == 0:
        work.wait(f"traffic stays on blue: {why}")
        return False
    since = cond.false_since(list(work.status.conditions), ConditionType.WORKLOADS_IN_SYNC) or \
        cond.false_since(list(work.status.conditions), ConditionType.GREEN_READY) or work.now
    grace = duration(work.spec.workloads.timeout)
    if work.now - since >= grace:
        work.goto(Phase.ROLLING_BACK, f"green unhealthy for {format_duration(work.now - since)}: {why}",
                  warning=True)
        return False
    work.wake(since + grace)
    work.wait(f"holding at green {work.status.weights.green}%: {why}")
    return False


def _fail(work: Pass, type_: ConditionType, reason: str, message: str) -> None:
    work.condition(type_, False, reason, message)
    if work.status.weights.green > 0:
        work.goto(Phase.ROLLING_BACK, message, warning=True)
    else:
        work.goto(Phase.FAILED, message, warning=True)
    work.done = True


# --- analysis ---------------------------------------------------------------------------------


def _hook_names(work: Pass, type_: WebhookType) -> tuple[str, ...]:
    return tuple(hook.name for hook in work.spec.analysis.hooks(type_))


def _gate_open(work: Pass, type_: WebhookType, *, since: datetime.datetime, what: str) -> bool:
    """A confirm-* webhook gate: open on a 2xx since ``since``; a "no" holds (not a failure) and is asked again."""
    names = _hook_names(work, type_)
    if not names:
        return True
    ask, closed, again = analysis.gate(work.status, names, since=since, now=work.now,
                                       interval=duration(work.spec.analysis.interval))
    if not closed:
        return True
    if ask:
        work.check(webhooks=ask)
    if again is not None:
        work.wake(again)
    work.update(message=f"waiting for {type_.value} before {what}: {'; '.join(closed)}")
    work.condition(ConditionType.PROGRESSING, True, "WaitingForGate", work.status.message)
    work.done = True
    return False


def _checks_at_zero(work: Pass) -> bool:
    """Green at 0 %: pre-rollout webhooks, smoke Jobs at Verifying and HTTP probes must pass first."""
    since = work.status.phase_since or work.now
    spec = work.spec
    pre = _hook_names(work, WebhookType.PRE_ROLLOUT)
    failed = [r for r in work.status.analysis.results
              if r.kind == "webhook" and r.name in pre and r.time >= since and r.phase != CheckPhase.SUCCESSFUL]
    if len(failed) >= spec.analysis.failure_limit:
        _analysis_failed(work, f"pre-rollout webhook {failed[-1].name} failed: {failed[-1].message}")
        return False
    verdict = analysis.verdict(spec, work.status)
    if verdict.failed:
        _analysis_failed(work, "; ".join(verdict.failed))
        return False
    interval = duration(spec.analysis.interval)
    ask, closed, again = analysis.gate(work.status, pre, since=since, now=work.now, interval=interval)
    probes = []
    waiting = list(closed)
    for metric in spec.analysis.metrics:
        if metric.http_probe is None or metric.comparative is not None:
            continue
        latest = work.status.analysis.latest(metric.name, "metric")
        if latest is not None and latest.time >= since and latest.phase == CheckPhase.SUCCESSFUL:
            continue
        waiting.append(f"{metric.name}: {latest.message if latest and latest.time >= since else 'not probed yet'}")
        if latest is None or latest.time < since or work.now >= latest.time + interval:
            probes.append(metric.name)
        else:
            again = latest.time + interval if again is None else min(again, latest.time + interval)
    if ask or probes:
        work.check(metrics=tuple(probes), webhooks=ask)
        return False
    if not _jobs_passed(work, JobPhase.VERIFYING):
        return False
    if waiting:
        if again is not None:
            work.wake(again)
        work.wait("checking green at 0 % traffic: " + "; ".join(waiting))
        return False
    return True


JOB_POLL = datetime.timedelta(seconds=10)  # a safety net: a watch on the Jobs wakes the upgrade on each change


def _jobs_passed(work: Pass, at: JobPhase) -> bool:
    """Smoke Jobs of this phase: start the missing, wait for the running, roll back on a failure."""
    jobs = [job for job in work.spec.analysis.jobs if job.at == at]
    seen_jobs = {job.name: work.observed.jobs.get(job.name) or JobObservation(state="Missing") for job in jobs}
    for job in jobs:
        if seen_jobs[job.name].state == "Failed":
            _analysis_failed(work, f"smoke Job {job.name} in {job.cluster.value} failed: {seen_jobs[job.name].message}")
            return False
    running = []
    for job in jobs:
        seen = seen_jobs[job.name]
        if seen.state == "Missing":
            work.act(StartJob(name=job.name, side=job.cluster.value))
            running.append(job.name)
        elif seen.state != "Succeeded":
            running.append(job.name)
    if running:
        work.wake(work.now + JOB_POLL)
        work.wait(f"waiting for smoke Job(s) {', '.join(running)}")
        return False
    return True


def _analyse(work: Pass) -> bool:
    """Judge green while it takes traffic (or at an analysis step). False: this pass stops here."""
    spec = work.spec
    names = analysis.counted_names(spec)
    if not names:
        return True
    verdict = analysis.verdict(spec, work.status)
    if verdict.failed:
        _analysis_failed(work, "; ".join(verdict.failed))
        return False
    if verdict.inconclusive:
        why = "; ".join(verdict.inconclusive)
        work.condition(ConditionType.ANALYSIS_PASSING, None, "Inconclusive", why)
        # Held at a human pause already: that pause stays what it resumes to, Shifting.
        resume_to = (work.status.held_phase or Phase.SHIFTING) if work.status.phase == Phase.PAUSED \
            else work.status.phase
        work.update(analysis=work.status.analysis.model_copy(update={"held": why}), held_phase=resume_to)
        work.goto(Phase.PAUSED, f"analysis inconclusive, held for a person: {why}; annotate bluegreen.io/promote=step "
                  "to go on or bluegreen.io/abort to roll back", warning=True)
        work.done = True
        return False
    # No data is never a pass: from the first inconclusive result (Prometheus unreachable, no series)
    # AnalysisPassing says Unknown, not the True of an earlier measurement, until one passes again.
    unsure: list[str] = []
    for name in names:
        state = work.status.analysis.metric(name)
        if state is None or state.last_phase != CheckPhase.INCONCLUSIVE:
            continue
        hook = name.removeprefix(analysis.WEBHOOK_STATE_PREFIX)
        metric = next((m for m in spec.analysis.metrics if m.name == name), None)
        limit = (spec.analysis.metric_inconclusive_limit(metric) if metric is not None
                 else spec.analysis.inconclusive_limit)
        latest = work.status.analysis.latest(name, "metric") if metric is not None \
            else work.status.analysis.latest(hook, "webhook")
        why = f": {latest.message}" if latest is not None and latest.message else ""
        unsure.append(f"{name}'s latest result is inconclusive ({state.inconclusive} of inconclusiveLimit {limit} "
                      f"in this run){why}")
    if unsure:
        work.condition(ConditionType.ANALYSIS_PASSING, None, "Inconclusive",
                       f"no measurement, so no pass: {'; '.join(unsure)}")
    step = _current_step(work) if work.status.phase in {Phase.SHIFTING, Phase.UPGRADING} else None
    if work.status.weights.green == 0 and (step is None or step.analysis is None):
        return True  # nothing flows to green: metrics would measure nothing
    metrics, next_metric = analysis.due(spec, work.status, work.now)
    hooks, next_hook = analysis.rollout_hooks_due(spec, work.status, work.now)
    if metrics or hooks:
        work.check(metrics=metrics, webhooks=hooks)
        return False
    for at in (next_metric, next_hook):
        if at is not None:
            work.wake(at)
    states = [work.status.analysis.metric(name) for name in names]
    if states and all(state is not None and state.last_phase == CheckPhase.SUCCESSFUL for state in states):
        work.condition(ConditionType.ANALYSIS_PASSING, True, "Passing", analysis.passing_summary(spec, work.status))
    return True


def _analysis_failed(work: Pass, message: str) -> None:
    work.condition(ConditionType.ANALYSIS_PASSING, False, "AnalysisFailed", message)
    work.event("AnalysisFailed", message, warning=True)
    if _in_place(work):
        blue = work.observed.blue
        _stop_in_place(work, f"analysis failed in place: {message}; {blue.name} stays at {blue.version} "
                       "(in place has no way back): fix the cause and annotate bluegreen.io/retry",
                       reason="AnalysisFailed")
        return
    work.goto(Phase.ROLLING_BACK, f"analysis failed, rolling back to blue: {message}", warning=True)
    work.done = False  # the rollback starts in this same pass

"""One pass of the engine: the mutable working state :func:`bluegreen.engine.decide.decide` turns into a Decision.

The phase handlers in ``decide``, and the preflight and hooks rules beside it,
all speak through these small verbs, so that what a pass changed (status,
actions, events, the next wake-up) is gathered in one place and nothing else
is mutable.
"""

from __future__ import annotations

import dataclasses
import datetime

from bluegreen.api.spec import ClusterUpgradeSpec
from bluegreen.api.status import ClusterUpgradeStatus, ConditionType, Phase, Weights
from bluegreen.engine import conditions as cond
from bluegreen.engine.types import Action, Event, Observed, RunChecks, SaveRouters, SetWeights


@dataclasses.dataclass
class Pass:
    """The mutable working state of one pass; turned into a Decision at the end."""

    spec: ClusterUpgradeSpec
    observed: Observed
    now: datetime.datetime
    owner: str
    status: ClusterUpgradeStatus
    actions: list[Action] = dataclasses.field(default_factory=list)
    events: list[Event] = dataclasses.field(default_factory=list)
    wake_at: datetime.datetime | None = None
    done: bool = False  # stop looping: waiting for an action's effect or a change
    entered: set[Phase] = dataclasses.field(default_factory=set)  # phases this pass moved into
    release: bool = False  # a deleted upgrade's cleanup is over: its finalizer may go

    # --- small verbs ---------------------------------------------------------------------------

    def update(self, **changes: object) -> None:
        self.status = self.status.model_copy(update=changes)

    def condition(self, type_: ConditionType, status: bool | None, reason: str, message: str = "") -> None:
        self.update(conditions=cond.set_condition(
            list(self.status.conditions), type_=type_, status=status, reason=reason, message=message,
            now=self.now, generation=self.observed.generation,
        ))

    def check(self, *, metrics: tuple[str, ...] = (), webhooks: tuple[str, ...] = (), also: bool = False) -> None:
        """Ask the I/O layer to run checks; their results are in status on the next pass, which runs at once.

        ``also``: alongside another action of this pass (a notification), without ending the pass.
        """
        if not metrics and not webhooks:
            return
        if also:
            self.actions.append(RunChecks(metrics=metrics, webhooks=webhooks))
        else:
            self.act(RunChecks(metrics=metrics, webhooks=webhooks))
        self.wake(self.now)

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(Event(reason=reason, message=message, type="Warning" if warning else "Normal"))

    def wake(self, at: datetime.datetime) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def act(self, action: Action) -> None:
        self.actions.append(action)
        self.done = True

    def wait(self, message: str) -> None:
        self.update(message=message)
        self.done = True

    def goto(self, phase: Phase, message: str, *, warning: bool = False) -> None:
        if phase == self.status.phase:
            self.update(message=message)
            return
        self.update(phase=phase, phase_since=self.now, message=message)
        self.entered.add(phase)
        self.event(phase.value, message, warning=warning)
        progressing = phase not in {Phase.COMPLETED, Phase.FAILED, Phase.ROLLED_BACK, Phase.BLOCKED, Phase.PAUSED}
        self.condition(ConditionType.PROGRESSING, progressing, phase.value, message)
        if phase == Phase.COMPLETED:
            self.condition(ConditionType.READY, True, "Completed", message)
        elif phase in {Phase.FAILED, Phase.ROLLED_BACK, Phase.BLOCKED}:
            self.condition(ConditionType.READY, False, phase.value, message)

    def set_weights(self, green: int) -> None:
        """Ask for ``green`` percent everywhere; status records it as applied once the action ran.

        The first change of an upgrade is preceded by a pass of its own that saves what every
        router holds (status.routers), so finalize can restore it and nothing half-changed is saved.
        """
        if self.status.routers is None:
            self.act(SaveRouters())
            self.wake(self.now)
            self.update(message="reading what every router holds before the first change")
            return
        self.act(SetWeights(green=green))
        self.update(weights=Weights(blue=100 - green, green=green, verified=True),
                    step=self.status.step.model_copy(update={"weights_changed_at": self.now}))
        self.event("TrafficWeightUpdated", f"traffic: blue {100 - green}%, green {green}%")

    # --- what the world says -------------------------------------------------------------------

    def workloads_in_sync(self) -> tuple[bool, str]:
        """Green's Kustomizations all Ready at blue's revisions (the parity gate)."""
        workloads = self.observed.workloads
        if not workloads.blue:
            return False, (
                f"no Flux Kustomization matches spec.workloads.flux.selector in namespace "
                f"{self.spec.flux_namespace}"
            )
        if workloads.green_missing:
            return False, f"green's copies not created yet: {', '.join(workloads.green_missing)}"
        copies = {k.copy_of: k for k in workloads.green}
        for original in workloads.blue:
            copy = copies.get(original.name)
            if copy is None:
                return False, f"green has no copy of Kustomization {original.name}"
            if not copy.ready:
                why = ": ".join(part for part in (copy.reason, copy.message) if part) or "not Ready"
                return False, f"green's Kustomization {copy.namespace}/{copy.name} is not Ready: {why}"
            if self.spec.workloads.require_same_revision and copy.revision != original.revision:
                return False, (
                    f"green's Kustomization {copy.name} is at revision {copy.revision}, "
                    f"blue's {original.name} at {original.revision}"
                )
        return True, f"{len(workloads.blue)} Kustomization(s) Ready on green at blue's revision"

    def green_healthy(self) -> tuple[bool, str]:
        green = self.observed.green
        if not green.exists or green.deleting:
            return False, f"green cluster {green.name} does not exist"
        if not green.ready:
            return False, f"green cluster {green.name} is not ready: {green.reason or 'not ready'}"
        in_sync, why = self.workloads_in_sync()
        return in_sync, why

    def record_health(self) -> bool:
        """Refresh GreenReady/WorkloadsInSync from the world; return whether green may carry traffic."""
        green = self.observed.green
        if green.exists and green.ready:
            self.condition(ConditionType.GREEN_READY, True, "ClusterReady", f"{green.name} is ready")
        else:
            why = green.reason or ("does not exist" if not green.exists else "not ready")
            self.condition(ConditionType.GREEN_READY, False, "ClusterNotReady", f"{green.name}: {why}")
        in_sync, why = self.workloads_in_sync()
        self.condition(ConditionType.WORKLOADS_IN_SYNC, in_sync, "InSync" if in_sync else "NotInSync", why)
        healthy, _ = self.green_healthy()
        return healthy

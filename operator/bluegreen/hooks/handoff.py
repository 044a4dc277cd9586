"""Handoffs: a workload that must never run on both clusters moves from one to the other.

A StatefulSet on its own volumes, a leader-elected controller, a CronJob that
sends the invoices: two copies at once corrupt data or do the work twice. So
the *source* side (blue going forward, green when a rollback hands it back) is
stopped and seen stopped before the *destination* starts, and Flux is told each
time, or it would start it again at its next reconcile (see
:mod:`bluegreen.workloads.flux_holds`).

The stages, each one :meth:`Handoffs.advance` call:

1. **hold the source**: every Kustomization of the source side gets a hold
   patch (``spec.replicas: 0`` for that workload; it records how many replicas
   the source ran and when), then the workload is scaled to 0 through its scale
   subresource, so nobody waits for Flux's interval;
2. **wait** until the source's status shows the new generation and no replica
   left (the pods are gone, not just asked to go);
3. **start the destination**: its workload is annotated with the handoff it
   follows (``bluegreen.io/handoff-from: <source>@<hold time>``), the replicas it
   must reach and when that began, and scaled to them; then the destination's
   hold patches are removed. The annotation is written before the holds go, so
   what the destination must reach is never lost between two passes;
4. **wait** until the destination's ``readyReplicas`` reach that number.

A CronJob goes through the same stages with other words for stopped and
started (:class:`Scheduled`): held and stopped is ``spec.suspend: true``, still
running is a Job in its ``status.active`` (a suspended CronJob starts no new
Job, but one it started goes on), and started is ``spec.suspend: false``, as
if it were one replica that is ready as soon as it is unsuspended. So green's
CronJob is unsuspended only once blue's runs no Job.

The destination's number is ``handoff.replicas`` going forward when set, else
what the destination ran when it was held (a hand-back restores blue's own
count), else what the source ran. The invariant that matters: the destination
is scaled up only once the source reports 0 replicas for its current
generation, and nothing here ever scales the source up again.

Observing reads everything afresh (both sides' Kustomizations on the management
cluster, both workloads), so a restarted operator goes on at the right stage.
A cluster that cannot be reached is Running with the reason (the engine comes
back); a workload missing on either side, or a side that does not scale within
``handoff.timeout``, is Failed with a message naming it.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import enum
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bluegreen.api import durations
from bluegreen.api import spec as api
from bluegreen.engine.types import HookObservation
from bluegreen.kube import objects
from bluegreen.kube.client import KubeClient, KubeError, Resource
from bluegreen.workloads import flux_holds
from bluegreen.workloads.flux_remote import KUSTOMIZATIONS, FluxRemoteWorkloads

MISSING, RUNNING, SUCCEEDED, FAILED = "Missing", "Running", "Succeeded", "Failed"

ANNOTATION_HANDOFF_FROM = "bluegreen.io/handoff-from"  # "<source side>@<source hold's time>"
ANNOTATION_HANDOFF_REPLICAS = "bluegreen.io/handoff-replicas"  # what the destination must reach
ANNOTATION_HANDOFF_SINCE = "bluegreen.io/handoff-since"  # when the destination was scaled up

Clock = Callable[[], datetime.datetime]


class HandoffError(Exception):
    """A handoff cannot go on as configured; the message names the workload or the field."""


class Stage(enum.Enum):
    NOT_STARTED = "not started"
    HOLD_SOURCE = "holding the source"
    SOURCE_DRAINING = "waiting for the source to stop"
    START_DESTINATION = "starting the destination"
    RELEASE_DESTINATION = "removing the destination's holds"
    SCALE_DESTINATION = "scaling the destination"
    DESTINATION_STARTING = "waiting for the destination"
    DONE = "done"


class Rules(abc.ABC):
    """What stopped, still running and started mean for one kind, as counts the stages compare.

    ``wanted`` is what the spec asks for, ``running`` what still runs, ``ready``
    what runs as it should; the stages never look at a workload but through these.
    ``spec_for`` is what stopping (0) or starting writes in spec. The rest are the
    words the messages and the journal use.
    """

    fixed_target: int | None = None  # what the destination must reach whatever the source ran
    scale_subresource: str | None = None  # where stopping and starting at once write (None: the object)
    held_as = ""  # "holding blue's X <held_as>"
    held_done = ""  # "blue's X is held <held_done>"
    down = ""  # "blue's X <down>; green's X is next"
    none_left = ""  # "... (blue's X <none_left>)"

    def __init__(self, resource: Resource) -> None:
        self.resource = resource

    @abc.abstractmethod
    def wanted(self, workload: Mapping[str, Any]) -> int: ...

    @abc.abstractmethod
    def running(self, workload: Mapping[str, Any]) -> int: ...

    @abc.abstractmethod
    def ready(self, workload: Mapping[str, Any]) -> int: ...

    @abc.abstractmethod
    def current(self, workload: Mapping[str, Any]) -> bool:
        """Whether the status speaks of the spec as it is now."""

    @abc.abstractmethod
    def spec_for(self, count: int) -> dict[str, Any]: ...

    @abc.abstractmethod
    def runs(self, workload: Mapping[str, Any]) -> str: ...

    @abc.abstractmethod
    def spec_says(self, workload: Mapping[str, Any]) -> str: ...

    @abc.abstractmethod
    def left(self, count: int) -> str: ...

    @abc.abstractmethod
    def asks(self, workload: Mapping[str, Any], target: int) -> str: ...

    @abc.abstractmethod
    def started(self, workload: Mapping[str, Any]) -> str: ...

    @abc.abstractmethod
    def set_line(self, where: str, *, before: int, after: int) -> str: ...


class Scaled(Rules):
    """A StatefulSet or Deployment: stopped at 0 replicas and none left, started when its replicas are ready."""

    scale_subresource = "scale"
    held_as = "at 0 replicas"
    held_done = "at 0"
    down = "is down"
    none_left = "reports none left"

    def wanted(self, workload: Mapping[str, Any]) -> int:
        return spec_replicas(workload)

    def running(self, workload: Mapping[str, Any]) -> int:
        return running_replicas(workload)

    def ready(self, workload: Mapping[str, Any]) -> int:
        return ready_replicas(workload)

    def current(self, workload: Mapping[str, Any]) -> bool:
        return _status_current(workload)

    def spec_for(self, count: int) -> dict[str, Any]:
        return {"replicas": count}

    def runs(self, workload: Mapping[str, Any]) -> str:
        return f"runs {spec_replicas(workload)} replicas"

    def spec_says(self, workload: Mapping[str, Any]) -> str:
        return f"spec.replicas is {spec_replicas(workload)}"

    def left(self, count: int) -> str:
        return f"{count} replica{'s' if count != 1 else ''} left"

    def asks(self, workload: Mapping[str, Any], target: int) -> str:
        return (f"spec.replicas is {spec_replicas(workload)}, the handoff asks for {target} (Flux sets the "
                "manifests' replicas back when they differ)")

    def started(self, workload: Mapping[str, Any]) -> str:
        return f"runs {ready_replicas(workload)} ready replicas"

    def set_line(self, where: str, *, before: int, after: int) -> str:
        return f"scaled {where} from {before} to {after} replicas"


class Scheduled(Rules):
    """A CronJob: stopped when suspended with no active Job, started when unsuspended (one "replica")."""

    fixed_target = 1
    held_as = held_done = "suspended"
    down = "is suspended and runs no Job"
    none_left = "runs no Job"

    def wanted(self, workload: Mapping[str, Any]) -> int:
        return 0 if suspended(workload) else 1

    def running(self, workload: Mapping[str, Any]) -> int:
        return active_jobs(workload)

    def ready(self, workload: Mapping[str, Any]) -> int:
        return self.wanted(workload)  # nothing to wait for: unsuspended, it fires at its next schedule

    def current(self, workload: Mapping[str, Any]) -> bool:
        return True  # a CronJob's status has no observedGeneration; status.active is all there is

    def spec_for(self, count: int) -> dict[str, Any]:
        return {"suspend": count == 0}

    def runs(self, workload: Mapping[str, Any]) -> str:
        return "is suspended" if suspended(workload) else "runs on its schedule"

    def spec_says(self, workload: Mapping[str, Any]) -> str:
        return f"spec.suspend is {'true' if suspended(workload) else 'false'}"

    def left(self, count: int) -> str:
        return f"{count} Job{'s' if count != 1 else ''} still running"

    def asks(self, workload: Mapping[str, Any], target: int) -> str:
        return (f"{self.spec_says(workload)}, the handoff {'unsuspends' if target else 'suspends'} it (Flux "
                "suspended it again while it still held it)")

    def started(self, workload: Mapping[str, Any]) -> str:
        return "runs on its schedule (spec.suspend is false)"

    def set_line(self, where: str, *, before: int, after: int) -> str:
        return f"{'unsuspended' if after else 'suspended'} {where}"


RULES: dict[str, Rules] = {
    api.HandoffKind.STATEFUL_SET.value: Scaled(Resource("apps", "v1", "statefulsets")),
    api.HandoffKind.DEPLOYMENT.value: Scaled(Resource("apps", "v1", "deployments")),
    api.HandoffKind.CRON_JOB.value: Scheduled(Resource("batch", "v1", "cronjobs")),
}
WORKLOADS: dict[str, Resource] = {kind: rules.resource for kind, rules in RULES.items()}


@dataclasses.dataclass(frozen=True)
class View:
    """Both sides of one handoff as the clusters show them now."""

    source: str  # "blue" or "green"
    destination: str
    target: flux_holds.HoldTarget
    source_kustomizations: tuple[dict[str, Any], ...]
    destination_kustomizations: tuple[dict[str, Any], ...]
    source_workload: dict[str, Any]
    destination_workload: dict[str, Any]
    replicas: int | None = None  # handoff.replicas, going forward only

    @property
    def rules(self) -> Rules:
        return RULES[self.target.kind]

    def source_holds(self) -> list[dict[str, Any] | None]:
        return [flux_holds.find_hold(flux_holds.patches_of(item), self.target) for item in self.source_kustomizations]

    def destination_holds(self) -> list[dict[str, Any]]:
        return [hold for item in self.destination_kustomizations
                if (hold := flux_holds.find_hold(flux_holds.patches_of(item), self.target)) is not None]

    def source_record(self) -> flux_holds.HoldRecord | None:
        """The source's hold record: the earliest hold's (all are written alike), None when unheld."""
        records = [flux_holds.record_of(hold) for hold in self.source_holds() if hold is not None]
        return min(records, key=lambda record: record.since or "") if records else None

    def token(self) -> str:
        record = self.source_record()
        return f"{self.source}@{record.since if record and record.since else 'unknown'}"

    def destination_target(self) -> int | None:
        """What the destination must reach (see the module docstring), None when nothing says."""
        if self.rules.fixed_target is not None:
            return self.rules.fixed_target
        if self.replicas is not None:
            return self.replicas
        for hold in self.destination_holds():
            held = flux_holds.record_of(hold).replicas
            if held:
                return held
        record = self.source_record()
        if record is not None and record.replicas:
            return record.replicas
        return None

    def recorded_target(self) -> int | None:
        """The number stage 3 wrote on the destination, for this very hold of the source."""
        annotations = _annotations(self.destination_workload)
        if annotations.get(ANNOTATION_HANDOFF_FROM) != self.token():
            return None
        try:
            return int(annotations[ANNOTATION_HANDOFF_REPLICAS])
        except (KeyError, TypeError, ValueError):
            return None

    def where(self, side: str) -> str:
        return f"{side}'s {self.target}"


def _annotations(obj: Mapping[str, Any]) -> dict[str, Any]:
    found = objects.metadata(obj).get("annotations")
    return found if isinstance(found, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def spec_replicas(workload: Mapping[str, Any]) -> int:
    replicas = (workload.get("spec") or {}).get("replicas")
    return 1 if replicas is None else _int(replicas)  # the API's default is 1


def _status_current(workload: Mapping[str, Any]) -> bool:
    status = workload.get("status") or {}
    observed = status.get("observedGeneration")
    generation = objects.metadata(workload).get("generation")
    return isinstance(observed, int) and (not isinstance(generation, int) or observed >= generation)


def running_replicas(workload: Mapping[str, Any]) -> int:
    """Pods the workload's controller still counts (created, ready or available), from its status."""
    status = workload.get("status") or {}
    return max(_int(status.get(key)) for key in ("replicas", "readyReplicas", "availableReplicas"))


def ready_replicas(workload: Mapping[str, Any]) -> int:
    return _int((workload.get("status") or {}).get("readyReplicas"))


def suspended(cron_job: Mapping[str, Any]) -> bool:
    return (cron_job.get("spec") or {}).get("suspend") is True  # the API's default is false


def active_jobs(cron_job: Mapping[str, Any]) -> int:
    """The Jobs a CronJob's controller lists as running (``status.active``, references to them)."""
    active = (cron_job.get("status") or {}).get("active")
    return len(active) if isinstance(active, list) else 0


def stage_of(view: View) -> Stage:
    """Where a handoff stands; the same answer for :meth:`Handoffs.observe` and :meth:`Handoffs.advance`."""
    rules, source, destination = view.rules, view.source_workload, view.destination_workload
    holds = view.source_holds()
    if not any(hold is not None for hold in holds):
        return Stage.NOT_STARTED
    if not all(hold is not None for hold in holds) or rules.wanted(source) != 0:
        return Stage.HOLD_SOURCE
    if not rules.current(source) or rules.running(source) > 0:
        return Stage.SOURCE_DRAINING
    target = view.recorded_target()
    if target is None:
        return Stage.START_DESTINATION
    if view.destination_holds():
        return Stage.RELEASE_DESTINATION
    if rules.wanted(destination) != target:
        return Stage.SCALE_DESTINATION
    if not rules.current(destination) or rules.ready(destination) != target:
        return Stage.DESTINATION_STARTING
    return Stage.DONE


def _parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _rfc3339(moment: datetime.datetime) -> str:
    return _aware(moment).astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def judge(view: View, *, timeout: datetime.timedelta, now: datetime.datetime) -> HookObservation:
    """The hook's state and a message saying which stage, from one :class:`View`."""
    stage = stage_of(view)
    rules = view.rules
    source, destination = view.where(view.source), view.where(view.destination)
    if stage is Stage.NOT_STARTED:
        return HookObservation(state=MISSING, message=f"{source} {rules.runs(view.source_workload)}; "
                                                       f"{destination} is not started yet")
    if stage is Stage.HOLD_SOURCE:
        held = sum(hold is not None for hold in view.source_holds())
        return HookObservation(state=RUNNING, message=(
            f"holding {source} {rules.held_as}: {held} of {len(view.source_kustomizations)} Kustomizations "
            f"hold it, {rules.spec_says(view.source_workload)}"))
    if stage is Stage.SOURCE_DRAINING:
        left = rules.running(view.source_workload)
        message = f"{source}: {rules.left(left)}" if left else \
            f"{source}: waiting for its controller to observe the scale-down"
        record = view.source_record()
        since = _parse_time(record.since if record else None)
        if since is not None and _aware(now) - since > timeout:
            return HookObservation(state=FAILED, message=f"{message} after {durations.format_duration(timeout)}; "
                                                          f"{destination} was not started")
        return HookObservation(state=RUNNING, message=message)
    if stage is Stage.START_DESTINATION:
        if view.destination_target() is None:
            return HookObservation(state=FAILED, message=(
                f"{source} is down, but how many replicas {destination} should run is unknown ({view.source} ran 0 "
                "when it was held); set spec.hooks[].handoff.replicas"))
        return HookObservation(state=RUNNING, message=f"{source} {rules.down}; {destination} is next")
    target = view.recorded_target() or 0
    if stage is Stage.RELEASE_DESTINATION:
        return HookObservation(state=RUNNING, message=f"{source} {rules.down}; removing {destination}'s hold")
    if stage is Stage.SCALE_DESTINATION:
        return HookObservation(state=RUNNING, message=(
            f"{destination}: {rules.asks(view.destination_workload, target)}"))
    ready = rules.ready(view.destination_workload)
    if stage is Stage.DESTINATION_STARTING:
        message = f"{destination}: {ready}/{target} ready"
        since = _parse_time(_annotations(view.destination_workload).get(ANNOTATION_HANDOFF_SINCE))
        if since is not None and _aware(now) - since > timeout:
            return HookObservation(state=FAILED, message=f"{message} after {durations.format_duration(timeout)}")
        return HookObservation(state=RUNNING, message=message)
    return HookObservation(state=SUCCEEDED, message=f"{destination} {rules.started(view.destination_workload)}; "
                                                    f"{source} is held {rules.held_done}")


class Handoffs:
    """The handoff hooks of one upgrade (Flux remote mode)."""

    def __init__(
        self,
        spec: api.ClusterUpgradeSpec,
        *,
        management: KubeClient,
        side_client: Callable[[str], Awaitable[KubeClient]],
        clock: Clock = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._spec = spec
        self._management = management
        self._side_client = side_client
        self._clock = clock
        self._namespace = spec.flux_namespace
        self._flux: FluxRemoteWorkloads | None = None

    def _kustomizations(self) -> FluxRemoteWorkloads:
        if self._flux is None:
            self._flux = FluxRemoteWorkloads(client=self._management, flux=self._spec.workloads.flux,
                                             namespace=self._namespace, labels={})
        return self._flux

    async def look(self, hook: api.Hook, *, reverse: bool) -> View:
        """Both sides now; raises :class:`HandoffError` for what only a person can fix."""
        handoff = _handoff_of(hook)
        target = flux_holds.HoldTarget(kind=handoff.kind.value, namespace=handoff.namespace, name=handoff.name)
        source, destination = ("green", "blue") if reverse else ("blue", "green")
        flux = self._kustomizations()
        green_name = self._spec.green_name
        sides = {side: tuple(await flux.kustomizations(side=side, green_name=green_name))
                 for side in (source, destination)}
        if not sides[source]:
            raise HandoffError(self._no_kustomizations(source))
        workloads: dict[str, dict[str, Any]] = {}
        for side in (source, destination):
            client = await self._side_client(side)
            found = await client.get(WORKLOADS[target.kind], namespace=target.namespace, name=target.name)
            if found is None:
                raise HandoffError(f"{side}'s {target} does not exist; check spec.hooks[{hook.name}].handoff "
                                   f"(kind, namespace, name) against what Flux applies to {side}")
            workloads[side] = found
        return View(source=source, destination=destination, target=target,
                    source_kustomizations=sides[source], destination_kustomizations=sides[destination],
                    source_workload=workloads[source], destination_workload=workloads[destination],
                    replicas=None if reverse else handoff.replicas)

    def _no_kustomizations(self, side: str) -> str:
        if side == "blue":
            return (f"no Kustomization in {self._namespace} matches spec.workloads.flux.selector "
                    f"{self._spec.workloads.flux.selector.match_labels}: nothing can hold blue's workload at 0")
        return (f"green ({self._spec.green_name}) has no Kustomization copies in {self._namespace}: "
                "nothing can hold green's workload at 0")

    async def observe(self, hook: api.Hook, *, reverse: bool, now: datetime.datetime) -> HookObservation:
        try:
            view = await self.look(hook, reverse=reverse)
        except HandoffError as exc:
            return HookObservation(state=FAILED, message=str(exc))
        except KubeError as exc:
            return HookObservation(state=RUNNING, message=f"cannot read the handoff's state: {exc}")
        return judge(view, timeout=durations.parse_duration(_handoff_of(hook).timeout), now=now)

    async def advance(self, hook: api.Hook, *, reverse: bool) -> list[str]:
        view = await self.look(hook, reverse=reverse)
        stage = stage_of(view)
        if stage in (Stage.NOT_STARTED, Stage.HOLD_SOURCE):
            return await self._hold_source(view)
        if stage is Stage.START_DESTINATION:
            return await self._start_destination(view, hook=hook)
        if stage is Stage.RELEASE_DESTINATION:
            return await self._release_destination(view)
        if stage is Stage.SCALE_DESTINATION:
            return [await self._set(view.destination, view, count=view.recorded_target() or 0)]
        return []  # waiting for a controller, or done

    async def _hold_source(self, view: View) -> list[str]:
        rules = view.rules
        record = view.source_record()
        replicas: int | None = None  # a kind with a fixed target (CronJob) has no count worth keeping
        if rules.fixed_target is None:
            replicas = record.replicas if record and record.replicas is not None else rules.wanted(
                view.source_workload)
        since = record.since if record and record.since else _rfc3339(self._clock())
        hold = flux_holds.hold_patch(view.target, replicas=replicas, since=since)
        ran = f" (it ran {replicas})" if replicas is not None else ""
        journal = []
        for kustomization, found in zip(view.source_kustomizations, view.source_holds(), strict=True):
            if found is None:
                await self._set_patches(kustomization, [*flux_holds.patches_of(kustomization), hold])
                journal.append(f"Kustomization {self._namespace}/{objects.name_of(kustomization)} holds "
                               f"{view.where(view.source)} {rules.held_as}{ran}")
        if rules.wanted(view.source_workload) != 0:
            journal.append(await self._set(view.source, view, count=0))
        return journal

    async def _start_destination(self, view: View, *, hook: api.Hook) -> list[str]:
        target = view.destination_target()
        if target is None:
            raise HandoffError(f"how many replicas {view.where(view.destination)} should run is unknown; "
                               f"set spec.hooks[{hook.name}].handoff.replicas")
        client = await self._side_client(view.destination)
        annotations = {ANNOTATION_HANDOFF_FROM: view.token(), ANNOTATION_HANDOFF_REPLICAS: str(target),
                       ANNOTATION_HANDOFF_SINCE: _rfc3339(self._clock())}
        rules = view.rules
        # One write: the record of what to reach travels with the start, before any hold goes.
        await client.patch(rules.resource, namespace=view.target.namespace, name=view.target.name,
                           body={"metadata": {"annotations": annotations}, "spec": rules.spec_for(target)})
        line = rules.set_line(view.where(view.destination), before=rules.wanted(view.destination_workload),
                              after=target)
        journal = [f"{line} ({view.where(view.source)} {rules.none_left})"]
        return journal + await self._release_destination(view)

    async def _release_destination(self, view: View) -> list[str]:
        journal = []
        for kustomization in view.destination_kustomizations:
            patches = flux_holds.patches_of(kustomization)
            if flux_holds.find_hold(patches, view.target) is None:
                continue
            await self._set_patches(kustomization, flux_holds.without_holds(patches, [view.target]))
            journal.append(f"Kustomization {self._namespace}/{objects.name_of(kustomization)} no longer holds "
                           f"{view.where(view.destination)}")
        return journal

    async def _set_patches(self, kustomization: Mapping[str, Any], patches: list[Any]) -> None:
        # The resourceVersion makes a concurrent edit of the list a conflict (retried), not a lost write.
        meta = objects.metadata(kustomization)
        await self._management.patch(
            KUSTOMIZATIONS, namespace=self._namespace, name=objects.name_of(kustomization),
            body={"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": {"patches": patches or None}},
        )

    async def _set(self, side: str, view: View, *, count: int) -> str:
        """Stop (``count`` 0) or start one side's workload at once, without waiting for Flux."""
        rules = view.rules
        client = await self._side_client(side)
        before = rules.wanted(view.source_workload if side == view.source else view.destination_workload)
        await client.patch(rules.resource, namespace=view.target.namespace, name=view.target.name,
                           body={"spec": rules.spec_for(count)}, subresource=rules.scale_subresource)
        return rules.set_line(view.where(side), before=before, after=count)


def _handoff_of(hook: api.Hook) -> api.Handoff:
    if hook.handoff is None:
        raise ValueError(f"hook {hook.name!r} is not a handoff")
    return hook.handoff


"""One ClusterUpgrade's loop: observe -> decide -> act -> write status -> wait.

The loop is the only place that does I/O for an upgrade. Its rules:

- Status is the only memory. Each pass reads the object fresh, so a restarted
  operator (or a second replica taking over) continues from what was written.
- Actions run in the order decided and are idempotent; the decided status is
  written only after all of them succeeded. A failure writes the *previous*
  status with the error in a condition and a growing backoff, so the same
  decision is retried, never skipped and never half-recorded.
- Control annotations are removed before the status that consumes them is
  written: a crash in between loses a request (a person repeats it) rather
  than applying it twice (which could skip a step).
- Waiting is a wake-up time or a watched change, never a sleep in a handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from bluegreen.analysis import job as smoke_jobs
from bluegreen.analysis import runner as metrics
from bluegreen.analysis import webhook as webhooks
from bluegreen.analysis.base import CheckContext
from bluegreen.api import spec as api
from bluegreen.api.status import (
    JOURNAL_LIMIT,
    CheckResult,
    ClusterUpgradeStatus,
    ConditionType,
    DrainState,
    EvictionEntry,
    HookPhase,
    JournalEntry,
    Phase,
    PreflightStatus,
    RotationStage,
    SavedRouter,
    Weights,
    parse_status,
)
from bluegreen.clusters.base import ClusterProvider, WorkerCapacity
from bluegreen.clusters.registry import build_cluster_provider
from bluegreen.engine import analysis as bookkeeping
from bluegreen.engine import conditions as cond
from bluegreen.engine import decide, upgrade_label
from bluegreen.engine import deletion as deletion_rules
from bluegreen.engine import nodepools as rotation_rules
from bluegreen.engine.types import (
    FINALIZER,
    LABEL_UPGRADE,
    Action,
    ClusterObservation,
    CordonNodes,
    Decision,
    DeleteCluster,
    DeleteWorkloads,
    DrainNode,
    EnsurePool,
    Event,
    FinalizeRouters,
    HookObservation,
    JobObservation,
    Observed,
    PoolObservation,
    ProvisionGreen,
    RemoveAnnotation,
    RunChecks,
    RunHook,
    SaveRouters,
    ScalePool,
    ScanPreflight,
    SetWeights,
    StartJob,
    SyncWorkloads,
    UpgradeInPlace,
    WorkloadsObservation,
)
from bluegreen.hooks.runner import HookRunner
from bluegreen.kube.client import ConflictError, InvalidError, KubeClient, NotFoundError, Resource
from bluegreen.kube.events import post_event
from bluegreen.kube.remote import RemoteClients
from bluegreen.metrics import PassReport, UpgradeMetrics
from bluegreen.nodepools.drain import NODES, PODS
from bluegreen.nodepools.rotation import Rotation
from bluegreen.preflight import references as secret_references
from bluegreen.preflight.run import run_preflight
from bluegreen.remote_watch import RemoteWatches
from bluegreen.settings import OperatorSettings
from bluegreen.traffic.base import Router, RouterContext, RouterError, RouterPending
from bluegreen.traffic.registry import build_routers
from bluegreen.wakeups import Interests, Wakeups
from bluegreen.workloads import flux_remote
from bluegreen.workloads.base import RemoteWatch, WorkloadSync
from bluegreen.workloads.registry import build_workload_sync

logger = logging.getLogger(__name__)

CLUSTER_UPGRADES = Resource(api.GROUP, api.VERSION, api.PLURAL)
# Preflight checks cost API calls (and in git mode a clone); they run only before anything is created.
PREFLIGHT_PHASES = frozenset({Phase.PENDING, Phase.PREFLIGHT, Phase.BLOCKED})
# While green syncs and serves, what happens inside the workload clusters matters.
REMOTE_WATCH_PHASES = frozenset({Phase.SYNCING, Phase.VERIFYING, Phase.SHIFTING, Phase.PAUSED, Phase.PROMOTED,
                                 Phase.RETIRING, Phase.ROLLING_BACK, Phase.ROTATING, Phase.DELETING})
# Smoke Jobs run at Verifying or Promoted; a pass may reach those from the phase before.
JOB_PHASES = {
    api.JobPhase.VERIFYING: frozenset({Phase.SYNCING, Phase.VERIFYING}),
    api.JobPhase.PROMOTED: frozenset({Phase.SHIFTING, Phase.PAUSED, Phase.PROMOTED}),
}
# Hooks are looked at only in the phase their point is in: reading a handoff costs calls to both clusters.
# A pass that reaches the phase from the one before sees the hook as not started and asks it to move on,
# which is safe (moving a hook on looks at the world first and does the next stage only).
HOOK_PHASES = {
    api.HookPoint.BEFORE_TRAFFIC: frozenset({Phase.VERIFYING}),
    api.HookPoint.AFTER_PROMOTION: frozenset({Phase.PROMOTED}),
    api.HookPoint.BEFORE_RETIRE: frozenset({Phase.RETIRING}),
}
HANDOFF_RESOURCES = {
    api.HandoffKind.STATEFUL_SET: Resource("apps", "v1", "statefulsets"),
    api.HandoffKind.DEPLOYMENT: Resource("apps", "v1", "deployments"),
    api.HandoffKind.CRON_JOB: Resource("batch", "v1", "cronjobs"),
}
# Handoffs that began are handed back while rolling back.
HAND_BACK_PHASES = frozenset({Phase.ROLLING_BACK, Phase.DELETING})
# NodePools: a node turning Ready, an evicted pod's replacement starting, a budget that now allows an eviction.
ROTATION_WATCHED = (NODES, PODS, Resource("policy", "v1", "poddisruptionbudgets"))
# NodePools: the worker pools and their nodes matter from preflight until the rotation is over or undone.
POOL_PHASES = PREFLIGHT_PHASES | {Phase.ROTATING, Phase.PAUSED, Phase.ROLLING_BACK, Phase.DELETING}
# Adding or removing the finalizer races with kopf's own finalizer writes (a stale resourceVersion):
# read again and retry this many times before it counts as a failed pass.
FINALIZER_ATTEMPTS = 3


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


@dataclasses.dataclass
class Context:
    """What all upgrades of one operator process share."""

    management: KubeClient
    remote: RemoteClients
    wakeups: Wakeups
    settings: OperatorSettings
    clock: Callable[[], datetime.datetime] = utcnow
    metrics: UpgradeMetrics = dataclasses.field(default_factory=UpgradeMetrics)
    # One loop at a time per upgrade: a deleted upgrade's cleanup (kopf's on.delete) starts only once the
    # daemon kopf stops on deletion has finished its pass and let go of the upgrade's wake-up.
    runs: dict[tuple[str, str], asyncio.Lock] = dataclasses.field(default_factory=dict)


class WeightsNotVerified(Exception):
    """A router reports other weights than it was just given."""

    def __init__(self, router: str, message: str) -> None:
        super().__init__(message)
        self.router = router


class RouterFailure(Exception):
    """A router refused a change; names the router so status and the journal can say which."""

    def __init__(self, router: str, action: str, error: Exception) -> None:
        super().__init__(f"router {router}: {error}")
        self.router = router
        self.action = action
        self.error = error


@dataclasses.dataclass(frozen=True)
class ActResult:
    """What carrying out a decision produced for status: journal lines, check results, saved routers, scans."""

    journal: list[JournalEntry]
    results: list[CheckResult]
    saved_routers: list[SavedRouter] | None = None
    preflight: PreflightStatus | None = None
    drain: tuple[DrainState, EvictionEntry | None, str | None] | None = None  # a NodePools drain pass


@dataclasses.dataclass
class Collaborators:
    """The providers one spec needs; rebuilt only when the spec changes."""

    digest: str
    provider: ClusterProvider
    workloads: WorkloadSync
    routers: list[Router]
    hooks: HookRunner
    rotation: Rotation


def _digest(raw_spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(raw_spec, sort_keys=True).encode()).hexdigest()


class UpgradeLoop:
    def __init__(self, context: Context, *, namespace: str, name: str) -> None:
        self.context = context
        self.namespace = namespace
        self.name = name
        self.owner = upgrade_label(namespace, name)
        self._collaborators: Collaborators | None = None
        self._remote_watches: RemoteWatches | None = None
        self._written: tuple[dict[str, Any], int] | None = None  # the last status write's answer, and changes()

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    async def run(self, *, stop: asyncio.Event) -> None:
        """Reconcile until stopped (operator exit or the object's deletion), or until the object is gone or, once
        deleted, released by its cleanup."""
        async with self.context.runs.setdefault(self.key, asyncio.Lock()):
            await self._run(stop=stop)

    async def _run(self, *, stop: asyncio.Event) -> None:
        wake = self.context.wakeups.event(self.key)
        self._remote_watches = RemoteWatches(self.context.remote, wake, label=self.owner)
        # Passes in a row that failed before they had a status to show it on (reading the object): without
        # this, the exception would end the daemon and kopf would start it again only after a minute.
        unread = 0
        try:
            while not stop.is_set():
                woken_at = wake.set_at
                wake.clear()
                try:
                    delay = await self.reconcile_once(woken_at=woken_at)
                    unread = 0
                except Exception as exc:  # nowhere to show it but the log: back off like any failed pass
                    unread += 1
                    delay = self.context.settings.backoff(unread)
                    logger.warning("%s/%s: pass failed: %s: %s; retrying in %gs (attempt %d)",
                                   self.namespace, self.name, type(exc).__name__, exc, delay, unread)
                if delay is None:
                    return
                await _wait_any(wake, stop, seconds=min(delay, self.context.settings.resync_seconds))
        finally:
            await self._remote_watches.close()
            self.context.wakeups.forget(self.key)
            with _never_failing("forget an upgrade's metrics"):
                self.context.metrics.forget(namespace=self.namespace, name=self.name)

    async def reconcile_once(self, *, woken_at: float | None = None) -> float | None:
        """One pass. Returns seconds until the next pass is due, None if the object is gone.

        ``woken_at`` (time.monotonic()) is when the change that woke this pass happened, for the latency metric.
        """
        started = time.monotonic()
        management = self.context.management
        body = self._written_body() or await management.get(CLUSTER_UPGRADES, namespace=self.namespace, name=self.name)
        if body is None:
            return None
        now = self.context.clock()
        status = parse_status(body.get("status"))
        meta = body.get("metadata") or {}
        deleting = bool(meta.get("deletionTimestamp"))
        held = FINALIZER in (meta.get("finalizers") or ())
        if deleting and not held:
            return None  # nothing of ours to clean up (never acted, spec.onDelete Leave, or released by hand)
        raw_spec = body.get("spec") or {}
        spec: api.ClusterUpgradeSpec | None
        spec_error: str | None = None
        try:
            spec = api.parse_spec(raw_spec)
        except api.SpecError as exc:
            spec, spec_error = None, str(exc)

        try:
            if spec is None:
                observed = _blind_observation(meta, spec_error)
            else:
                collaborators = self._collaborators_for(spec, raw_spec)
                self._register_interests(spec)
                observed = await self._observe(spec, collaborators, meta, status=status, now=now)
            decision = decide(spec, status, observed, now, owner=self.owner)
            if spec is not None and not deleting:
                # On before the first action a deletion would have to undo; off once nothing is left to undo.
                wanted = deletion_rules.needs_finalizer(spec, decision.status)
                if wanted != held:
                    body = await self._hold(wanted)
            if spec is not None:
                done = await self._act(decision, collaborators, spec=spec, body=body, now=now)
            else:
                done = ActResult(journal=[], results=[])
                await self._act_annotations_only(decision)
        except RouterPending as pending:  # accepted, not in effect yet: hold this step, not a failure
            return await self._record_pending(body, status, pending, now=now)
        except Exception as exc:  # any failure of the world: keep the old status, say why, back off
            return await self._record_failure(body, status, exc, spec=spec, now=now)

        if spec is not None and self._remote_watches is not None:
            watching = decision.status.phase in REMOTE_WATCH_PHASES
            self._remote_watches.ensure([
                *collaborators.workloads.remote_watches(blue_name=spec.cluster.name, green_name=spec.green_name),
                *self._job_watches(spec, collaborators),
                *self._node_watches(spec, collaborators),
            ] if watching else [])
        new_status = decision.status.model_copy(update={
            "failures": 0,
            "journal": (list(decision.status.journal) + done.journal)[-JOURNAL_LIMIT:],
        })
        if done.saved_routers is not None:
            new_status = new_status.model_copy(update={"routers": done.saved_routers})
        if done.preflight is not None:
            new_status = new_status.model_copy(update={"preflight": done.preflight})
        if done.drain is not None:
            drain, evicted, blocking = done.drain
            new_status = rotation_rules.record_drain(new_status, drain=drain, evicted=evicted, blocking_pod=blocking)
        if spec is not None:
            new_status = bookkeeping.record(new_status, spec, done.results)
        changes = self.context.wakeups.changes(self.key)
        try:
            written = await self._write_status(body, status, new_status)
        except Exception as exc:  # e.g. a 500 or 409: the pass is not recorded, so it is redone from a fresh read
            return await self._record_failure(body, status, exc, spec=spec, now=now)
        if written is not None:
            self._written = (written, changes)
        with _never_failing("record a pass's metrics"):
            self.context.metrics.record_pass(namespace=self.namespace, name=self.name, report=PassReport(
                old=status, new=new_status, routers=[router.display_name for router in spec.routers] if spec else [],
                acted=bool(decision.actions), evicted=done.drain is not None and done.drain[1] is not None,
                started=started, woken_at=woken_at, now=now,
            ))
        for event in decision.events:
            await self._post(body, event, now=now)
        if spec is not None and decision.events and spec.analysis.hooks(api.WebhookType.EVENT):
            await self._send_events(spec, new_status, decision.events, body=body, now=now)
        if decision.release:
            try:
                await self._hold(False)
            except Exception as exc:  # released on the next pass; the cleanup itself is over and recorded
                return await self._record_failure(body, new_status, exc, spec=spec, now=now)
            return None
        if written is not None:
            # Something moved: look again at once (the loop's own write no longer wakes it, so a
            # failure's backoff is waited out; a pass that changed nothing waits for the world) -- unless
            # the engine, asked again with what it just wrote and saw, has nothing to do: the world's next
            # change wakes the loop anyway, and the pass that would only have seen that saves its reads.
            settled = self._settled(spec, new_status, observed, now) if spec is not None else None
            return 0.0 if settled is None else self._delay_until(settled, now)
        return self._delay_until(decision, now)

    def _settled(self, spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus, observed: Observed,
                 now: datetime.datetime) -> Decision | None:
        """The engine's decision on what this pass wrote and saw, if it holds still: no action, no event, the
        same status. Nothing is carried out from it; a change of the world since the pass's reads has set
        the loop's wake-up already."""
        again = decide(spec, status, observed, now, owner=self.owner)
        if again.actions or again.events or again.release or again.status != status:
            return None
        return again

    # --- observe ------------------------------------------------------------------------------

    def _collaborators_for(self, spec: api.ClusterUpgradeSpec, raw_spec: dict[str, Any]) -> Collaborators:
        digest = _digest(raw_spec)
        if self._collaborators is None or self._collaborators.digest != digest:
            management = self.context.management
            provider = build_cluster_provider(spec.cluster.provider.value, client=management)
            cluster_namespace = spec.cluster.namespace

            def kubeconfig_ref(cluster: str) -> tuple[str, str, str]:
                return provider.kubeconfig_secret_ref(namespace=cluster_namespace, name=cluster)

            self._collaborators = Collaborators(
                digest=digest,
                provider=provider,
                workloads=build_workload_sync(
                    spec, management=management, remote_clients=self.context.remote,
                    upgrade_namespace=self.namespace, kubeconfig_ref=kubeconfig_ref,
                    workdir=self.context.settings.workdir / self.owner, labels={LABEL_UPGRADE: self.owner},
                ),
                routers=build_routers(spec.routers, context=RouterContext(
                    management=management, remote=self.context.remote, namespace=self.namespace,
                    upgrade_name=self.name)),
                hooks=HookRunner(spec, management=management, owner=self.owner, upgrade_namespace=self.namespace,
                                 side_client=lambda side: self._side_client(spec, provider, side)),
                rotation=Rotation(spec, provider=provider,
                                  cluster_client=lambda: self._side_client(spec, provider, "blue")),
            )
        return self._collaborators

    def _register_interests(self, spec: api.ClusterUpgradeSpec) -> None:
        flux = spec.workloads_spec.flux if spec.workloads_spec is not None else None  # NodePools: none
        self.context.wakeups.register(self.key, Interests(
            clusters=frozenset({spec.cluster.name, spec.green_name}),
            flux_namespaces=frozenset({spec.flux_namespace}),
            kustomizations=flux_remote.kustomization_labels(flux, green_name=spec.green_name)
            if flux is not None and flux.mode == api.FluxMode.REMOTE else frozenset(),
        ))

    async def _observe(
        self,
        spec: api.ClusterUpgradeSpec,
        collaborators: Collaborators,
        meta: dict[str, Any],
        *,
        status: ClusterUpgradeStatus,
        now: datetime.datetime,
    ) -> Observed:
        phase = status.phase
        ns = spec.cluster.namespace
        blue, green, workloads = await asyncio.gather(
            collaborators.provider.observe(namespace=ns, name=spec.cluster.name),
            collaborators.provider.observe(namespace=ns, name=spec.green_name),
            collaborators.workloads.observe(blue_name=spec.cluster.name, green_name=spec.green_name),
        )
        problems: list[str] = []
        # What stops green from being created matters to BlueGreen (and Auto, which may choose it).
        if phase in PREFLIGHT_PHASES and spec.strategy not in {api.Strategy.IN_PLACE, api.Strategy.NODE_POOLS}:
            cluster_problems, workload_problems = await asyncio.gather(
                collaborators.provider.preflight(namespace=ns, blue_name=spec.cluster.name,
                                                 green_name=spec.green_name, overrides=dict(spec.target.overrides)),
                collaborators.workloads.preflight(blue_name=spec.cluster.name, green_name=spec.green_name),
            )
            problems = [*cluster_problems, *workload_problems]
        missing_secrets: list[str] = []
        if phase in PREFLIGHT_PHASES:  # before the first action: a Secret read at first use would be too late
            missing_secrets = await secret_references.missing_secrets(
                self.context.management, namespace=self.namespace, spec=spec)
        jobs, hooks = await asyncio.gather(self._observe_jobs(spec, collaborators, status=status, now=now),
                                           self._observe_hooks(spec, collaborators, status=status, now=now))
        pools: dict[str, PoolObservation] = {}
        attached: tuple[str, ...] | None = None
        replacements: tuple[bool, str] | None = None
        if spec.strategy == api.Strategy.NODE_POOLS and phase in POOL_PHASES and blue.exists:
            rotation = collaborators.rotation
            nodes = await rotation.nodes()
            pools = await rotation.pools(nodes)
            if phase in PREFLIGHT_PHASES:
                planned, _ = rotation_rules.plan_rotation(spec, pools)
                problems.extend(await rotation.problems(planned))
            state = status.node_pools
            if state is not None and phase == Phase.ROTATING:
                if state.stage == RotationStage.CHECKING_LOAD_BALANCERS:
                    attached = await rotation.unattached(state, nodes)
                elif state.stage == RotationStage.WAITING_FOR_REPLACEMENTS:
                    replacements = await rotation.replacements(state)
        return Observed(
            pools=pools,
            attachment=attached,
            replacements=replacements,
            jobs=jobs,
            hooks=hooks,
            preflight_problems=tuple(problems),
            reference_problems=tuple(missing_secrets),
            generation=int(meta.get("generation") or 0),
            annotations=dict(meta.get("annotations") or {}),
            blue=blue,
            green=green,
            workloads=workloads,
            deleting=bool(meta.get("deletionTimestamp")),
        )

    async def _observe_jobs(
        self, spec: api.ClusterUpgradeSpec, collaborators: Collaborators, *, status: ClusterUpgradeStatus,
        now: datetime.datetime,
    ) -> dict[str, JobObservation]:
        wanted = [job for job in spec.analysis.jobs if status.phase in JOB_PHASES[job.at]]
        if not wanted:
            return {}

        async def one(job: api.SmokeJob) -> tuple[str, JobObservation]:
            try:
                client = await self._side_client(spec, collaborators.provider, job.cluster.value)
            except Exception as exc:  # no kubeconfig yet: the engine waits, it does not fail the Job
                return job.name, JobObservation(state="Running", message=f"cannot reach {job.cluster.value}: {exc}")
            name = smoke_jobs.job_object_name(upgrade=self.owner, job=job.name, run=status.analysis.run)
            return job.name, await smoke_jobs.observe_job(client, job, object_name=name, now=now)

        return dict(await asyncio.gather(*(one(job) for job in wanted)))

    async def _observe_hooks(
        self, spec: api.ClusterUpgradeSpec, collaborators: Collaborators, *, status: ClusterUpgradeStatus,
        now: datetime.datetime,
    ) -> dict[str, HookObservation]:
        def looked_at(hook: api.Hook) -> bool:
            state = status.hook(hook.name)
            if status.phase in HAND_BACK_PHASES:
                return hook.handoff is not None and state is not None \
                    and state.phase not in {HookPhase.REVERTED, HookPhase.HAND_BACK_FAILED}
            return status.phase in HOOK_PHASES[hook.at] and (state is None or state.phase == HookPhase.RUNNING)

        reverse = status.phase in HAND_BACK_PHASES
        wanted = [(hook, reverse) for hook in spec.hooks if looked_at(hook)]
        if not wanted:
            return {}

        async def one(hook: api.Hook, reverse: bool) -> tuple[str, HookObservation]:
            seen = await collaborators.hooks.observe(hook, reverse=reverse, run=status.analysis.run, now=now)
            return hook.name, seen

        return dict(await asyncio.gather(*(one(hook, reverse) for hook, reverse in wanted)))

    def _node_watches(self, spec: api.ClusterUpgradeSpec, collaborators: Collaborators) -> list[RemoteWatch]:
        """NodePools: what the rotation waits for in the rotated cluster wakes it at once (ROTATION_WATCHED)."""
        if spec.strategy != api.Strategy.NODE_POOLS:
            return []
        kubeconfig = collaborators.provider.kubeconfig_secret_ref(namespace=spec.cluster.namespace,
                                                                   name=spec.cluster.name)
        return [RemoteWatch(kubeconfig=kubeconfig, resource=resource, namespace=None) for resource in ROTATION_WATCHED]

    def _job_watches(self, spec: api.ClusterUpgradeSpec, collaborators: Collaborators) -> list[RemoteWatch]:
        """A smoke Job's or a hook's progress wakes the upgrade at once (no kopf watch reaches workload clusters)."""
        places = {(job.cluster.value, smoke_jobs.JOBS, job.namespace) for job in spec.analysis.jobs}
        for hook in spec.hooks:
            if hook.job is not None:
                places.add((hook.cluster.value, smoke_jobs.JOBS, hook.job.namespace))
            if hook.handoff is not None:
                resource = HANDOFF_RESOURCES[hook.handoff.kind]
                places.update((side, resource, hook.handoff.namespace) for side in ("blue", "green"))
        return [
            RemoteWatch(
                kubeconfig=collaborators.provider.kubeconfig_secret_ref(
                    namespace=spec.cluster.namespace, name=spec.cluster.name if side == "blue" else spec.green_name),
                resource=resource, namespace=namespace,
            )
            for side, resource, namespace in sorted(places, key=lambda place: (place[0], str(place[1]), place[2]))
        ]

    async def _side_client(self, spec: api.ClusterUpgradeSpec, provider: ClusterProvider, side: str) -> KubeClient:
        cluster = spec.cluster.name if side == "blue" else spec.green_name
        namespace, name, key = provider.kubeconfig_secret_ref(namespace=spec.cluster.namespace, name=cluster)
        return await self.context.remote.client(namespace=namespace, name=name, key=key)

    def _check_context(self, spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus) -> CheckContext:
        # In place, the cluster being upgraded is the one measured: {{cluster}} and {{green}} name it.
        measured = spec.cluster.name if status.in_place is not None else spec.green_name
        return CheckContext(
            upgrade=self.name, namespace=self.namespace, phase=status.phase.value,
            blue=spec.cluster.name, green=measured,
            blue_weight=status.weights.blue, green_weight=status.weights.green, step=status.step.index,
            management=self.context.management,
        )

    # --- act ----------------------------------------------------------------------------------

    async def _act(
        self,
        decision: Decision,
        collaborators: Collaborators,
        *,
        spec: api.ClusterUpgradeSpec,
        body: dict[str, Any],
        now: datetime.datetime,
    ) -> ActResult:
        journal: list[JournalEntry] = []
        results: list[CheckResult] = []
        saved: list[SavedRouter] | None = None
        preflight: PreflightStatus | None = None
        drain: tuple[DrainState, EvictionEntry | None, str | None] | None = None
        ns = spec.cluster.namespace
        rotation = collaborators.rotation
        for action in _annotations_first(decision.actions):
            match action:
                case RemoveAnnotation(key=key):
                    await self._remove_annotation(key)
                case ProvisionGreen(name=green, version=version):
                    detail = await collaborators.provider.provision_green(
                        namespace=ns, blue_name=spec.cluster.name, green_name=green, version=version,
                        overrides=dict(spec.target.overrides), labels={LABEL_UPGRADE: self.owner},
                    )
                    if detail is not None:
                        journal.append(JournalEntry(time=now, target="cluster", action="create", detail=detail))
                case SyncWorkloads(green_name=green):
                    ref = collaborators.provider.kubeconfig_secret_ref(namespace=ns, name=green)
                    for line in await collaborators.workloads.sync_green(
                        blue_name=spec.cluster.name, green_name=green, kubeconfig_secret=ref,
                    ):
                        journal.append(JournalEntry(time=now, target="workloads", action="sync", detail=line))
                case SetWeights():
                    journal.extend(await self._set_weights(collaborators.routers, action, body=body))
                case SaveRouters():
                    saved = []
                    for router in collaborators.routers:
                        try:
                            saved.append(SavedRouter(name=router.name, original=await router.save()))
                        except RouterError as exc:
                            raise RouterFailure(router.name, "save", exc) from exc
                case FinalizeRouters(retired=retired):
                    originals = {item.name: item.original for item in decision.status.routers or []}
                    for router, router_spec in reversed(list(zip(collaborators.routers, spec.traffic.routers,
                                                                 strict=True))):
                        try:
                            detail = await router.finalize(retired=retired, mode=router_spec.on_finalize.value,
                                                           original=originals.get(router.name))
                        except RouterError as exc:
                            raise RouterFailure(router.name, "finalize", exc) from exc
                        journal.append(JournalEntry(time=self.context.clock(), target=router.name,
                                                    action="finalize", detail=detail))
                case RunChecks():
                    results.extend(await self._run_checks(action, spec=spec, status=decision.status, body=body))
                case StartJob(name=job_name, side=side):
                    job = next(job for job in spec.analysis.jobs if job.name == job_name)
                    client = await self._side_client(spec, collaborators.provider, side)
                    object_name = smoke_jobs.job_object_name(upgrade=self.owner, job=job.name,
                                                             run=decision.status.analysis.run)
                    detail = await smoke_jobs.start_job(client, job, object_name=object_name,
                                                        labels={LABEL_UPGRADE: self.owner})
                    journal.append(JournalEntry(time=now, target=f"job/{job.name}", action="start", detail=detail))
                case ScanPreflight():
                    preflight = await self._scan(spec, collaborators, now=now)
                case UpgradeInPlace(name=cluster, version=version):
                    detail = await collaborators.provider.set_version(namespace=ns, name=cluster, version=version)
                    if detail is not None:
                        journal.append(JournalEntry(time=now, target="cluster", action="upgrade", detail=detail))
                case RunHook(name=hook_name, reverse=reverse):
                    hook = next(hook for hook in spec.hooks if hook.name == hook_name)
                    for line in await collaborators.hooks.advance(hook, reverse=reverse,
                                                                  run=decision.status.analysis.run):
                        journal.append(JournalEntry(time=self.context.clock(), target=f"hook/{hook_name}",
                                                    action="hand back" if reverse else "run", detail=line))
                case DeleteWorkloads(side=side):
                    for line in await collaborators.workloads.delete(
                        side=side, blue_name=spec.cluster.name, green_name=spec.green_name,
                    ):
                        journal.append(JournalEntry(time=now, target="workloads", action="delete", detail=line))
                case EnsurePool(pool=pool, source=source, name=new, replicas=replicas):
                    detail = await rotation.ensure_pool(pool=pool, source=source, new=new, replicas=replicas)
                    if detail is not None:
                        journal.append(JournalEntry(time=now, target=f"pool/{new}", action="create", detail=detail))
                case ScalePool(name=pool, replicas=replicas):
                    detail = await rotation.scale_pool(pool=pool, replicas=replicas)
                    if detail is not None:
                        journal.append(JournalEntry(time=now, target=f"pool/{pool}", action="scale", detail=detail))
                case CordonNodes(nodes=nodes, unschedulable=unschedulable):
                    for line in await rotation.cordon(nodes, unschedulable=unschedulable):
                        journal.append(JournalEntry(time=self.context.clock(), target="nodes",
                                                    action="cordon" if unschedulable else "uncordon", detail=line))
                case DrainNode(node=node):
                    state = decision.status.node_pools
                    assert state is not None, "DrainNode without status.nodePools"
                    drain = await rotation.drain(node, state, now=self.context.clock())
                case DeleteCluster(name=cluster):
                    detail = await collaborators.provider.delete(namespace=ns, name=cluster)
                    if detail is not None:
                        journal.append(JournalEntry(time=now, target="cluster", action="delete", detail=detail))
        return ActResult(journal=journal, results=results, saved_routers=saved, preflight=preflight, drain=drain)

    async def _scan(self, spec: api.ClusterUpgradeSpec, collaborators: Collaborators, *,
                    now: datetime.datetime) -> PreflightStatus:
        """The preflight scans of blue and its sources; what cannot be scanned is in the result, not raised."""
        provider, ns = collaborators.provider, spec.cluster.namespace
        blue = await provider.observe(namespace=ns, name=spec.cluster.name)

        async def green_capacity() -> WorkerCapacity:
            return await provider.green_capacity(namespace=ns, blue_name=spec.cluster.name,
                                                 overrides=dict(spec.target.overrides))

        return await run_preflight(
            spec, management=self.context.management,
            blue=await self._side_client(spec, provider, "blue"), blue_name=spec.cluster.name,
            blue_version=blue.version or "", green_capacity=green_capacity,
            workdir=self.context.settings.workdir / self.owner / "preflight", now=now,
            upgrade_namespace=self.namespace,
        )

    async def _run_checks(
        self, action: RunChecks, *, spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus, body: dict[str, Any]
    ) -> list[CheckResult]:
        """Run the asked checks concurrently; each returns a result, none raises (a failure is a verdict)."""
        context = self._check_context(spec, status)
        now = self.context.clock()
        checksum = self._checksum(body, status)
        by_metric = {metric.name: metric for metric in spec.analysis.metrics}
        by_hook = {hook.name: hook for hook in spec.analysis.webhooks}
        calls = [metrics.measure_metric(by_metric[name], ctx=context, now=now) for name in action.metrics]
        calls += [webhooks.call_webhook(by_hook[name], ctx=context, now=now, checksum=checksum)
                  for name in action.webhooks]
        return list(await asyncio.gather(*calls))

    def _checksum(self, body: dict[str, Any], status: ClusterUpgradeStatus) -> str:
        meta = body.get("metadata") or {}
        return webhooks.checksum(namespace=self.namespace, name=self.name, uid=str(meta.get("uid", "")),
                                 generation=int(meta.get("generation") or 0), run=status.analysis.run)

    async def _send_events(
        self, spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus, events: tuple[Event, ...], *,
        body: dict[str, Any], now: datetime.datetime,
    ) -> None:
        hooks = spec.analysis.hooks(api.WebhookType.EVENT)
        context = self._check_context(spec, status)
        checksum = self._checksum(body, status)
        for event in events:
            for problem in await webhooks.send_event(hooks, ctx=context, reason=event.reason, message=event.message,
                                                     event_type=event.type, now=now, checksum=checksum):
                logger.warning("%s/%s: %s", self.namespace, self.name, problem)

    async def _act_annotations_only(self, decision: Decision) -> None:
        for action in decision.actions:
            if isinstance(action, RemoveAnnotation):
                await self._remove_annotation(action.key)

    async def _set_weights(
        self, routers: list[Router], action: SetWeights, *, body: dict[str, Any]
    ) -> list[JournalEntry]:
        """Apply to every router (in order when moving to green, in reverse when moving back), verify each."""
        current = parse_status(body.get("status")).weights.green
        ordered = routers if action.green >= current else list(reversed(routers))
        journal: list[JournalEntry] = []
        for router in ordered:
            try:
                change = await router.set_weights(blue=action.blue, green=action.green)
                effective = await router.verify()
            except RouterError as exc:
                raise RouterFailure(router.name, "setWeights", exc) from exc
            if effective is not None and (effective.blue, effective.green) != (action.blue, action.green):
                raise WeightsNotVerified(
                    router.name,
                    f"router {router.name} reports blue {effective.blue}% / green {effective.green}% "
                    f"after being set to blue {action.blue}% / green {action.green}%"
                )
            # Recorded when the router changed, and also when status did not yet know the router
            # was at this weight (a crash between the change and the status write): the journal
            # tells every weight the upgrade went through, once.
            if change.changed or current != action.green:
                journal.append(JournalEntry(
                    time=self.context.clock(), target=router.name, action="setWeights",
                    detail=change.detail or "already at these weights (applied before a restart)",
                    weights=Weights(blue=action.blue, green=action.green, verified=effective is not None),
                    change_id=change.change_id,
                ))
        return journal

    async def _hold(self, held: bool) -> dict[str, Any]:
        """Add (or remove) the finalizer bluegreen.io/cleanup; returns the object as patched.

        A JSON patch tested against the resourceVersion just read, like kopf's own finalizer writes, so
        neither drops the other's finalizer from the list.
        """
        management = self.context.management
        for attempt in range(1, FINALIZER_ATTEMPTS + 1):
            body = await management.get(CLUSTER_UPGRADES, namespace=self.namespace, name=self.name)
            if body is None:
                raise NotFoundError(404, "NotFound", f"clusterupgrade {self.namespace}/{self.name} is gone")
            meta = body.get("metadata") or {}
            finalizers = list(meta.get("finalizers") or ())
            if (FINALIZER in finalizers) == held:
                return body
            wanted = [*finalizers, FINALIZER] if held else [item for item in finalizers if item != FINALIZER]
            operations: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")},
                {"op": "replace" if "finalizers" in meta else "add", "path": "/metadata/finalizers", "value": wanted},
            ]
            try:
                patched = await management.patch(CLUSTER_UPGRADES, namespace=self.namespace, name=self.name,
                                                 body=operations, patch_type="json")
            except (InvalidError, ConflictError):
                if attempt == FINALIZER_ATTEMPTS:
                    raise
                continue
            logger.info("%s/%s: finalizer %s %s", self.namespace, self.name, FINALIZER,
                        "added" if held else "removed")
            return patched
        raise AssertionError("unreachable")

    async def _remove_annotation(self, key: str) -> None:
        await self.context.management.patch(
            CLUSTER_UPGRADES, namespace=self.namespace, name=self.name,
            body={"metadata": {"annotations": {key: None}}},
        )

    # --- write --------------------------------------------------------------------------------

    async def _write_status(
        self, body: dict[str, Any], old: ClusterUpgradeStatus, new: ClusterUpgradeStatus
    ) -> dict[str, Any] | None:
        """Write status if it changed; the object as written, or None if it did not change."""
        if new == old and body.get("status"):
            return None
        wire = new.to_wire()
        # A merge patch removes what the new status no longer has (a cleared heldPhase, or
        # nodePools.blockingPod once the budget allows), at any depth of nested objects.
        _null_removed(body.get("status") or {}, wire, keep=frozenset({"kopf"}))
        return await self.context.management.patch(
            CLUSTER_UPGRADES, namespace=self.namespace, name=self.name, body={"status": wire}, subresource="status",
        )

    def _written_body(self) -> dict[str, Any] | None:
        """The object as the last pass wrote it, if nobody else changed it since: the next pass then starts
        from it rather than reading it again (a round trip less between a change and what it causes). What
        a person changes meanwhile wakes the loop again, and that pass reads afresh."""
        written, self._written = self._written, None
        if written is None:
            return None
        body, changes = written
        return body if changes == self.context.wakeups.changes(self.key) else None

    async def _record_failure(
        self, body: dict[str, Any], status: ClusterUpgradeStatus, exc: Exception, *,
        spec: api.ClusterUpgradeSpec | None, now: datetime.datetime,
    ) -> float:
        with _never_failing("count a failure in the metrics"):
            self._count_failure(exc, spec)
        failures = status.failures + 1
        delay = self.context.settings.backoff(failures)
        message = f"{type(exc).__name__}: {exc}; retrying in {delay:g}s (attempt {failures})"
        logger.warning("%s/%s: %s", self.namespace, self.name, message)
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        conditions = cond.set_condition(
            list(status.conditions), type_=ConditionType.PROGRESSING, status=False, reason="RetryingAfterError",
            message=message, now=now, generation=generation,
        )
        journal = list(status.journal)
        if isinstance(exc, RouterFailure):  # a router's refused change is part of the story of the traffic
            journal = [*journal, JournalEntry(time=now, target=exc.router, action=f"{exc.action} failed",
                                              detail=str(exc.error))][-JOURNAL_LIMIT:]
        failed = status.model_copy(update={"failures": failures, "conditions": conditions, "message": message,
                                           "journal": journal})
        try:
            await self._write_status(body, status, failed)
        except Exception as write_error:  # the API itself may be what fails; the next pass tries again
            logger.warning("%s/%s: could not record the failure: %s", self.namespace, self.name, write_error)
        if failures == 1 or failures % 10 == 0:
            await self._post(body, Event(reason="RetryingAfterError", message=message, type="Warning"), now=now)
        return delay

    def _count_failure(self, exc: Exception, spec: api.ClusterUpgradeSpec | None) -> None:
        kinds = {router.display_name: router.kind for router in spec.routers} if spec else {}
        if isinstance(exc, RouterFailure):
            self.context.metrics.record_router_error(kind=kinds.get(exc.router, "unknown"), action=exc.action)
        elif isinstance(exc, WeightsNotVerified):
            self.context.metrics.record_router_error(kind=kinds.get(exc.router, "unknown"), action="verify")
        self.context.metrics.record_failure(error=exc, provider=spec.cluster.provider.value if spec else None)

    async def _record_pending(
        self, body: dict[str, Any], status: ClusterUpgradeStatus, pending: RouterPending, *, now: datetime.datetime
    ) -> float:
        message = f"waiting for a router: {pending}"
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        conditions = cond.set_condition(
            list(status.conditions), type_=ConditionType.PROGRESSING, status=True, reason="WaitingForRouter",
            message=message, now=now, generation=generation,
        )
        await self._write_status(body, status, status.model_copy(update={"conditions": conditions,
                                                                         "message": message}))
        return max(0.1, pending.retry_after)

    async def _post(self, body: dict[str, Any], event: Event, *, now: datetime.datetime) -> None:
        await post_event(self.context.management, involved=body, reason=event.reason, message=event.message,
                         type_=event.type, now=now)

    def _delay_until(self, decision: Decision, now: datetime.datetime) -> float:
        if decision.wake_at is None:
            return self.context.settings.resync_seconds
        return max(0.0, (decision.wake_at - now).total_seconds())


@contextlib.contextmanager
def _never_failing(what: str) -> Iterator[None]:
    """Metrics describe the loop; a fault in them is logged, never allowed to stop a pass or a loop."""
    try:
        yield
    except Exception:
        logger.exception("could not %s", what)


def _null_removed(old: dict[str, Any], new: dict[str, Any], *, keep: frozenset[str] = frozenset()) -> None:
    """Set to None in ``new`` every key ``old`` has and ``new`` lacks, in nested objects too (lists are
    replaced whole by a merge patch, so they need nothing)."""
    for key, value in old.items():
        if key in keep:
            continue
        if key not in new:
            new[key] = None
        elif isinstance(value, dict) and isinstance(new[key], dict):
            _null_removed(value, new[key])


def _annotations_first(actions: tuple[Action, ...]) -> list[Action]:
    return sorted(actions, key=lambda action: 0 if isinstance(action, RemoveAnnotation) else 1)


def _blind_observation(meta: dict[str, Any], spec_error: str | None) -> Observed:
    """What the engine gets when the spec cannot be read: enough to hold and say why."""
    nothing = ClusterObservation(name="", exists=False)
    return Observed(
        generation=int(meta.get("generation") or 0),
        annotations=dict(meta.get("annotations") or {}),
        blue=nothing, green=nothing, workloads=WorkloadsObservation(), spec_error=spec_error,
        deleting=bool(meta.get("deletionTimestamp")),
    )


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, *, seconds: float) -> None:
    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()

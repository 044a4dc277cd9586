"""A simulated Job controller and kubelet for one emulated cluster: Jobs run as LOCAL processes.

The emulated workload clusters have no nodes, so nothing would ever run a Job
created there. This module is the stand-in: it plays kube-controller-manager's
Job controller and a kubelet against one :class:`~bluegreen.sim.kube.KubeEmulator`,
so smoke Jobs (``spec.analysis.jobs``) behave as on a real cluster for everything
the operator, kubectl and a person can observe through the API.

**What runs is not a container.** Each container's ``command`` + ``args`` runs as a
subprocess of the world process on this machine, in a fresh temporary directory,
with ``PATH`` and ``HOSTNAME`` plus the container's ``env`` (``value``,
``valueFrom.secretKeyRef``, ``configMapKeyRef`` and ``fieldRef`` to the pod's name,
namespace and uid; ``$(VAR)`` in command and args expanded as Kubernetes does).
The image is ignored: a container without ``command`` cannot run (its entrypoint
is unknown here) and fails with ``StartError``, as does a command that is not found.
What it prints (stdout and stderr together) becomes the container's log, served
by the emulator as ``pods/{name}/log``.

What the Job controller does, as 1.31's does it (checked against its source):

* a pod per missing completion (``parallelism``/``completions``, NonIndexed only),
  named ``<job>-<5 random>``, with the template's labels (which the API server
  extended with ``batch.kubernetes.io/job-name``, ``job-name`` and the
  controller-uid pair), a controller ``ownerReference`` to the Job and the
  ``batch.kubernetes.io/job-tracking`` finalizer, which it removes once it has
  counted the finished pod (through ``status.uncountedTerminatedPods``);
* ``status.startTime``, ``active``, ``ready``, ``terminating`` (1.29+),
  ``succeeded``, ``failed``, ``completionTime``;
* done when ``succeeded`` reaches ``completions``: condition ``Complete``; failed
  when ``failed`` exceeds ``backoffLimit`` (with ``restartPolicy: OnFailure``: when
  container restarts reach it) or ``activeDeadlineSeconds`` has passed since
  ``startTime``: condition ``Failed`` with reason ``BackoffLimitExceeded`` or
  ``DeadlineExceeded``, its running pods deleted. From 1.31 the interim
  conditions ``SuccessCriteriaMet`` / ``FailureTarget`` come first, and success
  carries reason ``CompletionsReached``; before 1.31 ``Complete`` has no reason.
  The emulator's ``kubernetes_version`` decides which;
* a failed pod is replaced after an exponential delay (``backoff`` seconds,
  doubled per failure, as the real 10 s);
* Events ``SuccessfulCreate``, ``SuccessfulDelete``, ``Completed``,
  ``BackoffLimitExceeded``, ``DeadlineExceeded`` from ``job-controller``, and
  ``Started`` / ``Killing`` from ``kubelet``.

What the kubelet does: sets the pod's phase (Running, then Succeeded or Failed),
conditions and ``containerStatuses`` (running, terminated with exit code and
reason ``Completed`` / ``Error`` / ``StartError``); with ``restartPolicy:
OnFailure`` it restarts a failed container in place (``restartCount``, the old
log kept for ``previous=true``); a pod being deleted gets SIGTERM for its
``terminationGracePeriodSeconds``, then SIGKILL.

Not simulated: Indexed completion, ``suspend``, ``podFailurePolicy``,
``successPolicy``, ``backoffLimitPerIndex``, ``ttlSecondsAfterFinished``, init
containers (such a pod fails with StartError), pod adoption and orphaning,
resources and probes. Only pods owned by a Job are run. This module belongs to the
test world: product code must not import it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import datetime
import itertools
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from typing import Any

from bluegreen.sim import kube_store
from bluegreen.sim.controllers import KeyedWorkers
from bluegreen.sim.kube import KubeEmulator

logger = logging.getLogger(__name__)

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
EVENTS = "v1/events"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
_MAX_BACKOFF = 600.0  # the Job controller's ceiling for the delay before a replacement pod
_CONTAINER_BACKOFF_MAX = 300.0  # the kubelet's ceiling for CrashLoopBackOff
_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")

JobKey = tuple[str, str]
_attached: dict[int, JobController] = {}  # by id(emulator); an entry leaves when its emulator stops


def attach(emulator: KubeEmulator, *, backoff: float = 10.0) -> JobController:
    """Run Jobs on ``emulator`` from now until it stops (the world's hook for each workload cluster)."""
    controller = _attached.get(id(emulator))
    if controller is None or controller.emulator is not emulator or controller.done:
        controller = JobController(emulator, backoff=backoff)
        _attached[id(emulator)] = controller
        controller.start()
        emulator.on_stop(controller.stop)
    return controller


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _minor(version: str) -> int:
    parts = version.lstrip("v").split(".")
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return 0


def _controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1":
            return dict(ref)
    return None


def _true(obj: dict[str, Any], condition: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or ():
        if item.get("type") == condition and item.get("status") == "True":
            return dict(item)
    return None


def _finished(job: dict[str, Any]) -> bool:
    return _true(job, "Complete") is not None or _true(job, "Failed") is not None


def _phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _deleting(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _pod_failed(pod: dict[str, Any]) -> bool:
    # With podReplacementPolicy TerminatingOrFailed, a pod being deleted that did not
    # succeed counts as failed at once (orphans never reach the Failed phase).
    return _phase(pod) == "Failed" or (_deleting(pod) and _phase(pod) != "Succeeded")


def _condition(kind: str, reason: str, message: str, now: datetime.datetime) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": kind, "status": "True", "lastProbeTime": _rfc3339(now),
                                 "lastTransitionTime": _rfc3339(now)}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


@dataclasses.dataclass(frozen=True)
class _Finish:
    failed: bool
    reason: str
    message: str


_COMPLETIONS_REACHED = _Finish(False, "CompletionsReached", "Reached expected number of succeeded pods")
_BACKOFF_EXCEEDED = _Finish(True, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
_DEADLINE_EXCEEDED = _Finish(True, "DeadlineExceeded", "Job was active longer than specified deadline")


class JobController:
    """The Job controller and a kubelet for one emulator."""

    def __init__(self, emulator: KubeEmulator, *, backoff: float = 10.0) -> None:
        self.emulator = emulator
        self.backoff = backoff
        self.done = False
        self._workers: KeyedWorkers[JobKey] = KeyedWorkers(self._sync, name=f"jobs@{emulator.name}")
        self._pods: dict[str, _PodRun] = {}  # by pod uid: what the kubelet runs
        self._failures: dict[JobKey, tuple[int, float]] = {}  # failed count seen, monotonic time it grew
        self._event_ids = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._watches: list[Any] = []
        self._wakeups: dict[JobKey, asyncio.TimerHandle] = {}
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"jobs@{self.emulator.name}")

    async def stop(self) -> None:
        """Stop watching and kill what runs (the emulator stopping does the same)."""
        self._stopping = True
        for watch in self._watches:
            await watch.aclose()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until no pod is running here (a pod being killed counts as running until it is dead)."""
        while self._pods:
            await asyncio.gather(*(run.finished.wait() for run in list(self._pods.values())))

    # --- watching ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self.emulator.serving and not self._stopping:
                # Watches first, then the lists: nothing falls between the two.
                jobs, pods = self.emulator.watch(JOBS), self.emulator.watch(PODS)
                self._watches = [jobs, pods]
                for job in self.emulator.list(JOBS):
                    self._workers.enqueue(_key(job))
                for pod in self.emulator.list(PODS):
                    self._on_pod("ADDED", pod)
                consumers = [asyncio.create_task(self._consume(jobs, self._on_job)),
                             asyncio.create_task(self._consume(pods, self._on_pod))]
                try:
                    await asyncio.wait(consumers, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for consumer in consumers:
                        consumer.cancel()
                    await asyncio.gather(*consumers, return_exceptions=True)
                    await jobs.aclose()  # type: ignore[attr-defined]
                    await pods.aclose()  # type: ignore[attr-defined]
        finally:
            self.done = True
            for wakeup in self._wakeups.values():
                wakeup.cancel()
            await self._workers.close()
            runs = list(self._pods.values())
            for run in runs:
                run.kill(grace=0)
            await asyncio.gather(*(run.finished.wait() for run in runs))
            if _attached.get(id(self.emulator)) is self:
                del _attached[id(self.emulator)]

    @staticmethod
    async def _consume(watch: Any, handle: Any) -> None:
        async for event_type, obj in watch:
            handle(event_type, obj)

    def _on_job(self, event_type: str, job: dict[str, Any]) -> None:
        self._workers.enqueue(_key(job))

    def _on_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        owner = _controller_of(pod)
        if owner is None:
            return  # only Jobs' pods are run here
        meta = pod["metadata"]
        uid = str(meta.get("uid"))
        job_key = (str(meta.get("namespace")), str(owner.get("name")))
        if event_type == "DELETED":
            run = self._pods.get(uid)
            if run is not None:
                run.kill(grace=0)
            self.emulator.logs.forget(uid)
        elif _deleting(pod):
            run = self._pods.get(uid)
            if run is not None:
                run.kill(grace=float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)))
            job = self.emulator.get(JOBS, job_key[0], job_key[1])
            if job is None or job["metadata"].get("uid") != owner.get("uid"):
                self._release(pod)  # its Job is gone: nobody else will count it
        elif uid not in self._pods and _phase(pod) == "Pending" and not (pod.get("status") or {}).get(
                "containerStatuses"):
            run = _PodRun(controller=self, pod=pod)
            self._pods[uid] = run
            run.start()
        self._workers.enqueue(job_key)

    def _release(self, pod: dict[str, Any]) -> None:
        finalizers = list(pod["metadata"].get("finalizers") or ())
        if TRACKING_FINALIZER not in finalizers:
            return
        remaining = [item for item in finalizers if item != TRACKING_FINALIZER]
        with contextlib.suppress(kube_store.KubeApiError):
            self.emulator.patch(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                                {"metadata": {"finalizers": remaining or None}})

    # --- the Job controller -----------------------------------------------------------------------

    async def _sync(self, key: JobKey) -> None:
        namespace, name = key
        job = self.emulator.get(JOBS, namespace, name)
        if job is None:
            self._failures.pop(key, None)
            return
        if _finished(job) or (job.get("spec") or {}).get("suspend"):
            return
        spec = job["spec"]
        uid = job["metadata"]["uid"]
        minor = _minor(self.emulator.kubernetes_version)
        now = _now()
        pods = [pod for pod in self.emulator.list(PODS, namespace)
                if (_controller_of(pod) or {}).get("uid") == uid]
        status = copy.deepcopy(job.get("status") or {})
        status.setdefault("startTime", _rfc3339(now))
        uncounted = status.get("uncountedTerminatedPods") or {}
        uncounted_succeeded = list(uncounted.get("succeeded") or ())
        uncounted_failed = list(uncounted.get("failed") or ())
        tracked = [pod for pod in pods if TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or ())]
        for pod in tracked:
            pod_uid = pod["metadata"]["uid"]
            if pod_uid in uncounted_succeeded or pod_uid in uncounted_failed:
                continue
            if _phase(pod) == "Succeeded":
                uncounted_succeeded.append(pod_uid)
            elif _pod_failed(pod):
                uncounted_failed.append(pod_uid)
        active = [pod for pod in pods if _phase(pod) not in ("Succeeded", "Failed") and not _deleting(pod)]
        succeeded = int(status.get("succeeded") or 0) + len(uncounted_succeeded)
        failed = int(status.get("failed") or 0) + len(uncounted_failed)
        self._note_failures(key, failed)

        finish = self._interim(job) or self._failure(job, spec, status, active, failed, now)
        if finish is not None and finish.failed:
            for pod in active:
                self._delete_pod(job, pod)
                uncounted_failed.append(pod["metadata"]["uid"])
            active = []
        elif finish is None:
            active = active + self._manage(job, key, spec, active, succeeded, failed)
            completions = spec.get("completions")
            done = succeeded >= completions if completions is not None else succeeded > 0
            if done and not active:
                finish = _COMPLETIONS_REACHED if minor >= 31 else _Finish(False, "", "")

        status["active"] = len(active)
        status["ready"] = sum(1 for pod in active if _true(pod, "Ready"))
        if minor >= 29:
            status["terminating"] = sum(1 for pod in pods if _deleting(pod) and _phase(pod) not in (
                "Succeeded", "Failed"))
        conditions = list(status.get("conditions") or ())
        if finish is not None and minor >= 31 and self._interim(job) is None:
            interim = "FailureTarget" if finish.failed else "SuccessCriteriaMet"
            conditions.append(_condition(interim, finish.reason, finish.message, now))
        status["conditions"] = conditions
        status["uncountedTerminatedPods"] = {"succeeded": uncounted_succeeded, "failed": uncounted_failed}
        self._write_status(job, status)

        # Only counted pods lose the finalizer; then the counters take them over.
        counted = set(uncounted_succeeded) | set(uncounted_failed)
        for pod in tracked:
            if pod["metadata"]["uid"] in counted:
                self._release(pod)
        status["succeeded"] = int(status.get("succeeded") or 0) + len(uncounted_succeeded)
        status["failed"] = int(status.get("failed") or 0) + len(uncounted_failed)
        status["uncountedTerminatedPods"] = {}
        if finish is not None and not status.get("terminating"):
            kind = "Failed" if finish.failed else "Complete"
            status["conditions"] = [*conditions, _condition(kind, finish.reason, finish.message, now)]
            if not finish.failed:
                status["completionTime"] = _rfc3339(now)
        self._write_status(job, status)
        if finish is not None and not status.get("terminating"):
            if finish.failed:
                self._event(job, "Warning", finish.reason, finish.message)
            else:
                self._event(job, "Normal", "Completed", "Job completed")

    def _interim(self, job: dict[str, Any]) -> _Finish | None:
        """A finish already decided in an earlier pass (1.31's interim conditions)."""
        for kind, failed in (("SuccessCriteriaMet", False), ("FailureTarget", True)):
            condition = _true(job, kind)
            if condition is not None:
                return _Finish(failed, str(condition.get("reason", "")), str(condition.get("message", "")))
        return None

    def _failure(self, job: dict[str, Any], spec: dict[str, Any], status: dict[str, Any],
                 active: list[dict[str, Any]], failed: int, now: datetime.datetime) -> _Finish | None:
        backoff_limit = int(spec.get("backoffLimit", 6))
        if failed > backoff_limit or _past_backoff_limit_on_failure(spec, active):
            return _BACKOFF_EXCEEDED
        deadline = spec.get("activeDeadlineSeconds")
        start = _parse_time(status.get("startTime"))
        if deadline is not None and start is not None:
            remaining = start + datetime.timedelta(seconds=int(deadline)) - now
            if remaining <= datetime.timedelta(0):
                return _DEADLINE_EXCEEDED
            self._wake_later(_key(job), remaining.total_seconds())
        return None

    def _wake_later(self, key: JobKey, delay: float) -> None:
        """Sync ``key`` again in ``delay`` seconds, or earlier if already asked (deadline and backoff both wait)."""
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        pending = self._wakeups.get(key)
        if pending is not None and not pending.cancelled() and pending.when() <= at:
            return
        if pending is not None:
            pending.cancel()

        def fire() -> None:
            self._wakeups.pop(key, None)
            self._workers.enqueue(key)

        self._wakeups[key] = loop.call_at(at, fire)

    def _note_failures(self, key: JobKey, failed: int) -> None:
        seen, _ = self._failures.get(key, (0, 0.0))
        if failed > seen:
            self._failures[key] = (failed, time.monotonic())

    def _manage(self, job: dict[str, Any], key: JobKey, spec: dict[str, Any], active: list[dict[str, Any]],
                succeeded: int, failed: int) -> list[dict[str, Any]]:
        """Create the pods that are missing; returns the new ones."""
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if completions is not None:
            wanted = min(parallelism, int(completions) - succeeded)
        else:
            wanted = parallelism if succeeded == 0 else 0
        missing = wanted - len(active)
        if missing <= 0:
            return []
        if failed:
            _, since = self._failures.get(key, (0, 0.0))
            delay = min(self.backoff * 2 ** (failed - 1), _MAX_BACKOFF)
            wait = since + delay - time.monotonic()
            if wait > 0:
                self._wake_later(key, wait)
                return []
        return [self._create_pod(job) for _ in range(missing)]

    def _create_pod(self, job: dict[str, Any]) -> dict[str, Any]:
        meta, template = job["metadata"], job["spec"]["template"]
        template_meta = template.get("metadata") or {}
        pod_meta: dict[str, Any] = {
            "generateName": f"{meta['name']}-",
            "namespace": meta["namespace"],
            "labels": dict(template_meta.get("labels") or {}),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"],
                                 "controller": True, "blockOwnerDeletion": True}],
            "finalizers": [TRACKING_FINALIZER],
        }
        if template_meta.get("annotations"):
            pod_meta["annotations"] = dict(template_meta["annotations"])
        pod = self.emulator.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
                                          "spec": copy.deepcopy(template.get("spec") or {})})
        self._event(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        return pod

    def _delete_pod(self, job: dict[str, Any], pod: dict[str, Any]) -> None:
        with contextlib.suppress(kube_store.KubeApiError):
            self.emulator.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
            self._event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")

    def _write_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        # Zero counters and empty lists are left out, as the API's omitempty does
        # (ready and terminating are pointers in the Go type: their zero is written).
        written = {key: value for key, value in status.items()
                   if key in ("ready", "terminating") or value not in (0, [], None)}
        uncounted = status.get("uncountedTerminatedPods") or {}
        written["uncountedTerminatedPods"] = {key: value for key, value in uncounted.items() if value}
        info = self.emulator.store.resolve_path(JOBS)
        meta = job["metadata"]
        self.emulator.store.update(info, meta["namespace"], meta["name"],
                                   {"metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                                    "status": written}, subresource="status")

    # --- Events -----------------------------------------------------------------------------------

    def _event(self, obj: dict[str, Any], event_type: str, reason: str, message: str, *,
               component: str = "job-controller") -> None:
        meta = obj["metadata"]
        now = _rfc3339(_now())
        event = {
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}{next(self._event_ids):x}",
                         "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""),
                               "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid", ""),
                               "resourceVersion": meta.get("resourceVersion", "")},
            "reason": reason, "message": message, "type": event_type,
            "source": {"component": component}, "reportingComponent": component, "reportingInstance": "",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        with contextlib.suppress(kube_store.KubeApiError):
            self.emulator.create(EVENTS, event)


def _key(obj: dict[str, Any]) -> JobKey:
    return (str(obj["metadata"].get("namespace")), str(obj["metadata"]["name"]))


def _past_backoff_limit_on_failure(spec: dict[str, Any], active: list[dict[str, Any]]) -> bool:
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(int(status.get("restartCount") or 0) for pod in active
                   for status in (pod.get("status") or {}).get("containerStatuses") or ())
    backoff_limit = int(spec.get("backoffLimit", 6))
    return restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit


# --- the kubelet ----------------------------------------------------------------------------------


class _StartError(Exception):
    pass


class _ConfigError(Exception):
    pass


class _PodRun:
    """One pod on the simulated kubelet: its containers as processes, its status as the kubelet reports it."""

    def __init__(self, *, controller: JobController, pod: dict[str, Any]) -> None:
        self.controller = controller
        self.emulator = controller.emulator
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.spec = pod.get("spec") or {}
        self.restart_on_failure = self.spec.get("restartPolicy") == "OnFailure"
        self.start_time = _now()
        self.statuses: dict[str, dict[str, Any]] = {}
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.killed = asyncio.Event()
        self.kill_grace = 0.0
        self.finished = asyncio.Event()
        self.workdir = ""
        self._transitions: dict[str, tuple[str, str]] = {}  # condition type -> (status, lastTransitionTime)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"kubelet:{self.name}")

    def kill(self, *, grace: float) -> None:
        if not self.killed.is_set():
            self.kill_grace = grace
            self.killed.set()

    async def _run(self) -> None:
        try:
            await self._live()
        except Exception:
            logger.exception("simulated kubelet: pod %s/%s failed unexpectedly", self.namespace, self.name)
        finally:
            if self.workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.controller._pods.pop(self.uid, None)
            self.finished.set()

    async def _live(self) -> None:
        containers = list(self.spec.get("containers") or ())
        for container in containers:
            self.statuses[container["name"]] = {
                "name": container["name"], "image": container.get("image", ""), "imageID": "",
                "ready": False, "started": False, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
        self._publish()
        self.workdir = tempfile.mkdtemp(prefix=f"sim-pod-{self.name}-")
        await asyncio.gather(*(self._container(container) for container in containers))

    async def _container(self, container: dict[str, Any]) -> int | None:
        """Run one container to its end; the exit code, or None when it never started (config error)."""
        name = container["name"]
        status = self.statuses[name]
        try:
            env = self._environment(container)
        except _ConfigError as exc:
            status["state"] = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            self._publish()
            return None
        backoff = self.controller.backoff
        while True:
            started = _now()
            try:
                code = await self._execute(container, env, started)
            except _StartError as exc:
                status.update(ready=False, started=False, state={"terminated": {
                    "exitCode": 128, "reason": "StartError", "message": str(exc),
                    "startedAt": "1970-01-01T00:00:00Z", "finishedAt": _rfc3339(_now())}})
                code = 128
            if code == 0 or not self.restart_on_failure or self.killed.is_set():
                self._publish()
                return code
            status["restartCount"] += 1
            status["lastState"] = status.pop("state")
            status.update(ready=False, started=False, state={"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {backoff:g}s restarting failed container={name} pod={self.name}"}})
            self._publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.killed.wait(), backoff)
            if self.killed.is_set():
                return code
            backoff = min(backoff * 2, _CONTAINER_BACKOFF_MAX)

    async def _execute(self, container: dict[str, Any], env: dict[str, str], started: datetime.datetime) -> int:
        name = container["name"]
        status = self.statuses[name]
        if self.spec.get("initContainers"):
            raise _StartError("init containers are not run by the simulated kubelet")
        command = [_expand(str(part), env) for part in container.get("command") or ()]
        args = [_expand(str(part), env) for part in container.get("args") or ()]
        if not command:
            raise _StartError("the simulated kubelet runs the container's command on this machine and cannot know "
                              f"the entrypoint of image {container.get('image', '')!r}: set command")
        if self.killed.is_set():
            raise _StartError("the pod is being deleted")
        try:
            process = await asyncio.create_subprocess_exec(
                *command, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env, cwd=self.workdir, start_new_session=True,
            )
        except OSError as exc:
            raise _StartError(f"failed to create containerd task: exec: {command[0]!r}: "
                              f"{exc.strerror or exc}") from None
        self.processes[name] = process
        logs = self.emulator.logs
        logs.start(uid=self.uid, container=name)
        container_id = f"sim://{self.uid}/{name}/{process.pid}"
        status.update(ready=True, started=True, containerID=container_id,
                      state={"running": {"startedAt": _rfc3339(started)}})
        self._publish()
        self.controller._event(self.pod, "Normal", "Started", f"Started container {name}", component="kubelet")

        async def read() -> None:
            assert process.stdout is not None
            while chunk := await process.stdout.read(65536):
                logs.write(uid=self.uid, container=name, data=chunk)

        reader = asyncio.create_task(read())
        waiter = asyncio.create_task(process.wait())
        killer = asyncio.create_task(self.killed.wait())
        try:
            await asyncio.wait([waiter, killer], return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                self.controller._event(self.pod, "Normal", "Killing", f"Stopping container {name}",
                                       component="kubelet")
                _signal(process, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), self.kill_grace)
            # A container ends with its main process: whatever it left behind goes too.
            _signal(process, signal.SIGKILL)
            code = await waiter
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 5.0)
        finally:
            if process.returncode is None:  # cancelled: nothing may outlive the world
                _signal(process, signal.SIGKILL)
            for task in (reader, waiter, killer):
                task.cancel()
            self.processes.pop(name, None)
            logs.terminate(uid=self.uid, container=name)
        exit_code = 128 - code if code < 0 else code  # killed by signal N: 128+N, as a runtime reports
        status.update(ready=False, started=False, state={"terminated": {
            "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": _rfc3339(started), "finishedAt": _rfc3339(_now()), "containerID": container_id}})
        return exit_code

    def _environment(self, container: dict[str, Any]) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOSTNAME": self.name, "HOME": self.workdir}
        for item in container.get("env") or ():
            name = str(item.get("name"))
            if "value" in item or "valueFrom" not in item:
                env[name] = _expand(str(item.get("value", "")), env)
                continue
            value = self._value_from(item["valueFrom"] or {}, name)
            if value is not None:
                env[name] = value
        return env

    def _value_from(self, source: dict[str, Any], name: str) -> str | None:
        for kind, resource in (("secretKeyRef", "v1/secrets"), ("configMapKeyRef", "v1/configmaps")):
            ref = source.get(kind)
            if ref is None:
                continue
            noun = "secret" if kind == "secretKeyRef" else "configmap"
            obj = self.emulator.get(resource, self.namespace, str(ref.get("name")))
            optional = bool(ref.get("optional"))
            if obj is None:
                if optional:
                    return None
                raise _ConfigError(f'{noun} "{ref.get("name")}" not found')
            key = str(ref.get("key"))
            if kind == "secretKeyRef":
                data = obj.get("data") or {}
                if key in data:
                    return base64.b64decode(data[key]).decode(errors="replace")
            elif key in (obj.get("data") or {}):
                return str(obj["data"][key])
            if optional:
                return None
            raise _ConfigError(f"couldn't find key {key} in {noun.capitalize()} {self.namespace}/{ref.get('name')}")
        field = (source.get("fieldRef") or {}).get("fieldPath")
        values = {"metadata.name": self.name, "metadata.namespace": self.namespace, "metadata.uid": self.uid}
        if field in values:
            return str(values[field])
        raise _ConfigError(f"env {name}: the simulated kubelet does not resolve valueFrom {sorted(source)}")

    def _publish(self) -> None:
        """Write the pod's status as the kubelet would see it now."""
        containers = list(self.statuses.values())
        states = [status.get("state") or {} for status in containers]
        terminated = [state["terminated"] for state in states if "terminated" in state]
        now = _rfc3339(_now())
        if containers and len(terminated) == len(containers):
            phase = "Succeeded" if all(item.get("exitCode") == 0 for item in terminated) else "Failed"
        elif any("running" in state for state in states) or any(s.get("restartCount") for s in containers):
            phase = "Running"
        else:
            phase = "Pending"
        ready = phase == "Running" and all(status.get("ready") for status in containers)
        not_ready = {} if ready else {"reason": "PodCompleted" if phase in ("Succeeded", "Failed")
                                      else "ContainersNotReady"}
        conditions: list[dict[str, Any]] = [
            {"type": "PodReadyToStartContainers", "status": "True" if phase != "Pending" else "False"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False", **not_ready},
            {"type": "ContainersReady", "status": "True" if ready else "False", **not_ready},
            {"type": "PodScheduled", "status": "True"},
        ]
        for condition in conditions:
            previous = self._transitions.get(condition["type"])
            since = previous[1] if previous is not None and previous[0] == condition["status"] else now
            self._transitions[condition["type"]] = (condition["status"], since)
            condition.update(lastProbeTime=None, lastTransitionTime=since)
        status = {"phase": phase, "conditions": conditions, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                  "startTime": _rfc3339(self.start_time), "containerStatuses": copy.deepcopy(containers)}
        with contextlib.suppress(kube_store.KubeApiError):  # the pod may be gone already
            self.emulator.patch(PODS, self.namespace, self.name, {"status": status}, subresource="status")


def _signal(process: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, ``$$`` escapes, the rest stays."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, text)

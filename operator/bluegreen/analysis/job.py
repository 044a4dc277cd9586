"""Smoke Jobs: a team's own test, run as a Kubernetes Job in green (or blue), gating the upgrade.

A metric says how green behaves under traffic; a smoke Job says whether green
works at all before it gets any (``at: Verifying``) or once it has all of it
(``at: Promoted``): it runs in the cluster, next to the workloads, with the
cluster's DNS and credentials, and whatever its container exits with decides.

The engine asks for a Job (``StartJob``) and reads what became of it
(``Observed.jobs``); this module does the I/O for both, against the workload
cluster's API server:

* :func:`job_object_name` names the Job for one analysis run. The run number
  changes on ``bluegreen.io/retry``, so a retry starts a fresh Job and the
  previous run's Job stays for people to read (it carries the upgrade's label).
* :func:`start_job` creates it, idempotently: a Job of that name that already
  exists is left as it is (a Job's pod template cannot be changed anyway).
  A smoke test must not pass by being retried until it happens to succeed, so
  ``backoffLimit`` defaults to 0 and the pod's ``restartPolicy`` to Never; and
  the cluster is told to stop the Job at ``timeout`` (``activeDeadlineSeconds``)
  so a Job the upgrade has given up on does not keep running. The template's
  own values win where it sets them.
* :func:`observe_job` only reads: Missing, Running, Succeeded or Failed, from the
  conditions the Job controller writes (``Complete`` / ``Failed``, and from 1.31
  the earlier ``SuccessCriteriaMet`` / ``FailureTarget``, which already decide).
  A Job running longer than ``timeout`` has failed even if its cluster does not
  say so. A failure's message names the reason, how the newest pod's container
  ended and the last ``logLines`` lines of its log, so the person reading
  ``kubectl describe clusterupgrade`` sees why without another cluster's
  kubeconfig.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

from bluegreen.api import durations
from bluegreen.api.spec import SmokeJob
from bluegreen.engine.types import JobObservation
from bluegreen.kube import objects
from bluegreen.kube.client import ApiError, ConflictError, KubeClient, Resource

JOBS = Resource("batch", "v1", "jobs")
PODS = Resource("", "v1", "pods")
LABEL_SMOKE_JOB = "bluegreen.io/smoke-job"
# The label the Job controller puts on its pods since 1.27; ``job-name`` before (and still, alongside).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")

_NAME_LIMIT = 63  # a DNS-1123 label: Job names end up in the pods' job-name label
_NOT_IN_LABEL = re.compile(r"[^a-z0-9-]+")
_LOG_CHARS = 4000  # the most of a log tail put into a message (status stays small)

MISSING, RUNNING, SUCCEEDED, FAILED = "Missing", "Running", "Succeeded", "Failed"


def job_object_name(*, upgrade: str, job: str, run: int) -> str:
    """``bg-<job>-<run>-<hash of upgrade and job>``: a DNS-1123 label of at most 63 characters.

    The same arguments always give the same name; another run gives another name;
    the hash keeps two upgrades' Jobs apart in one namespace, and two Jobs apart
    when a long name has to be shortened.
    """
    if run < 0:
        raise ValueError(f"an analysis run number is not negative, got {run}")
    digest = hashlib.sha256(f"{upgrade}\n{job}".encode()).hexdigest()[:8]
    suffix = f"-{run}-{digest}"
    readable = _NOT_IN_LABEL.sub("-", job.lower()).strip("-") or "job"
    prefix = f"bg-{readable}"[: _NAME_LIMIT - len(suffix)].rstrip("-")
    if len(prefix) < len("bg-x"):
        raise ValueError(f"run {run} is too large to fit in a Job name")
    return prefix + suffix


def job_manifest(job: SmokeJob, *, object_name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The batch/v1 Job :func:`start_job` creates: the template, labelled, with the smoke-test defaults."""
    spec = copy.deepcopy(job.template)
    spec.setdefault("backoffLimit", 0)
    spec.setdefault("activeDeadlineSeconds", max(1, math.ceil(_timeout(job).total_seconds())))
    pod = spec.setdefault("template", {})
    pod.setdefault("spec", {}).setdefault("restartPolicy", "Never")
    stamped = {**labels, LABEL_SMOKE_JOB: job.name}
    pod_meta = pod.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **stamped}
    return {
        "apiVersion": JOBS.api_version,
        "kind": "Job",
        "metadata": {"name": object_name, "namespace": job.namespace, "labels": stamped},
        "spec": spec,
    }


async def start_job(client: KubeClient, job: SmokeJob, *, object_name: str, labels: Mapping[str, str]) -> str:
    """Make the Job exist in ``job.namespace``; a journal line saying what was done."""
    where = f"Job {job.namespace}/{object_name} in {job.cluster.value}"
    try:
        await client.create(JOBS, job_manifest(job, object_name=object_name, labels=labels),
                            namespace=job.namespace)
    except ConflictError:
        return f"{where} already exists; left as it is"
    return f"created {where}"


async def observe_job(
    client: KubeClient, job: SmokeJob, *, object_name: str, now: datetime.datetime
) -> JobObservation:
    """What became of the Job: Missing, Running, Succeeded or Failed (with why, and its log's tail)."""
    found = await client.get(JOBS, namespace=job.namespace, name=object_name)
    if found is None:
        return JobObservation(state=MISSING)
    failure = _true_condition(found, "Failed") or _true_condition(found, "FailureTarget")
    if failure is not None:
        why = ": ".join(str(part) for part in (failure.get("reason"), failure.get("message")) if part)
        detail = await _pods_story(client, job, found, object_name=object_name)
        return JobObservation(state=FAILED, message=_join(f"Job {job.namespace}/{object_name}: {why or 'Failed'}",
                                                          detail))
    if _true_condition(found, "Complete") or _true_condition(found, "SuccessCriteriaMet"):
        return JobObservation(state=SUCCEEDED)
    started = _started(found)
    if started is not None and _aware(now) - started > _timeout(job):
        detail = await _pods_story(client, job, found, object_name=object_name)
        return JobObservation(state=FAILED, message=_join(
            f"Job {job.namespace}/{object_name} did not finish within {job.timeout}", detail))
    return JobObservation(state=RUNNING, message=await _waiting(client, job, found, object_name=object_name))


# --- reading the Job and its pods -----------------------------------------------------------------


def _timeout(job: SmokeJob) -> datetime.timedelta:
    return durations.parse_duration(job.timeout)


def _true_condition(obj: Mapping[str, Any], condition_type: str) -> dict[str, Any] | None:
    found = objects.condition(obj, condition_type)
    return found if found is not None and found.get("status") == "True" else None


def _parse_time(value: object) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return _aware(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _started(found: Mapping[str, Any]) -> datetime.datetime | None:
    status = found.get("status") or {}
    return _parse_time(status.get("startTime")) or _parse_time(objects.metadata(found).get("creationTimestamp"))


def _join(head: str, detail: str) -> str:
    return f"{head}\n{detail}" if detail else head


async def _pods(client: KubeClient, found: Mapping[str, Any], *, namespace: str,
                object_name: str) -> list[dict[str, Any]]:
    """The Job's pods: by its selector (the controller-uid label), else by the job-name labels."""
    selector = ((found.get("spec") or {}).get("selector") or {}).get("matchLabels")
    if isinstance(selector, dict) and selector:
        return await client.list(PODS, namespace=namespace, label_selector=selector)
    for label in JOB_NAME_LABELS:
        pods = await client.list(PODS, namespace=namespace, label_selector={label: object_name})
        if pods:
            return pods
    return []


def _newest(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    def age_key(pod: dict[str, Any]) -> tuple[str, str, str]:
        status = pod.get("status") or {}
        return (str(objects.metadata(pod).get("creationTimestamp", "")), str(status.get("startTime", "")),
                objects.name_of(pod))

    return max(pods, key=age_key) if pods else None


def _container_of_interest(pod: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The container whose end explains the pod's: the first that failed, else the first."""
    statuses = list((pod.get("status") or {}).get("containerStatuses") or ())
    for status in statuses:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated.get("exitCode") not in (None, 0):
            return str(status.get("name")), status
    if statuses:
        return str(statuses[0].get("name")), statuses[0]
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("name", "")), {}


def _container_state(status: Mapping[str, Any]) -> str:
    state = status.get("state") or {}
    if "terminated" in state:
        ended = state["terminated"] or {}
        text = f"exited with code {ended.get('exitCode')}"
        if ended.get("reason"):
            text += f" ({ended['reason']})"
        if ended.get("message"):
            text += f": {ended['message']}"
        return text
    if "waiting" in state:
        waiting = state["waiting"] or {}
        return "waiting: " + ": ".join(str(part) for part in (waiting.get("reason"), waiting.get("message")) if part)
    if "running" in state:
        return "still running"
    return "not started"


async def _pods_story(client: KubeClient, job: SmokeJob, found: Mapping[str, Any], *, object_name: str) -> str:
    """How the newest pod's container ended and the tail of its log (what a person needs first)."""
    pod = _newest(await _pods(client, found, namespace=job.namespace, object_name=object_name))
    if pod is None:
        return "no pod of it is left to show a log"
    pod_name = objects.name_of(pod)
    container, status = _container_of_interest(pod)
    lines = [f"pod {pod_name}, container {container}: {_container_state(status)}"]
    if job.log_lines > 0:
        lines.append(await _log_tail(client, job, pod=pod_name, container=container))
    return "\n".join(line for line in lines if line)


async def _log_tail(client: KubeClient, job: SmokeJob, *, pod: str, container: str) -> str:
    params = {"tailLines": str(job.log_lines)}
    if container:
        params["container"] = container
    try:
        text = await client.get_text(PODS, namespace=job.namespace, name=pod, subresource="log", params=params)
    except ApiError as exc:
        return f"(its log cannot be read: {exc.message})"
    if text is None:
        return "(the pod is gone, and its log with it)"
    text = text.rstrip("\n")
    if not text:
        return "(its log is empty)"
    shown = text.count("\n") + 1
    if len(text) > _LOG_CHARS:
        text = "..." + text[-_LOG_CHARS:]
    plural = "s" if shown != 1 else ""
    heading = f"last {shown} line{plural} of its log" if shown >= job.log_lines else "its log"
    return f"{heading}:\n{text}"


async def _waiting(client: KubeClient, job: SmokeJob, found: Mapping[str, Any], *, object_name: str) -> str:
    """While running: a pod stuck before its container starts (a missing Secret, an image) is worth saying."""
    pod = _newest(await _pods(client, found, namespace=job.namespace, object_name=object_name))
    if pod is None:
        return ""
    container, status = _container_of_interest(pod)
    waiting = (status.get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in (None, "", "ContainerCreating"):
        return ""
    return f"pod {objects.name_of(pod)}, container {container}: {_container_state(status)}"

"""One preflight pass over blue: every scan, run together, folded into ``status.preflight``.

The engine asks for this once per attempt and then judges the result with the
policies in ``spec.preflight``; so the pass itself judges nothing. Whatever
cannot be scanned for a reason a person must fix (the API refusing, a source
that cannot be read, a scan still running when ``spec.preflight.timeout`` is up)
becomes a line in ``problems``, naming what was not seen: a scan that quietly
saw nothing would let a Block policy pass. An API server failing only for now
(5xx, 429, no answer: see ``transient``) is neither a result nor a problem: the
pass raises :class:`~bluegreen.preflight.transient.ScanInterrupted` naming the
scan, the cluster and the error, so the loop retries it with backoff and the
upgrade goes on by itself once the server answers. Cancellation propagates.

The scans are independent reads, so they run concurrently and the timeout
bounds the whole pass, not each scan. Findings seen live and in a source are
different evidence (one says blue serves the object through a removed version,
the other that a writer still uses it) and are both kept; only a finding that
is the same object at the same place twice is kept once.
"""

from __future__ import annotations

import asyncio
import datetime
import pathlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from bluegreen.api import durations
from bluegreen.api import spec as api
from bluegreen.api.status import (
    LIST_LIMIT,
    CapacityStatus,
    CapacityVerdict,
    FindingStatus,
    PreflightStatus,
    StatefulStatus,
)
from bluegreen.clusters.base import ClusterProviderError, WorkerCapacity
from bluegreen.kube.client import ApiError, KubeClient
from bluegreen.preflight import capacity, live, sources, stateful
from bluegreen.preflight.findings import Finding
from bluegreen.preflight.transient import ScanInterrupted, is_transient

__all__ = ["run_preflight"]

SOURCES_SHARE = 0.9


async def run_preflight(
    spec: api.ClusterUpgradeSpec,
    *,
    management: KubeClient,
    blue: KubeClient,
    blue_name: str,
    blue_version: str,
    green_capacity: Callable[[], Awaitable[WorkerCapacity]],
    workdir: pathlib.Path,
    now: datetime.datetime,
    upgrade_namespace: str | None = None,
) -> PreflightStatus:
    """Scan blue (live objects, Flux sources, stateful workloads, capacity) within ``spec.preflight.timeout``.

    Does not set ``strategy`` or ``path``: those are the engine's. ``upgrade_namespace`` is where the
    ClusterUpgrade (and, in git mode, the repository's credentials Secret) lives. Raises
    :class:`ScanInterrupted` when a scan met an API server failing for now (the pass is to be retried).
    """
    preflight = spec.preflight
    timeout = durations.parse_duration(preflight.timeout).total_seconds()
    target = spec.target.kubernetes_version
    singletons = [(ref.kind.value, ref.namespace, ref.name) for ref in preflight.singletons]

    live_scan = f"the live scan of {blue_name} for removed APIs"
    stateful_scan = f"the scan of {blue_name} for stateful workloads"
    sources_scan = f"the scan of {blue_name}'s Flux sources for removed APIs"
    capacity_scan = "the capacity check"
    scans: dict[str, Coroutine[Any, Any, Any]] = {
        live_scan: live.scan_live(blue, cluster=blue_name, current=blue_version, target=target),
        stateful_scan: stateful.scan_stateful(blue, singletons=singletons),
    }
    # Which API server a scan's transient failure is about, for the message that says what is retried.
    servers = {live_scan: blue_name, stateful_scan: blue_name, sources_scan: "the management cluster",
               capacity_scan: "the management cluster"}
    if preflight.scan_sources:
        # A little less than the whole, so that the sources scan says itself which source was
        # late before this pass gives up on it as a whole.
        scans[sources_scan] = sources.scan_sources(spec, management=management, current=blue_version,
                                                   target=target, workdir=workdir, timeout=timeout * SOURCES_SHARE,
                                                   upgrade_namespace=upgrade_namespace)
    if preflight.capacity != api.CapacityPolicy.OFF:
        scans[capacity_scan] = _capacity(green_capacity=green_capacity, blue=blue)

    results, problems = await _run_all(scans, timeout=timeout, timeout_text=preflight.timeout, servers=servers)
    source_findings: list[Finding] = []
    if sources_scan in results:
        source_findings, source_problems = results[sources_scan]
        problems.extend(source_problems)
    # Exact repeats only: live and source evidence differ in ``where`` and both stay.
    findings = list(dict.fromkeys([*results.get(live_scan, []), *source_findings]))

    workloads: list[StatefulStatus] = []
    if stateful_scan in results:
        scan: stateful.StatefulScan = results[stateful_scan]
        workloads = [_stateful_status(workload, spec.hooks) for workload in scan.workloads]
        problems.extend(_missing_singletons(scan.missing, singletons))

    capacity_status: CapacityStatus | None = None
    if preflight.capacity != api.CapacityPolicy.OFF:
        # A check that failed is also Unknown, so the capacity policy never reads it as not asked for.
        capacity_status = results.get(capacity_scan) or CapacityStatus(
            verdict=CapacityVerdict.UNKNOWN,
            message=next((line for line in problems if line.startswith(capacity_scan)), capacity_scan),
        )
    # The capacity check has its own policy and verdict; only what the other scans missed is a problem.
    problems = [line for line in problems if not line.startswith(capacity_scan)]

    return PreflightStatus(
        scanned_at=now,
        findings=[FindingStatus.model_validate(finding.to_status()) for finding in findings[:LIST_LIMIT]],
        findings_total=len(findings),
        stateful_workloads=workloads[:LIST_LIMIT],
        stateful_total=len(workloads),
        problems=_bounded(problems),
        capacity=capacity_status,
    )


async def _run_all(
    scans: dict[str, Coroutine[Any, Any, Any]], *, timeout: float, timeout_text: str, servers: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """Each scan's result by name, and a problem line for each that failed or did not finish in time.

    Raises :class:`ScanInterrupted` if any scan failed transiently: then nothing of this pass is kept,
    since the retry scans everything again (and reports the permanent failures if they remain).
    """
    tasks = {name: asyncio.create_task(coroutine) for name, coroutine in scans.items()}
    try:
        await asyncio.wait(tasks.values(), timeout=timeout)
    finally:
        # On timeout, and when this pass is itself cancelled: nothing may outlive it.
        unfinished = [task for task in tasks.values() if not task.done()]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
    results: dict[str, Any] = {}
    problems: list[str] = []
    interrupted: list[str] = []
    for name, task in tasks.items():
        if task.cancelled():
            problems.append(f"{name} did not finish within {timeout_text} (spec.preflight.timeout): find out what "
                            f"makes it slow, or raise the timeout, then retry")
        elif (error := task.exception()) is not None:
            if is_transient(error):
                interrupted.append(f"{name} could not read {servers.get(name, 'an API server')}: {_request(error)}")
            else:
                problems.append(f"{name} failed: {_describe(error)}; fix that, then retry")
        else:
            results[name] = task.result()
    if interrupted:
        raise ScanInterrupted("; ".join(interrupted))
    return results, problems


async def _capacity(
    *, green_capacity: Callable[[], Awaitable[WorkerCapacity]], blue: KubeClient
) -> CapacityStatus:
    try:
        green = await green_capacity()
    except ClusterProviderError as exc:
        return CapacityStatus(verdict=CapacityVerdict.UNKNOWN, message=f"green's size cannot be told: {exc}")
    return await capacity.check_capacity(green=green, blue=blue)


def _stateful_status(workload: stateful.StatefulWorkload, hooks: Sequence[api.Hook]) -> StatefulStatus:
    handoff = next((hook.name for hook in hooks if hook.handoff is not None
                    and (hook.handoff.kind.value, hook.handoff.namespace, hook.handoff.name)
                    == (workload.kind, workload.namespace, workload.name)), None)
    return StatefulStatus(kind=workload.kind, namespace=workload.namespace, name=workload.name,
                          reason=workload.reason, handoff=handoff)


def _missing_singletons(
    missing: Sequence[stateful.StatefulWorkload], singletons: Sequence[tuple[str, str, str]]
) -> list[str]:
    lines = []
    for workload in missing:
        key = (workload.kind, workload.namespace, workload.name)
        for index, declared in enumerate(singletons):
            if declared == key:
                lines.append(f"spec.preflight.singletons[{index}]: {workload.reason}")
    return lines


def _bounded(lines: list[str]) -> list[str]:
    if len(lines) <= LIST_LIMIT:
        return lines
    return [*lines[:LIST_LIMIT - 1], f"... and {len(lines) - LIST_LIMIT + 1} more problems"]


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _request(error: BaseException) -> str:
    # An API error's text is the server's own words; the request says which read met it.
    if isinstance(error, ApiError) and error.path:
        return f"{error} ({error.method} {error.path})"
    return _describe(error)

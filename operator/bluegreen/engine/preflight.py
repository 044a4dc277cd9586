"""The engine's preflight rules: what blocks, what only warns, and which strategy Auto chooses.

Pure like the rest of the engine: it reads what the scans stored in
``status.preflight`` (the I/O layer ran them for a ``ScanPreflight`` action) and
what the providers observed (versions offered, worker groups' versions), and
applies ``spec.preflight``'s policies. Every problem names what to fix.
"""

from __future__ import annotations

from bluegreen.api import versions
from bluegreen.api.spec import CapacityPolicy, RemovedAPIsPolicy, StatefulPolicy, Strategy
from bluegreen.api.status import CapacityVerdict
from bluegreen.engine.work import Pass
from bluegreen.preflight import versions as version_rules


def minor_of(version: str | None) -> str:
    parsed = versions.parse_version(version or "")
    return f"{parsed.major}.{parsed.minor}"


def green_problems(work: Pass) -> list[str]:
    """What stops green from being created: its name taken, nothing for Flux to copy, the providers' checks."""
    spec, blue, green = work.spec, work.observed.blue, work.observed.green
    problems: list[str] = []
    if green.exists and green.managed_by != work.owner:
        problems.append(
            f"a cluster named {green.name} already exists and was not created by this upgrade; "
            "set spec.target.greenName to a free name"
        )
    if blue.exists and not work.observed.workloads.blue:
        problems.append(
            f"spec.workloads.flux.selector matches no Kustomization in namespace {spec.flux_namespace}; "
            "label blue's Kustomizations or fix the selector"
        )
    problems.extend(work.observed.preflight_problems)
    return problems


def choose_strategy(work: Pass, path: list[str]) -> tuple[Strategy, list[str]]:
    """Auto: InPlace when nothing breaks and the jump is one minor, else BlueGreen; the reasons say which."""
    spec, report = work.spec, work.status.preflight
    if spec.strategy != Strategy.AUTO:
        return spec.strategy, [f"spec.strategy is {spec.strategy.value}"]
    target = spec.target.kubernetes_version
    current = minor_of(work.observed.blue.version)
    against: list[str] = []
    if report.findings_total:
        against.append(f"{report.findings_total} object(s) use APIs {target} no longer serves: blue keeps serving "
                       "while green is fixed")
    if report.problems:
        against.append(f"{len(report.problems)} scan(s) could not finish, so removed APIs cannot be ruled out")
    if len(path) > 1:
        against.append(f"{current} to {target} is {len(path)} minors: in place that is {len(path)} upgrades, "
                       "blue/green is one")
    if spec.preflight.stateful == StatefulPolicy.BLOCK and report.stateful_total:
        against.append(f"{report.stateful_total} stateful workload(s) and spec.preflight.stateful is Block")
    if against:
        return Strategy.BLUE_GREEN, against
    return Strategy.IN_PLACE, [
        f"no object uses an API removed by {target} (live on blue and in its sources)",
        f"one minor: {current} to {target}",
        "no stateful workload is blocked",
    ]


def verdict(work: Pass, chosen: Strategy, path: list[str]) -> tuple[list[str], list[str]]:
    """(blocking problems, warnings) from the scans and the version rules, as spec.preflight's policies say."""
    spec, blue, report = work.spec, work.observed.blue, work.status.preflight
    policy = spec.preflight
    blocking: list[str] = []
    warnings: list[str] = []
    if chosen == Strategy.BLUE_GREEN and spec.strategy == Strategy.AUTO:
        blocking.extend(green_problems(work))
    offer = version_rules.offered(spec.target.kubernetes_version, available=blue.offered_versions)
    if offer is not None:
        blocking.append(offer)
    if chosen == Strategy.IN_PLACE:
        for minor in path:
            blocking.extend(f"in place to {minor}: {problem}" for problem in version_rules.check_worker_skew(
                control_plane=minor, workers=blue.worker_versions))
    removed = removed_api_summary(work)
    if removed:
        (blocking if policy.removed_apis == RemovedAPIsPolicy.BLOCK else warnings).append(removed)
    if report.stateful_total:
        shown = ", ".join(f"{w.kind} {w.namespace}/{w.name} ({w.reason})" for w in report.stateful_workloads[:3])
        more = f" and {report.stateful_total - 3} more" if report.stateful_total > 3 else ""
        if policy.stateful == StatefulPolicy.BLOCK:
            blocking.append(f"{report.stateful_total} stateful workload(s) cannot run on two clusters at once: "
                            f"{shown}{more}; move them with spec.hooks[] handoffs and set spec.preflight.stateful "
                            "to Handoff, or to Warn to go on")
        elif policy.stateful == StatefulPolicy.HANDOFF and chosen == Strategy.BLUE_GREEN:
            uncovered = [w for w in report.stateful_workloads if w.handoff is None]
            if uncovered:
                names = ", ".join(f"{w.kind} {w.namespace}/{w.name}" for w in uncovered[:5])
                blocking.append(f"{len(uncovered)} stateful workload(s) have no handoff hook: {names}; add a "
                                "spec.hooks[] entry with handoff: {kind, namespace, name} for each")
        elif policy.stateful == StatefulPolicy.WARN and chosen == Strategy.BLUE_GREEN:
            warnings.append(f"{report.stateful_total} stateful workload(s) will run on both clusters until blue "
                            f"is retired: {shown}{more}")
    capacity = report.capacity
    if chosen == Strategy.BLUE_GREEN and capacity is not None and policy.capacity != CapacityPolicy.OFF:
        if capacity.verdict == CapacityVerdict.TOO_SMALL and policy.capacity == CapacityPolicy.BLOCK:
            blocking.append(f"capacity: {capacity.message}")
        elif capacity.verdict != CapacityVerdict.ENOUGH:
            warnings.append(f"capacity: {capacity.message}")
    return blocking, warnings


def removed_api_summary(work: Pass) -> str:
    report, target = work.status.preflight, work.spec.target.kubernetes_version
    parts: list[str] = []
    if report.findings_total:
        first = "; ".join(
            f"{f.kind} {f.namespace + '/' if f.namespace else ''}{f.name} uses {f.api_version} (use {f.replacement}; "
            f"{f.where})" for f in report.findings[:3])
        more = f" and {report.findings_total - 3} more" if report.findings_total > 3 else ""
        parts.append(f"{report.findings_total} object(s) use APIs removed by {target}: {first}{more}; migrate them "
                     "(status.preflight.findings lists them)")
    if report.problems:
        parts.append(f"could not scan everything: {'; '.join(report.problems[:3])}")
    if not parts:
        return ""
    return "; ".join(parts) + " (or set spec.preflight.removedAPIs: Warn to go on)"

"""Which Kubernetes versions an upgrade may go through, checked before anything is touched.

The rules come from the providers, not from bluegreen (REFERENCE.md, EKS Anywhere
and Cluster API sections):

* In place, a cluster moves one minor version per upgrade and never down: EKS
  Anywhere refuses anything else, and a Cluster API topology refuses +2 minors
  at once. So an in-place jump from 1.28 to 1.31 is three upgrades, and this
  module spells them out. A new (green) cluster may start at the target directly,
  which is why these functions are about the in-place path only.
* Worker groups may lag the control plane by a bounded number of minors and may
  never be newer. REFERENCE.md states 2 for EKS Anywhere worker groups; upstream
  Kubernetes allows kubelets 3 minors behind from 1.28 on, so the bound is a
  parameter, defaulting to the stricter documented one.
* A provider that lists the versions it offers (an EKS-A release bundle, a set of
  machine images) cannot build anything else, so a target outside that list is
  refused before provisioning rather than failing half-way.

Everything here is pure: versions in, versions or problem messages out. Only major
and minor matter for the rules; a patch level in the input is accepted and ignored,
except where a provider lists exact patch versions (:func:`offered`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bluegreen.api.versions import KubeVersion, parse_version

TARGET_FIELD = "spec.target.kubernetesVersion"
WORKER_LAG_MINORS = 2
"""How many minors a worker group may lag the control plane (EKS Anywhere, REFERENCE.md)."""


def in_place_path(*, current: str, target: str) -> list[str]:
    """The minors an in-place upgrade goes through, one per step, ending at ``target``: 1.28 -> 1.31 is
    ``["1.29", "1.30", "1.31"]``.

    Raises ValueError naming ``spec.target.kubernetesVersion`` when the target is not
    newer than the current minor (a downgrade or no upgrade at all) or is of another
    major version.
    """
    here = parse_version(current)
    there = parse_version(target)
    if there.major != here.major:
        raise ValueError(
            f"{TARGET_FIELD} {target} is a different major version from the cluster's {current}; "
            f"in place, an upgrade stays within major {here.major}: set a {here.major}.x version newer than {current}"
        )
    if there.minor_key <= here.minor_key:
        what = "the version the cluster already runs" if there.minor_key == here.minor_key else "a downgrade"
        raise ValueError(
            f"{TARGET_FIELD} {target} is {what} (the cluster runs {current}); "
            f"clusters are upgraded, never downgraded: set a version newer than {_minor(here)}, "
            f"such as {here.major}.{here.minor + 1}"
        )
    return [f"{here.major}.{minor}" for minor in range(here.minor + 1, there.minor + 1)]


def check_worker_skew(
    *, control_plane: str, workers: Mapping[str, str], max_lag: int = WORKER_LAG_MINORS
) -> list[str]:
    """Problems with worker groups' versions against ``control_plane``, one message per group; empty when fine.

    A group may be up to ``max_lag`` minors older than the control plane, never newer.
    ``workers`` maps a worker group's name to its version; a version that does not parse is a
    problem of that group. The control plane's own version must parse (ValueError otherwise).
    """
    plane = parse_version(control_plane)
    problems: list[str] = []
    for group, version in sorted(workers.items()):
        try:
            worker = parse_version(version)
        except ValueError as exc:
            problems.append(f"worker group {group!r}: {exc}")
            continue
        if worker.major != plane.major:
            problems.append(
                f"worker group {group!r} runs {version}, a different major version from the control plane's "
                f"{control_plane}"
            )
        elif worker.minor > plane.minor:
            problems.append(
                f"worker group {group!r} runs {version}, newer than the control plane's {control_plane}; "
                f"workers may never be newer than the control plane: upgrade the control plane first"
            )
        elif plane.minor - worker.minor > max_lag:
            lag = plane.minor - worker.minor
            problems.append(
                f"worker group {group!r} runs {version}, {lag} minors behind the control plane's {control_plane} "
                f"(at most {max_lag} allowed): upgrade it to {plane.major}.{plane.minor - max_lag} or newer first"
            )
    return problems


def offered(target: str, *, available: Sequence[str] | None) -> str | None:
    """A problem message when the provider lists its versions and ``target`` is not among them, else None.

    ``available`` None means the provider does not say, so nothing can be refused. A listed
    ``X.Y`` offers every patch of that minor; a listed ``X.Y.Z`` offers only that patch, and
    then a target without a patch level matches it too. Listed entries that do not parse are
    ignored (they cannot be asked for).
    """
    if available is None:
        return None
    wanted = parse_version(target)
    versions = [version for version in (_parse_or_none(entry) for entry in available) if version is not None]
    if any(_matches(wanted, version) for version in versions):
        return None
    if not versions:
        return f"{TARGET_FIELD} {target} cannot be built: the cluster provider offers no Kubernetes version"
    listed = ", ".join(str(version) for version in sorted(set(versions), key=_display_order))
    return (
        f"{TARGET_FIELD} {target} is not offered by the cluster provider (it offers {listed}); "
        f"choose one of those, or update the provider's release"
    )


def _matches(wanted: KubeVersion, listed: KubeVersion) -> bool:
    if wanted.minor_key != listed.minor_key:
        return False
    return wanted.patch is None or listed.patch is None or wanted.patch == listed.patch


def _display_order(version: KubeVersion) -> tuple[int, int, int]:
    # A bare minor first, then its patches; NamedTuple order would compare None with int.
    return (version.major, version.minor, -1 if version.patch is None else version.patch)


def _parse_or_none(text: str) -> KubeVersion | None:
    try:
        return parse_version(text)
    except ValueError:
        return None


def _minor(version: KubeVersion) -> str:
    return f"{version.major}.{version.minor}"

"""What every analysis check is given, and the protocol metric providers follow.

A check runs in the I/O layer when the engine asks for it (``RunChecks``) and
returns a :class:`~bluegreen.api.status.CheckResult`; the engine counts the
results (``engine.analysis``) and decides. Providers never decide anything.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from bluegreen.kube.client import KubeClient


class MetricError(Exception):
    """The provider could not produce a value (unreachable, refused, not one number); counts as inconclusive."""


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """The upgrade as it stands when a check runs: names, phase, weights."""

    upgrade: str  # the ClusterUpgrade's name
    namespace: str  # its namespace: Secrets the spec names live there
    phase: str
    blue: str  # blue cluster name
    green: str  # green cluster name
    blue_weight: int
    green_weight: int
    step: int
    management: KubeClient  # to read Secrets named in the spec


class MetricProvider(Protocol):
    async def value(self, *, cluster: str) -> float | None:
        """Measure once for the side named ``cluster`` ({{cluster}} in the query); None when there is no data.

        Raise :class:`MetricError` when the provider cannot answer.
        """
        ...

"""The Router protocol: one way of splitting traffic between blue and green.

One module per router kind behind this protocol, chosen through the explicit
registry in :mod:`bluegreen.traffic.registry`. Several routers may act in one
upgrade: they are applied in the order given and rolled back in reverse.

Routers are idempotent: ``set_weights`` reads the current state, compares it
with the desired one and changes only on a difference. ``verify`` reads the
effective weights back; a step is done only when every router verified.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from bluegreen.kube.client import KubeClient
from bluegreen.kube.remote import RemoteClients


class RouterError(Exception):
    """The router could not apply or read weights (unreachable, refused, malformed reply)."""


class RouterPending(Exception):
    """The change is accepted but not in effect yet (Route 53 PENDING, targets still registering).

    Not a failure: the upgrade holds the step and looks again after ``retry_after`` seconds.
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class RouterContext:
    """What a router may need from the operator to reach its target."""

    management: KubeClient  # the management cluster
    remote: RemoteClients  # clients for clusters reached through kubeconfig Secrets
    namespace: str  # the ClusterUpgrade's namespace: Secrets the spec names live there
    upgrade_name: str | None = None  # the ClusterUpgrade's name, for receivers serving several upgrades (webhook)


@dataclasses.dataclass(frozen=True)
class RouterChange:
    """What ``set_weights`` did: whether anything changed, and an id or detail for the journal."""

    changed: bool
    detail: str = ""
    change_id: str | None = None


@dataclasses.dataclass(frozen=True)
class RouterWeights:
    """Effective weights read back from a router, as percent of traffic."""

    blue: int
    green: int


class Router(Protocol):
    @property
    def name(self) -> str:
        """Name used in status, the journal and events."""
        ...

    async def set_weights(self, *, blue: int, green: int) -> RouterChange:
        """Make the router send ``blue``/``green`` percent (they sum to 100); change only on a difference."""
        ...

    async def verify(self) -> RouterWeights | None:
        """Read the effective weights back, or None if this router cannot tell.

        Raise :class:`RouterPending` while an accepted change is not in effect yet.
        """
        ...

    async def save(self) -> dict[str, Any]:
        """What this router holds now, read before bluegreen's first change, as small JSON-able data.

        Called once per upgrade; the result is kept in ``status.routers`` and handed back to
        :meth:`finalize`, so a restarted operator can still restore it.
        """
        ...

    async def finalize(self, *, retired: str, mode: str, original: dict[str, Any] | None) -> str:
        """Once one side is retired, leave the router without it, idempotently; return a journal line.

        ``retired`` is "blue" after a promotion (green holds 100 %) or "green" after a rollback
        (blue holds 100 %). ``mode`` is a :class:`bluegreen.api.spec.FinalizeMode` value: "Remove"
        removes the retired side's entry (Route 53: delete its record); "Restore" after a rollback
        puts back ``original`` exactly as :meth:`save` returned it (after a promotion it is the same
        as "Remove"). Refuse (RouterError) rather than remove a side that still takes traffic.
        """
        ...

"""Watches on workload clusters that wake one upgrade.

kopf watches the management cluster only. What an upgrade waits for inside a
workload cluster (in git mode, green's own Flux applying a commit) is watched
here, through the cluster's kubeconfig Secret, for as long as the upgrade
needs it. An event only wakes the upgrade's loop, which then reads what it
needs: the watch carries no state, so a lost event costs a delay, not a
wrong decision. A broken stream is reopened with a capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bluegreen.kube.client import KubeError
from bluegreen.kube.remote import RemoteClients
from bluegreen.workloads.base import RemoteWatch

logger = logging.getLogger(__name__)
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


class RemoteWatches:
    def __init__(self, remote: RemoteClients, wake: asyncio.Event, *, label: str) -> None:
        self._remote = remote
        self._wake = wake
        self._label = label
        self._tasks: dict[RemoteWatch, asyncio.Task[None]] = {}

    def ensure(self, targets: list[RemoteWatch]) -> None:
        """Watch exactly ``targets``: start the missing ones, stop the others."""
        wanted = set(targets)
        for target in list(self._tasks):
            if target not in wanted:
                self._tasks.pop(target).cancel()
        for target in wanted:
            if target not in self._tasks or self._tasks[target].done():
                self._tasks[target] = asyncio.create_task(self._follow(target), name=f"watch {target}")

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self, target: RemoteWatch) -> None:
        delay = RETRY_MIN_SECONDS
        namespace, name, key = target.kubeconfig
        while True:
            try:
                client = await self._remote.client(namespace=namespace, name=name, key=key)
                async for _ in client.watch(target.resource, namespace=target.namespace):
                    self._wake.set()
                    delay = RETRY_MIN_SECONDS
            except KubeError as exc:
                logger.debug("%s: watch of %s through %s/%s: %s", self._label, target.resource, namespace, name, exc)
            # The stream ended (server timeout) or broke: whatever changed meanwhile, look again.
            self._wake.set()
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_SECONDS, delay * 2)

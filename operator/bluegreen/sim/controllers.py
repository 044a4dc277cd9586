"""What the simulated controllers share: one reconcile at a time per object, coalesced.

Real controllers (controller-runtime) run one reconcile per object key at a
time and fold the events that arrive meanwhile into one more pass. The
simulated Cluster API and Flux controllers do the same, so an object that
changes while it is being reconciled is looked at again afterwards, never
twice at once, and a controller's own status writes end in a no-op pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Key = TypeVar("Key", bound=Hashable)


class KeyedWorkers(Generic[Key]):
    """Runs ``handler(key)`` for queued keys: one task per key, later requests coalesced."""

    def __init__(self, handler: Callable[[Key], Awaitable[None]], *, name: str, error_retry: float = 1.0) -> None:
        self._handler = handler
        self._name = name
        self._error_retry = error_retry
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._closed = False

    def enqueue(self, key: Key) -> None:
        if self._closed:
            return
        task = self._tasks.get(key)
        if task is not None and not task.done():
            self._dirty.add(key)
            return
        self._tasks[key] = asyncio.get_running_loop().create_task(self._run(key), name=f"{self._name}:{key}")

    def enqueue_later(self, key: Key, delay: float) -> None:
        """Look at ``key`` again after ``delay`` seconds (one pending timer per key)."""
        if self._closed or key in self._timers:
            return

        def fire() -> None:
            self._timers.pop(key, None)
            self.enqueue(key)

        self._timers[key] = asyncio.get_running_loop().call_later(delay, fire)

    async def _run(self, key: Key) -> None:
        while True:
            self._dirty.discard(key)
            try:
                await self._handler(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: reconciling %s failed; retrying in %ss", self._name, key, self._error_retry)
                self.enqueue_later(key, self._error_retry)
            if key not in self._dirty:
                break
        self._tasks.pop(key, None)

    async def idle(self) -> None:
        """Wait until no reconcile is running (timers may still be pending)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

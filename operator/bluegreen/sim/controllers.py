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
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from bluegreen.sim.kube import KubeEmulator

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


class WatchingController(Generic[Key]):
    """A controller of one emulator: its watches turn events into keys, each key reconciled by KeyedWorkers.

    Watches are opened before the first listing, so nothing falls between the two, and opened again if
    they end while the emulator still serves. Subclasses say what they watch (``watched``), which keys
    an object wakes (``keys_of``) and how a key is reconciled (``_sync``); ``registry`` is the module's
    map of attached controllers, which a stopped controller leaves.
    """

    def __init__(self, emulator: KubeEmulator, *, name: str, watched: Sequence[str],
                 registry: dict[int, Any]) -> None:
        self.emulator = emulator
        self.done = False
        self._name = f"{name}@{emulator.name}"
        self._watched = tuple(watched)
        self._registry = registry
        self._workers: KeyedWorkers[Key] = KeyedWorkers(self._sync, name=self._name)
        self._task: asyncio.Task[None] | None = None
        self._watches: list[Any] = []
        self._stopping = False

    def keys_of(self, resource: str, event_type: str, obj: Mapping[str, Any]) -> Iterable[Key]:
        raise NotImplementedError

    async def _sync(self, key: Key) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        self._stopping = True
        for watch in self._watches:
            await watch.aclose()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until no reconcile runs."""
        await self._workers.idle()

    async def _run(self) -> None:
        try:
            while self.emulator.serving and not self._stopping:
                watches = [(resource, self.emulator.watch(resource)) for resource in self._watched]
                self._watches = [watch for _, watch in watches]
                for resource in self._watched:
                    for obj in self.emulator.list(resource):
                        self._enqueue(resource, "ADDED", obj)
                consumers = [asyncio.create_task(self._consume(resource, watch)) for resource, watch in watches]
                try:
                    await asyncio.wait(consumers, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for consumer in consumers:
                        consumer.cancel()
                    await asyncio.gather(*consumers, return_exceptions=True)
                    for _, watch in watches:
                        await watch.aclose()  # type: ignore[attr-defined]
        finally:
            self.done = True
            await self._workers.close()
            if self._registry.get(id(self.emulator)) is self:
                del self._registry[id(self.emulator)]

    async def _consume(self, resource: str, watch: Any) -> None:
        async for event_type, obj in watch:
            self._enqueue(resource, event_type, obj)

    def _enqueue(self, resource: str, event_type: str, obj: Mapping[str, Any]) -> None:
        for key in self.keys_of(resource, event_type, obj):
            self._workers.enqueue(key)

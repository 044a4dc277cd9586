"""Container logs of an emulated cluster, served as ``GET .../pods/{name}/log``.

On a real cluster the log of a container lives on its node and the API server
proxies ``pods/{name}/log`` to the kubelet. The emulators have no nodes, so the
simulated kubelet (:mod:`bluegreen.sim.jobs`) writes here what its processes
print, and the HTTP layer (:mod:`bluegreen.sim.kube_http`) reads it back with the
kubelet's options: ``tailLines``, ``limitBytes``, ``timestamps``, ``sinceSeconds``
/ ``sinceTime``, ``previous`` and ``follow``.

Logs are keyed by the pod's uid, so a pod re-created under the same name starts
with an empty log, as on a real node. A log exists from the moment its container
starts; before that there is none, which the API reports as "waiting to start".
Everything runs on the emulator's event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import AsyncIterator


def _rfc3339_nano(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


@dataclasses.dataclass(eq=False)
class _Log:
    lines: list[tuple[datetime.datetime, bytes]] = dataclasses.field(default_factory=list)  # each ends with \n
    partial: bytes = b""  # printed without a newline yet
    closed: bool = False  # the container has terminated
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def append(self, data: bytes, now: datetime.datetime) -> None:
        data = self.partial + data
        *complete, self.partial = data.split(b"\n")
        self.lines.extend((now, line + b"\n") for line in complete)
        self._notify()

    def close(self, now: datetime.datetime) -> None:
        if self.partial:
            # A last line without a newline is still a line of the log (the runtime ends it).
            self.lines.append((now, self.partial + b"\n"))
            self.partial = b""
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


@dataclasses.dataclass(frozen=True)
class LogOptions:
    """The query parameters of ``pods/{name}/log`` that shape what is returned."""

    tail_lines: int | None = None
    limit_bytes: int | None = None
    timestamps: bool = False
    since: datetime.datetime | None = None


class PodLogs:
    """The logs of every container of every pod in one emulator, current and previous."""

    def __init__(self) -> None:
        self._current: dict[tuple[str, str], _Log] = {}
        self._previous: dict[tuple[str, str], _Log] = {}
        self._ended = False

    # --- the kubelet's side -----------------------------------------------------------------------

    def start(self, *, uid: str, container: str) -> None:
        """A container (re)starts: its log so far becomes the previous one, a new one begins."""
        key = (uid, container)
        old = self._current.get(key)
        if old is not None:
            old.close(_now())
            self._previous[key] = old
        self._current[key] = _Log()

    def write(self, *, uid: str, container: str, data: bytes) -> None:
        self._current[(uid, container)].append(data, _now())

    def terminate(self, *, uid: str, container: str) -> None:
        """The container has exited: followers get the rest and the stream ends."""
        log = self._current.get((uid, container))
        if log is not None:
            log.close(_now())

    def forget(self, uid: str) -> None:
        """The pod is gone, and its logs with it."""
        for store in (self._current, self._previous):
            for key in [key for key in store if key[0] == uid]:
                del store[key]

    def end_streams(self) -> None:
        """The server is stopping: end every ``follow`` (a real server's streams end with it)."""
        self._ended = True
        for log in self._current.values():
            log.changed.set()

    # --- the API's side ---------------------------------------------------------------------------

    def started(self, *, uid: str, container: str, previous: bool = False) -> bool:
        return (uid, container) in (self._previous if previous else self._current)

    def read(self, *, uid: str, container: str, options: LogOptions, previous: bool = False) -> bytes:
        log = (self._previous if previous else self._current).get((uid, container))
        if log is None:
            return b""
        return _render(log.lines, options)

    async def follow(self, *, uid: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        """What ``read`` gives, then each new line until the container terminates."""
        log = self._current.get((uid, container))
        if log is None:
            return
        budget = options.limit_bytes
        first = _render(log.lines, options)
        sent = len(log.lines)
        if budget is not None:
            first = first[:budget]
            budget -= len(first)
        if first:
            yield first
        follow_options = dataclasses.replace(options, tail_lines=None, limit_bytes=None)
        while not log.closed and not self._ended and (budget is None or budget > 0):
            await log.changed.wait()
            chunk = _render(log.lines[sent:], follow_options)
            sent = len(log.lines)
            if budget is not None:
                chunk = chunk[:budget]
                budget -= len(chunk)
            if chunk:
                yield chunk
        if log.closed and sent < len(log.lines) and (budget is None or budget > 0):
            chunk = _render(log.lines[sent:], follow_options)
            yield chunk if budget is None else chunk[:budget]


def _render(lines: list[tuple[datetime.datetime, bytes]], options: LogOptions) -> bytes:
    if options.since is not None:
        since = options.since
        lines = [entry for entry in lines if entry[0] >= since]
    if options.tail_lines is not None:
        lines = lines[-options.tail_lines:] if options.tail_lines > 0 else []
    if options.timestamps:
        data = b"".join(_rfc3339_nano(moment).encode() + b" " + line for moment, line in lines)
    else:
        data = b"".join(line for _, line in lines)
    if options.limit_bytes is not None:
        data = data[:options.limit_bytes]
    return data


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)

"""Operator settings, read once from the environment.

Every delay is configurable so tests and the demo can shrink them; the
defaults are what a production management cluster wants.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import time


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    retry_base_seconds: float = 2.0  # first retry after a failed action
    retry_max_seconds: float = 300.0  # backoff ceiling
    api_timeout_seconds: float = 30.0
    # Safety net for a missed watch event: a pass at least this often even when nothing woke it.
    resync_seconds: float = 300.0
    # Where git mode keeps its clones of environment repositories (one per upgrade).
    workdir: pathlib.Path = dataclasses.field(
        default_factory=lambda: pathlib.Path(tempfile.gettempdir()) / "bluegreen"
    )
    # /metrics for Prometheus; 0 serves none. Not 8080: the chart gives that to kopf's liveness endpoint.
    metrics_port: int = 8000
    metrics_host: str = "0.0.0.0"
    # kopf peering (replicas > 1): seconds a replica's keep-alive stays valid; kopf's own default is 60.
    peering_lifetime_seconds: int = 60

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        env = dict(os.environ if environ is None else environ)

        def number(name: str, default: float) -> float:
            text = env.get(name)
            if text is None or text == "":
                return default
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"environment variable {name}={text!r} must be a number of seconds") from None
            if value < 0:
                raise ValueError(f"environment variable {name}={text!r} must not be negative")
            return value

        port_text = env.get("BLUEGREEN_METRICS_PORT") or str(cls.metrics_port)
        if not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(f"environment variable BLUEGREEN_METRICS_PORT={port_text!r} must be a port (0: none)")
        lifetime = number("BLUEGREEN_PEERING_LIFETIME", cls.peering_lifetime_seconds)
        if lifetime < 1 or lifetime != int(lifetime):
            raise ValueError(f"environment variable BLUEGREEN_PEERING_LIFETIME={lifetime!r} must be a whole "
                             "number of seconds, at least 1")
        return cls(
            peering_lifetime_seconds=int(lifetime),
            retry_base_seconds=number("BLUEGREEN_RETRY_BASE_SECONDS", cls.retry_base_seconds),
            retry_max_seconds=number("BLUEGREEN_RETRY_MAX_SECONDS", cls.retry_max_seconds),
            api_timeout_seconds=number("BLUEGREEN_API_TIMEOUT_SECONDS", cls.api_timeout_seconds),
            resync_seconds=number("BLUEGREEN_RESYNC_SECONDS", cls.resync_seconds),
            metrics_port=int(port_text),
            metrics_host=env.get("BLUEGREEN_METRICS_HOST") or cls.metrics_host,
            **({"workdir": pathlib.Path(env["BLUEGREEN_WORKDIR"])} if env.get("BLUEGREEN_WORKDIR") else {}),
        )

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (exponential, capped)."""
        return float(min(self.retry_max_seconds, self.retry_base_seconds * (2 ** max(0, failures - 1))))


# Far enough above every start time in milliseconds (2026: 1.8e12) for centuries, and below 2**53.
_PRIORITY_CEILING = 10**13


def peering_priority(started: float | None = None) -> int:
    """kopf peering priority for a replica started at ``started`` (epoch seconds): the older, the higher.

    kopf lets the replica with the highest priority act and pauses the others, and pauses ALL of them when
    two share the highest priority, so equal priorities (kopf's default 0 everywhere) would leave no one
    acting. Priority from the start time makes the replica that started first the one that acts: a new pod
    of a rolling update waits as a standby instead of taking over mid-pass, and when the active replica
    goes, the oldest standby follows. Two replicas started in the same millisecond both pause, with kopf's
    warning, until one of them restarts.
    """
    moment = time.time() if started is None else started
    return _PRIORITY_CEILING - int(moment * 1000)

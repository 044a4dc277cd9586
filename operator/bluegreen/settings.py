"""Operator settings, read once from the environment.

Every delay is configurable so tests and the demo can shrink them; the
defaults are what a production management cluster wants.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile


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
        return cls(
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

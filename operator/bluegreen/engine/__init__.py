"""The pure decision engine: ``decide(spec, status, observed, now) -> Decision``."""

from bluegreen.engine.decide import decide, upgrade_label
from bluegreen.engine.types import Decision, Observed

__all__ = ["Decision", "Observed", "decide", "upgrade_label"]

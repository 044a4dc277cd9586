"""Durations as users write them in specs: ``30s``, ``5m``, ``1h30m``, ``24h``, ``0s``.

Kept as strings in the resource (what the user wrote is what they read back) and
parsed here, in one place, so the CRD pattern and the parser cannot disagree.
"""

from __future__ import annotations

import datetime
import re

# Go's time.ParseDuration subset that people actually write in Kubernetes specs.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


# The longest duration a spec may hold. Every duration is added to a time (a deadline, the end of
# a window); a year is far beyond any wait an upgrade needs, and far below datetime's range.
LONGEST = datetime.timedelta(days=365)


def parse_duration(text: str) -> datetime.timedelta:
    """Parse ``1h30m`` into a timedelta; raise ValueError with an example of the format, or when beyond LONGEST."""
    if not isinstance(text, str) or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a duration; write a number with a unit: 500ms, 30s, 5m, 1h30m"
        )
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    if seconds > LONGEST.total_seconds():
        raise ValueError(f"{text!r} is longer than {format_duration(LONGEST)} (365 days), the longest duration "
                         "accepted; write a shorter one")
    return datetime.timedelta(seconds=seconds)


def format_duration(delta: datetime.timedelta) -> str:
    """The shortest ``1h2m3s`` form of a timedelta (for messages and the plan)."""
    total = delta.total_seconds()
    if total < 1:
        return f"{round(total * 1000)}ms"
    hours, rest = divmod(int(total), 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{seconds}s" if seconds else ""]
    return "".join(parts) or "0s"

"""Plain aligned text for a terminal: tables, ages, durations, and colour only where it helps.

Colour is on only when writing to a terminal and ``NO_COLOR`` is unset or
empty (https://no-color.org); piped output is plain text a script can read.
Alignment is computed on the visible text, so coloured cells line up too.
"""

from __future__ import annotations

import datetime
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import TextIO

from bluegreen.api.durations import format_duration

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CODES = {"bold": "1", "red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2"}


class Style:
    """Wraps text in ANSI colours when enabled, and returns it unchanged otherwise."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: TextIO, *, environ: Mapping[str, str] | None = None) -> Style:
        env = os.environ if environ is None else environ
        return cls(enabled=stream.isatty() and not env.get("NO_COLOR"))

    def paint(self, text: str, colour: str | None) -> str:
        if not self.enabled or colour is None or not text:
            return text
        return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"

    def bold(self, text: str) -> str:
        return self.paint(text, "bold")


PLAIN = Style(enabled=False)


def visible_width(text: str) -> int:
    return len(_ANSI.sub("", text))


def table(
    rows: Sequence[Sequence[str]], *, header: Sequence[str] | None = None, indent: int = 2, width: int | None = None,
) -> list[str]:
    """Columns padded to their widest cell; the last column is not padded (it may be long).

    With ``width``, a last cell of plain text that would pass it is wrapped onto
    lines of its own, starting at its column.
    """
    lines = [list(header)] if header else []
    lines += [list(row) for row in rows]
    if not lines:
        return []
    columns = max(len(line) for line in lines)
    widths = [max((visible_width(line[i]) for line in lines if i < len(line)), default=0) for i in range(columns)]
    rendered = []
    for line in lines:
        cells = []
        for i, cell in enumerate(line):
            last = i == len(line) - 1
            cells.append(cell if last else cell + " " * (widths[i] - visible_width(cell)))
        text = (" " * indent + "  ".join(cells)).rstrip()
        start = visible_width(text) - visible_width(cells[-1]) if cells else 0
        if width is None or visible_width(text) <= width or _ANSI.search(cells[-1]) or len(cells) < 2:
            rendered.append(text)
            continue
        parts = textwrap.wrap(cells[-1], max(width - start, 20), break_long_words=False, break_on_hyphens=False)
        rendered.append(text[: len(text) - len(cells[-1])] + parts[0])
        rendered += [" " * start + part for part in parts[1:]]
    return rendered


def wrap(text: str, *, width: int, indent: int = 0, hanging: int = 2) -> list[str]:
    """``text`` in lines of at most ``width`` columns, the first at ``indent``, the others ``hanging`` further in."""
    return textwrap.wrap(text, width, initial_indent=" " * indent, subsequent_indent=" " * (indent + hanging),
                         break_long_words=False, break_on_hyphens=False) or [" " * indent]


def age(delta: datetime.timedelta) -> str:
    """A compact age like kubectl's: 45s, 3m20s, 25m, 2h5m, 30h, 3d4h, 40d."""
    seconds = max(0, int(delta.total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    return f"{days}d"


def span(delta: datetime.timedelta | None) -> str:
    """A planned duration: ``0s``, ``1m``, ``24h25m``; ``-`` when the world decides."""
    if delta is None:
        return "-"
    if delta <= datetime.timedelta(0):
        return "0s"
    return format_duration(delta)


def parse_time(value: object) -> datetime.datetime | None:
    """An RFC 3339 timestamp as the API serves it, or None for anything else."""
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def one_line(text: str) -> str:
    return " ".join(text.split())

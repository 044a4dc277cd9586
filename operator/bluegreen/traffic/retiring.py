"""What every router's ``finalize`` shares: which side goes, whether the saved original comes back, when to refuse.

Finalize runs once one side is retired: blue after a promotion (green holds
100 %), green after a rollback (blue holds 100 %). Each router knows its own
back end; the rules below are the same for all of them, so they live here and
read the same in every router's errors:

- ``Remove`` takes the retired side's entry out of the router (or, where the
  router has no entries to take out, leaves the retired side nothing to
  serve). ``Restore`` after a rollback puts back what ``save`` read before
  bluegreen's first change, exactly; after a promotion it is ``Remove``,
  since nothing may route to a cluster that is being deleted.
- A router refuses (:class:`~bluegreen.traffic.base.RouterError`) rather than
  take away a side that still takes traffic, or leave the kept side with
  none; a restore also refuses a saved original that would send the retired
  side traffic or route nothing to the kept side. Refusing is safe: the
  upgrade reports it and tries again, nothing was written.
- Finalize reads first and writes only on a difference: a second call writes
  nothing and still returns its one-line journal detail.

The routers' ``save`` results are kept in ``status.routers`` and come back
here through JSON: only plain data (dicts, lists, strings, numbers, booleans,
None) may be in them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from bluegreen.api import spec
from bluegreen.traffic import base

SIDES = ("blue", "green")


@dataclasses.dataclass(frozen=True)
class Retirement:
    """What one finalize does: which side goes, and the original to put back (None: remove the side's entry)."""

    retired: str
    original: Mapping[str, Any] | None = None

    @property
    def kept(self) -> str:
        return "green" if self.retired == "blue" else "blue"

    @property
    def restoring(self) -> bool:
        return self.original is not None


def plan(*, router: str, retired: str, mode: str, original: Mapping[str, Any] | None,
         unsaved_hint: str = "") -> Retirement:
    """The finalize asked for; a ValueError for an unknown side or mode, a RouterError for a Restore of nothing.

    ``unsaved_hint`` is added to the error when nothing was saved (a router that cannot read its state
    says here what would let it).
    """
    if retired not in SIDES:
        raise ValueError(f"retired must be 'blue' or 'green', not {retired!r}")
    try:
        finalize_mode = spec.FinalizeMode(mode)
    except ValueError:
        raise ValueError(
            f"mode must be one of {', '.join(item.value for item in spec.FinalizeMode)}, not {mode!r}"
        ) from None
    if finalize_mode is not spec.FinalizeMode.RESTORE or retired == "blue":
        return Retirement(retired=retired)
    if not original:
        raise base.RouterError(
            f"router {router!r} has onFinalize: Restore, but nothing was saved for it before the upgrade's first "
            f"change (status.routers has no original), so there is nothing to put back{unsaved_hint}; "
            "set its traffic by hand, or set onFinalize: Remove"
        )
    return Retirement(retired=retired, original=original)


def check_current(retirement: Retirement, *, shares: tuple[int, int], what: str, state: str) -> None:
    """Refuse to finalize while the retired side takes a share of the traffic, or the kept side takes none.

    ``shares`` are (blue, green) as the back end splits the traffic now (relative weights or percent; a
    side that takes nothing has 0); ``state`` says how the back end holds them, for the error.
    """
    retired, kept = retirement.retired, retirement.kept
    share = dict(zip(SIDES, shares, strict=True))
    if share[retired] > 0:
        raise base.RouterError(
            f"refusing to retire {retired} from {what}: {retired} still takes traffic ({state}); "
            f"it is retired only once {kept} holds 100 %"
        )
    if share[kept] <= 0:
        raise base.RouterError(
            f"refusing to retire {retired} from {what}: {kept} takes no traffic there either ({state}), "
            f"so nothing would be left to serve; give {kept} 100 % first"
        )


def check_original(retirement: Retirement, *, shares: tuple[int, int], what: str, state: str) -> None:
    """Refuse to restore a saved original that would send the retired side traffic, or none to the kept side."""
    retired, kept = retirement.retired, retirement.kept
    share = dict(zip(SIDES, shares, strict=True))
    if share[retired] > 0:
        harm = f"send traffic to {retired}, which is being retired"
    elif share[kept] <= 0:
        harm = f"send no traffic to {kept}"
    else:
        return
    raise base.RouterError(
        f"refusing to restore {what} as saved before the upgrade ({state}): that would {harm}; "
        "set onFinalize: Remove, or set the traffic by hand"
    )


def saved(retirement: Retirement, key: str, *, router: str, expect: type | tuple[type, ...]) -> Any:
    """The ``key`` of the original being restored, of type ``expect``; a RouterError when it is not there or not so."""
    assert retirement.original is not None
    value = retirement.original.get(key, _MISSING)
    if value is _MISSING or not isinstance(value, expect):
        keys = ", ".join(sorted(retirement.original)) or "none"
        raise base.RouterError(
            f"router {router!r}: the original saved in status.routers has no usable {key!r} (its keys: {keys}); "
            "it was saved by another kind of router or edited: set the traffic by hand, or set onFinalize: Remove"
        )
    return value


_MISSING = object()

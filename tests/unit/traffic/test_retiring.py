"""The rules every router's finalize follows: which side goes, when the saved original comes back, when to refuse."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bluegreen.traffic import base, retiring

SAVED = {"blue": {"weight": 100}, "green": None}


@pytest.mark.parametrize("retired, mode, restoring", [
    ("blue", "Remove", False),
    ("blue", "Restore", False),  # after a promotion nothing may route to the cluster being deleted
    ("green", "Remove", False),
    ("green", "Restore", True),
])
def test_only_a_restore_after_a_rollback_puts_the_original_back(retired: str, mode: str, restoring: bool) -> None:
    retirement = retiring.plan(router="dns", retired=retired, mode=mode, original=SAVED)

    assert retirement.retired == retired
    assert retirement.kept == ("green" if retired == "blue" else "blue")
    assert retirement.restoring is restoring
    assert retirement.original == (SAVED if restoring else None)


@pytest.mark.parametrize("original", [None, {}])
def test_a_restore_of_nothing_saved_is_refused_with_the_fix(original: dict[str, object] | None) -> None:
    with pytest.raises(base.RouterError, match=r"router 'f5' has onFinalize: Restore, but nothing was saved for it "
                                               r"before the upgrade's first change \(status.routers has no original\), "
                                               r"so there is nothing to put back \(why\); set its traffic by hand, "
                                               r"or set onFinalize: Remove"):
        retiring.plan(router="f5", retired="green", mode="Restore", original=original, unsaved_hint=" (why)")
    # Remove needs nothing saved.
    assert not retiring.plan(router="f5", retired="green", mode="Remove", original=original).restoring


def test_an_unknown_side_or_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="retired must be 'blue' or 'green', not 'red'"):
        retiring.plan(router="dns", retired="red", mode="Remove", original=None)
    with pytest.raises(ValueError, match="mode must be one of Remove, Restore, not 'Delete'"):
        retiring.plan(router="dns", retired="blue", mode="Delete", original=None)


def refusal(check: Callable[..., None], retirement: retiring.Retirement, shares: tuple[int, int]) -> str | None:
    """The RouterError ``check`` raises for ``shares``, as text, or None if it lets them pass."""
    try:
        check(retirement, shares=shares, what="the pool", state="state")
    except base.RouterError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("shares, reason", [
    ((0, 100), None),
    ((0, 1), None),
    ((1, 99), "blue still takes traffic (state); it is retired only once green holds 100 %"),
    ((0, 0), "green takes no traffic there either (state), so nothing would be left to serve; give green 100 % first"),
])
def test_the_retired_side_must_take_nothing_and_the_kept_side_something(
    shares: tuple[int, int], reason: str | None
) -> None:
    retirement = retiring.plan(router="dns", retired="blue", mode="Remove", original=None)

    expected = None if reason is None else f"refusing to retire blue from the pool: {reason}"
    assert refusal(retiring.check_current, retirement, shares) == expected


@pytest.mark.parametrize("shares, harm", [
    ((100, 0), None),
    ((90, 10), "send traffic to green, which is being retired"),
    ((0, 0), "send no traffic to blue"),
])
def test_an_original_is_restored_only_if_it_routes_to_blue_alone(shares: tuple[int, int], harm: str | None) -> None:
    retirement = retiring.plan(router="dns", retired="green", mode="Restore", original=SAVED)

    expected = None if harm is None else (f"refusing to restore the pool as saved before the upgrade (state): "
                                          f"that would {harm}; set onFinalize: Remove, or set the traffic by hand")
    assert refusal(retiring.check_original, retirement, shares) == expected


def test_saved_data_of_the_wrong_shape_is_refused_naming_the_key() -> None:
    retirement = retiring.plan(router="dns", retired="green", mode="Restore", original=SAVED)

    assert retiring.saved(retirement, "blue", router="dns", expect=dict) == {"weight": 100}
    assert retiring.saved(retirement, "green", router="dns", expect=(dict, type(None))) is None
    with pytest.raises(base.RouterError, match=r"has no usable 'green' \(its keys: blue, green\)"):
        retiring.saved(retirement, "green", router="dns", expect=dict)
    with pytest.raises(base.RouterError, match=r"has no usable 'forward' \(its keys: blue, green\)"):
        retiring.saved(retirement, "forward", router="dns", expect=dict)

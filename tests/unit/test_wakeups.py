"""Wake-ups: a person's change wakes an upgrade at once; the loop's own status writes do not."""

from __future__ import annotations

from bluegreen.handlers import upgrade_fingerprint
from bluegreen.wakeups import Wakeups

KEY = ("fleet", "demo")


def meta(generation: int, **annotations: str) -> dict[str, object]:
    return {"generation": generation, "annotations": {"kopf.zalando.org/x": "1", **annotations}}


def test_a_status_write_does_not_wake_the_loop_again() -> None:
    wakeups = Wakeups()
    event = wakeups.event(KEY)
    wakeups.upgrade_changed(KEY, fingerprint=upgrade_fingerprint(meta(3)))
    assert event.is_set(), "the first sight of an object wakes its loop"
    event.clear()
    wakeups.upgrade_changed(KEY, fingerprint=upgrade_fingerprint(meta(3)))  # same spec, new status
    assert not event.is_set(), "a failure's backoff would otherwise never be waited out"


def test_spec_annotations_and_deletion_wake_the_loop() -> None:
    wakeups = Wakeups()
    event = wakeups.event(KEY)
    changes = [meta(3), meta(4), {**meta(4, **{"bluegreen.io/promote": "step"})},
               {**meta(4), "deletionTimestamp": "2026-11-22T12:00:00Z"}]
    for change in changes:
        event.clear()
        wakeups.upgrade_changed(KEY, fingerprint=upgrade_fingerprint(change))
        assert event.is_set(), change


def test_other_tools_annotations_do_not_wake_it() -> None:
    assert upgrade_fingerprint(meta(3)) == upgrade_fingerprint(meta(3, **{"kopf.zalando.org/x": "2"}))


def test_a_forgotten_upgrade_is_woken_by_its_next_change() -> None:
    wakeups = Wakeups()
    wakeups.upgrade_changed(KEY, fingerprint=upgrade_fingerprint(meta(3)))
    wakeups.forget(KEY)
    event = wakeups.event(KEY)
    wakeups.upgrade_changed(KEY, fingerprint=upgrade_fingerprint(meta(3)))
    assert event.is_set()

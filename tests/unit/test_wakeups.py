"""Wake-ups: a person's change wakes an upgrade at once; the loop's own status writes do not."""

from __future__ import annotations

from bluegreen.handlers import upgrade_fingerprint
from bluegreen.wakeups import Interests, Wakeups

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


def fleet_member(wakeups: Wakeups, name: str) -> None:
    """An upgrade of cluster <name>-blue whose Kustomizations, like every other's, are in namespace fleet."""
    wakeups.register(("fleet", name), Interests(
        clusters=frozenset({f"{name}-blue", f"{name}-green"}), flux_namespaces=frozenset({"fleet"}),
        kustomizations=frozenset({frozenset({("bluegreen.io/cluster", f"{name}-blue")}),
                                  frozenset({("bluegreen.io/cluster", f"{name}-green")})}),
    ))


def woken(wakeups: Wakeups, *names: str) -> set[str]:
    return {name for name in names if wakeups.event(("fleet", name)).is_set()}


def test_a_kustomization_wakes_the_upgrade_whose_labels_it_carries_and_no_other_in_its_namespace() -> None:
    wakeups = Wakeups()
    for name in ("a", "b", "c"):
        fleet_member(wakeups, name)
    wakeups.kustomization_changed("fleet", {"bluegreen.io/cluster": "b-blue", "team": "payments"})
    assert woken(wakeups, "a", "b", "c") == {"b"}
    wakeups.kustomization_changed("fleet", {"bluegreen.io/cluster": "c-green", "bluegreen.io/copy-of": "apps"})
    assert woken(wakeups, "a", "b", "c") == {"b", "c"}
    wakeups.kustomization_changed("elsewhere", {"bluegreen.io/cluster": "a-blue"})
    wakeups.kustomization_changed("fleet", {})
    assert woken(wakeups, "a", "b", "c") == {"b", "c"}


def test_every_label_of_a_set_must_be_there() -> None:
    wakeups = Wakeups()
    wakeups.register(KEY, Interests(clusters=frozenset(), flux_namespaces=frozenset({"fleet"}),
                                    kustomizations=frozenset({frozenset({("tier", "web"), ("env", "prod")})})))
    wakeups.kustomization_changed("fleet", {"tier": "web", "env": "staging"})
    assert not wakeups.event(KEY).is_set()
    wakeups.kustomization_changed("fleet", {"tier": "web", "env": "prod", "other": "x"})
    assert wakeups.event(KEY).is_set()


def test_without_label_sets_any_kustomization_in_the_namespace_wakes_it() -> None:
    wakeups = Wakeups()
    wakeups.register(KEY, Interests(clusters=frozenset(), flux_namespaces=frozenset({"flux-system"})))
    wakeups.kustomization_changed("flux-system", {"anything": "at-all"})
    assert wakeups.event(KEY).is_set()


def test_new_interests_replace_the_old_ones_and_a_forgotten_upgrade_is_not_woken() -> None:
    wakeups = Wakeups()
    fleet_member(wakeups, "a")
    wakeups.register(("fleet", "a"), Interests(
        clusters=frozenset({"a-blue"}), flux_namespaces=frozenset({"fleet"}),
        kustomizations=frozenset({frozenset({("bluegreen.io/cluster", "a-blue-2")})})))
    wakeups.kustomization_changed("fleet", {"bluegreen.io/cluster": "a-blue"})
    wakeups.cluster_changed("a-green")
    assert not woken(wakeups, "a")
    fleet_member(wakeups, "b")
    wakeups.forget(("fleet", "b"))
    wakeups.kustomization_changed("fleet", {"bluegreen.io/cluster": "b-blue"})
    wakeups.cluster_changed("b-blue")
    assert woken(wakeups, "b") == set()

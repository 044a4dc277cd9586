"""Version rules: the in-place path one minor at a time, worker-group skew, versions the provider offers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.api.versions import parse_version
from bluegreen.preflight import versions

minors = st.integers(min_value=0, max_value=60)
patches = st.none() | st.integers(min_value=0, max_value=20)


def spelled(minor: int, patch: int | None, *, v: bool) -> str:
    return ("v" if v else "") + f"1.{minor}" + ("" if patch is None else f".{patch}")


# --- in_place_path -----------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "target", "path"), [
    ("1.28", "1.31", ["1.29", "1.30", "1.31"]),
    ("1.30", "1.31", ["1.31"]),
    ("v1.30.4", "v1.31.2", ["1.31"]),
    ("v1.29.9+eks.1", "1.31", ["1.30", "1.31"]),
    ("1.9", "1.11", ["1.10", "1.11"]),
])
def test_in_place_path_goes_one_minor_per_step(current: str, target: str, path: list[str]) -> None:
    assert versions.in_place_path(current=current, target=target) == path


@pytest.mark.parametrize(("current", "target", "words"), [
    ("1.31", "1.30", "downgrade"),
    ("1.31", "1.31", "already runs"),
    ("v1.31.2", "v1.31.5", "already runs"),
    ("1.31", "2.0", "different major"),
])
def test_in_place_path_refuses_what_is_not_an_upgrade(current: str, target: str, words: str) -> None:
    with pytest.raises(ValueError, match=r"spec\.target\.kubernetesVersion") as caught:
        versions.in_place_path(current=current, target=target)
    assert words in str(caught.value)
    assert "set a" in str(caught.value)


def test_in_place_path_refuses_what_is_not_a_version() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        versions.in_place_path(current="1.30", target="latest")


@given(start=minors, steps=st.integers(min_value=1, max_value=10),
       current_patch=patches, target_patch=patches, v=st.booleans())
def test_in_place_path_is_consecutive_minors_ending_at_the_target(
        start: int, steps: int, current_patch: int | None, target_patch: int | None, v: bool) -> None:
    target = spelled(start + steps, target_patch, v=v)
    path = versions.in_place_path(current=spelled(start, current_patch, v=v), target=target)
    assert len(path) == steps
    parsed = [parse_version(step) for step in path]
    assert [step.minor for step in parsed] == list(range(start + 1, start + steps + 1))
    assert parsed[-1].minor_key == parse_version(target).minor_key


@given(current=minors, back=st.integers(min_value=0, max_value=10))
def test_in_place_path_never_goes_down_or_stays(current: int, back: int) -> None:
    with pytest.raises(ValueError, match=r"spec\.target\.kubernetesVersion"):
        versions.in_place_path(current=f"1.{current + back}", target=f"1.{current}")


# --- check_worker_skew ---------------------------------------------------------------------------


def test_workers_within_two_minors_behind_are_fine() -> None:
    assert versions.check_worker_skew(
        control_plane="1.31", workers={"md-0": "1.31", "md-1": "v1.30.4", "md-2": "1.29"}) == []


def test_a_worker_three_minors_behind_is_named_with_the_fix() -> None:
    problems = versions.check_worker_skew(control_plane="1.31", workers={"md-0": "1.31", "old": "1.28"})
    assert len(problems) == 1
    assert "'old'" in problems[0]
    assert "3 minors behind" in problems[0]
    assert "1.29 or newer" in problems[0]


def test_a_worker_newer_than_the_control_plane_is_a_problem() -> None:
    problems = versions.check_worker_skew(control_plane="1.30", workers={"md-0": "1.31"})
    assert len(problems) == 1
    assert "newer than the control plane" in problems[0]


def test_the_lag_bound_is_a_parameter_for_providers_that_follow_upstream() -> None:
    workers = {"md-0": "1.28"}
    assert versions.check_worker_skew(control_plane="1.31", workers=workers, max_lag=3) == []
    assert versions.check_worker_skew(control_plane="1.31", workers=workers) != []


def test_a_worker_version_that_does_not_parse_is_that_groups_problem() -> None:
    problems = versions.check_worker_skew(control_plane="1.31", workers={"md-0": "soon", "md-1": "1.31"})
    assert len(problems) == 1
    assert "'md-0'" in problems[0]


def test_one_message_per_bad_group_in_name_order() -> None:
    problems = versions.check_worker_skew(control_plane="1.31", workers={"zeta": "1.20", "alpha": "1.32"})
    assert [problem.split("'")[1] for problem in problems] == ["alpha", "zeta"]


@given(plane=st.integers(min_value=0, max_value=40), worker=st.integers(min_value=0, max_value=45),
       max_lag=st.integers(min_value=0, max_value=4))
def test_skew_is_a_problem_exactly_when_newer_or_too_far_behind(plane: int, worker: int, max_lag: int) -> None:
    problems = versions.check_worker_skew(control_plane=f"1.{plane}", workers={"g": f"1.{worker}"}, max_lag=max_lag)
    assert bool(problems) == (worker > plane or plane - worker > max_lag)


# --- offered -----------------------------------------------------------------------------------


def test_a_provider_that_does_not_say_refuses_nothing() -> None:
    assert versions.offered("1.99", available=None) is None


@pytest.mark.parametrize(("target", "available"), [
    ("1.31", ["1.29", "1.30", "1.31"]),
    ("v1.31.2", ["1.31"]),
    ("1.31", ["v1.31.2", "v1.30.6"]),
    ("v1.31.2", ["v1.31.2"]),
])
def test_offered_targets_pass(target: str, available: list[str]) -> None:
    assert versions.offered(target, available=available) is None


def test_a_target_not_offered_names_the_field_and_what_is_offered() -> None:
    problem = versions.offered("1.32", available=["1.31", "1.29", "garbage", "1.30"])
    assert problem is not None
    assert "spec.target.kubernetesVersion 1.32" in problem
    assert "1.29, 1.30, 1.31" in problem


def test_an_exact_patch_must_be_listed_when_patches_are() -> None:
    problem = versions.offered("v1.31.3", available=["v1.31.2", "v1.31.0", "1.30"])
    assert problem is not None
    assert "1.30, 1.31.0, 1.31.2" in problem


def test_an_empty_list_offers_nothing() -> None:
    problem = versions.offered("1.31", available=[])
    assert problem is not None and "offers no Kubernetes version" in problem


@given(target=minors, listed=st.lists(minors, max_size=6))
def test_offered_exactly_when_the_minor_is_listed(target: int, listed: list[int]) -> None:
    problem = versions.offered(f"1.{target}", available=[f"1.{minor}" for minor in listed])
    assert (problem is None) == (target in listed)

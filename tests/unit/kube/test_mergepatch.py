from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.kube.mergepatch import merge_diff, merge_patch

# RFC 7386, Appendix A.
RFC_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_EXAMPLES)
def test_rfc_7386_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_inputs_are_not_mutated() -> None:
    target = {"topology": {"version": "v1.30.0", "workers": {"replicas": 3}}}
    patch = {"topology": {"workers": {"replicas": 5}}}
    before = (copy.deepcopy(target), copy.deepcopy(patch))

    merge_patch(target, patch)

    assert (target, patch) == before


# Values a merge patch can produce: no nulls inside mappings.
json_no_null_in_maps = st.recursive(
    st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=4),
    max_leaves=12,
)


@given(current=json_no_null_in_maps, desired=json_no_null_in_maps)
def test_the_diff_applied_to_current_gives_desired(current: Any, desired: Any) -> None:
    assert merge_patch(current, merge_diff(current, desired)) == desired


@given(value=st.dictionaries(st.text(max_size=3), json_no_null_in_maps, max_size=4))
def test_the_diff_of_equal_values_is_empty(value: dict[str, Any]) -> None:
    assert merge_diff(value, copy.deepcopy(value)) == {}

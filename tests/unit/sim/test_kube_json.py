"""The emulator's JSON: copies that share nothing with the original, and compact UTF-8 as the API server sends."""

from __future__ import annotations

import json

from bluegreen.sim import kube_patch


def test_a_clone_is_equal_and_shares_nothing() -> None:
    original = {"metadata": {"labels": {"a": "b"}}, "spec": {"items": [{"x": 1}, {"y": [1.5, None, True]}]}}
    copy = kube_patch.clone(original)
    assert copy == original
    copy["spec"]["items"][0]["x"] = 2
    copy["metadata"]["labels"]["c"] = "d"
    assert original["spec"]["items"][0]["x"] == 1 and "c" not in original["metadata"]["labels"]


def test_integers_beyond_64_bits_are_kept_exactly() -> None:
    big = {"spec": {"replicas": 2**70, "small": -(2**63)}}
    assert kube_patch.clone(big) == big
    assert json.loads(kube_patch.encode(big)) == big


def test_encoding_is_compact_utf8() -> None:
    encoded = kube_patch.encode({"message": "grün", "list": [1, 2]})
    assert encoded == '{"message":"grün","list":[1,2]}'.encode()

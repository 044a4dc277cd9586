"""What the reconcile loop sends when it writes status: a merge patch that removes what the new status dropped."""

from __future__ import annotations

from typing import Any

from bluegreen.reconcile import _null_removed


def test_a_field_gone_from_a_nested_object_is_sent_as_null_so_the_merge_patch_removes_it() -> None:
    old: dict[str, Any] = {"phase": "Rotating", "heldPhase": "Rotating", "kopf": {"progress": {}},
                           "nodePools": {"stage": "Draining", "blockingPod": "shop/web-1", "current": {"node": "a"},
                                         "drained": ["x"]}}
    new: dict[str, Any] = {"phase": "Completed", "nodePools": {"stage": "Done", "current": {"node": "a"},
                                                               "drained": []}}
    _null_removed(old, new, keep=frozenset({"kopf"}))
    assert new == {"phase": "Completed", "heldPhase": None,
                   "nodePools": {"stage": "Done", "blockingPod": None, "current": {"node": "a"}, "drained": []}}

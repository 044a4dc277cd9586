"""Pod and node dicts as the API serves them, for the drain tests."""

from __future__ import annotations

from typing import Any

NODE = "old-1"


def pod(name: str, *, namespace: str = "shop", node: str = NODE,
        owner: tuple[str, str] | None = ("ReplicaSet", "web-7d9"), phase: str = "Running", ready: bool = True,
        terminating: bool = False, mirror: bool = False,
        empty_dir: bool = False, priority: int | None = None, uid: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid or f"uid-{namespace}-{name}"}
    if owner is not None:
        metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "x",
                                        "controller": True}]
    if terminating:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if mirror:
        metadata["annotations"] = {"kubernetes.io/config.mirror": "abc"}
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": "n",
                                        "controller": True}]
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]}
    if empty_dir:
        spec["volumes"] = [{"name": "cache", "emptyDir": {}}, {"name": "config", "configMap": {"name": "c"}}]
    if priority is not None:
        spec["priority"] = priority
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
            "status": {"phase": phase, "conditions": conditions}}


def node(name: str = NODE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}}

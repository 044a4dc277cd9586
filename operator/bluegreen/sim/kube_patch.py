"""The three patch formats of the Kubernetes API, applied to plain JSON-like objects.

- JSON merge patch (RFC 7386): dicts merge recursively, ``null`` deletes, lists are replaced.
- JSON patch (RFC 6902): all six operations; a failed ``test`` is an error, which the server
  turns into 422 (kopf relies on that to detect a stale ``resourceVersion``).
- Strategic merge patch: a merge patch where some lists merge by a key instead of being
  replaced. The real server takes the keys from the Go types; here a table keyed by the list
  field's name covers the fields kubectl and controllers patch (containers by name, finalizers
  as a set, conditions by type, ...), and the ``$patch``, ``$retainKeys``,
  ``$setElementOrder`` and ``$deleteFromPrimitiveList`` directives kubectl sends are honoured
  or stripped.

All functions return new objects and never mutate their inputs.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


class PatchError(ValueError):
    """A patch that cannot be applied (the server answers 422)."""


class PatchFormatError(ValueError):
    """A patch that is not well-formed (the server answers 400)."""


def clone(value: Any) -> Any:
    """A deep copy of JSON data: a round trip through orjson, several times faster than copy.deepcopy or the
    stdlib's json; what orjson refuses (integers beyond 64 bits) goes through the stdlib's json."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.loads(json.dumps(value))


def encode(value: Any) -> bytes:
    """Compact JSON, as the API server sends it (UTF-8, not ASCII-escaped)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = clone(value)
    return result


# --- RFC 6902 -------------------------------------------------------------------------------------

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchFormatError(f"invalid JSON pointer {path!r}: must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, *, path: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r} in path {path!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchError(f"array index {index} out of bounds in path {path!r}")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path {path!r} not found: missing key {token!r}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, path=path, allow_end=False)]
        else:
            raise PatchError(f"path {path!r} not found: {token!r} is inside a scalar")
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {path!r} not found")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, path=path, allow_end=False)]
    raise PatchError(f"path {path!r} not found")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path=path, allow_end=True), value)
    else:
        raise PatchError(f"cannot add at {path!r}: the parent is a scalar")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"cannot remove {path!r}: not found")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, path=path, allow_end=False))
    raise PatchError(f"cannot remove {path!r}: the parent is a scalar")


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchFormatError("a JSON patch must be a list of operations")
    doc = clone(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchFormatError(f"invalid JSON patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchFormatError(f"operation {op!r} at {path!r} has no value")
        match op:
            case "add":
                doc = _add(doc, path, clone(operation["value"]))
            case "remove":
                doc, _ = _remove(doc, path)
            case "replace":
                _get(doc, path)  # must exist
                if not _pointer(path):
                    doc = clone(operation["value"])
                else:
                    doc, _ = _remove(doc, path)
                    doc = _add(doc, path, clone(operation["value"]))
            case "move":
                source = operation.get("from")
                if source is None:
                    raise PatchFormatError(f"operation 'move' at {path!r} has no 'from'")
                doc, value = _remove(doc, source)
                doc = _add(doc, path, value)
            case "copy":
                source = operation.get("from")
                if source is None:
                    raise PatchFormatError(f"operation 'copy' at {path!r} has no 'from'")
                doc = _add(doc, path, clone(_get(doc, source)))
            case "test":
                try:
                    actual = _get(doc, path)
                except PatchError:
                    raise PatchError(f"testing value {path} failed: not found") from None
                if actual != operation["value"]:
                    raise PatchError(f"testing value {path} failed: test failed")
            case _:
                raise PatchFormatError(f"unknown JSON patch operation {op!r}")
    return doc


# --- strategic merge patch ------------------------------------------------------------------------

# List fields that merge by a key in the Go types (patchStrategy=merge, patchMergeKey=...).
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),  # container ports, then service ports
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey",),
    "taints": ("key",),
}
# Primitive lists that merge as sets.
_SET_LISTS = frozenset({"finalizers"})


def _merge_key(field: str, items: list[Any]) -> str | None:
    candidates = _MERGE_KEYS.get(field)
    if not candidates:
        return None
    for candidate in candidates:
        if all(isinstance(item, dict) and candidate in item for item in items):
            return candidate
    return candidates[0]


def _merge_list(field: str, original: Any, patch: list[Any]) -> list[Any]:
    current = list(original) if isinstance(original, list) else []
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [clone(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    if field in _SET_LISTS:
        merged = list(current)
        for item in patch:
            if item not in merged:
                merged.append(clone(item))
        return merged
    key = _merge_key(field, [item for item in patch if isinstance(item, dict)] + current)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return [clone(item) for item in patch]
    merged = list(current)
    for item in patch:
        directive = item.get("$patch")
        position = next(
            (index for index, existing in enumerate(merged)
             if isinstance(existing, dict) and existing.get(key) == item.get(key)),
            None,
        )
        if directive == "delete":
            if position is not None:
                merged.pop(position)
        elif position is None:
            merged.append(strategic_merge_patch({}, item))
        else:
            merged[position] = strategic_merge_patch(merged[position], item)
    return merged


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {key: clone(value) for key, value in patch.items() if key != "$patch"}
    if directive == "delete":
        return None
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    retain_keys = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            existing = result.get(field)
            if isinstance(existing, list) and isinstance(value, list):
                result[field] = [item for item in existing if item not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = clone(value)
    if isinstance(retain_keys, list):
        result = {key: value for key, value in result.items() if key in retain_keys}
    return result

"""``metadata.managedFields`` as an API server writes them: who wrote which fields, through which version.

A real API server stores an object once and serves it at every version it has, so the
object itself cannot say which group/version a writer used; its managedFields can. Each
entry names a manager (the request's ``fieldManager``, else the User-Agent up to its first
``/``), the operation (``Update`` for create, update and patch; ``Apply`` for server-side
apply), the ``apiVersion`` of the request URL, the subresource (``status``, ``scale``) and
the fields it set. The preflight's removed-API scan reads these to tell an object written
through ``policy/v1beta1`` from one only readable through it.

Entry identity follows the apiserver (``BuildManagerIdentifier`` in k8s.io/apiserver's
fieldmanager): manager, operation and subresource, plus the apiVersion for ``Update`` only.
So a manager that updates through ``v1beta1`` and later through ``v1`` has two entries, and
the older one keeps the fields the newer write did not change; an applier has one entry
whose apiVersion follows its latest apply.

Server-side apply (``application/apply-patch+yaml``) is emulated on the same sets: the
applied configuration is merged into the object (lists replaced whole), the applier owns
exactly the fields of its configuration, a field it applied before and no longer applies is
removed unless another manager owns it, and changing a field another manager owns is a 409
conflict unless ``force=true``.

The field sets are an honest approximation of structured-merge-diff, not a port of it:
an update owns the fields whose values it changed (all of them on create), as nested
``f:<key>`` maps with every non-map value, lists included, a leaf ``{}``; from metadata only
labels, annotations, ownerReferences and finalizers count. Fields a write changes or removes
leave every other entry, and an entry left with no fields is dropped, as when ownership moves.
No ``k:``/``v:`` list keys and no ``.`` markers.

What a client sends in ``metadata.managedFields`` on update or patch (apiserver rules, per the
"Server-Side Apply" docs): absent or an empty list keeps the stored entries (clients unaware of
the field never strip them); ``[{}]`` strips them all and the write records none; any other
list replaces the stored entries before this write's own entry is added. On create they are dropped.
"""

from __future__ import annotations

import unicodedata
from typing import Any

MAX_MANAGER_LENGTH = 128  # validation.FieldManagerMaxLength
_METADATA_FIELDS = ("labels", "annotations", "ownerReferences", "finalizers")

Path = tuple[str, ...]


def manager_from_user_agent(user_agent: str) -> str:
    """The manager an apiserver names for a request without ``fieldManager``: the agent up to its first ``/``."""
    prefix = user_agent.split("/", 1)[0]
    printable = "".join(char for char in prefix if unicodedata.category(char)[0] not in "CZ" or char == " ")
    return printable.encode()[:MAX_MANAGER_LENGTH].decode(errors="ignore")


def _leaves(value: Any, prefix: Path) -> set[Path]:
    if isinstance(value, dict) and value:
        paths: set[Path] = set()
        for key, item in value.items():
            paths |= _leaves(item, (*prefix, str(key)))
        return paths
    return {prefix}


def _changed(old: Any, new: Any, prefix: Path) -> tuple[set[Path], set[Path]]:
    """(fields set to a new value, fields removed) going from ``old`` to ``new``."""
    if isinstance(old, dict) and isinstance(new, dict) and old and new:
        changed: set[Path] = set()
        removed: set[Path] = set()
        for key in new.keys() | old.keys():
            path = (*prefix, str(key))
            if key not in new:
                removed |= _leaves(old[key], path)
            elif key not in old:
                changed |= _leaves(new[key], path)
            else:
                more_changed, more_removed = _changed(old[key], new[key], path)
                changed |= more_changed
                removed |= more_removed
        return changed, removed
    if old == new:
        return set(), set()
    return _leaves(new, prefix), set()


def _tracked(obj: dict[str, Any] | None, subresource: str | None, *, status_subresource: bool) -> dict[str, Any]:
    """The part of an object a write through the main resource or ``subresource`` may own."""
    if obj is None:
        return {}
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    if subresource == "scale":
        return {"spec": {"replicas": (obj.get("spec") or {}).get("replicas")}}
    tracked = {key: value for key, value in obj.items()
               if key not in ("apiVersion", "kind", "metadata") and not (status_subresource and key == "status")}
    metadata = obj.get("metadata") or {}
    kept = {key: metadata[key] for key in _METADATA_FIELDS if key in metadata}
    if kept:
        tracked["metadata"] = kept
    return tracked


def _paths(fields: Any, prefix: Path = ()) -> set[Path]:
    if not isinstance(fields, dict) or not fields:
        return {prefix} if prefix else set()
    paths: set[Path] = set()
    for key, sub in fields.items():
        if key == ".":
            paths.add(prefix)
        elif isinstance(key, str) and key.startswith("f:"):
            paths |= _paths(sub, (*prefix, key[2:]))
    return paths


def _fields(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for step in path:
            node = node.setdefault(f"f:{step}", {})
    return root


def _overlaps(path: Path, others: set[Path]) -> bool:
    return any(path[:len(other)] == other or other[:len(path)] == path for other in others)


def _identity(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    operation = str(entry.get("operation", ""))
    api_version = "" if operation == "Apply" else str(entry.get("apiVersion", ""))
    return (str(entry.get("manager", "")), operation, api_version, str(entry.get("subresource", "")))


def record(
        entries: list[dict[str, Any]], old: dict[str, Any] | None, new: dict[str, Any], *,
        manager: str, api_version: str, subresource: str | None, status_subresource: bool, now: str,
        applied: set[Path] | None = None,
) -> list[dict[str, Any]]:
    """The managedFields after ``manager`` wrote ``new`` over ``old`` (None on create) through ``api_version``.

    ``applied`` (the configuration's fields) makes the write an ``Apply``; else it is an ``Update``.
    """
    operation = "Update" if applied is None else "Apply"
    before = _tracked(old, subresource, status_subresource=status_subresource)
    after = _tracked(new, subresource, status_subresource=status_subresource)
    changed, removed = _changed(before, after, ())
    if old is None:
        changed, removed = _leaves(after, ()) - {()}, set()
    taken = changed | removed
    mine: dict[str, Any] = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": now,
                            "fieldsType": "FieldsV1"}
    if subresource:
        mine["subresource"] = subresource
    key = _identity(mine)
    result: list[dict[str, Any]] = []
    owned: set[Path] = set()
    placed = False
    for entry in entries:
        paths = _paths(entry.get("fieldsV1"))
        if _identity(entry) == key:
            owned = {path for path in paths if not _overlaps(path, removed)}
            result.append(mine)
            placed = True
            continue
        kept = {path for path in paths if not _overlaps(path, taken)}
        if kept == paths:
            result.append(entry)
        elif kept:
            result.append(dict(entry, fieldsV1=_fields(kept)))
    if applied is not None:
        owned = set(applied)
    else:
        owned |= changed
    if not owned:
        return [entry for entry in result if entry is not mine]
    mine["fieldsV1"] = _fields(owned)
    if not placed:
        result.append(mine)
    return result


def applied_paths(config: dict[str, Any], subresource: str | None, *, status_subresource: bool) -> set[Path]:
    """The fields an applied configuration sets."""
    return _leaves(_tracked(config, subresource, status_subresource=status_subresource), ()) - {()}


_MISSING = object()


def _at(obj: Any, path: Path) -> Any:
    for step in path:
        if not isinstance(obj, dict) or step not in obj:
            return _MISSING
        obj = obj[step]
    return obj


def conflicts(entries: list[dict[str, Any]], live: dict[str, Any], config: dict[str, Any], applied: set[Path], *,
              manager: str, subresource: str | None) -> list[str]:
    """What an apply by ``manager`` would change that another manager owns, as the apiserver words it."""
    mine = _identity({"manager": manager, "operation": "Apply", "subresource": subresource or ""})
    found: list[str] = []
    for path in sorted(applied):
        current = _at(live, path)
        if current is _MISSING or current == _at(config, path):
            continue
        for entry in entries:
            if _identity(entry) != mine and _overlaps(path, _paths(entry.get("fieldsV1"))):
                found.append(f'conflict with "{entry.get("manager", "")}" using {entry.get("apiVersion", "")}: '
                             f".{'.'.join(path)}")
    return found


def prune(obj: dict[str, Any], entries: list[dict[str, Any]], applied: set[Path], *,
          manager: str, subresource: str | None) -> None:
    """Remove from ``obj`` the fields ``manager`` applied before, applies no more and nobody else owns."""
    mine = _identity({"manager": manager, "operation": "Apply", "subresource": subresource or ""})
    before: set[Path] = set()
    others: set[Path] = set()
    for entry in entries:
        (before if _identity(entry) == mine else others).update(_paths(entry.get("fieldsV1")))
    for path in sorted(before, key=len, reverse=True):
        if _overlaps(path, applied) or _overlaps(path, others):
            continue
        parent = _at(obj, path[:-1])
        if isinstance(parent, dict):
            parent.pop(path[-1], None)


def same_but_times(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two objects differ at most in managedFields times (the apiserver drops such writes)."""
    def untimed(obj: dict[str, Any]) -> dict[str, Any]:
        meta = dict(obj.get("metadata") or {})
        meta["managedFields"] = [{k: v for k, v in entry.items() if k != "time"}
                                 for entry in meta.get("managedFields") or ()]
        return dict(obj, metadata=meta)
    return untimed(old) == untimed(new)

"""Server-side printing: ``meta.k8s.io/v1`` Tables, as ``kubectl get`` asks for them.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints whatever
columns the server returns; for custom resources those are the CRD's
``additionalPrinterColumns`` (Name is always first; Age is the default when a CRD declares
none). Column values come from a JSONPath subset: dotted paths, ``[n]`` indexes, ``[*]`` and
``[?(@.key=="value")]`` filters, which is what printer columns use in practice. Date columns
are rendered as ages (``5m``) on the server, as the apiserver does.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from bluegreen.sim.kube_resources import ResourceInfo

_NAME_COLUMN = {"name": "Name", "type": "string", "format": "name", "priority": 0,
                "description": "Name must be unique within a namespace."}
_AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "priority": 0,
               "description": "CreationTimestamp is a timestamp representing the server time when this "
                              "object was created."}

# A few built-in kinds print more than Name/Age; these mirror the apiserver's printers.
_BUILTIN_COLUMNS: dict[tuple[str, str], tuple[dict[str, Any], ...]] = {
    ("", "namespaces"): (
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        _AGE_COLUMN,
    ),
    ("", "events"): (
        {"name": "Last Seen", "type": "date", "jsonPath": ".lastTimestamp"},
        {"name": "Type", "type": "string", "jsonPath": ".type"},
        {"name": "Reason", "type": "string", "jsonPath": ".reason"},
        {"name": "Object", "type": "string", "render": "involved-object"},
        {"name": "Message", "type": "string", "jsonPath": ".message"},
        {"name": "Name", "type": "string", "format": "name", "priority": 1},
    ),
    ("", "secrets"): (
        {"name": "Type", "type": "string", "jsonPath": ".type"},
        _AGE_COLUMN,
    ),
    ("", "pods"): (
        {"name": "Ready", "type": "string", "render": "pod-ready"},
        {"name": "Status", "type": "string", "render": "pod-status"},
        {"name": "Restarts", "type": "string", "render": "pod-restarts"},
        _AGE_COLUMN,
        {"name": "IP", "type": "string", "jsonPath": ".status.podIP", "priority": 1},
        {"name": "Node", "type": "string", "jsonPath": ".spec.nodeName", "priority": 1},
    ),
    ("batch", "jobs"): (
        {"name": "Status", "type": "string", "render": "job-status"},
        {"name": "Completions", "type": "string", "render": "job-completions"},
        {"name": "Duration", "type": "string", "render": "job-duration"},
        _AGE_COLUMN,
        {"name": "Containers", "type": "string", "jsonPath": ".spec.template.spec.containers[*].name", "priority": 1},
        {"name": "Images", "type": "string", "jsonPath": ".spec.template.spec.containers[*].image", "priority": 1},
    ),
}

_TOKEN = re.compile(
    r"""\.(?P<key>(?:\\.|[^.\[\\])+)"""  # .key (with \. escapes)
    r"""|\[(?P<index>-?\d+|\*)\]"""  # [0] or [*]
    r"""|\[\?\(@\.(?P<fkey>[\w.-]+)\s*==\s*(?P<quote>["'])(?P<fvalue>.*?)(?P=quote)\)\]"""  # [?(@.k=="v")]
)


class JsonPathError(ValueError):
    pass


def _tokens(path: str) -> list[tuple[str, str, str]]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    tokens: list[tuple[str, str, str]] = []
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None:
            raise JsonPathError(f"unsupported JSONPath {path!r} at {path[position:]!r}")
        if match["key"] is not None:
            tokens.append(("key", match["key"].replace("\\.", "."), ""))
        elif match["index"] is not None:
            tokens.append(("index", match["index"], ""))
        else:
            tokens.append(("filter", match["fkey"], match["fvalue"]))
        position = match.end()
    return tokens


def jsonpath(obj: Any, path: str) -> list[Any]:
    """All values at ``path``; an empty list when nothing is there."""
    values = [obj]
    for kind, first, second in _tokens(path):
        found: list[Any] = []
        for value in values:
            if kind == "key":
                if isinstance(value, dict) and first in value:
                    found.append(value[first])
            elif kind == "index":
                if isinstance(value, list):
                    if first == "*":
                        found.extend(value)
                    elif -len(value) <= int(first) < len(value):
                        found.append(value[int(first)])
            else:
                if isinstance(value, list):
                    for item in value:
                        if isinstance(item, dict) and str(_dig(item, first)) == second:
                            found.append(item)
        values = found
    return values


def _dig(obj: dict[str, Any], dotted: str) -> Any:
    value: Any = obj
    for step in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def human_duration(seconds: float) -> str:
    """The apiserver's short ages: 45s, 5m30s, 3h, 2d4h, 1y30d."""
    if seconds < -1:
        return "<invalid>"
    total = max(int(seconds), 0)
    if total < 120:
        return f"{total}s"
    minutes = total // 60
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if days < 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def _age(value: Any, now: datetime.datetime) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return human_duration((now - moment).total_seconds())


def columns_for(info: ResourceInfo) -> list[dict[str, Any]]:
    if info.printer_columns:
        declared = [dict(column) for column in info.printer_columns]
    elif info.builtin and info.storage_key in _BUILTIN_COLUMNS:
        declared = [dict(column) for column in _BUILTIN_COLUMNS[info.storage_key]]
    else:
        declared = [dict(_AGE_COLUMN)]
    if any(column.get("format") == "name" for column in declared):
        return declared
    return [dict(_NAME_COLUMN), *declared]


def _involved_object(obj: dict[str, Any]) -> str | None:
    involved = obj.get("involvedObject") or {}
    if not involved.get("name"):
        return None
    return f"{str(involved.get('kind', '')).lower()}/{involved['name']}"


def _true_conditions(obj: dict[str, Any]) -> set[str]:
    return {str(c.get("type")) for c in (obj.get("status") or {}).get("conditions") or ()
            if c.get("status") == "True"}


def _job_status(job: dict[str, Any], now: datetime.datetime) -> str:
    true = _true_conditions(job)
    if "Complete" in true:
        return "Complete"
    if "Failed" in true:
        return "Failed"
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for condition in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if condition in true:
            return condition
    return "Running"


def _job_completions(job: dict[str, Any], now: datetime.datetime) -> str:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = int(status.get("succeeded") or 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = int(spec.get("parallelism") or 0)
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(job: dict[str, Any], now: datetime.datetime) -> str:
    status = job.get("status") or {}
    start, end = _parse_time(status.get("startTime")), _parse_time(status.get("completionTime"))
    if start is None:
        return ""
    return human_duration(((end or now) - start).total_seconds())


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("status") or {}).get("containerStatuses") or ())


def _pod_ready(pod: dict[str, Any], now: datetime.datetime) -> str:
    total = len((pod.get("spec") or {}).get("containers") or ())
    ready = sum(1 for status in _container_statuses(pod) if status.get("ready"))
    return f"{ready}/{total}"


def _pod_restarts(pod: dict[str, Any], now: datetime.datetime) -> str:
    return str(sum(int(status.get("restartCount") or 0) for status in _container_statuses(pod)))


def _pod_status(pod: dict[str, Any], now: datetime.datetime) -> str:
    """The kubectl STATUS column: the phase, unless a container's state says more."""
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    reason = str(status.get("reason") or phase)
    running = False
    for container in reversed(_container_statuses(pod)):
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated")
        if waiting.get("reason"):
            reason = str(waiting["reason"])
        elif terminated is not None:
            if terminated.get("reason"):
                reason = str(terminated["reason"])
            elif terminated.get("signal"):
                reason = f"Signal:{terminated['signal']}"
            else:
                reason = f"ExitCode:{terminated.get('exitCode', 0)}"
        elif state.get("running") and container.get("ready"):
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason


_RENDERERS = {
    "job-status": _job_status, "job-completions": _job_completions, "job-duration": _job_duration,
    "pod-ready": _pod_ready, "pod-status": _pod_status, "pod-restarts": _pod_restarts,
}


def _parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _cell(column: dict[str, Any], obj: dict[str, Any], now: datetime.datetime) -> Any:
    try:
        values = jsonpath(obj, column.get("jsonPath", ""))
    except JsonPathError:
        return None
    if not values:
        return None
    value = values[0] if len(values) == 1 else ",".join(str(item) for item in values)
    match column.get("type"):
        case "date":
            return _age(value, now)
        case "integer":
            return value if isinstance(value, int) else None
        case "number":
            return value if isinstance(value, int | float) else None
        case "boolean":
            return value if isinstance(value, bool) else None
        case "string":
            return value if isinstance(value, str) else str(value)
    return value


def _definition(column: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": column["name"],
        "type": column.get("type", "string"),
        "format": column.get("format", ""),
        "description": column.get("description", ""),
        "priority": column.get("priority", 0),
    }


def row(info: ResourceInfo, obj: dict[str, Any], *, include_object: str = "Metadata",
        now: datetime.datetime | None = None) -> dict[str, Any]:
    now = now or datetime.datetime.now(datetime.UTC)
    meta = obj.get("metadata") or {}
    cells: list[Any] = []
    for column in columns_for(info):
        if column.get("render") == "involved-object":
            cells.append(_involved_object(obj))
        elif column.get("render") in _RENDERERS:
            cells.append(_RENDERERS[column["render"]](obj, now))
        elif column.get("format") == "name" and "jsonPath" not in column:
            cells.append(meta.get("name", ""))
        else:
            cells.append(_cell(column, obj, now))
    result: dict[str, Any] = {"cells": cells}
    if include_object == "Object":
        result["object"] = obj
    elif include_object != "None":
        result["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    return result


def table(info: ResourceInfo, objects: list[dict[str, Any]], *, resource_version: str,
          include_object: str = "Metadata", continue_token: str | None = None) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [_definition(column) for column in columns_for(info)],
        "rows": [row(info, obj, include_object=include_object, now=now) for obj in objects],
    }

"""Which API calls the operator made on each emulated cluster, written down for the RBAC check.

The chart's ClusterRole should grant what the operator uses and nothing more. No reading of
the code can say what that is as reliably as the emulated API servers can: each one counts
its requests by (User-Agent product, verb, group, resource), and when
``BLUEGREEN_API_USAGE_DIR`` is set it writes the operator's share of them to that directory
when it stops. ``tests/rbac`` then unions the files of a whole test run and compares them
with the roles. Nothing is written when the variable is unset.

Whose calls count: the operator process's, told apart by User-Agent. Its own clients send
``bluegreen-operator/<version>`` and kopf sends ``kopf/<version>``; tests that use the client
in-process send the library default and kubectl-bluegreen its own, so neither counts. Some
tests run a toy kopf operator of their own against an emulator (to check the emulator
serves kopf); its calls would look like the operator's, so an emulator the bluegreen
operator never called writes nothing.

One file per emulator, named uniquely (pytest-xdist workers and several world processes
write at once), rewritten whole at each stop, so it always holds that emulator's whole
count. Each is written to a temporary name first and renamed, so a reader never sees half
of one.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from typing import Literal

from bluegreen.kube import client as kubeclient

ENV = "BLUEGREEN_API_USAGE_DIR"
OPERATOR_AGENT = kubeclient.OPERATOR_USER_AGENT.split("/", 1)[0]
KOPF_AGENT = "kopf"
OPERATOR_AGENTS = frozenset({OPERATOR_AGENT, KOPF_AGENT})

Role = Literal["management", "remote"]
# (User-Agent product, verb, group, resource[/subresource]) -> requests
Usage = collections.Counter[tuple[str, str, str, str]]


@dataclasses.dataclass(frozen=True)
class Call:
    """One kind of request as RBAC sees it: ``Call("create", "", "pods/eviction")``."""

    verb: str
    group: str
    resource: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}.{self.group or 'core'}"


@dataclasses.dataclass(frozen=True)
class Record:
    """What one emulated cluster saw the operator do."""

    cluster: str
    role: Role
    calls: Mapping[Call, int]


def operator_calls(usage: Mapping[tuple[str, str, str, str], int]) -> dict[Call, int]:
    """The operator process's calls in ``usage``; empty when the bluegreen operator itself made none."""
    if not any(agent == OPERATOR_AGENT for agent, *_ in usage):
        return {}
    calls: collections.Counter[Call] = collections.Counter()
    for (agent, verb, group, resource), count in usage.items():
        if agent in OPERATOR_AGENTS:
            calls[Call(verb, group, resource)] += count
    return dict(calls)


def new_file_name(cluster: str) -> str:
    safe = "".join(char if char.isalnum() or char in "-_." else "_" for char in cluster) or "cluster"
    return f"{safe}-{os.getpid()}-{uuid.uuid4().hex[:12]}.json"


def write(directory: pathlib.Path, file_name: str, *, cluster: str, role: Role,
          usage: Mapping[tuple[str, str, str, str], int]) -> pathlib.Path | None:
    """Write the operator's calls in ``usage`` as ``directory/file_name``; None (nothing written) if none."""
    calls = operator_calls(usage)
    if not calls:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    body = {
        "cluster": cluster,
        "role": role,
        "calls": [{"verb": call.verb, "group": call.group, "resource": call.resource, "count": count}
                  for call, count in sorted(calls.items(), key=lambda item: str(item[0]))],
    }
    path = directory / file_name
    with tempfile.NamedTemporaryFile("w", dir=directory, prefix=".", suffix=".tmp", delete=False) as handle:
        json.dump(body, handle, indent=1)
    os.replace(handle.name, path)
    return path


def read(directory: pathlib.Path) -> list[Record]:
    """Every record in ``directory`` (written by :func:`write`), in file-name order."""
    records = []
    for path in sorted(directory.glob("*.json")):
        body = json.loads(path.read_text())
        role = body["role"]
        if role not in ("management", "remote"):
            raise ValueError(f"{path}: role must be management or remote, not {role!r}")
        calls = {Call(str(call["verb"]), str(call["group"]), str(call["resource"])): int(call["count"])
                 for call in body["calls"]}
        records.append(Record(cluster=str(body["cluster"]), role=role, calls=calls))
    return records


def union(records: Iterable[Record], role: Role) -> dict[Call, int]:
    """The calls of every record of ``role``, counts summed."""
    total: collections.Counter[Call] = collections.Counter()
    for record in records:
        if record.role == role:
            total.update(record.calls)
    return dict(total)

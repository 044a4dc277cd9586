"""``kubectl bluegreen plan -f FILE``: what an upgrade would do, before it is applied, from the file alone.

No cluster is contacted: the file is validated as the operator validates a
spec, and :func:`bluegreen.engine.plan.plan` lists the actions. A file may
hold several YAML documents; those that are not ClusterUpgrades (RBAC,
Secrets next to the upgrade) are passed over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml

from bluegreen.api import spec as api
from bluegreen.cli.text import PLAIN, Style, span, table
from bluegreen.engine import plan as planner


@dataclasses.dataclass(frozen=True)
class Document:
    """One ClusterUpgrade found in the input, with its plan or the problems that stop it."""

    namespace: str
    name: str
    spec: api.ClusterUpgradeSpec | None
    problems: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


class InputError(ValueError):
    """The input is not YAML, or holds no ClusterUpgrade."""


def read_documents(text: str, *, source: str) -> list[Document]:
    """Every ClusterUpgrade in ``text``, each validated with :func:`bluegreen.api.spec.parse_spec`."""
    try:
        loaded = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML ({_yaml_problem(exc)})") from None
    found = []
    for doc in loaded:
        if not isinstance(doc, Mapping) or doc.get("kind") != api.KIND:
            continue
        if doc.get("apiVersion") != api.API_VERSION:
            found.append(Document("", _name(doc), None, (
                f"apiVersion is {doc.get('apiVersion')!r}; this plugin reads {api.API_VERSION}",)))
            continue
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
        assert isinstance(meta, Mapping)
        raw = doc.get("spec")
        if not isinstance(raw, Mapping):
            found.append(Document(str(meta.get("namespace") or ""), _name(doc), None, ("spec: missing",)))
            continue
        try:
            spec = api.parse_spec(dict(raw))
        except api.SpecError as exc:
            found.append(Document(str(meta.get("namespace") or ""), _name(doc), None, tuple(exc.problems)))
            continue
        found.append(Document(str(meta.get("namespace") or ""), _name(doc), spec))
    if not found:
        raise InputError(f"{source}: no {api.KIND} ({api.API_VERSION}) in it")
    return found


def render_plan(document: Document, *, style: Style = PLAIN) -> str:
    """The plan of one valid ClusterUpgrade as an aligned table and its total minimum."""
    spec = document.spec
    assert spec is not None
    actions = planner.plan(spec)
    rows = [[str(action.phase), action.action, span(action.minimum), action.note] for action in actions]
    header = (f"Plan for clusterupgrade {document.display}: {spec.cluster.name} -> {spec.green_name} at "
              f"{spec.target.kubernetes_version} ({spec.cluster.provider.value}, {spec.strategy.value})")
    lines = [style.bold(header), "", *table(rows, header=["PHASE", "ACTION", "MINIMUM", "NOTE"], indent=0), ""]
    total = f"Total minimum: {span(planner.total_minimum(actions))}"
    waits = planner.open_ended(actions)
    if waits:
        total += f", plus {len(waits)} wait(s) the world or a person decides (MINIMUM -)"
    lines += [style.bold(total), planner.rollback_summary(spec).capitalize()]
    return "\n".join(lines) + "\n"


def render_problems(document: Document, *, source: str) -> str:
    lines = [f"{source}: clusterupgrade {document.display} is invalid:"]
    lines += [f"  {problem}" for problem in document.problems]
    return "\n".join(lines) + "\n"


def _name(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata")
    return str(meta.get("name") or "<no name>") if isinstance(meta, Mapping) else "<no name>"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "cannot parse"
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)

"""``kubectl bluegreen plan``: what an upgrade would do, from a file before it is applied or from the cluster.

From a file (``-f``) no cluster is contacted: the file is validated as the
operator validates a spec, and :func:`bluegreen.engine.plan.plan` lists the
actions of a blue/green upgrade. A file may hold several YAML documents; those
that are not ClusterUpgrades (RBAC, Secrets next to the upgrade) are passed
over. An object that carries a status (``plan NAME`` reads it from the
cluster; ``kubectl get -o yaml`` output works as a file) adds what the
operator found: the preflight's findings and the strategy it chose, hooks'
states, and how far an in-place upgrade is.

The engine's planner knows blue/green only; the in-place listing (the minors
one at a time, ``spec.inPlace.betweenMinors`` after each) and the NodePools
rotation (:mod:`bluegreen.cli.rotation`) are built in the plugin from spec and
status. Until Auto has chosen, both candidate plans are shown.
"""

from __future__ import annotations

import dataclasses
import datetime
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from bluegreen.api import spec as api
from bluegreen.api.status import ClusterUpgradeStatus
from bluegreen.cli import rotation, sections, view
from bluegreen.cli.text import PLAIN, Style, span, wrap
from bluegreen.engine import plan as planner


@dataclasses.dataclass(frozen=True)
class Document:
    """One ClusterUpgrade found in the input, with its plan or the problems that stop it."""

    namespace: str
    name: str
    spec: api.ClusterUpgradeSpec | None
    problems: tuple[str, ...] = ()
    status: ClusterUpgradeStatus | None = None

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
        # `kubectl get -o yaml` of several objects is one List holding them.
        items = doc.get("items") if isinstance(doc, Mapping) and doc.get("kind") == "List" else [doc]
        for item in items if isinstance(items, list) else []:
            if isinstance(item, Mapping) and item.get("kind") == api.KIND:
                found.append(document_of(item))
    if not found:
        raise InputError(f"{source}: no {api.KIND} ({api.API_VERSION}) in it")
    return found


def document_of(obj: Mapping[str, Any]) -> Document:
    """One ClusterUpgrade object (from a file or the cluster), its spec validated, its status read leniently."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    namespace, name = str(meta.get("namespace") or ""), _name(obj)
    if obj.get("apiVersion") != api.API_VERSION:
        return Document("", name, None, (
            f"apiVersion is {obj.get('apiVersion')!r}; this plugin reads {api.API_VERSION}",))
    status = view.lenient_status(obj.get("status"))[0] if obj.get("status") else None
    raw = obj.get("spec")
    if not isinstance(raw, Mapping):
        return Document(namespace, name, None, ("spec: missing",), status)
    try:
        spec = api.parse_spec(dict(raw))
    except api.SpecError as exc:
        return Document(namespace, name, None, tuple(exc.problems), status)
    return Document(namespace, name, spec, (), status)


def render_plan(document: Document, *, style: Style = PLAIN, now: datetime.datetime | None = None) -> str:
    """The plan of one valid ClusterUpgrade: the preflight, then each action in an aligned table with totals.

    ``now`` turns times in status into ages; without it they are printed as UTC times.
    """
    spec, status = document.spec, document.status
    assert spec is not None
    chosen = sections.chosen_strategy(spec, status)
    if chosen == api.Strategy.NODE_POOLS:
        what = f"{spec.cluster.name}'s {rotation.plan_title(spec)} to"
    else:
        what = f"{spec.cluster.name} " + ("in place" if chosen == api.Strategy.IN_PLACE else f"-> {spec.green_name}") \
            + " at"
    header = (f"Plan for clusterupgrade {document.display}: {what} "
              f"{spec.target.kubernetes_version} ({spec.cluster.provider.value}, {spec.strategy.value})")
    lines = [style.bold(line) for line in wrap(header, width=sections.WIDTH)]
    if status is not None:
        phase = f"Phase: {status.phase.value}" + (f": {' '.join(status.message.split())}" if status.message else "")
        lines += wrap(phase, width=sections.WIDTH, hanging=7)
    lines += sections.preflight(spec, status, style=style, now=now)
    if chosen == api.Strategy.NODE_POOLS:
        lines += ["", style.bold("Node pools:"), *_node_pools(spec, status, style=style)]
    if chosen in (api.Strategy.IN_PLACE, None):
        title = "If Auto chooses InPlace:" if chosen is None else "In place:"
        lines += ["", style.bold(title), *_in_place(spec, status, style=style)]
    if chosen in (api.Strategy.BLUE_GREEN, None):
        if chosen is None:
            lines += ["", style.bold("If Auto chooses BlueGreen:")]
        lines += ["", *_blue_green(spec, status, style=style)]
    return "\n".join(lines) + "\n"


def _blue_green(spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus | None, *, style: Style) -> list[str]:
    actions = sections.with_hooks(spec, planner.plan(spec), status)
    rollback = wrap(planner.rollback_summary(spec).capitalize(), width=sections.WIDTH, hanging=0)
    return [*action_table([(action, "") for action in actions], style=style), "", _total(actions, style=style),
            *rollback]


def _in_place(spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus | None, *, style: Style) -> list[str]:
    planned = sections.in_place_plan(spec, status)
    actions = [action for action, _ in planned]
    rollback = wrap(sections.IN_PLACE_ROLLBACK.capitalize(), width=sections.WIDTH, hanging=0)
    return [*action_table(planned, style=style), "", _total(actions, style=style), *rollback]


def _node_pools(spec: api.ClusterUpgradeSpec, status: ClusterUpgradeStatus | None, *, style: Style) -> list[str]:
    planned = rotation.plan(spec, status)
    actions = [action for action, _ in planned]
    rollback = wrap(rotation.ROLLBACK[0].upper() + rotation.ROLLBACK[1:], width=sections.WIDTH, hanging=0)
    return [*action_table(planned, style=style), "", _total(actions, style=style), *rollback]


def action_table(planned: Sequence[tuple[planner.PlannedAction, str]], *, style: Style) -> list[str]:
    """PHASE, MINIMUM, STATE (when any row has one) and ACTION, with the note under its action.

    Actions and notes are wrapped at the ACTION column so the table keeps within
    :data:`sections.WIDTH` columns, however long the names in the spec are.
    """
    with_state = any(state for _, state in planned)
    fronts = [[str(action.phase), span(action.minimum), *([state] if with_state else [])]
              for action, state in planned]
    header = ["PHASE", "MINIMUM", *(["STATE"] if with_state else [])]
    widths = [max(len(cells[i]) for cells in [header, *fronts]) for i in range(len(header))]
    column = sum(widths) + 2 * len(widths)
    room = max(sections.WIDTH - column, 30)

    def front(cells: Sequence[str]) -> str:
        return "".join(cell.ljust(width) + "  " for cell, width in zip(cells, widths, strict=True))

    lines = [front(header) + "ACTION"]
    for (action, _), cells in zip(planned, fronts, strict=True):
        wrapped = textwrap.wrap(action.action, room, break_on_hyphens=False) or [""]
        lines.append(front(cells) + wrapped[0])
        lines += [" " * column + more for more in wrapped[1:]]
        for note in textwrap.wrap(action.note, room - 2, break_on_hyphens=False):
            lines.append(" " * (column + 2) + style.paint(note, "dim"))
    return [line.rstrip() for line in lines]


def _total(actions: list[planner.PlannedAction], *, style: Style) -> str:
    total = f"Total minimum: {span(planner.total_minimum(actions))}"
    waits = planner.open_ended(actions)
    if waits:
        total += f", plus {len(waits)} wait(s) the world or a person decides (MINIMUM -)"
    return style.bold(total)


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

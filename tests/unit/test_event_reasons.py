"""Every Event reason the operator emits is one the README's table explains, and the table names no other."""

from __future__ import annotations

import pathlib
import re

from bluegreen.api.status import Phase

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ROOT / "operator" / "bluegreen"
EMITTED = re.compile(r'(?:\.event\(|Event\(reason=)\s*"([A-Za-z]+)"')
# A reason kept in a module constant: Event(reason=REASON, ...) with REASON = "UnsafeSpecChange" in that module.
BY_CONSTANT = re.compile(r'(?:\.event\(|Event\(reason=)\s*([A-Z_]+)\b')


def _reasons_in(text: str) -> set[str]:
    found = set(EMITTED.findall(text))
    for constant in BY_CONSTANT.findall(text):
        defined = re.search(rf'^{constant}\s*=\s*"([A-Za-z]+)"', text, flags=re.MULTILINE)
        assert defined, f"Event reason {constant} is not a string constant of its module"
        found.add(defined[1])
    return found


def emitted_reasons() -> set[str]:
    found = {match for path in SOURCES.rglob("*.py") if "sim" not in path.relative_to(SOURCES).parts
             for match in _reasons_in(path.read_text())}
    return found | {phase.value for phase in Phase if phase is not Phase.PENDING}  # work.goto emits the phase


def documented_reasons() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    lines = readme[readme.index("| reason | type | when |"):].splitlines()[2:]
    rows = lines[: next(index for index, line in enumerate(lines) if not line.startswith("|"))]
    first_cells = [row.split("|")[1] for row in rows]
    return {name for cell in first_cells for name in re.findall(r"`([A-Za-z]+)`", cell)}


def test_the_readme_explains_every_event_reason_and_only_those() -> None:
    emitted, documented = emitted_reasons(), documented_reasons()
    assert emitted - documented == set(), "emitted but not in the README's table"
    assert documented - emitted == set(), "in the README's table but never emitted"

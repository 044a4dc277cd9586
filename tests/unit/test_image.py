"""The operator image (Dockerfile): what it is built from, who it runs as, and that it needs nothing else.

No Docker engine runs on the project's machines, so the image itself is not built here (hack/build-image.sh
does it where one runs). What can be checked here is checked: the Dockerfile's choices, that the chart
starts what the image holds, and that the package imports with nothing but its declared runtime
dependencies, the only ones ``pip install .`` puts into the image.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import subprocess
import sys

from packaging.requirements import Requirement

from tests.fixtures import helm

REPO = pathlib.Path(__file__).resolve().parents[2]
DIST = "bluegreen-operator"


def instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_base_is_a_pinned_slim_python_for_every_stage() -> None:
    bases = [args.split()[0] for op, args in instructions() if op == "FROM"]
    assert len(bases) == 2  # build, then a runtime without pip's build leftovers
    for base in bases:
        name, _, tag = base.partition(":")
        assert name == "python"
        assert re.fullmatch(r"3\.\d+\.\d+-slim-\w+", tag), f"{base}: pin the full Python version and the distro"
    assert len(set(bases)) == 1


def test_the_image_runs_as_a_numeric_non_root_user_and_starts_the_operator() -> None:
    steps = instructions()
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].isdigit() and int(users[-1]) != 0  # numeric: runAsNonRoot can check it
    entrypoint = [args for op, args in steps if op == "ENTRYPOINT"][-1]
    assert entrypoint == '["kopf", "run", "-m", "bluegreen.handlers"]'
    copied = [args for op, args in steps if op == "COPY"]
    assert "operator ./operator" in copied and any("pyproject.toml" in args for args in copied)
    assert any(op == "RUN" and "pip install" in args and args.rstrip().endswith(" .") for op, args in steps)


def test_the_chart_starts_the_module_the_image_installs() -> None:
    objects = helm.render()
    operator = helm.find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert operator["command"] == ["kopf", "run"]
    assert operator["args"][:2] == ["-m", "bluegreen.handlers"]


def test_the_build_context_leaves_out_the_virtualenv_and_git() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git"} <= set(ignored)


def _runtime_closure() -> set[str]:
    """Distributions the package's runtime requirements pull in, transitively (no extras of ours)."""
    seen: set[str] = set()
    pending = [Requirement(text) for text in importlib.metadata.requires(DIST) or ()
               if "extra ==" not in text]
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        pending.extend(Requirement(text) for text in requires)
    return seen


def test_the_package_imports_with_its_runtime_dependencies_alone() -> None:
    runtime = _runtime_closure() | {re.sub(r"[-_.]+", "-", DIST).lower()}
    blocked = sorted({
        module for module, dists in importlib.metadata.packages_distributions().items()
        if not any(re.sub(r"[-_.]+", "-", dist).lower() in runtime for dist in dists)
        and not module.startswith("_") and module not in sys.stdlib_module_names
    })
    assert "kmock" in blocked and "kopf" not in blocked
    program = f"""
import importlib, pkgutil, sys
BLOCKED = set({blocked!r})
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not a runtime dependency of the image")
sys.meta_path.insert(0, Block())
import bluegreen
for module in pkgutil.walk_packages(bluegreen.__path__, "bluegreen."):
    if module.name.startswith("bluegreen.sim"):
        continue
    importlib.import_module(module.name)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"

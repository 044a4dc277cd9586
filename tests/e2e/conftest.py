"""Real clusters: a kind management cluster with Cluster API (Docker provider) and Flux, made by hack/kind-up.sh.

Everything here needs a Docker engine and the kind, clusterctl and flux binaries. Where one is missing the
whole directory is skipped, once, with the reason; nothing is ever downloaded: binaries come from the
flags (``--kind-bin`` is pytest-kind's own, ``--clusterctl-bin`` and ``--flux-bin`` are added here), the
KIND, CLUSTERCTL and FLUX variables, or PATH.

pytest-kind's ``KindCluster`` is the handle on the management cluster (kubectl and pykube against it). It
downloads kind and kubectl when the paths it is given do not exist, so it only ever gets paths checked
to be executables here, and its ``kind_cluster`` fixture (which would create a plain cluster, without the
Docker socket CAPD needs) is not used.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from pytest_kind import KindCluster  # type: ignore[import-untyped]

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The names hack/kind-up.sh uses by default.
MANAGEMENT_CLUSTER = os.environ.get("MGMT_CLUSTER", "bluegreen-e2e")
BLUE_CLUSTER = os.environ.get("BLUE_CLUSTER", "e2e-blue")
NAMESPACE = os.environ.get("NAMESPACE", "fleet")
DOCKER_INFO_TIMEOUT = 20.0
KIND_UP_TIMEOUT = 3600.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("e2e", "real-cluster e2e (tests/e2e)")
    group.addoption("--clusterctl-bin", default=None, help="clusterctl binary (default: $CLUSTERCTL, then PATH)")
    group.addoption("--flux-bin", default=None, help="flux binary (default: $FLUX, then PATH)")


@dataclasses.dataclass(frozen=True)
class Tools:
    kind: pathlib.Path
    clusterctl: pathlib.Path
    flux: pathlib.Path
    kubectl: pathlib.Path


def docker_problem() -> str | None:
    """Why there is no usable Docker engine, or None."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker binary on PATH"
    try:
        result = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=DOCKER_INFO_TIMEOUT,
                                check=False)
    except subprocess.TimeoutExpired:
        return f"`docker info` did not answer within {DOCKER_INFO_TIMEOUT:.0f} s"
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return f"`docker info` fails: {lines[-1] if lines else f'exit status {result.returncode}'}"
    return None


def find_binary(name: str, *, given: str | None, variable: str) -> pathlib.Path | str:
    """The executable for ``name`` from its flag, its variable or PATH; or why there is none."""
    for source, value in ((f"--{name}-bin", given), (variable, os.environ.get(variable))):
        if value:
            path = pathlib.Path(value)
            if path.is_file() and os.access(path, os.X_OK):
                return path
            return f"{source}={value} is not an executable file"
    found = shutil.which(name)
    if found is None:
        return f"{name} is not on PATH (give --{name}-bin or {variable})"
    return pathlib.Path(found)


def _option(config: pytest.Config, name: str) -> str | None:
    # Options of this conftest exist only when pytest was started on tests/e2e (pytest loads a
    # subdirectory's conftest before parsing the command line only then); from the repository's
    # root they are simply absent and the variables or PATH decide.
    value = config.getoption(name, default=None)
    return str(value) if value else None


@pytest.fixture(scope="session")
def e2e_tools(pytestconfig: pytest.Config) -> Tools:
    problem = docker_problem()
    if problem is not None:
        pytest.skip(f"real-cluster e2e needs a Docker engine: {problem}")
    found = {
        "kind": find_binary("kind", given=_option(pytestconfig, "kind_bin"), variable="KIND"),
        "clusterctl": find_binary("clusterctl", given=_option(pytestconfig, "clusterctl_bin"), variable="CLUSTERCTL"),
        "flux": find_binary("flux", given=_option(pytestconfig, "flux_bin"), variable="FLUX"),
        "kubectl": find_binary("kubectl", given=_option(pytestconfig, "kind_kubectl_bin"), variable="KUBECTL"),
    }
    missing = [reason for reason in found.values() if isinstance(reason, str)]
    if missing:
        pytest.skip("real-cluster e2e needs kind, clusterctl, flux and kubectl (never downloaded): "
                    + "; ".join(missing))
    paths = {name: path for name, path in found.items() if isinstance(path, pathlib.Path)}
    return Tools(**paths)


@pytest.fixture(scope="session")
def management(e2e_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindCluster]:
    """The management cluster, made by hack/kind-up.sh unless it is there already (as in the workflow)."""
    kubeconfig = ROOT / ".e2e" / f"{MANAGEMENT_CLUSTER}.kubeconfig"
    existing = subprocess.run([str(e2e_tools.kind), "get", "clusters"], capture_output=True, text=True,
                              timeout=60, check=True).stdout.split()
    if MANAGEMENT_CLUSTER not in existing or not kubeconfig.exists():
        log = tmp_path_factory.mktemp("kind-up") / "kind-up.log"
        with log.open("w") as out:
            result = subprocess.run(
                [str(ROOT / "hack" / "kind-up.sh"), "--offline", "--name", MANAGEMENT_CLUSTER,
                 "--blue", BLUE_CLUSTER, "--namespace", NAMESPACE, "--kubeconfig", str(kubeconfig),
                 "--kind", str(e2e_tools.kind), "--clusterctl", str(e2e_tools.clusterctl),
                 "--flux", str(e2e_tools.flux), "--kubectl", str(e2e_tools.kubectl)],
                stdout=out, stderr=subprocess.STDOUT, timeout=KIND_UP_TIMEOUT, check=False,
            )
        assert result.returncode == 0, f"hack/kind-up.sh failed:\n{log.read_text()[-4000:]}"
    # Both paths exist (checked above), so KindCluster never downloads; with the cluster there it only
    # reads the kubeconfig.
    cluster = KindCluster(MANAGEMENT_CLUSTER, kubeconfig=kubeconfig, kind_path=e2e_tools.kind,
                          kubectl_path=e2e_tools.kubectl)
    cluster.create()
    yield cluster

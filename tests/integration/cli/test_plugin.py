"""The installed plugin as a person runs it: ``kubectl-bluegreen`` and ``kubectl bluegreen``, against an emulated API.

Given an emulated management cluster with the generated CRD and a ClusterUpgrade,
and a kubeconfig for it, when the plugin runs as a subprocess (directly and found
by kubectl on PATH), then it writes only the human controls and prints what it did;
``get`` shows the status and the object's Events; ``get --watch`` redraws on a watched
change; ``plan`` needs no cluster at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from bluegreen.api import crd
from bluegreen.api import spec as api
from bluegreen.sim.kube import KubeEmulator

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent
PLUGIN = BIN / "kubectl-bluegreen"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
RESOURCE = f"{api.GROUP}/{api.VERSION}/{api.PLURAL}"
STATUSES = ROOT / "tests" / "unit" / "cli" / "statuses"
NAME = "prod-to-1-31"

INVOCATIONS = {"direct": [str(PLUGIN)], "kubectl": [KUBECTL, "bluegreen"]}


class Management:
    def __init__(self, emulator: KubeEmulator, kubeconfig: pathlib.Path) -> None:
        self.emulator = emulator
        self.kubeconfig = kubeconfig

    def upgrade(self) -> dict[str, Any]:
        found = self.emulator.get(RESOURCE, "fleet", NAME)
        assert found is not None
        return found

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                "NO_COLOR": ""}


async def start_management(tmp_path: pathlib.Path, *, with_crd: bool = True) -> tuple[KubeEmulator, pathlib.Path]:
    emulator = KubeEmulator(name="management")
    await emulator.start()
    emulator.create("v1/namespaces", {"metadata": {"name": "fleet"}})
    if with_crd:
        emulator.install_crd(crd.crd())
        emulator.create(RESOURCE, yaml.safe_load((ROOT / "examples" / "clusterupgrade-capi.yaml").read_text()))
    config = emulator.kubeconfig()
    config["contexts"][0]["context"]["namespace"] = "fleet"  # the plugin takes the context's namespace
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return emulator, path


@pytest.fixture
async def management(tmp_path: pathlib.Path) -> AsyncIterator[Management]:
    if not PLUGIN.exists():
        pytest.skip(f"{PLUGIN} is not installed; run `pip install -e .` (make venv)")
    emulator, path = await start_management(tmp_path)
    try:
        yield Management(emulator, path)
    finally:
        await emulator.stop()


async def plugin(
    management: Management | None, invocation: str, *args: str, env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    environment = env or (management.env() if management else dict(os.environ))
    process = await asyncio.create_subprocess_exec(
        *INVOCATIONS[invocation], *args, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def unchanged_parts(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but the fields the plugin may write and those the API server moves."""
    copy: dict[str, Any] = json.loads(json.dumps(obj))
    meta = copy["metadata"]
    for key in ("resourceVersion", "generation", "managedFields"):
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    for key in ("bluegreen.io/promote", "bluegreen.io/abort", "bluegreen.io/retry"):
        annotations.pop(key, None)
    meta["annotations"] = annotations
    copy["spec"].pop("paused", None)
    return copy


@pytest.mark.parametrize("invocation", sorted(INVOCATIONS))
@pytest.mark.parametrize(("args", "line", "expected"), [
    (["promote", NAME], "annotated bluegreen.io/promote=step", {"bluegreen.io/promote": "step"}),
    (["promote", NAME, "--full"], "annotated bluegreen.io/promote=full", {"bluegreen.io/promote": "full"}),
    (["abort", NAME], "annotated bluegreen.io/abort=true", {"bluegreen.io/abort": "true"}),
    (["retry", NAME], "annotated bluegreen.io/retry=true", {"bluegreen.io/retry": "true"}),
])
async def test_control_annotations_are_written_and_nothing_else(
    management: Management, invocation: str, args: list[str], line: str, expected: dict[str, str],
) -> None:
    before = management.upgrade()
    code, out, err = await plugin(management, invocation, *args)
    assert (code, err) == (0, "")
    assert out == f"clusterupgrade fleet/{NAME} {line}\n"
    after = management.upgrade()
    annotations = after["metadata"].get("annotations") or {}
    assert {key: value for key, value in annotations.items() if key.startswith("bluegreen.io/")} == expected
    assert unchanged_parts(after) == unchanged_parts(before)


@pytest.mark.parametrize("invocation", sorted(INVOCATIONS))
async def test_pause_and_resume_set_spec_paused_only(management: Management, invocation: str) -> None:
    before = management.upgrade()
    code, out, _ = await plugin(management, invocation, "pause", NAME)
    assert (code, out) == (0, f"clusterupgrade fleet/{NAME} patched spec.paused=true\n")
    assert management.upgrade()["spec"]["paused"] is True
    code, out, _ = await plugin(management, invocation, "resume", NAME, "-n", "fleet")
    assert (code, out) == (0, f"clusterupgrade fleet/{NAME} patched spec.paused=false\n")
    after = management.upgrade()
    assert after["spec"]["paused"] is False
    assert unchanged_parts(after) == unchanged_parts(before)
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 2, "a spec change each"


@pytest.mark.parametrize("invocation", sorted(INVOCATIONS))
async def test_a_missing_upgrade_names_namespace_and_name(management: Management, invocation: str) -> None:
    code, out, err = await plugin(management, invocation, "promote", "nope")
    assert (code, out) == (1, "")
    assert err == 'error: clusterupgrade "nope" not found in namespace "fleet"\n'
    code, _, err = await plugin(management, invocation, "get", NAME, "-n", "default")
    assert (code, err) == (1, f'error: clusterupgrade "{NAME}" not found in namespace "default"\n')


async def test_without_the_crd_it_says_how_to_install_it(tmp_path: pathlib.Path) -> None:
    emulator, path = await start_management(tmp_path, with_crd=False)
    try:
        env = {**os.environ, "KUBECONFIG": str(path)}
        for args in (["get", NAME], ["abort", NAME]):
            code, _, err = await plugin(None, "direct", *args, env=env)
            assert code == 1
            assert err.startswith(f"error: the ClusterUpgrade CRD ({api.PLURAL}.{api.GROUP}) is not installed on "
                                  f"{emulator.url}; install it with `kubectl apply -k crds`")
    finally:
        await emulator.stop()


def event(name: str, *, involved: dict[str, Any], reason: str, message: str, at: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "fleet"}, "involvedObject": involved, "reason": reason,
            "message": message, "type": "Normal", "firstTimestamp": at, "lastTimestamp": at, "count": 1}


def recorded_status(name: str) -> dict[str, Any]:
    status: dict[str, Any] = json.loads((STATUSES / f"{name}.json").read_text())["object"]["status"]
    return status


@pytest.mark.parametrize("invocation", sorted(INVOCATIONS))
async def test_get_shows_the_status_and_only_this_objects_events(management: Management, invocation: str) -> None:
    upgrade = management.upgrade()
    management.emulator.patch(RESOURCE, "fleet", NAME, {"status": recorded_status("held-inconclusive")},
                              subresource="status")
    mine = {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": NAME, "namespace": "fleet",
            "uid": upgrade["metadata"]["uid"]}
    management.emulator.create("v1/events", event("mine", involved=mine, reason="StepCompleted",
                                                  message="step 5/7 completed", at="2026-11-22T09:53:10Z"))
    # a namesake that was deleted and created again, and another kind: neither is about this object
    other = [{**mine, "uid": "0000"}, {**mine, "kind": "Cluster", "apiVersion": "cluster.x-k8s.io/v1beta2",
                                       "uid": "1111"}]
    for index, involved in enumerate(other):
        management.emulator.create("v1/events", event(f"other-{index}", involved=involved, reason="Unrelated",
                                                      message="not this object", at="2026-11-22T09:54:00Z"))
    code, out, err = await plugin(management, invocation, "get", NAME)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"Name:      fleet/{NAME}"
    assert lines[1].split()[:2] == ["Phase:", "Paused"]
    assert any(line.split()[:2] == [">", "6"] and "held by analysis: kubectl bluegreen promote" in line
               for line in lines)
    # f5 is in the recorded journal, not in this spec: still shown, without a kind
    assert any(line.split()[:5] == ["f5", "-", "50%", "50%", "unverified"] for line in lines)
    assert any(line.split()[:2] == ["Held:", "green-probe"] for line in lines)
    assert "step 5/7 completed" in out and "Unrelated" not in out
    assert "\x1b[" not in out


class Output:
    """Everything a running process printed so far, read as it comes."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.text = ""

    async def wait_for(self, marker: str, *, after: int = 0, timeout: float = 20) -> int:
        """The position of ``marker`` at or after ``after``, once printed."""
        async def more() -> int:
            while (found := self.text.find(marker, after)) < 0:
                chunk = await self.stream.read(4096)
                if not chunk:
                    raise AssertionError(f"the output ended before {marker!r}:\n{self.text}")
                self.text += chunk.decode()
            return found

        return await asyncio.wait_for(more(), timeout=timeout)


async def watch_opened(management: Management) -> None:
    """The plugin's watch is open once the server counts it; a change before would be in the first view."""
    for _ in range(200):
        if management.emulator.request_counts[("watch", api.GROUP, api.PLURAL)]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the plugin never opened a watch")


@pytest.mark.parametrize("invocation", sorted(INVOCATIONS))
async def test_get_watch_redraws_on_a_change_and_stops_on_ctrl_c(management: Management, invocation: str) -> None:
    management.emulator.patch(RESOURCE, "fleet", NAME, {"status": recorded_status("shifting-analysis")},
                              subresource="status")
    gets_before = management.emulator.request_counts[("get", api.GROUP, api.PLURAL)]
    process = await asyncio.create_subprocess_exec(
        *INVOCATIONS[invocation], "get", NAME, "--watch", env=management.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    output = Output(process.stdout)
    try:
        first_end = await output.wait_for("\nEvents:")
        assert output.text.splitlines()[1].split()[:2] == ["Phase:", "Shifting"]
        await watch_opened(management)
        management.emulator.patch(RESOURCE, "fleet", NAME, {"status": recorded_status("rolled-back")},
                                  subresource="status")
        changed = await output.wait_for("Phase:     RolledBack", after=first_end)
        separator = output.text.find("\n---\nName:      fleet/prod-to-1-31\n", first_end)
        assert first_end < separator < changed, "each new view follows a --- line"
        assert "Phase:     RolledBack" not in output.text[:separator]
        await output.wait_for("\nEvents:", after=changed)
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), timeout=20)
        err = (await process.stderr.read()).decode()
        assert code == 130 and "Traceback" not in err, err
        # one GET to start: every change after came through the watch, not by polling
        assert management.emulator.request_counts[("get", api.GROUP, api.PLURAL)] == gets_before + 1
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_get_watch_ends_when_the_upgrade_is_deleted(management: Management) -> None:
    process = await asyncio.create_subprocess_exec(
        str(PLUGIN), "get", NAME, "-w", env=management.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    output = Output(process.stdout)
    try:
        shown = await output.wait_for("\nEvents:")
        await watch_opened(management)
        management.emulator.delete(RESOURCE, "fleet", NAME)
        await output.wait_for(f"---\nclusterupgrade fleet/{NAME} deleted\n", after=shown)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("invocation", sorted(INVOCATIONS))
async def test_plan_needs_no_cluster(tmp_path: pathlib.Path, invocation: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "no-such-kubeconfig"),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    code, out, err = await plugin(None, invocation, "plan", "-f", str(ROOT / "examples" / "routers" / "route53.yaml"),
                                  env=env)
    assert (code, err) == (0, "")
    assert "step 1/5: setWeight 10 on router dns (route53)" in out
    assert "Total minimum: 24h8m, plus 4 wait(s) the world or a person decides (MINIMUM -)" in out.splitlines()

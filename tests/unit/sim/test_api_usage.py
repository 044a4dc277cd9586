"""The emulator's record of who called what, and the files it leaves for the RBAC check."""

from __future__ import annotations

import json
import pathlib
from collections.abc import AsyncIterator

import pytest
import yaml

from bluegreen.api import crd
from bluegreen.cli import cluster
from bluegreen.kube import client as kubeclient
from bluegreen.sim import api_usage
from bluegreen.sim.api_usage import Call
from bluegreen.sim.kube import KubeEmulator

PODS = kubeclient.Resource("", "v1", "pods")
DEPLOYMENTS = kubeclient.Resource("apps", "v1", "deployments")
CONFIGMAPS = kubeclient.Resource("", "v1", "configmaps")
KOPF_AGENT = "kopf/1.45.2"


@pytest.fixture(autouse=True)
def no_recording_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests play the operator in-process: under `make test` their calls must not join the suite's record."""
    monkeypatch.delenv(api_usage.ENV, raising=False)


@pytest.fixture
async def emulator() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="blue", kubernetes_version="1.31")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


def client(emulator: KubeEmulator, user_agent: str | None = None) -> kubeclient.KubeClient:
    return kubeclient.KubeClient.from_kubeconfig(emulator.kubeconfig(), user_agent=user_agent)


def names(directory: pathlib.Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def pod(name: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}


def deployment(name: str) -> dict[str, object]:
    labels = {"app": name}
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}


async def test_requests_are_counted_by_agent_and_by_the_verb_rbac_authorizes(emulator: KubeEmulator) -> None:
    async with client(emulator, kubeclient.OPERATOR_USER_AGENT) as operator, client(emulator) as other:
        await operator.create(PODS, pod("p1"))
        await operator.get(PODS, namespace="default", name="p1")
        await operator.list(PODS, namespace="default")
        async for _ in operator.watch(PODS, namespace="default", timeout_seconds=1):
            break
        await operator.evict("default", "p1")
        await other.create(DEPLOYMENTS, deployment("web"))
        await operator.patch(DEPLOYMENTS, namespace="default", name="web", body={"spec": {"replicas": 2}},
                             subresource="scale")
        await other.delete(DEPLOYMENTS, namespace="default", name="web")

    assert dict(emulator.usage) == {
        ("bluegreen-operator", "create", "", "pods"): 1,
        ("bluegreen-operator", "get", "", "pods"): 1,
        ("bluegreen-operator", "list", "", "pods"): 1,
        ("bluegreen-operator", "watch", "", "pods"): 1,
        ("bluegreen-operator", "create", "", "pods/eviction"): 1,
        ("bluegreen-operator", "patch", "apps", "deployments/scale"): 1,
        ("bluegreen", "create", "apps", "deployments"): 1,
        ("bluegreen", "delete", "apps", "deployments"): 1,
    }
    # The agent-blind count its older users read is kept.
    assert emulator.request_counts[("create", "apps", "deployments")] == 1


async def test_the_plugin_introduces_itself(emulator: KubeEmulator, tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(emulator.kubeconfig()))
    plugin, _ = cluster.connect(kubeconfig_path=str(kubeconfig), context=None, namespace=None)
    async with plugin:
        await plugin.list(CONFIGMAPS, namespace="default")

    assert {agent for agent, *_ in emulator.usage} == {"kubectl-bluegreen"}


async def test_stop_writes_the_operators_calls_with_the_clusters_role(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(api_usage.ENV, str(tmp_path))
    management = KubeEmulator(name="management")
    management.install_crd(crd.crd())
    blue = KubeEmulator(name="blue")
    for emulator in (management, blue):
        await emulator.start()
        async with client(emulator, kubeclient.OPERATOR_USER_AGENT) as operator, \
                client(emulator, KOPF_AGENT) as kopf, client(emulator) as test:
            await operator.list(CONFIGMAPS, namespace="default")
            await kopf.list(kubeclient.Resource("", "v1", "namespaces", namespaced=False))
            await test.create(CONFIGMAPS, {"metadata": {"name": "seed", "namespace": "default"}})
        await emulator.stop()

    records = {record.cluster: record for record in api_usage.read(tmp_path)}

    assert {name: record.role for name, record in records.items()} == {"management": "management", "blue": "remote"}
    assert records["blue"].calls == {Call("list", "", "configmaps"): 1, Call("list", "", "namespaces"): 1}


async def test_a_second_stop_rewrites_the_same_file_with_the_whole_count(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(api_usage.ENV, str(tmp_path))
    emulator = KubeEmulator(name="green")
    for _ in range(2):
        await emulator.start()
        async with client(emulator, kubeclient.OPERATOR_USER_AGENT) as operator:
            await operator.list(CONFIGMAPS, namespace="default")
        await emulator.stop()

    [record] = api_usage.read(tmp_path)

    assert record.calls == {Call("list", "", "configmaps"): 2}


async def test_emulators_of_the_same_name_write_files_of_their_own(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(api_usage.ENV, str(tmp_path))
    for _ in range(2):
        emulator = KubeEmulator(name="green")
        await emulator.start()
        async with client(emulator, kubeclient.OPERATOR_USER_AGENT) as operator:
            await operator.list(CONFIGMAPS, namespace="default")
        await emulator.stop()

    assert len([name for name in names(tmp_path) if name.startswith("green-")]) == 2
    assert api_usage.union(api_usage.read(tmp_path), "remote") == {Call("list", "", "configmaps"): 2}


async def test_nothing_is_written_without_the_operator_or_without_the_variable(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(api_usage.ENV, str(tmp_path / "set"))
    only_kopf = KubeEmulator(name="toy")  # a kopf operator of a test's own, not bluegreen
    await only_kopf.start()
    async with client(only_kopf, KOPF_AGENT) as kopf:
        await kopf.list(CONFIGMAPS, namespace="default")
    await only_kopf.stop()
    monkeypatch.delenv(api_usage.ENV)
    unset = KubeEmulator(name="unset")
    await unset.start()
    async with client(unset, kubeclient.OPERATOR_USER_AGENT) as operator:
        await operator.list(CONFIGMAPS, namespace="default")
    await unset.stop()

    assert not (tmp_path / "set").exists()
    assert names(tmp_path) == []
    assert unset.usage[("bluegreen-operator", "list", "", "configmaps")] == 1


def test_read_refuses_an_unknown_role(tmp_path: pathlib.Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"cluster": "x", "role": "router", "calls": []}))

    with pytest.raises(ValueError, match="role must be management or remote"):
        api_usage.read(tmp_path)

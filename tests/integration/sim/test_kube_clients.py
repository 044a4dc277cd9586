"""Real clients against the emulated API server: the official client, pykube-ng, kubectl, kopf.

The emulator runs on its own event loop in a background thread, so the blocking clients can
be driven from the test; its in-process API is thread-safe for the assertions and writes.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import kubernetes
import pykube
import pytest
import yaml

from bluegreen.sim.kube import KubeEmulator
from tests.unit.sim.test_kube_store import widget, widget_crd

pytestmark = pytest.mark.integration

T = TypeVar("T")
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


class Running:
    def __init__(self, emulator: KubeEmulator, loop: asyncio.AbstractEventLoop, kubeconfig: pathlib.Path) -> None:
        self.emulator = emulator
        self.loop = loop
        self.kubeconfig = kubeconfig


@pytest.fixture
def running(tmp_path: pathlib.Path) -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    emulator = KubeEmulator(name="mgmt", kubernetes_version="1.30")
    asyncio.run_coroutine_threadsafe(emulator.start(), loop).result(10)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(emulator.kubeconfig()))
    try:
        yield Running(emulator, loop, kubeconfig)
    finally:
        asyncio.run_coroutine_threadsafe(emulator.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def eventually(check: Callable[[], T | None], *, timeout: float = 30.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


# --- the official client ----------------------------------------------------------------------------

@pytest.fixture
def official(running: Running) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=str(running.kubeconfig))
    try:
        yield client
    finally:
        client.close()


def test_official_client_crud_and_selectors(official: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(official)
    created = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "a", "labels": {"app": "web"}}, "data": {"k": "v"}})
    assert created is not None and created.metadata.uid
    core.create_namespaced_config_map("default", {"metadata": {"name": "b", "labels": {"app": "db"}}})
    assert core.read_namespaced_config_map("a", "default").data == {"k": "v"}
    listed = core.list_namespaced_config_map("default", label_selector="app in (web)")
    assert [item.metadata.name for item in listed.items] == ["a"]
    assert listed.metadata.resource_version

    merged = core.patch_namespaced_config_map("a", "default", {"data": {"k": "merged"}},
                                              _content_type="application/merge-patch+json")
    assert merged.data == {"k": "merged"}
    patched = core.patch_namespaced_config_map("a", "default", [{"op": "add", "path": "/data/j", "value": "p"}])
    assert patched.data == {"k": "merged", "j": "p"}

    created.data = {"stale": "yes"}
    with pytest.raises(kubernetes.client.ApiException) as error:
        core.replace_namespaced_config_map("a", "default", created)
    assert error.value.status == 409

    core.delete_namespaced_config_map("b", "default")
    with pytest.raises(kubernetes.client.ApiException) as error:
        core.read_namespaced_config_map("b", "default")
    assert error.value.status == 404


def test_official_client_status_subresource(running: Running, official: kubernetes.client.ApiClient) -> None:
    running.emulator.install_crd(widget_crd())
    custom = kubernetes.client.CustomObjectsApi(official)
    created = custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets", widget())
    assert created["metadata"]["generation"] == 1
    with_status = custom.patch_namespaced_custom_object_status(
        "example.com", "v1", "default", "widgets", "w1", {"status": {"phase": "Ready"}, "spec": {"size": 9}})
    assert with_status["status"] == {"phase": "Ready"} and with_status["spec"]["size"] == 1
    main = custom.patch_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "w1", {"status": {"phase": "X"}, "spec": {"size": 2}})
    assert main["status"] == {"phase": "Ready"} and main["spec"]["size"] == 2
    assert main["metadata"]["generation"] == 2
    with pytest.raises(kubernetes.client.ApiException) as error:
        custom.patch_namespaced_custom_object("example.com", "v1", "default", "widgets", "w1",
                                              {"spec": {"size": 101}})
    assert error.value.status == 422
    assert "spec.size: Invalid value: 101" in error.value.body


def test_official_client_watch(running: Running, official: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(official)
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"x": "1"}},
                                     _content_type="application/merge-patch+json")
    stream = kubernetes.watch.Watch().stream(
        core.list_namespaced_config_map, "default",
        resource_version=first.metadata.resource_version, timeout_seconds=1,
    )
    seen = [(event["type"], event["object"].metadata.name) for event in stream]
    assert seen == [("ADDED", "b"), ("MODIFIED", "a")]


# --- pykube-ng ---------------------------------------------------------------------------------------

def test_pykube(running: Running) -> None:
    api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(running.kubeconfig)))
    config_map = pykube.ConfigMap(api, {"metadata": {"name": "a", "namespace": "default",
                                                      "labels": {"app": "web"}}, "data": {"k": "v"}})
    config_map.create()
    pykube.ConfigMap(api, {"metadata": {"name": "b", "namespace": "default", "labels": {"app": "db"}}}).create()
    fetched = pykube.ConfigMap.objects(api).filter(namespace="default").get(name="a")
    assert fetched.obj["data"] == {"k": "v"}
    selected = pykube.ConfigMap.objects(api).filter(namespace="default", selector={"app": "web"})
    assert [item.name for item in selected] == ["a"]

    fetched.obj["data"]["k"] = "updated"
    fetched.update()
    assert running.emulator.get("v1/configmaps", "default", "a")["data"] == {"k": "updated"}  # type: ignore[index]

    watch = pykube.ConfigMap.objects(api).filter(namespace="default").watch(params={"timeoutSeconds": 1})
    events = [(event.type, event.object.name) for event in watch]
    assert sorted(events) == [("ADDED", "a"), ("ADDED", "b")]

    fetched.delete()
    assert running.emulator.get("v1/configmaps", "default", "a") is None


# --- kubectl -----------------------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed (expected at /usr/bin/kubectl)")
def test_kubectl(running: Running, tmp_path: pathlib.Path) -> None:
    env = dict(os.environ, KUBECONFIG=str(running.kubeconfig), KUBECACHEDIR=str(tmp_path / "cache"))

    def kubectl(*args: str) -> str:
        done = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stderr}"
        return done.stdout

    crds = tmp_path / "crds"
    crds.mkdir()
    (crds / "widgets.yaml").write_text(yaml.safe_dump(widget_crd()))
    manifest = tmp_path / "w1.yaml"
    manifest.write_text(yaml.safe_dump(widget(size=3)))

    assert "created" in kubectl("apply", "-f", str(crds))
    assert "created" in kubectl("apply", "-f", str(manifest))
    running.emulator.patch("example.com/v1/widgets", "default", "w1", {"status": {"phase": "Ready"}},
                           subresource="status")

    table = kubectl("get", "widgets").splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE"]
    assert table[1].split() == ["w1", "3", "Ready"]
    as_yaml = yaml.safe_load(kubectl("get", "wd", "w1", "-o", "yaml"))
    assert as_yaml["spec"]["size"] == 3 and as_yaml["status"] == {"phase": "Ready"}

    kubectl("patch", "widget", "w1", "--type", "merge", "-p", '{"spec":{"size":5}}')
    kubectl("annotate", "widget", "w1", "example.com/note=hello")
    stored = running.emulator.get("example.com/v1/widgets", "default", "w1")
    assert stored is not None
    assert stored["spec"]["size"] == 5
    assert stored["metadata"]["annotations"]["example.com/note"] == "hello"

    def change_later() -> None:
        time.sleep(0.5)
        running.emulator.patch("example.com/v1/widgets", "default", "w1", {"status": {"phase": "Done"}},
                               subresource="status")

    threading.Thread(target=change_later, daemon=True).start()
    kubectl("wait", "--for=jsonpath={.status.phase}=Done", "widget/w1", "--timeout=30s")

    invalid = subprocess.run([KUBECTL, "patch", "widget", "w1", "--type", "merge", "-p", '{"spec":{"size":11}}'],
                             env=env, capture_output=True, text=True, timeout=60)
    assert invalid.returncode != 0
    assert "spec.size: Invalid value: 11" in invalid.stderr

    kubectl("delete", "-f", str(manifest))
    assert running.emulator.get("example.com/v1/widgets", "default", "w1") is None
    running.emulator.create("v1/events", {
        "metadata": {"name": "w1.1", "namespace": "default"}, "type": "Normal", "reason": "Promoted",
        "message": "green is live", "involvedObject": {"kind": "Widget", "name": "w1", "namespace": "default"},
        "lastTimestamp": "2024-01-01T00:00:00Z",
    })
    events = kubectl("get", "events").splitlines()
    assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert events[1].split()[1:] == ["Normal", "Promoted", "widget/w1", "green", "is", "live"]


# --- kopf --------------------------------------------------------------------------------------------

OPERATOR = textwrap.dedent('''
    import kopf

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        settings.posting.level = 0
        settings.persistence.finalizer = "example.com/held-by-test"

    @kopf.on.create("example.com", "v1", "widgets")
    def created(spec, patch, body, **_):
        kopf.info(body, reason="Seen", message=f"size {spec['size']}")
        patch.status["phase"] = "Ready"

    @kopf.on.delete("example.com", "v1", "widgets")
    def deleted(body, patch, **_):
        kopf.info(body, reason="Released", message="cleanup done")
''')


def peering_crd(*, cluster: bool) -> dict[str, Any]:
    """kopf's own peering CRDs (as in its docs), to prove generic CRD support carries them."""
    kind = "ClusterKopfPeering" if cluster else "KopfPeering"
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.lower()}s.kopf.dev"},
        "spec": {
            "scope": "Cluster" if cluster else "Namespaced", "group": "kopf.dev",
            "names": {"kind": kind, "plural": f"{kind.lower()}s", "singular": kind.lower()},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }}}],
        },
    }


@pytest.mark.parametrize("mode", ["standalone", "peering"])
def test_kopf_operator(running: Running, tmp_path: pathlib.Path, mode: str) -> None:
    emulator = running.emulator
    emulator.install_crd(widget_crd())
    (tmp_path / "operator.py").write_text(OPERATOR)
    log_path = tmp_path / "kopf.log"
    env = dict(os.environ, KUBECONFIG=str(running.kubeconfig))
    kopf = str(pathlib.Path(sys.executable).parent / "kopf")
    if mode == "peering":
        emulator.install_crd(peering_crd(cluster=True))
        emulator.install_crd(peering_crd(cluster=False))
        emulator.create("kopf.dev/v1/clusterkopfpeerings", {"metadata": {"name": "test-peering"}})
        flags = ["--peering=test-peering"]
    else:
        flags = ["--standalone"]
    with log_path.open("w") as log:
        process = subprocess.Popen([kopf, "run", *flags, "--all-namespaces", str(tmp_path / "operator.py")],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if mode == "peering":
            eventually(lambda: (emulator.get("kopf.dev/v1/clusterkopfpeerings", None, "test-peering") or {})
                       .get("status"), what=f"kopf announcing itself in the peering object (log: {log_path})")
        emulator.create("example.com/v1/widgets", widget(size=4))

        def ready() -> dict[str, Any] | None:
            obj = emulator.get("example.com/v1/widgets", "default", "w1")
            return obj if obj and (obj.get("status") or {}).get("phase") == "Ready" else None

        obj = eventually(ready, what=f"status.phase=Ready by kopf (log: {log_path})")
        assert "example.com/held-by-test" in obj["metadata"]["finalizers"]

        emulator.delete("example.com/v1/widgets", "default", "w1")
        eventually(lambda: emulator.get("example.com/v1/widgets", "default", "w1") is None,
                   what=f"kopf releasing the finalizer (log: {log_path})")

        def reasons() -> set[str] | None:
            found = {event["reason"] for event in emulator.list("v1/events", "default")}
            return found if {"Seen", "Released"} <= found else None

        eventually(reasons, what="kopf's events posted")
        assert emulator.request_counts[("watch", "example.com", "widgets")] >= 1
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

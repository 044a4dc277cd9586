"""The async client against the strict API emulator over HTTP: CRUD, errors, selectors, discovery."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
import yaml

from bluegreen.kube import client as kubeclient
from bluegreen.kube import config, remote
from bluegreen.sim.kube import KubeEmulator

pytestmark = pytest.mark.integration

CONFIGMAPS = kubeclient.Resource("", "v1", "configmaps")
SECRETS = kubeclient.Resource("", "v1", "secrets")
NAMESPACES = kubeclient.Resource("", "v1", "namespaces", namespaced=False)
DEPLOYMENTS = kubeclient.Resource("apps", "v1", "deployments")


@pytest.fixture
async def emulator() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="test", kubernetes_version="1.31", token="right-token")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def client(emulator: KubeEmulator) -> AsyncIterator[kubeclient.KubeClient]:
    async with kubeclient.KubeClient.from_kubeconfig(emulator.kubeconfig()) as kube:
        yield kube


def configmap(name: str, **labels: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
            "data": {"key": "one"}}


async def test_create_get_list_patch_replace_delete(client: kubeclient.KubeClient) -> None:
    created = await client.create(CONFIGMAPS, configmap("a", tier="web"), namespace="default")
    await client.create(CONFIGMAPS, configmap("b", tier="db"), namespace="default")

    fetched = await client.get(CONFIGMAPS, namespace="default", name="a")
    web = await client.list(CONFIGMAPS, namespace="default", label_selector={"tier": "web"})
    patched = await client.patch(CONFIGMAPS, namespace="default", name="a", body={"data": {"key": "two"}})
    replaced = await client.replace(CONFIGMAPS, {**patched, "data": {"key": "three"}})
    deleted = await client.delete(CONFIGMAPS, namespace="default", name="a")

    assert created["metadata"]["uid"] and fetched is not None and fetched["data"] == {"key": "one"}
    assert [item["metadata"]["name"] for item in web] == ["a"]
    assert {(item["apiVersion"], item["kind"]) for item in web} == {("v1", "ConfigMap")}
    assert patched["data"] == {"key": "two"} and replaced["data"] == {"key": "three"}
    assert deleted is True
    assert await client.get(CONFIGMAPS, namespace="default", name="a") is None
    assert await client.delete(CONFIGMAPS, namespace="default", name="a") is False


async def test_create_of_an_existing_object_is_a_conflict_with_the_api_message(
    client: kubeclient.KubeClient,
) -> None:
    await client.create(CONFIGMAPS, configmap("a"), namespace="default")

    with pytest.raises(kubeclient.ConflictError) as caught:
        await client.create(CONFIGMAPS, configmap("a"), namespace="default")

    assert caught.value.status == 409 and caught.value.reason == "AlreadyExists"
    assert '"a" already exists' in caught.value.message


async def test_a_stale_replace_is_a_conflict(client: kubeclient.KubeClient) -> None:
    first = await client.create(CONFIGMAPS, configmap("a"), namespace="default")
    await client.patch(CONFIGMAPS, namespace="default", name="a", body={"data": {"key": "newer"}})

    with pytest.raises(kubeclient.ConflictError):
        await client.replace(CONFIGMAPS, {**first, "data": {"key": "stale"}})


async def test_json_and_strategic_patches(client: kubeclient.KubeClient) -> None:
    await client.create(DEPLOYMENTS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]}}},
    }, namespace="default")

    await client.patch(DEPLOYMENTS, namespace="default", name="web", patch_type="json",
                       body=[{"op": "replace", "path": "/spec/replicas", "value": 3}])
    patched = await client.patch(DEPLOYMENTS, namespace="default", name="web", patch_type="strategic",
                                 body={"spec": {"template": {"spec": {"containers": [
                                     {"name": "web", "image": "nginx:2"}]}}}})

    containers = {c["name"]: c["image"] for c in patched["spec"]["template"]["spec"]["containers"]}
    assert patched["spec"]["replicas"] == 3
    assert containers == {"web": "nginx:2", "side": "busybox"}, "strategic merge keeps the other container"


async def test_status_subresource_patch(client: kubeclient.KubeClient) -> None:
    await client.create(DEPLOYMENTS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
    }, namespace="default")

    patched = await client.patch(DEPLOYMENTS, namespace="default", name="web", subresource="status",
                                 body={"status": {"readyReplicas": 1}})

    assert patched["status"]["readyReplicas"] == 1


async def test_a_missing_namespace_is_not_found_with_the_api_message(client: kubeclient.KubeClient) -> None:
    with pytest.raises(kubeclient.NotFoundError, match='namespaces "nowhere" not found'):
        await client.create(CONFIGMAPS, configmap("a"), namespace="nowhere")


async def test_cluster_scoped_resources_and_discovery(client: kubeclient.KubeClient) -> None:
    await client.create(NAMESPACES, {"metadata": {"name": "fleet"}})

    names = [item["metadata"]["name"] for item in await client.list(NAMESPACES)]
    core = await client.resources("v1")
    apps = await client.resources("apps/v1")
    absent = await client.resources("cluster.x-k8s.io/v1beta2")
    version = await client.server_version()

    assert "fleet" in names
    assert core is not None and any(entry["name"] == "configmaps" for entry in core)
    assert apps is not None and any(entry["name"] == "deployments" for entry in apps)
    assert absent is None
    assert version["gitVersion"] == "v1.31.0"


async def test_a_wrong_token_is_unauthorized(emulator: KubeEmulator) -> None:
    document = emulator.kubeconfig()
    document["users"][0]["user"]["token"] = "wrong-token"
    async with kubeclient.KubeClient.from_kubeconfig(document) as client:
        with pytest.raises(kubeclient.ApiError) as caught:
            await client.get(CONFIGMAPS, namespace="default", name="a")

    assert caught.value.status == 401
    assert "wrong-token" not in str(caught.value)


async def test_a_stopped_server_is_unreachable(emulator: KubeEmulator) -> None:
    client = kubeclient.KubeClient.from_kubeconfig(emulator.kubeconfig(), timeout=5)
    await emulator.stop()
    try:
        with pytest.raises(kubeclient.UnreachableError):
            await client.server_version()
    finally:
        await client.close()
        await emulator.start()  # the fixture stops it again


async def _kubeconfig_secret(client: kubeclient.KubeClient, target: KubeEmulator, *, key: str) -> dict[str, object]:
    value = base64.b64encode(yaml.safe_dump(target.kubeconfig()).encode()).decode()
    return await client.create(SECRETS, {"metadata": {"name": "target-kubeconfig"}, "data": {key: value}},
                               namespace="default")


@pytest.mark.parametrize("key", ["value", "value.yaml"])
async def test_remote_clients_read_kubeconfig_secrets_like_flux(client: kubeclient.KubeClient, key: str) -> None:
    target = KubeEmulator(name="target", kubernetes_version="1.29", token="target-token")
    await target.start()
    remotes = remote.RemoteClients(client)
    try:
        await _kubeconfig_secret(client, target, key=key)

        remote_client = await remotes.client(namespace="default", name="target-kubeconfig", key="kubeconfig")
        again = await remotes.client(namespace="default", name="target-kubeconfig", key="kubeconfig")

        assert (await remote_client.server_version())["gitVersion"] == "v1.29.0"
        assert again is remote_client, "cached while the Secret is unchanged"
    finally:
        await remotes.close()
        await target.stop()


async def test_remote_clients_follow_a_changed_secret(client: kubeclient.KubeClient) -> None:
    first = KubeEmulator(name="first", kubernetes_version="1.29")
    second = KubeEmulator(name="second", kubernetes_version="1.30")
    await first.start()
    await second.start()
    remotes = remote.RemoteClients(client)
    try:
        await _kubeconfig_secret(client, first, key="value")
        before = await remotes.client(namespace="default", name="target-kubeconfig")
        value = base64.b64encode(yaml.safe_dump(second.kubeconfig()).encode()).decode()
        await client.patch(SECRETS, namespace="default", name="target-kubeconfig", body={"data": {"value": value}})

        after = await remotes.client(namespace="default", name="target-kubeconfig")

        assert (await before.server_version())["gitVersion"] == "v1.29.0"
        assert after is not before
        assert (await after.server_version())["gitVersion"] == "v1.30.0"
    finally:
        await remotes.close()
        await first.stop()
        await second.stop()


async def test_remote_clients_explain_a_missing_secret_and_refuse_exec(client: kubeclient.KubeClient) -> None:
    remotes = remote.RemoteClients(client)
    exec_config = {
        "current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
        "clusters": [{"name": "x", "cluster": {"server": "https://x"}}],
        "users": [{"name": "x", "user": {"exec": {"command": "aws"}}}],
    }
    await client.create(SECRETS, {"metadata": {"name": "exec-kubeconfig"}, "stringData": {
        "value": yaml.safe_dump(exec_config)}}, namespace="default")

    with pytest.raises(remote.KubeconfigSecretError, match=r"default/absent .*does not exist"):
        await remotes.client(namespace="default", name="absent")
    with pytest.raises(remote.KubeconfigSecretError, match="exec plugin"):
        await remotes.client(namespace="default", name="exec-kubeconfig")
    await remotes.close()


def test_the_emulator_kubeconfig_loads_with_its_token(emulator: KubeEmulator) -> None:
    connection = config.load_kubeconfig(emulator.kubeconfig())

    assert connection.server == emulator.url and connection.bearer_token() == "right-token"


async def test_field_manager_names_the_writer_and_server_side_apply(emulator: KubeEmulator) -> None:
    async with kubeclient.KubeClient.from_kubeconfig(emulator.kubeconfig(), field_manager="bluegreen") as kube:
        await kube.create(CONFIGMAPS, configmap("a"), namespace="default")
        await kube.patch(CONFIGMAPS, namespace="default", name="a", body={"data": {"other": "x"}})
        replaced = await kube.replace(CONFIGMAPS, dict(configmap("a"), data={"key": "two"}), namespace="default")
        applied = await kube.apply(CONFIGMAPS, dict(configmap("b"), metadata={"name": "b", "namespace": "default"}))
    async with kubeclient.KubeClient.from_kubeconfig(emulator.kubeconfig(), user_agent="other-tool/1.0") as anonymous:
        unnamed = await anonymous.patch(CONFIGMAPS, namespace="default", name="a", body={"data": {"key": "3"}})
        with pytest.raises(ValueError, match="field manager"):
            await anonymous.apply(CONFIGMAPS, configmap("c"), namespace="default")

    assert [(e["manager"], e["operation"]) for e in replaced["metadata"]["managedFields"]] == [("bluegreen", "Update")]
    assert [(e["manager"], e["operation"]) for e in applied["metadata"]["managedFields"]] == [("bluegreen", "Apply")]
    # Without a field manager, the apiserver names the User-Agent's product.
    assert [e["manager"] for e in unnamed["metadata"]["managedFields"]] == ["bluegreen", "other-tool"]

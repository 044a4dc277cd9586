"""The client's transport against a small local HTTPS server: TLS, credentials, error mapping, paging."""

from __future__ import annotations

import base64
import json
import pathlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import pytest

from bluegreen.kube import client as kubeclient
from bluegreen.kube import config

WIDGETS = kubeclient.Resource("example.io", "v1", "widgets")
TOKEN = "token-never-shown"


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca",
             cwd=directory)
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
        (directory / f"{name}.ext").write_text(extension + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)
    return directory


def _b64(path: pathlib.Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}
    return aiohttp.web.json_response(body, status=code)


def _app(recorder: Recorder) -> aiohttp.web.Application:
    async def handle(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(item[0] for item in peer["subject"]) if peer else {}
        body = await request.text()
        recorder.requests.append({
            "method": request.method, "path": request.path, "query": dict(request.query),
            "authorization": request.headers.get("Authorization"), "content_type": request.content_type,
            "body": json.loads(body) if body else None, "client_cn": subject.get("commonName"),
        })
        path = request.path
        if path == "/version":
            return aiohttp.web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0"})
        if path.endswith("/widgets") and request.method == "GET":
            if request.query.get("continue") == "page2":
                return aiohttp.web.json_response({"kind": "WidgetList", "metadata": {},
                                                  "items": [{"metadata": {"name": "c"}}]})
            return aiohttp.web.json_response({"kind": "WidgetList", "metadata": {"continue": "page2"},
                                              "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]})
        if "/widgets/exists" in path:
            if request.method == "POST":
                return _status(409, "AlreadyExists", 'widgets.example.io "exists" already exists')
            return aiohttp.web.json_response({"metadata": {"name": "exists"}})
        if path.endswith("/widgets") and request.method == "POST":
            return _status(409, "AlreadyExists", 'widgets.example.io "exists" already exists')
        if path.endswith("/widgets/invalid"):
            return _status(422, "Invalid", 'Widget.example.io "invalid" is invalid: spec.size: Required value')
        if path.endswith("/widgets/broken"):
            return aiohttp.web.Response(status=500, text="upstream exploded")
        return _status(404, "NotFound", f"{path} not found")

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
async def server(pki: pathlib.Path) -> AsyncIterator[tuple[str, Recorder]]:
    recorder = Recorder()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
    context.verify_mode = ssl.CERT_OPTIONAL
    runner = aiohttp.web.AppRunner(_app(recorder))
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}", recorder
    await runner.cleanup()


def _kubeconfig(server: str, *, cluster: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return {
        "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
    }


async def test_a_client_certificate_and_the_cluster_ca_are_used(
    server: tuple[str, Recorder], pki: pathlib.Path
) -> None:
    url, recorder = server
    document = _kubeconfig(url, cluster={"certificate-authority-data": _b64(pki / "ca.crt")},
                           user={"client-certificate-data": _b64(pki / "client.crt"),
                                 "client-key-data": _b64(pki / "client.key")})
    async with kubeclient.KubeClient.from_kubeconfig(document) as client:
        version = await client.server_version()

    assert version["gitVersion"] == "v1.31.0"
    assert recorder.requests[-1]["client_cn"] == "client"


async def test_a_server_outside_the_trusted_cas_is_unreachable(server: tuple[str, Recorder]) -> None:
    url, recorder = server
    async with kubeclient.KubeClient.from_kubeconfig(_kubeconfig(url, cluster={}, user={"token": TOKEN})) as client:
        with pytest.raises(kubeclient.UnreachableError) as caught:
            await client.server_version()

    assert TOKEN not in str(caught.value)
    assert recorder.requests == []


async def test_insecure_skip_tls_verify_connects_and_sends_the_token(server: tuple[str, Recorder]) -> None:
    url, recorder = server
    document = _kubeconfig(url, cluster={"insecure-skip-tls-verify": True}, user={"token": TOKEN})
    async with kubeclient.KubeClient.from_kubeconfig(document) as client:
        await client.server_version()

    assert recorder.requests[-1]["authorization"] == f"Bearer {TOKEN}"


@pytest.fixture
async def client(server: tuple[str, Recorder], pki: pathlib.Path) -> AsyncIterator[kubeclient.KubeClient]:
    url, _ = server
    connection = config.load_kubeconfig(
        _kubeconfig(url, cluster={"certificate-authority-data": _b64(pki / "ca.crt")}, user={"token": TOKEN})
    )
    async with kubeclient.KubeClient(connection) as kube:
        yield kube


async def test_errors_carry_the_api_reason_and_message(client: kubeclient.KubeClient) -> None:
    with pytest.raises(kubeclient.ConflictError) as conflict:
        await client.create(WIDGETS, {"metadata": {"name": "exists"}}, namespace="ns")
    with pytest.raises(kubeclient.InvalidError) as invalid:
        await client.patch(WIDGETS, namespace="ns", name="invalid", body={"spec": {}})
    with pytest.raises(kubeclient.ApiError) as broken:
        await client.replace(WIDGETS, {"metadata": {"name": "broken", "namespace": "ns"}})

    assert (conflict.value.status, conflict.value.reason) == (409, "AlreadyExists")
    assert conflict.value.message == 'widgets.example.io "exists" already exists'
    assert "spec.size: Required value" in str(invalid.value)
    assert (broken.value.status, broken.value.message) == (500, "upstream exploded")


async def test_not_found_is_an_answer_for_get_and_delete(client: kubeclient.KubeClient) -> None:
    assert await client.get(WIDGETS, namespace="ns", name="absent") is None
    assert await client.delete(WIDGETS, namespace="ns", name="absent") is False
    with pytest.raises(kubeclient.NotFoundError):
        await client.patch(WIDGETS, namespace="ns", name="absent", body={})


async def test_list_follows_continue_tokens_and_fills_in_kind(
    client: kubeclient.KubeClient, server: tuple[str, Recorder]
) -> None:
    _, recorder = server

    items = await client.list(WIDGETS, namespace="ns", label_selector={"tier": "web", "app": "shop"})

    assert [item["metadata"]["name"] for item in items] == ["a", "b", "c"]
    assert {(item["apiVersion"], item["kind"]) for item in items} == {("example.io/v1", "Widget")}
    assert recorder.requests[0]["query"] == {"labelSelector": "app=shop,tier=web"}
    assert recorder.requests[1]["query"]["continue"] == "page2"


@pytest.mark.parametrize(("patch_type", "content_type"), [
    ("merge", "application/merge-patch+json"),
    ("json", "application/json-patch+json"),
    ("strategic", "application/strategic-merge-patch+json"),
])
async def test_patch_types_are_sent_with_their_content_types(
    client: kubeclient.KubeClient, server: tuple[str, Recorder], patch_type: kubeclient.PatchType, content_type: str
) -> None:
    _, recorder = server

    await client.patch(WIDGETS, namespace="ns", name="exists", body={"spec": {}}, patch_type=patch_type,
                       subresource="status")

    assert recorder.requests[-1]["content_type"] == content_type
    assert recorder.requests[-1]["path"] == "/apis/example.io/v1/namespaces/ns/widgets/exists/status"


async def test_a_closed_port_is_unreachable() -> None:
    connection = config.Connection(server="http://127.0.0.1:9", token=TOKEN)
    async with kubeclient.KubeClient(connection, timeout=5) as client:
        with pytest.raises(kubeclient.UnreachableError) as caught:
            await client.get(WIDGETS, namespace="ns", name="x")

    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(("resource", "kwargs", "path"), [
    (kubeclient.Resource("", "v1", "secrets"), {"namespace": "a", "name": "b"}, "/api/v1/namespaces/a/secrets/b"),
    (kubeclient.Resource("", "v1", "namespaces", namespaced=False), {"name": "a"}, "/api/v1/namespaces/a"),
    (WIDGETS, {}, "/apis/example.io/v1/widgets"),
    (WIDGETS, {"namespace": "a"}, "/apis/example.io/v1/namespaces/a/widgets"),
    (WIDGETS, {"namespace": "a", "name": "b/c", "subresource": "status"},
     "/apis/example.io/v1/namespaces/a/widgets/b%2Fc/status"),
])
def test_resource_paths(resource: kubeclient.Resource, kwargs: dict[str, str], path: str) -> None:
    assert resource.path(**kwargs) == path


def test_a_namespaced_object_needs_a_namespace() -> None:
    with pytest.raises(ValueError, match="namespaced"):
        WIDGETS.path(name="x")

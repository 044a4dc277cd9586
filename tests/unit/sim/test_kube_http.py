"""Raw HTTP semantics of the Kubernetes API emulator, as any client sees them on the wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kmock
import pytest

from bluegreen.sim.kube import KubeEmulator
from tests.unit.sim.test_kube_store import widget, widget_crd

CMS = "/api/v1/namespaces/default/configmaps"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
async def emulator() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="test", kubernetes_version="1.29")
    emulator.install_crd(widget_crd())
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def http(emulator: KubeEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=emulator.url) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body)
    async with http.request(method, path, data=data, headers=headers or {"Content-Type": "application/json"}) as r:
        return r.status, await r.json(content_type=None)


async def watch_events(http: aiohttp.ClientSession, path: str, *, count: int | None = None,
                       headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Read events until ``count`` arrived or the server ends the stream."""
    events: list[dict[str, Any]] = []
    async with http.get(path, headers=headers) as response:
        assert response.status == 200
        async for line in response.content:
            if line.strip():
                events.append(json.loads(line))
            if count is not None and len(events) >= count:
                break
    return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(event["type"], event["object"]["metadata"].get("name", "")) for event in events]


async def test_create_answers_201_with_the_stored_object(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "POST", CMS, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert status == 201
    assert body["metadata"]["uid"] and body["metadata"]["resourceVersion"]
    status, body = await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    assert status == 409
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "AlreadyExists", 409)


async def test_errors_are_status_objects(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", f"{CMS}/missing")
    assert status == 404
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'configmaps "missing" not found', "reason": "NotFound", "code": 404,
                    "details": {"name": "missing", "group": "", "kind": "configmaps"}}
    status, body = await call(http, "GET", "/apis/nothing.io/v1/things")
    assert status == 404


async def test_list_has_kind_version_and_selectors(http: aiohttp.ClientSession) -> None:
    for name, labels in [("a", {"app": "web"}), ("b", {"app": "db"})]:
        await call(http, "POST", CMS, {"metadata": {"name": name, "labels": labels}})
    status, body = await call(http, "GET", f"{CMS}?labelSelector=app%20in%20(web)")
    assert status == 200
    assert body["kind"] == "ConfigMapList" and body["apiVersion"] == "v1"
    assert int(body["metadata"]["resourceVersion"]) >= 2
    assert [item["metadata"]["name"] for item in body["items"]] == ["a"]
    status, body = await call(http, "GET", "/api/v1/configmaps?fieldSelector=metadata.name%3Db")
    assert [item["metadata"]["name"] for item in body["items"]] == ["b"]
    status, body = await call(http, "GET", "/api/v1/configmaps?fieldSelector=metadata.namespace!%3Ddefault")
    assert body["items"] == []
    status, body = await call(http, "GET", "/api/v1/configmaps?fieldSelector=spec.bogus%3Dx")
    assert status == 400


async def test_list_pagination(http: aiohttp.ClientSession) -> None:
    for index in range(5):
        await call(http, "POST", CMS, {"metadata": {"name": f"cm{index}"}})
    names: list[str] = []
    path = f"{CMS}?limit=2"
    while True:
        _, body = await call(http, "GET", path)
        names.extend(item["metadata"]["name"] for item in body["items"])
        if not body["metadata"].get("continue"):
            break
        path = f"{CMS}?limit=2&continue={body['metadata']['continue']}"
    assert names == [f"cm{index}" for index in range(5)]


@pytest.mark.parametrize("flag", ["true", "True", "1"])
async def test_watch_flag_spellings(http: aiohttp.ClientSession, flag: str) -> None:
    await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    events = await watch_events(http, f"{CMS}?watch={flag}&timeoutSeconds=1", count=1)
    assert summary(events) == [("ADDED", "a")]


async def test_watch_without_version_sends_state_then_live_events(
        emulator: KubeEmulator, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CMS, {"metadata": {"name": "before"}})

    async def change_soon() -> None:
        for _ in range(1000):  # until the HTTP watch has registered
            if emulator.store._collections[("", "configmaps")].watchers:
                break
            await asyncio.sleep(0.01)
        emulator.create("v1/configmaps", {"metadata": {"name": "after"}})
        emulator.patch("v1/configmaps", "default", "before", {"data": {"k": "v"}})

    changer = asyncio.create_task(change_soon())
    events = await watch_events(http, f"{CMS}?watch=true", count=3)
    await changer
    assert summary(events) == [("ADDED", "before"), ("ADDED", "after"), ("MODIFIED", "before")]


async def test_watch_resumes_from_a_resource_version(http: aiohttp.ClientSession) -> None:
    _, first = await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    await call(http, "POST", CMS, {"metadata": {"name": "b"}})
    await call(http, "PATCH", f"{CMS}/a", {"data": {"x": "1"}}, MERGE)
    await call(http, "DELETE", f"{CMS}/b")
    rv = first["metadata"]["resourceVersion"]
    events = await watch_events(http, f"{CMS}?watch=true&resourceVersion={rv}&timeoutSeconds=1")
    assert summary(events) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]


async def test_watch_from_a_too_old_version_is_410(emulator: KubeEmulator, http: aiohttp.ClientSession) -> None:
    emulator.store.history_limit = 2
    _, first = await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    for value in range(3):
        await call(http, "PATCH", f"{CMS}/a", {"data": {"x": str(value)}}, MERGE)
    rv = first["metadata"]["resourceVersion"]
    events = await watch_events(http, f"{CMS}?watch=true&resourceVersion={rv}")
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")


async def test_watch_selector_transitions(emulator: KubeEmulator, http: aiohttp.ClientSession) -> None:
    _, created = await call(http, "POST", CMS, {"metadata": {"name": "a", "labels": {"app": "web"}}})
    rv = created["metadata"]["resourceVersion"]
    await call(http, "PATCH", f"{CMS}/a", {"metadata": {"labels": {"app": "db"}}}, MERGE)
    await call(http, "PATCH", f"{CMS}/a", {"data": {"ignored": "while not matching"}}, MERGE)
    await call(http, "PATCH", f"{CMS}/a", {"metadata": {"labels": {"app": "web"}}}, MERGE)
    events = await watch_events(http, f"{CMS}?watch=1&labelSelector=app%3Dweb&resourceVersion={rv}&timeoutSeconds=1")
    assert summary(events) == [("DELETED", "a"), ("ADDED", "a")]


async def test_watch_bookmarks(emulator: KubeEmulator, http: aiohttp.ClientSession) -> None:
    emulator.bookmark_interval = 0.05
    events = await watch_events(http, f"{CMS}?watch=true&allowWatchBookmarks=true", count=1)
    assert events[0]["type"] == "BOOKMARK"
    assert events[0]["object"]["kind"] == "ConfigMap"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= 1


async def test_watch_of_a_single_object(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    await call(http, "POST", CMS, {"metadata": {"name": "b"}})
    events = await watch_events(http, f"{CMS}?watch=true&fieldSelector=metadata.name%3Db&timeoutSeconds=1")
    assert summary(events) == [("ADDED", "b")]
    events = await watch_events(http, "/api/v1/watch/namespaces/default/configmaps/a?timeoutSeconds=1")
    assert summary(events) == [("ADDED", "a")]


async def test_status_subresource_over_http(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", WIDGETS, widget())
    status, body = await call(http, "PATCH", f"{WIDGETS}/w1/status", {"status": {"phase": "Ready"}}, MERGE)
    assert status == 200 and body["status"] == {"phase": "Ready"}
    body["spec"]["size"] = 5
    body["status"] = {"phase": "Replaced"}
    status, replaced = await call(http, "PUT", f"{WIDGETS}/w1/status", body)
    assert status == 200
    assert replaced["status"] == {"phase": "Replaced"} and replaced["spec"]["size"] == 1
    replaced["spec"]["size"] = 5
    replaced["status"] = {"phase": "Ignored"}
    status, main = await call(http, "PUT", f"{WIDGETS}/w1", replaced)
    assert status == 200
    assert main["spec"]["size"] == 5 and main["status"] == {"phase": "Replaced"}
    assert main["metadata"]["generation"] == 2


async def test_put_and_patch_with_a_stale_version_conflict(http: aiohttp.ClientSession) -> None:
    _, created = await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    await call(http, "PATCH", f"{CMS}/a", {"data": {"k": "1"}}, MERGE)
    status, body = await call(http, "PUT", f"{CMS}/a", created)
    assert (status, body["reason"], body["code"]) == (409, "Conflict", 409)
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "data": {"k": "2"}}
    status, body = await call(http, "PATCH", f"{CMS}/a", stale, MERGE)
    assert status == 409
    status, body = await call(http, "PATCH", f"{CMS}/a", [
        {"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
        {"op": "add", "path": "/data/k", "value": "3"},
    ], JSON_PATCH)
    assert status == 422
    status, body = await call(http, "PATCH", f"{CMS}/a", {"data": {}}, {"Content-Type": "text/plain"})
    assert status == 415


async def test_delete_returns_the_object(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    await call(http, "POST", CMS, {"metadata": {"name": "held", "finalizers": ["x/y"]}})
    status, body = await call(http, "DELETE", f"{CMS}/a")
    assert status == 200 and body["metadata"]["name"] == "a"
    status, body = await call(http, "DELETE", f"{CMS}/held", {"propagationPolicy": "Background"})
    assert status == 200 and body["metadata"]["deletionTimestamp"]
    status, _ = await call(http, "GET", f"{CMS}/held")
    assert status == 200
    status, _ = await call(http, "GET", f"{CMS}/a")
    assert status == 404


@pytest.mark.parametrize("suffix", ["", "/"])
async def test_discovery(http: aiohttp.ClientSession, suffix: str) -> None:
    _, api = await call(http, "GET", f"/api{suffix}")
    assert api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    _, core = await call(http, "GET", f"/api/v1{suffix}")
    assert core["groupVersion"] == "v1"
    by_name = {item["name"]: item for item in core["resources"]}
    assert by_name["namespaces"]["namespaced"] is False
    assert by_name["pods"]["shortNames"] == ["po"]
    assert by_name["pods"]["categories"] == ["all"]
    assert "pods/status" in by_name
    assert {"get", "list", "watch", "create", "update", "patch", "delete"} <= set(by_name["configmaps"]["verbs"])
    _, groups = await call(http, "GET", f"/apis{suffix}")
    names = [group["name"] for group in groups["groups"]]
    assert {"apps", "batch", "coordination.k8s.io", "policy", "events.k8s.io", "apiextensions.k8s.io",
            "example.com"} <= set(names)
    _, group = await call(http, "GET", f"/apis/example.com{suffix}")
    assert group["kind"] == "APIGroup" and group["preferredVersion"]["groupVersion"] == "example.com/v1"
    _, resources = await call(http, "GET", f"/apis/example.com/v1{suffix}")
    widgets = {item["name"]: item for item in resources["resources"]}
    assert widgets["widgets"]["kind"] == "Widget" and widgets["widgets"]["shortNames"] == ["wd"]
    assert widgets["widgets/status"]["verbs"] == ["get", "patch", "update"]
    _, version = await call(http, "GET", f"/version{suffix}")
    assert (version["major"], version["minor"], version["gitVersion"]) == ("1", "29", "v1.29.0")


async def test_table_printing_uses_printer_columns(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", WIDGETS, widget(size=4))
    await call(http, "PATCH", f"{WIDGETS}/w1/status", {"status": {"phase": "Ready"}}, MERGE)
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    async with http.get(WIDGETS, headers=accept) as response:
        table = await response.json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [column["name"] for column in table["columnDefinitions"]] == ["Name", "Size", "Phase"]
    assert table["rows"][0]["cells"] == ["w1", 4, "Ready"]
    assert table["rows"][0]["object"]["metadata"]["name"] == "w1"


async def test_token_authentication() -> None:
    emulator = KubeEmulator(name="secure", token="s3cret")
    await emulator.start()
    try:
        async with aiohttp.ClientSession(base_url=emulator.url) as http:
            async with http.get("/api/v1/namespaces") as response:
                assert response.status == 401
            async with http.get("/api/v1/namespaces", headers={"Authorization": "Bearer s3cret"}) as response:
                assert response.status == 200
        kubeconfig = emulator.kubeconfig(user="ops")
        assert kubeconfig["users"] == [{"name": "ops", "user": {"token": "s3cret"}}]
        assert kubeconfig["clusters"][0]["cluster"]["server"] == emulator.url
        assert kubeconfig["current-context"] == "secure"
    finally:
        await emulator.stop()


async def test_request_counts(emulator: KubeEmulator, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", WIDGETS, widget())
    await call(http, "PATCH", f"{WIDGETS}/w1/status", {"status": {}}, MERGE)
    await call(http, "GET", WIDGETS)
    await call(http, "GET", WIDGETS)
    assert emulator.request_counts[("create", "example.com", "widgets")] == 1
    assert emulator.request_counts[("patch", "example.com", "widgets/status")] == 1
    assert emulator.request_counts[("list", "example.com", "widgets")] == 2


async def test_kmock_reactions_inject_faults(emulator: KubeEmulator, http: aiohttp.ClientSession) -> None:
    emulator.faults["get", kmock.resource("", "v1", "configmaps")] << 503
    await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    async with http.get(f"{CMS}/a") as response:
        assert response.status == 503
    status, _ = await call(http, "GET", "/api/v1/namespaces/default")
    assert status == 200


async def test_in_process_changes_reach_http_watchers(
        emulator: KubeEmulator, http: aiohttp.ClientSession) -> None:
    emulator.create("v1/configmaps", {"metadata": {"name": "a"}})
    rv = emulator.get("v1/configmaps", "default", "a")["metadata"]["resourceVersion"]  # type: ignore[index]
    emulator.patch("v1/configmaps", "default", "a", {"data": {"k": "v"}})
    events = await watch_events(http, f"{CMS}?watch=true&resourceVersion={rv}", count=1)
    assert events[0]["type"] == "MODIFIED" and events[0]["object"]["data"] == {"k": "v"}


async def test_scale_subresource(emulator: KubeEmulator, http: aiohttp.ClientSession) -> None:
    deployments = "/apis/apps/v1/namespaces/default/deployments"
    await call(http, "POST", deployments, {"metadata": {"name": "web"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {}}})
    status, scale = await call(http, "GET", f"{deployments}/web/scale")
    assert status == 200
    assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
    assert scale["spec"] == {"replicas": 2} and scale["status"]["selector"] == "app=web"
    status, scale = await call(http, "PATCH", f"{deployments}/web/scale", {"spec": {"replicas": 0}}, MERGE)
    assert status == 200 and scale["spec"]["replicas"] == 0
    stored = emulator.get("apps/v1/deployments", "default", "web")
    assert stored is not None and stored["spec"]["replicas"] == 0 and stored["metadata"]["generation"] == 2
    status, _ = await call(http, "PATCH", f"{deployments}/web/scale", {"spec": {"replicas": -1}}, MERGE)
    assert status == 422
    status, _ = await call(http, "GET", f"{CMS}/x/scale")
    assert status == 404
    _, resources = await call(http, "GET", "/apis/apps/v1")
    assert "deployments/scale" in {item["name"] for item in resources["resources"]}


async def test_delete_collection_by_selector(emulator: KubeEmulator, http: aiohttp.ClientSession) -> None:
    for name, labels in [("a", {"app": "web"}), ("b", {"app": "web"}), ("c", {"app": "db"})]:
        await call(http, "POST", CMS, {"metadata": {"name": name, "labels": labels}})
    status, body = await call(http, "DELETE", f"{CMS}?labelSelector=app%3Dweb")
    assert status == 200
    assert sorted(item["metadata"]["name"] for item in body["items"]) == ["a", "b"]
    assert [obj["metadata"]["name"] for obj in emulator.list("v1/configmaps", "default")] == ["c"]


async def test_watch_list_initial_events_end_with_a_bookmark(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CMS, {"metadata": {"name": "a"}})
    events = await watch_events(
        http, f"{CMS}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
              "&resourceVersionMatch=NotOlderThan", count=2)
    assert [event["type"] for event in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_emulators_in_one_process_are_independent() -> None:
    first, second = KubeEmulator(name="blue", kubernetes_version="1.30"), KubeEmulator(name="green",
                                                                                       kubernetes_version="1.31")
    await first.start()
    await second.start()
    try:
        first.create("v1/configmaps", {"metadata": {"name": "only-blue"}})
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{second.url}{CMS}/only-blue") as response:
                assert response.status == 404
            async with http.get(f"{first.url}{CMS}/only-blue") as response:
                assert response.status == 200
            async with http.get(f"{second.url}/version") as response:
                assert (await response.json())["minor"] == "31"
        assert first.url != second.url
    finally:
        await first.stop()  # not in LIFO order: no process-wide state to unwind
        await second.stop()

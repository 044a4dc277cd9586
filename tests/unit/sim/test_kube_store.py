"""In-process semantics of the Kubernetes API emulator (the same store serves HTTP)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bluegreen.sim.kube import KubeApiError, KubeEmulator

CM = "v1/configmaps"
WIDGETS = "example.com/v1/widgets"


def widget_crd(**version_overrides: Any) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
        "additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        ],
        "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 0, "maximum": 10},
                        "mode": {"type": "string", "enum": ["Fast", "Slow"], "default": "Slow"},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                        "steps": {"type": "array", "maxItems": 3, "items": {
                            "type": "object",
                            "properties": {"setWeight": {"type": "integer", "minimum": 0, "maximum": 100}},
                        }},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }},
    }
    version.update(version_overrides)
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                 "versions": [version]},
    }


def widget(name: str = "w1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"size": 1, **spec}}


@pytest.fixture
def emulator() -> KubeEmulator:
    emulator = KubeEmulator(name="test")
    emulator.install_crd(widget_crd())
    return emulator


def test_create_stamps_metadata(emulator: KubeEmulator) -> None:
    created = emulator.create(CM, {"metadata": {"name": "a", "namespace": "default"}, "data": {"k": "v"}})
    meta = created["metadata"]
    assert meta["namespace"] == "default"
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert int(meta["resourceVersion"]) > 0
    assert created["kind"] == "ConfigMap" and created["apiVersion"] == "v1"


def test_resource_versions_are_monotonic_across_resources(emulator: KubeEmulator) -> None:
    first = emulator.create(CM, {"metadata": {"name": "a"}})
    second = emulator.create(WIDGETS, widget())
    third = emulator.patch(CM, "default", "a", {"data": {"x": "y"}})
    versions = [int(obj["metadata"]["resourceVersion"]) for obj in (first, second, third)]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_generate_name(emulator: KubeEmulator) -> None:
    created = emulator.create(CM, {"metadata": {"generateName": "job-", "namespace": "default"}})
    assert created["metadata"]["name"].startswith("job-")
    assert len(created["metadata"]["name"]) == len("job-") + 5


def test_duplicate_is_already_exists(emulator: KubeEmulator) -> None:
    emulator.create(CM, {"metadata": {"name": "a"}})
    with pytest.raises(KubeApiError) as info:
        emulator.create(CM, {"metadata": {"name": "a"}})
    assert (info.value.status, info.value.reason) == (409, "AlreadyExists")


def test_missing_namespace_is_not_found(emulator: KubeEmulator) -> None:
    with pytest.raises(KubeApiError) as info:
        emulator.create(CM, {"metadata": {"name": "a", "namespace": "nowhere"}})
    assert info.value.status == 404
    assert 'namespaces "nowhere" not found' in info.value.message


def test_name_is_required(emulator: KubeEmulator) -> None:
    with pytest.raises(KubeApiError) as info:
        emulator.create(CM, {"metadata": {"namespace": "default"}})
    assert info.value.status == 422


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=web", ["a", "b"]),
    ("app==web", ["a", "b"]),
    ("app!=web", ["c", "d"]),
    ("tier in (front, back)", ["a", "c"]),
    ("tier notin (front)", ["b", "c", "d"]),
    ("tier", ["a", "c"]),
    ("!tier", ["b", "d"]),
    ("app=web,tier=front", ["a"]),
])
def test_label_selectors(emulator: KubeEmulator, selector: str, expected: list[str]) -> None:
    for name, labels in [("a", {"app": "web", "tier": "front"}), ("b", {"app": "web"}),
                         ("c", {"app": "db", "tier": "back"}), ("d", {})]:
        emulator.create(CM, {"metadata": {"name": name, "labels": labels}})
    found = [obj["metadata"]["name"] for obj in emulator.list(CM, "default", label_selector=selector)]
    assert found == expected


def test_lists_follow_label_changes_deletions_and_namespaces(emulator: KubeEmulator) -> None:
    """Lists are served from indexes by namespace and label: every write must keep them true."""
    emulator.create("v1/namespaces", {"metadata": {"name": "other"}})
    for namespace in ("default", "other"):
        for name in ("b", "a", "c"):
            emulator.create(CM, {"metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}}})

    def names(namespace: str | None, selector: str | None = None) -> list[str]:
        return [f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
                for obj in emulator.list(CM, namespace, label_selector=selector)]

    assert names("default", "app=web") == ["default/a", "default/b", "default/c"], "sorted by name"
    emulator.patch(CM, "default", "b", {"metadata": {"labels": {"app": "db"}}})
    assert names("default", "app=web") == ["default/a", "default/c"]
    assert names(None, "app=db") == ["default/b"]
    assert names("default", "app in (db),app!=web") == ["default/b"]
    emulator.patch(CM, "default", "b", {"metadata": {"labels": None}})
    assert names(None, "app=db") == [] and names("default", "!app") == ["default/b"]
    emulator.delete(CM, "other", "a")
    assert names("other") == ["other/b", "other/c"]
    assert names(None, "app=web") == ["default/a", "default/c", "other/b", "other/c"]
    emulator.create(CM, {"metadata": {"name": "a", "namespace": "other", "labels": {"app": "web"}}})
    assert names("other", "app=web") == ["other/a", "other/b", "other/c"]


def test_list_is_namespaced_or_cluster_wide(emulator: KubeEmulator) -> None:
    emulator.create("v1/namespaces", {"metadata": {"name": "other"}})
    emulator.create(CM, {"metadata": {"name": "a", "namespace": "default"}})
    emulator.create(CM, {"metadata": {"name": "a", "namespace": "other"}})
    assert len(emulator.list(CM, "other")) == 1
    assert len(emulator.list(CM)) == 2


def test_status_subresource_rules(emulator: KubeEmulator) -> None:
    created = emulator.create(WIDGETS, dict(widget(), status={"phase": "Ignored"}))
    assert "status" not in created  # dropped on create when there is a status subresource

    main = emulator.patch(WIDGETS, "default", "w1", {"spec": {"size": 2}, "status": {"phase": "Nope"}})
    assert main["spec"]["size"] == 2
    assert "status" not in main
    assert main["metadata"]["generation"] == 2

    status = emulator.patch(WIDGETS, "default", "w1", {"spec": {"size": 9}, "status": {"phase": "Ready"}},
                            subresource="status")
    assert status["status"] == {"phase": "Ready"}
    assert status["spec"]["size"] == 2
    assert status["metadata"]["generation"] == 2

    labelled = emulator.patch(WIDGETS, "default", "w1", {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 2


def test_generation_counts_all_but_metadata_without_status_subresource() -> None:
    emulator = KubeEmulator(name="test")
    emulator.add_resource(group="example.com", version="v1", plural="things", kind="Thing",
                          status_subresource=False)
    emulator.create("example.com/v1/things", {"metadata": {"name": "t"}, "spec": {}})
    patched = emulator.patch("example.com/v1/things", "default", "t", {"status": {"phase": "x"}})
    assert patched["status"] == {"phase": "x"}
    assert patched["metadata"]["generation"] == 2
    with pytest.raises(KubeApiError) as info:
        emulator.patch("example.com/v1/things", "default", "t", {"status": {}}, subresource="status")
    assert info.value.status == 404


def test_noop_patch_keeps_the_resource_version(emulator: KubeEmulator) -> None:
    created = emulator.create(CM, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    patched = emulator.patch(CM, "default", "a", {"data": {"k": "v"}})
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_stale_resource_version_conflicts(emulator: KubeEmulator) -> None:
    created = emulator.create(CM, {"metadata": {"name": "a"}})
    emulator.patch(CM, "default", "a", {"data": {"k": "1"}})
    stale = created["metadata"]["resourceVersion"]
    with pytest.raises(KubeApiError) as info:
        emulator.patch(CM, "default", "a", {"metadata": {"resourceVersion": stale}, "data": {"k": "2"}})
    assert (info.value.status, info.value.reason) == (409, "Conflict")
    assert "the object has been modified" in info.value.message
    assert emulator.get(CM, "default", "a")["data"] == {"k": "1"}  # type: ignore[index]


def test_update_replaces_and_checks_resource_version(emulator: KubeEmulator) -> None:
    info = emulator.store.resolve_path(CM)
    created = emulator.create(CM, {"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}})
    body = {"metadata": {"name": "a", "resourceVersion": created["metadata"]["resourceVersion"]},
            "data": {"new": "v"}}
    replaced = emulator.store.update(info, "default", "a", body)
    assert replaced["data"] == {"new": "v"}
    assert "labels" not in replaced["metadata"]
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(KubeApiError) as error:
        emulator.store.update(info, "default", "a", body)  # the same, now stale, version
    assert error.value.status == 409


def test_json_patch_and_failed_test_is_422(emulator: KubeEmulator) -> None:
    info = emulator.store.resolve_path(CM)
    created = emulator.create(CM, {"metadata": {"name": "a"}, "data": {"a": "1", "b": "2"}})
    rv = created["metadata"]["resourceVersion"]
    patched = emulator.store.patch(info, "default", "a", [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/data/c", "value": "3"},
        {"op": "remove", "path": "/data/a"},
        {"op": "replace", "path": "/data/b", "value": "20"},
        {"op": "copy", "from": "/data/c", "path": "/data/d"},
        {"op": "move", "from": "/data/d", "path": "/data/e"},
        {"op": "add", "path": "/metadata/finalizers", "value": []},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "x/y"},
    ], patch_type="application/json-patch+json")
    assert patched["data"] == {"b": "20", "c": "3", "e": "3"}
    assert patched["metadata"]["finalizers"] == ["x/y"]
    with pytest.raises(KubeApiError) as error:
        emulator.store.patch(info, "default", "a", [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "remove", "path": "/metadata/finalizers"},
        ], patch_type="application/json-patch+json")
    assert error.value.status == 422
    assert emulator.get(CM, "default", "a")["metadata"]["finalizers"] == ["x/y"]  # type: ignore[index]


def test_strategic_merge_patch_for_builtins_only(emulator: KubeEmulator) -> None:
    deployments = emulator.store.resolve_path("apps/v1/deployments")
    emulator.create("apps/v1/deployments", {
        "metadata": {"name": "d", "finalizers": ["a/b"]},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "side:1"},
        ]}}},
    })
    patched = emulator.store.patch(deployments, "default", "d", {
        "metadata": {"finalizers": ["c/d"]},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:2"},
            {"name": "sidecar", "$patch": "delete"},
            {"name": "new", "image": "new:1"},
        ]}}},
    }, patch_type="application/strategic-merge-patch+json")
    assert patched["metadata"]["finalizers"] == ["a/b", "c/d"]
    containers = patched["spec"]["template"]["spec"]["containers"]
    assert [(item["name"], item["image"]) for item in containers] == [("app", "app:2"), ("new", "new:1")]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}]

    emulator.create(WIDGETS, widget())
    widgets = emulator.store.resolve_path(WIDGETS)
    with pytest.raises(KubeApiError) as error:
        emulator.store.patch(widgets, "default", "w1", {"spec": {"size": 2}},
                             patch_type="application/strategic-merge-patch+json")
    assert error.value.status == 415
    with pytest.raises(KubeApiError) as error:
        emulator.store.patch(widgets, "default", "w1", {}, patch_type="application/apply-patch+yaml")
    assert error.value.status == 422  # server-side apply is served, but only with a field manager
    assert "fieldManager: Required value" in error.value.message


async def test_finalizers_hold_deletion(emulator: KubeEmulator) -> None:
    emulator.create(CM, {"metadata": {"name": "a", "finalizers": ["x/y"]}})
    events = emulator.watch(CM)
    emulator.delete(CM, "default", "a")
    held = emulator.get(CM, "default", "a")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    with pytest.raises(KubeApiError) as error:
        emulator.patch(CM, "default", "a", {"metadata": {"finalizers": ["x/y", "new/one"]}})
    assert error.value.status == 422
    emulator.patch(CM, "default", "a", {"metadata": {"finalizers": []}})
    assert emulator.get(CM, "default", "a") is None
    seen = [await anext(events) for _ in range(3)]
    assert [event_type for event_type, _ in seen] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert seen[0][1]["metadata"]["deletionTimestamp"]


def test_garbage_collection_by_owner_uid(emulator: KubeEmulator) -> None:
    owner = emulator.create(WIDGETS, widget())
    ref = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w1", "uid": owner["metadata"]["uid"]}
    emulator.create(CM, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    emulator.create(CM, {"metadata": {"name": "shared", "ownerReferences": [
        ref, {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "other-uid"}]}})
    emulator.create(CM, {"metadata": {"name": "stranger"}})
    emulator.delete(WIDGETS, "default", "w1")
    names = sorted(obj["metadata"]["name"] for obj in emulator.list(CM, "default"))
    assert names == ["shared", "stranger"]


def test_namespace_deletion_deletes_its_objects(emulator: KubeEmulator) -> None:
    emulator.create("v1/namespaces", {"metadata": {"name": "doomed"}})
    emulator.create(CM, {"metadata": {"name": "a", "namespace": "doomed"}})
    emulator.create(CM, {"metadata": {"name": "held", "namespace": "doomed", "finalizers": ["x/y"]}})
    emulator.delete("v1/namespaces", None, "doomed")
    namespace = emulator.get("v1/namespaces", None, "doomed")
    assert namespace is not None and namespace["status"]["phase"] == "Terminating"
    assert [obj["metadata"]["name"] for obj in emulator.list(CM, "doomed")] == ["held"]
    with pytest.raises(KubeApiError) as error:
        emulator.create(CM, {"metadata": {"name": "late", "namespace": "doomed"}})
    assert error.value.status == 403
    emulator.patch(CM, "doomed", "held", {"metadata": {"finalizers": None}})
    assert emulator.get("v1/namespaces", None, "doomed") is None


def test_crd_registers_and_unregisters(emulator: KubeEmulator) -> None:
    emulator.create(WIDGETS, widget())
    crd = emulator.get("apiextensions.k8s.io/v1/customresourcedefinitions", None, "widgets.example.com")
    assert crd is not None
    conditions = {item["type"]: item["status"] for item in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    emulator.delete("apiextensions.k8s.io/v1/customresourcedefinitions", None, "widgets.example.com")
    assert emulator.get("apiextensions.k8s.io/v1/customresourcedefinitions", None, "widgets.example.com") is None
    with pytest.raises(KubeApiError) as error:
        emulator.list(WIDGETS)
    assert error.value.status == 404


@pytest.mark.parametrize(("spec", "message"), [
    ({"size": 11}, "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"),
    ({"size": -1}, "spec.size: Invalid value: -1: spec.size in body should be greater than or equal to 0"),
    ({"size": "x"}, 'spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"'),
    ({"size": 1, "mode": "Warp"}, 'spec.mode: Unsupported value: "Warp": supported values: "Fast", "Slow"'),
    ({"size": 1, "name": "ABC"}, "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"),
    ({"size": 1, "name": "abcdefghij"}, "spec.name: Too long: may not be longer than 8"),
    ({"size": 1, "steps": [{"setWeight": 101}]},
     "spec.steps[0].setWeight: Invalid value: 101: spec.steps[0].setWeight in body should be less than or "
     "equal to 100"),
    ({"size": 1, "steps": [{}, {}, {}, {}]}, "spec.steps: Too many: 4: must have at most 3 items"),
    ({}, "spec.size: Required value"),
])
def test_schema_validation(emulator: KubeEmulator, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(KubeApiError) as error:
        emulator.create(WIDGETS, {"metadata": {"name": "w1"}, "spec": spec})
    assert error.value.status == 422
    assert error.value.reason == "Invalid"
    assert error.value.message == f'Widget.example.com "w1" is invalid: {message}'


def test_schema_validation_on_patch_keeps_the_object(emulator: KubeEmulator) -> None:
    emulator.create(WIDGETS, widget())
    with pytest.raises(KubeApiError) as error:
        emulator.patch(WIDGETS, "default", "w1", {"spec": {"size": 100}})
    assert error.value.status == 422
    assert emulator.get(WIDGETS, "default", "w1")["spec"]["size"] == 1  # type: ignore[index]


def test_pruning_and_defaults(emulator: KubeEmulator) -> None:
    created = emulator.create(WIDGETS, widget(unknown="x", free={"any": {"thing": 1}}))
    assert "unknown" not in created["spec"]
    assert created["spec"]["free"] == {"any": {"thing": 1}}
    assert created["spec"]["mode"] == "Slow"


async def test_in_process_watch_sees_changes_from_now_on(emulator: KubeEmulator) -> None:
    emulator.create(CM, {"metadata": {"name": "before"}})
    events = emulator.watch(CM)
    emulator.create(CM, {"metadata": {"name": "a"}})
    emulator.patch(CM, "default", "a", {"data": {"k": "v"}})
    emulator.delete(CM, "default", "a")
    seen = [await asyncio.wait_for(anext(events), 1) for _ in range(3)]
    assert [(event_type, obj["metadata"]["name"]) for event_type, obj in seen] == [
        ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_events_are_stored_and_listable(emulator: KubeEmulator) -> None:
    emulator.create("v1/events", {"metadata": {"name": "e1"}, "reason": "Created", "message": "hello",
                                  "involvedObject": {"kind": "Widget", "name": "w1", "namespace": "default"}})
    events = emulator.list("v1/events", "default")
    assert [event["reason"] for event in events] == ["Created"]


def test_orphan_propagation_keeps_dependents(emulator: KubeEmulator) -> None:
    owner = emulator.create(WIDGETS, widget())
    ref = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w1", "uid": owner["metadata"]["uid"]}
    emulator.create(CM, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    emulator.store.delete(emulator.store.resolve_path(WIDGETS), "default", "w1", propagation="Orphan")
    child = emulator.get(CM, "default", "child")
    assert child is not None and "ownerReferences" not in child["metadata"]


def test_crd_scale_subresource(emulator: KubeEmulator) -> None:
    crd = widget_crd(subresources={"status": {}, "scale": {
        "specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size",
        "labelSelectorPath": ".status.selector"}})
    emulator.install_crd(crd)
    emulator.create(WIDGETS, widget(size=3))
    info = emulator.store.resolve_path(WIDGETS)
    scale = emulator.store.update_scale(info, "default", "w1", {"spec": {"replicas": 5}})
    assert scale["spec"]["replicas"] == 5
    assert emulator.get(WIDGETS, "default", "w1")["spec"]["size"] == 5  # type: ignore[index]
    with pytest.raises(KubeApiError) as error:
        emulator.store.update_scale(info, "default", "w1", {"spec": {"replicas": 50}})
    assert error.value.status == 422  # the CRD's schema still applies: maximum 10


def test_writes_from_another_thread_reach_the_loop(emulator: KubeEmulator) -> None:
    import threading

    async def scenario() -> list[str]:
        emulator.store.attach_loop(asyncio.get_running_loop())
        events = emulator.watch(CM)
        worker = threading.Thread(target=lambda: emulator.create(CM, {"metadata": {"name": "from-thread"}}))
        worker.start()
        event_type, obj = await asyncio.wait_for(anext(events), 5)
        worker.join()
        return [event_type, obj["metadata"]["name"]]

    assert asyncio.run(scenario()) == ["ADDED", "from-thread"]


@pytest.mark.parametrize(("resource", "name", "fragment"), [
    (CM, "Upper", "a lowercase RFC 1123 subdomain"),
    (CM, "under_score", "a lowercase RFC 1123 subdomain"),
    ("v1/namespaces", "dotted.name", "a lowercase RFC 1123 label"),
    (CM, "x" * 254, "a lowercase RFC 1123 subdomain"),
])
def test_names_are_validated(emulator: KubeEmulator, resource: str, name: str, fragment: str) -> None:
    with pytest.raises(KubeApiError) as error:
        emulator.create(resource, {"metadata": {"name": name}})
    assert error.value.status == 422
    assert f'metadata.name: Invalid value: "{name}": {fragment}' in error.value.message


def test_labels_are_validated(emulator: KubeEmulator) -> None:
    emulator.create(CM, {"metadata": {"name": "ok", "labels": {"bluegreen.io/cluster": "prod-green", "e": ""}}})
    with pytest.raises(KubeApiError) as error:
        emulator.create(CM, {"metadata": {"name": "bad", "labels": {"app": "has space"}}})
    assert 'metadata.labels: Invalid value: "has space"' in error.value.message
    with pytest.raises(KubeApiError) as error:
        emulator.patch(CM, "default", "ok", {"metadata": {"labels": {"Bad Key/x": "v"}}})
    assert error.value.status == 422

"""metadata.managedFields as the emulated API server records them, over HTTP as clients meet them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bluegreen.sim import kube_fields
from bluegreen.sim.kube import IN_PROCESS_MANAGER, KubeEmulator

PDBS_V1 = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
PDBS_V1BETA1 = "/apis/policy/v1beta1/namespaces/default/poddisruptionbudgets"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
MERGE = "application/merge-patch+json"


@pytest.fixture
async def emulator() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(name="test", kubernetes_version="1.24")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def http(emulator: KubeEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=emulator.url) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, body: Any, *,
               content_type: str = "application/json", agent: str = "kubectl/v1.24.0 (linux/amd64)") -> Any:
    headers = {"Content-Type": content_type, "User-Agent": agent}
    async with http.request(method, path, data=json.dumps(body), headers=headers) as response:
        payload = await response.json(content_type=None)
        assert response.status < 300, payload
        return payload


def pdb(name: str, api_version: str, min_available: int = 1) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": name}}}}


def entries(obj: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(e["manager"], e["operation"], e["apiVersion"], e.get("subresource", ""))
            for e in obj["metadata"].get("managedFields") or ()]


async def test_create_records_manager_version_and_the_fields_set(http: aiohttp.ClientSession) -> None:
    created = await call(http, "POST", f"{PDBS_V1BETA1}?fieldManager=kustomize-controller",
                         pdb("web", "policy/v1beta1"))

    [entry] = created["metadata"]["managedFields"]
    assert entry["manager"] == "kustomize-controller"
    assert entry["operation"] == "Update"
    assert entry["apiVersion"] == "policy/v1beta1"
    assert entry["fieldsType"] == "FieldsV1"
    assert "subresource" not in entry
    assert entry["time"].endswith("Z") and len(entry["time"]) == len("2026-01-01T00:00:00Z")
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:minAvailable": {}, "f:selector": {"f:matchLabels": {"f:app": {}}}},
    }


async def test_get_list_and_watch_carry_them(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", f"{PDBS_V1BETA1}?fieldManager=kustomize-controller", pdb("web", "policy/v1beta1"))

    async with http.get(f"{PDBS_V1}/web") as response:
        got = await response.json()
    async with http.get(PDBS_V1) as response:
        listed = (await response.json())["items"]
    async with http.get(f"{PDBS_V1}?watch=true&timeoutSeconds=1") as response:
        event = json.loads(await response.content.readline())

    for obj in (got, listed[0], event["object"]):
        assert obj["apiVersion"] == "policy/v1"  # read through v1 ...
        assert entries(obj) == [("kustomize-controller", "Update", "policy/v1beta1", "")]  # ... written via v1beta1


async def test_manager_defaults_to_the_user_agent_product(http: aiohttp.ClientSession) -> None:
    created = await call(http, "POST", PDBS_V1, pdb("web", "policy/v1"), agent="kubectl/v1.31.0 (linux/amd64)")
    assert entries(created) == [("kubectl", "Update", "policy/v1", "")]
    assert kube_fields.manager_from_user_agent("Python/3.11 aiohttp/3.9") == "Python"
    assert kube_fields.manager_from_user_agent("") == ""


async def test_an_over_long_field_manager_is_refused(http: aiohttp.ClientSession) -> None:
    async with http.post(f"{PDBS_V1}?fieldManager={'m' * 129}", json=pdb("web", "policy/v1")) as response:
        assert response.status == 422
        assert "fieldManager" in (await response.json())["message"]


async def test_patches_by_two_managers_split_the_fields(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", f"{PDBS_V1}?fieldManager=flux", pdb("web", "policy/v1"))

    patched = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=scaler", {"spec": {"minAvailable": 2}},
                         content_type=MERGE)

    by_manager = {e["manager"]: e["fieldsV1"] for e in patched["metadata"]["managedFields"]}
    assert by_manager["scaler"] == {"f:spec": {"f:minAvailable": {}}}
    # The changed field moved: flux keeps what it still owns, not minAvailable.
    assert by_manager["flux"] == {"f:metadata": {"f:labels": {"f:app": {}}},
                                  "f:spec": {"f:selector": {"f:matchLabels": {"f:app": {}}}}}


async def test_a_patch_that_changes_nothing_records_nothing(http: aiohttp.ClientSession) -> None:
    created = await call(http, "POST", f"{PDBS_V1}?fieldManager=flux", pdb("web", "policy/v1"))

    same = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=other", {"spec": {"minAvailable": 1}},
                      content_type=MERGE)

    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert entries(same) == [("flux", "Update", "policy/v1", "")]


async def test_strategic_and_json_patches_are_recorded(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", f"{PDBS_V1}?fieldManager=flux", pdb("web", "policy/v1"))

    await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=strategic", {"metadata": {"annotations": {"a": "1"}}},
               content_type="application/strategic-merge-patch+json")
    patched = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=jsonpatch",
                         [{"op": "replace", "path": "/spec/minAvailable", "value": 3}],
                         content_type="application/json-patch+json")

    by_manager = {e["manager"]: e["fieldsV1"] for e in patched["metadata"]["managedFields"]}
    assert by_manager["strategic"] == {"f:metadata": {"f:annotations": {"f:a": {}}}}
    assert by_manager["jsonpatch"] == {"f:spec": {"f:minAvailable": {}}}


async def test_status_writes_are_a_separate_entry(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", f"{PDBS_V1}?fieldManager=flux", pdb("web", "policy/v1"))

    patched = await call(http, "PATCH", f"{PDBS_V1}/web/status?fieldManager=flux",
                         {"status": {"currentHealthy": 1}}, content_type=MERGE)

    assert entries(patched) == [("flux", "Update", "policy/v1", ""), ("flux", "Update", "policy/v1", "status")]
    assert patched["metadata"]["managedFields"][1]["fieldsV1"] == {"f:status": {"f:currentHealthy": {}}}


async def test_scale_writes_are_recorded_as_the_scale_subresource(http: aiohttp.ClientSession) -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    await call(http, "POST", f"{DEPLOYMENTS}?fieldManager=flux", deployment)
    await call(http, "PATCH", f"{DEPLOYMENTS}/web/scale?fieldManager=hpa", {"spec": {"replicas": 3}},
               content_type=MERGE)

    async with http.get(f"{DEPLOYMENTS}/web") as response:
        stored = await response.json()
    assert ("hpa", "Update", "apps/v1", "scale") in entries(stored)
    scale = next(e for e in stored["metadata"]["managedFields"] if e["manager"] == "hpa")
    assert scale["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    # The containers list is one leaf: lists are not broken down.
    flux = next(e for e in stored["metadata"]["managedFields"] if e["manager"] == "flux")
    assert flux["fieldsV1"]["f:spec"]["f:template"]["f:spec"] == {"f:containers": {}}


async def test_an_update_manager_has_one_entry_per_api_version(http: aiohttp.ClientSession) -> None:
    # As the apiserver's manager identifier: for Update, apiVersion is part of it.
    await call(http, "POST", f"{PDBS_V1BETA1}?fieldManager=flux", pdb("web", "policy/v1beta1"))

    moved = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=flux", {"spec": {"minAvailable": 2}},
                       content_type=MERGE)

    assert entries(moved) == [("flux", "Update", "policy/v1beta1", ""), ("flux", "Update", "policy/v1", "")]

    # Once the v1 writes have taken every field the v1beta1 entry held, it is gone.
    rewritten = await call(http, "PUT", f"{PDBS_V1}/web?fieldManager=flux",
                           dict(pdb("web", "policy/v1", min_available=3),
                                metadata={"name": "web", "labels": {"app": "web", "tier": "1"}},
                                spec={"minAvailable": 3, "selector": {"matchLabels": {"app": "web2"}}}))
    rewritten = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=flux",
                           {"metadata": {"labels": {"app": "other"}}}, content_type=MERGE)
    assert entries(rewritten) == [("flux", "Update", "policy/v1", "")]


async def test_the_same_manager_writing_again_updates_its_entry(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", f"{PDBS_V1}?fieldManager=flux", pdb("web", "policy/v1"))

    patched = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=flux", {"metadata": {"annotations": {"a": "b"}}},
                         content_type=MERGE)

    [entry] = patched["metadata"]["managedFields"]
    assert entry["fieldsV1"]["f:metadata"] == {"f:annotations": {"f:a": {}}, "f:labels": {"f:app": {}}}


async def test_client_sent_managed_fields(http: aiohttp.ClientSession) -> None:
    created = await call(http, "POST", f"{PDBS_V1}?fieldManager=flux", pdb("web", "policy/v1"))
    kept = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=other",
                      {"metadata": {"managedFields": [], "annotations": {"a": "b"}}}, content_type=MERGE)
    assert [e["manager"] for e in kept["metadata"]["managedFields"]] == ["flux", "other"]

    cleared = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=other",
                         {"metadata": {"managedFields": [{}]}}, content_type=MERGE)
    assert "managedFields" not in cleared["metadata"]

    body = dict(pdb("web", "policy/v1", min_available=5), metadata={
        "name": "web", "labels": {"app": "web"}, "managedFields": created["metadata"]["managedFields"]})
    replaced = await call(http, "PUT", f"{PDBS_V1}/web?fieldManager=editor", body)
    assert entries(replaced) == [("flux", "Update", "policy/v1", ""), ("editor", "Update", "policy/v1", "")]


async def test_in_process_writers_are_named(emulator: KubeEmulator) -> None:
    created = emulator.create("policy/v1/poddisruptionbudgets", pdb("web", "policy/v1"))
    assert entries(created) == [(IN_PROCESS_MANAGER, "Update", "policy/v1", "")]
    patched = emulator.patch("policy/v1beta1/poddisruptionbudgets", "default", "web",
                             {"spec": {"minAvailable": 4}}, field_manager="controller")
    assert ("controller", "Update", "policy/v1beta1", "") in entries(patched)


APPLY = "application/apply-patch+yaml"


async def test_server_side_apply_creates_and_owns_its_configuration(http: aiohttp.ClientSession) -> None:
    async with http.patch(f"{PDBS_V1BETA1}/web?fieldManager=kustomize-controller", data=json.dumps(
            pdb("web", "policy/v1beta1")), headers={"Content-Type": APPLY}) as response:
        assert response.status == 201
        created = await response.json()

    [entry] = created["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == (
        "kustomize-controller", "Apply", "policy/v1beta1")
    assert entry["fieldsV1"]["f:spec"] == {"f:minAvailable": {}, "f:selector": {"f:matchLabels": {"f:app": {}}}}


async def test_applying_through_the_new_version_moves_the_appliers_entry(http: aiohttp.ClientSession) -> None:
    # Unlike Update, an applier has one entry whatever the version: re-applying the same
    # configuration through v1 changes no field but the entry now says policy/v1.
    first = await call(http, "PATCH", f"{PDBS_V1BETA1}/web?fieldManager=flux", pdb("web", "policy/v1beta1"),
                       content_type=APPLY)
    again = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=flux", pdb("web", "policy/v1"),
                       content_type=APPLY)
    assert entries(again) == [("flux", "Apply", "policy/v1", "")]
    assert again["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]

    same = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=flux", pdb("web", "policy/v1"),
                      content_type=APPLY)
    assert same["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]  # nothing but time: no write


async def test_apply_prunes_what_it_no_longer_applies_and_conflicts_with_other_owners(
        http: aiohttp.ClientSession) -> None:
    config = pdb("web", "policy/v1")
    config["metadata"]["labels"]["tier"] = "web"
    await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=flux", config, content_type=APPLY)
    await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=scaler", {"spec": {"minAvailable": 2}}, content_type=MERGE)

    # minAvailable now belongs to scaler: applying another value conflicts ...
    async with http.patch(f"{PDBS_V1}/web?fieldManager=flux", data=json.dumps(pdb("web", "policy/v1", 3)),
                          headers={"Content-Type": APPLY}) as response:
        assert response.status == 409
        assert 'conflict with "scaler" using policy/v1: .spec.minAvailable' in (await response.json())["message"]
    # ... unless forced; and the label flux applied before and dropped now is removed.
    forced = await call(http, "PATCH", f"{PDBS_V1}/web?fieldManager=flux&force=true", pdb("web", "policy/v1", 3),
                        content_type=APPLY)
    assert forced["spec"]["minAvailable"] == 3
    assert forced["metadata"]["labels"] == {"app": "web"}
    assert [e["manager"] for e in forced["metadata"]["managedFields"]] == ["flux"]


async def test_apply_needs_a_field_manager(http: aiohttp.ClientSession) -> None:
    async with http.patch(f"{PDBS_V1}/web", data=json.dumps(pdb("web", "policy/v1")),
                          headers={"Content-Type": APPLY}) as response:
        assert response.status == 422
        assert "fieldManager: Required value" in (await response.json())["message"]

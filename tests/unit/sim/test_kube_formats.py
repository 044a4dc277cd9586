"""Patch formats, selectors and printer-column JSONPath of the emulated API server."""

from __future__ import annotations

from typing import Any

import pytest

from bluegreen.sim import kube_patch, kube_selectors, kube_tables


def test_merge_patch_is_rfc7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "list": [1, 2], "keep": True}
    patched = kube_patch.merge_patch(target, {"a": {"b": None, "d": 3}, "list": [3]})
    assert patched == {"a": {"c": 2, "d": 3}, "list": [3], "keep": True}
    assert target == {"a": {"b": 1, "c": 2}, "list": [1, 2], "keep": True}  # inputs are not mutated


def test_json_patch_pointer_escapes() -> None:
    target: dict[str, Any] = {"metadata": {"annotations": {"kopf.zalando.org/last": "x", "a~b": "y"}}}
    patched = kube_patch.json_patch(target, [
        {"op": "replace", "path": "/metadata/annotations/kopf.zalando.org~1last", "value": "z"},
        {"op": "remove", "path": "/metadata/annotations/a~0b"},
    ])
    assert patched == {"metadata": {"annotations": {"kopf.zalando.org/last": "z"}}}


@pytest.mark.parametrize("operations", [
    [{"op": "remove", "path": "/missing"}],
    [{"op": "replace", "path": "/missing", "value": 1}],
    [{"op": "add", "path": "/list/5", "value": 1}],
    [{"op": "test", "path": "/list/0", "value": 99}],
])
def test_json_patch_failures(operations: list[dict[str, Any]]) -> None:
    with pytest.raises(kube_patch.PatchError):
        kube_patch.json_patch({"list": [1]}, operations)


def test_json_patch_malformed() -> None:
    with pytest.raises(kube_patch.PatchFormatError):
        kube_patch.json_patch({}, {"op": "add"})
    with pytest.raises(kube_patch.PatchFormatError):
        kube_patch.json_patch({}, [{"op": "frobnicate", "path": "/a"}])


def test_strategic_merge_directives() -> None:
    target = {"metadata": {"finalizers": ["a", "b"]}, "spec": {"ports": [{"port": 80, "name": "http"}],
                                                               "extra": {"x": 1}, "tolerations": [{"key": "k"}]}}
    patched = kube_patch.strategic_merge_patch(target, {
        "$setElementOrder/finalizers": ["a", "b"],
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
        "spec": {"ports": [{"port": 443, "name": "https"}], "extra": {"$patch": "replace", "y": 2},
                 "tolerations": [{"key": "other"}]},
    })
    assert patched["metadata"]["finalizers"] == ["b"]
    assert patched["spec"]["ports"] == [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]
    assert patched["spec"]["extra"] == {"y": 2}
    assert patched["spec"]["tolerations"] == [{"key": "other"}]  # no merge key: replaced


@pytest.mark.parametrize("text", ["a in (b", "a=b)", "bad key=1", "=value", ""])
def test_label_selector_errors(text: str) -> None:
    if not text:
        assert kube_selectors.parse_label_selector(text).empty
        return
    with pytest.raises(kube_selectors.SelectorError):
        kube_selectors.parse_label_selector(text)


def test_field_selectors_support_per_resource_fields() -> None:
    selector = kube_selectors.parse_field_selector("involvedObject.name=w1,type!=Warning",
                                                   supported={"involvedObject.name", "type"})
    assert selector.matches({"involvedObject": {"name": "w1"}, "type": "Normal"})
    assert not selector.matches({"involvedObject": {"name": "w1"}, "type": "Warning"})
    with pytest.raises(kube_selectors.SelectorError):
        kube_selectors.parse_field_selector("spec.anything=1")


@pytest.mark.parametrize(("path", "expected"), [
    (".spec.size", [3]),
    (".status.conditions[0].type", ["Ready"]),
    (".status.conditions[-1].status", ["False"]),
    ('.status.conditions[?(@.type=="Stalled")].status', ["False"]),
    (".status.conditions[*].type", ["Ready", "Stalled"]),
    (".metadata.labels.app\\.kubernetes\\.io/name", ["web"]),
    (".spec.missing", []),
])
def test_printer_column_jsonpath(path: str, expected: list[Any]) -> None:
    obj = {"metadata": {"labels": {"app.kubernetes.io/name": "web"}}, "spec": {"size": 3},
           "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Stalled", "status": "False"}]}}
    assert kube_tables.jsonpath(obj, path) == expected


@pytest.mark.parametrize(("seconds", "text"), [
    (5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (3 * 3600 + 60, "3h1m"), (20 * 3600, "20h"),
    (3 * 86400 + 3600, "3d1h"), (30 * 86400, "30d"), (800 * 86400, "2y70d"),
])
def test_human_ages(seconds: int, text: str) -> None:
    assert kube_tables.human_duration(seconds) == text

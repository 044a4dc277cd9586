"""The generated CRD: in step with the models, structural, and accepting the examples.

The structural checker below follows the API server's rules for
``apiextensions.k8s.io/v1`` schemas (the structural-schema invariants and the
v1 keyword restrictions), so a schema the API server would refuse fails here
first; it is tested on pydantic's raw output, which breaks most of them.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import pydantic
import pytest
import yaml

from bluegreen.api import crd, spec
from tests.fixtures.examples import clusterupgrade_examples

REPO = pathlib.Path(__file__).resolve().parents[3]
EXAMPLES = clusterupgrade_examples()

# The fields of apiextensions.k8s.io/v1 JSONSchemaProps; anything else in a schema is dropped
# or refused by the API server.
JSON_SCHEMA_PROPS = frozenset({
    "$ref", "$schema", "additionalItems", "additionalProperties", "allOf", "anyOf", "default", "definitions",
    "dependencies", "description", "enum", "example", "exclusiveMaximum", "exclusiveMinimum", "externalDocs",
    "format", "id", "items", "maxItems", "maxLength", "maxProperties", "maximum", "minItems", "minLength",
    "minProperties", "minimum", "multipleOf", "not", "nullable", "oneOf", "pattern", "patternProperties",
    "properties", "required", "title", "type", "uniqueItems", "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type",
    "x-kubernetes-map-type", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations",
})
# Refused in v1 CRDs whatever the structure.
V1_FORBIDDEN = ("$ref", "$schema", "id", "definitions", "dependencies", "additionalItems", "patternProperties")
# Not allowed inside allOf/anyOf/oneOf/not: they would make the structure depend on a value.
JUNCTOR_FORBIDDEN = (
    "type", "default", "description", "title", "nullable", "additionalProperties", "externalDocs",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-validations",
)
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
# At the root of a schema with the status subresource only these may be set.
ROOT_ALLOWED = {"description", "type", "properties", "required"}
# Go's regexp (RE2) has no look-around and no back-references.
NOT_RE2 = re.compile(r"\(\?[=!<]|\\[1-9]")


def structural_problems(schema: Mapping[str, Any]) -> list[str]:
    """Every reason the API server would refuse ``schema`` as a v1 openAPIV3Schema."""
    problems = list(_node_problems(schema, "openAPIV3Schema", level="root"))
    if schema.get("type") != "object":
        problems.append("openAPIV3Schema.type: must be object at the root")
    for key in schema:
        if key not in ROOT_ALLOWED and not key.startswith("x-kubernetes-"):
            problems.append(f"openAPIV3Schema.{key}: not allowed at the root with the status subresource")
    metadata = schema.get("properties", {}).get("metadata")
    if metadata is not None and {k: v for k, v in metadata.items() if k != "type"}:
        problems.append("openAPIV3Schema.properties.metadata: must not restrict metadata beyond name")
    return problems


def _node_problems(node: Any, path: str, *, level: str) -> Iterator[str]:
    if not isinstance(node, Mapping):
        yield f"{path}: must be a schema object"
        return
    for key in node:
        if key not in JSON_SCHEMA_PROPS:
            yield f"{path}.{key}: not a JSONSchemaProps field"
    for key in V1_FORBIDDEN:
        if key in node:
            yield f"{path}.{key}: not supported in v1 CRDs"
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if preserve is not None and preserve is not True:
        yield f"{path}.x-kubernetes-preserve-unknown-fields: must be true or unset"
    kind = node.get("type")
    if kind is None and not preserve and not node.get("x-kubernetes-int-or-string"):
        yield f"{path}.type: must not be empty for a specified {level}"
    elif kind is not None and kind not in TYPES:
        yield f"{path}.type: {kind!r} is not a structural type"
    if node.get("uniqueItems") is True:
        yield f"{path}.uniqueItems: must not be true"
    if kind == "array" and "items" not in node:
        yield f"{path}.items: must be specified for an array"
    if "items" in node and not isinstance(node["items"], Mapping):
        yield f"{path}.items: must be one schema, not a list"
    additional = node.get("additionalProperties")
    if additional is not None:
        if level == "root":
            yield f"{path}.additionalProperties: must not be used at the root"
        if node.get("properties") and additional is not True:
            yield f"{path}.additionalProperties: properties and additionalProperties are mutually exclusive"
    for name in node.get("required", ()):
        if name not in node.get("properties", {}):
            yield f"{path}.required: {name!r} is not a property"
    if "pattern" in node:
        try:
            re.compile(node["pattern"])
        except re.error as exc:
            yield f"{path}.pattern: does not compile: {exc}"
        if NOT_RE2.search(node["pattern"]):
            yield f"{path}.pattern: uses look-around or back-references, which Go's regexp lacks"
    # A default beside a $ref (or a union holding one) cannot be checked without pydantic's $defs.
    if "default" in node and "$ref" not in json.dumps(node):
        try:
            jsonschema.Draft4Validator({k: v for k, v in node.items() if k != "default"}).validate(node["default"])
        except jsonschema.ValidationError as exc:
            yield f"{path}.default: does not validate against its own schema: {exc.message}"
    for junctor in JUNCTORS:
        for index, branch in enumerate(_branches(node.get(junctor))):
            yield from _junctor_problems(branch, f"{path}.{junctor}[{index}]", outside=node)
    for name, child in node.get("properties", {}).items():
        yield from _node_problems(child, f"{path}.properties.{name}", level="field")
    if isinstance(node.get("items"), Mapping):
        yield from _node_problems(node["items"], f"{path}.items", level="array item")
    if isinstance(additional, Mapping):
        yield from _node_problems(additional, f"{path}.additionalProperties", level="field")


def _branches(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _junctor_problems(branch: Mapping[str, Any], path: str, *, outside: Mapping[str, Any]) -> Iterator[str]:
    for key in JUNCTOR_FORBIDDEN:
        if key in branch:
            yield f"{path}.{key}: must not be set inside {path.rsplit('.', 1)[-1]}"
    for name in branch.get("properties", {}):
        if name not in outside.get("properties", {}):
            yield f"{path}.properties.{name}: must also be specified outside the junctor"
    if "items" in branch and "items" not in outside:
        yield f"{path}.items: must also be specified outside the junctor"


def open_api_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def schema_at(schema: Mapping[str, Any], json_path: str) -> Mapping[str, Any]:
    node = schema
    for part in json_path.strip(".").split("."):
        node = node["properties"][part]
    return node


def test_generated_files_match_the_models() -> None:
    assert crd.drift(REPO) == [], "run `make crds` and commit the result"


def test_the_chart_carries_the_same_crd_as_crds_folder() -> None:
    in_crds, in_chart = (REPO / path for path in crd.CRD_PATHS)
    assert in_chart.read_bytes() == in_crds.read_bytes()


def test_kustomization_lists_every_crd_file() -> None:
    kustomization = yaml.safe_load((REPO / crd.KUSTOMIZATION_PATH).read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in (REPO / "crds").glob("*.yaml") if path.name != "kustomization.yaml"}
    assert listed == on_disk


def test_crd_names_and_scope() -> None:
    manifest = yaml.safe_load((REPO / crd.CRD_PATHS[0]).read_text())
    assert manifest["apiVersion"] == "apiextensions.k8s.io/v1"
    assert manifest["metadata"]["name"] == "clusterupgrades.bluegreen.io"
    definition = manifest["spec"]
    assert definition["group"] == "bluegreen.io"
    assert definition["scope"] == "Namespaced"
    assert definition["names"] == {
        "kind": "ClusterUpgrade", "listKind": "ClusterUpgradeList", "plural": "clusterupgrades",
        "singular": "clusterupgrade", "shortNames": ["cu"], "categories": ["bluegreen"],
    }
    [version] = definition["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_schema_is_structural() -> None:
    assert structural_problems(open_api_schema()) == []


def test_checker_refuses_pydantic_json_schema() -> None:
    raw = {name: model.model_json_schema(by_alias=True) for name, model in (("spec", spec.ClusterUpgradeSpec),
                                                                         ("target", spec.Target))}
    problems = structural_problems({"type": "object", "properties": raw})
    assert "openAPIV3Schema.properties.spec.$defs: not a JSONSchemaProps field" in problems
    cluster = "openAPIV3Schema.properties.spec.properties.cluster"
    assert f"{cluster}.$ref: not supported in v1 CRDs" in problems
    assert f"{cluster}.type: must not be empty for a specified field" in problems
    # extra="forbid" gives additionalProperties: false beside properties.
    assert "openAPIV3Schema.properties.spec.additionalProperties: properties and additionalProperties are " \
        "mutually exclusive" in problems
    # An optional field is a union with null.
    green_name = "openAPIV3Schema.properties.target.properties.greenName"
    assert f"{green_name}.anyOf[1].type: must not be set inside anyOf[1]" in problems
    assert f"{green_name}.type: must not be empty for a specified field" in problems


def test_checker_refuses_typeless_fields_and_bad_defaults() -> None:
    broken = copy.deepcopy(open_api_schema())
    steps = schema_at(broken, ".spec.traffic.steps")
    del steps["items"]["properties"]["setWeight"]["type"]
    schema_at(broken, ".spec.cluster")["properties"]["namespace"]["default"] = "Not A Name"
    problems = structural_problems(broken)
    assert any(p.endswith("setWeight.type: must not be empty for a specified field") for p in problems)
    assert any("namespace.default: does not validate" in p for p in problems)


def test_no_refs_defs_or_null_unions_anywhere() -> None:
    text = (REPO / crd.CRD_PATHS[0]).read_text()
    for word in ("$ref", "$defs", "anyOf", "'null'", "title:", "examples:"):
        assert word not in text


def test_optional_fields_are_not_required_and_not_nullable() -> None:
    schema = open_api_schema()
    target = schema_at(schema, ".spec.target")
    assert "greenName" in target["properties"]
    assert "greenName" not in target["required"]
    assert "nullable" not in yaml.safe_dump(schema)


def test_constraints_and_defaults_come_from_the_models() -> None:
    schema = open_api_schema()
    cluster = schema_at(schema, ".spec.cluster")
    assert cluster["properties"]["provider"]["enum"] == ["capi", "eksa"]
    assert cluster["properties"]["name"]["pattern"] == spec.K8S_NAME_PATTERN
    assert cluster["properties"]["name"]["maxLength"] == 63
    assert cluster["properties"]["namespace"]["default"] == "default"
    weight = schema_at(schema, ".spec.traffic.steps")["items"]["properties"]["setWeight"]
    assert (weight["type"], weight["minimum"], weight["maximum"]) == ("integer", 0, 100)
    assert schema_at(schema, ".spec.traffic.routers")["minItems"] == 1
    assert schema_at(schema, ".spec.promotion.retainBlueFor")["default"] == "24h"
    assert schema_at(schema, ".spec.strategy")["default"] == "BlueGreen"
    assert schema_at(schema, ".status.phase")["enum"][0] == "Pending"


def test_descriptions_come_from_fields_and_docstrings() -> None:
    schema = open_api_schema()
    # A field's own description wins over its class docstring.
    provider = schema_at(schema, ".spec.cluster.provider")
    assert provider["description"] == spec.ClusterRef.model_fields["provider"].description
    # Without one, the class docstring speaks for the field.
    assert schema_at(schema, ".spec.cluster")["description"] == spec.ClusterRef.__doc__


def test_descriptions_are_the_first_paragraph() -> None:
    class Documented(pydantic.BaseModel):
        """What it is,
        over two lines.

        Details for the Python reader.
        """

        size: int = pydantic.Field(description="How big.\n\nMore on sizes.")

    schema = crd.openapi_schema(Documented)
    assert schema["description"] == "What it is, over two lines."
    assert schema["properties"]["size"]["description"] == "How big."


def test_free_form_maps_follow_the_model() -> None:
    schema = open_api_schema()
    overrides = schema_at(schema, ".spec.target.overrides")
    assert overrides == {
        "description": overrides["description"], "type": "object", "x-kubernetes-preserve-unknown-fields": True,
    }
    labels = schema_at(schema, ".spec.workloads.flux.selector.matchLabels")
    assert labels["additionalProperties"] == {"type": "string"}
    assert "x-kubernetes-preserve-unknown-fields" not in labels
    assert schema_at(schema, ".status.routers")["items"]["properties"]["original"][
        "x-kubernetes-preserve-unknown-fields"] is True
    assert schema_at(schema, ".spec.hooks")["items"]["properties"]["job"]["properties"]["template"][
        "x-kubernetes-preserve-unknown-fields"] is True


def test_status_keeps_kopf_fields_and_has_no_defaults() -> None:
    status = schema_at(open_api_schema(), ".status")
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert "default:" not in yaml.safe_dump(status)


def test_every_object_has_type_object() -> None:
    def objects(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        if "properties" in node or "additionalProperties" in node:
            yield node
        for child in node.get("properties", {}).values():
            yield from objects(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), Mapping):
                yield from objects(node[key])

    found = list(objects(open_api_schema()))
    assert len(found) > 10
    assert all(node["type"] == "object" for node in found)


def test_printer_columns() -> None:
    [version] = crd.crd()["spec"]["versions"]
    columns = {column["name"]: (column["jsonPath"], column["type"]) for column in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": (".status.phase", "string"),
        "Step": (".status.step.index", "integer"),
        "Green%": (".status.weights.green", "integer"),
        "Blue": (".status.blue.name", "string"),
        "Green": (".status.green.name", "string"),
        "Age": (".metadata.creationTimestamp", "date"),
        "Drained": (".status.nodePools.nodesDrained", "integer"),
    }
    wide_only = {column["name"] for column in version["additionalPrinterColumns"] if column.get("priority")}
    assert wide_only == {"Drained"}, "kubectl get shows it with -o wide only"
    schema = open_api_schema()
    for json_path, column_type in columns.values():
        if json_path.startswith(".status"):
            assert schema_at(schema, json_path)["type"] == column_type


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: str(path.relative_to(REPO / "examples")))
def test_examples_validate_against_the_crd_and_the_models(example: pathlib.Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(example.read_text()) if doc]
    upgrades = [doc for doc in documents if doc.get("kind") == spec.KIND]
    assert upgrades, f"{example.name} holds no {spec.KIND}"
    for document in upgrades:
        assert document["apiVersion"] == spec.API_VERSION
        jsonschema.Draft4Validator(open_api_schema()).validate(document)
        spec.parse_spec(document["spec"])


def test_examples_exist() -> None:
    assert {path.name for path in EXAMPLES} >= {"clusterupgrade-demo.yaml", "clusterupgrade-capi.yaml"}


def test_demo_example_is_the_demo_world() -> None:
    document = yaml.safe_load((REPO / "examples" / "clusterupgrade-demo.yaml").read_text())
    assert (document["metadata"]["name"], document["metadata"]["namespace"]) == ("demo", "fleet")
    parsed = spec.parse_spec(document["spec"])
    assert (parsed.cluster.provider, parsed.cluster.name, parsed.cluster.namespace) == ("capi", "prod-blue", "fleet")
    assert parsed.target.kubernetes_version == "1.31"
    assert parsed.workloads.flux.selector.match_labels == {"bluegreen.io/cluster": "prod-blue"}
    [router] = parsed.traffic.routers
    assert router.haproxy is not None
    assert (router.haproxy.runtime_api, router.haproxy.backend) == ("tcp://127.0.0.1:19999", "app")
    # The world names HAProxy's servers after the clusters, so {{cluster}} selects a side in queries.
    assert (router.haproxy.blue_server, router.haproxy.green_server) == ("prod-blue", "prod-green")
    assert [step.to_wire() for step in parsed.traffic.steps] == [
        {"setWeight": 10}, {"analysis": {"count": 2}}, {"setWeight": 25}, {"pause": {"duration": "3s"}},
        {"setWeight": 50}, {"pause": {"duration": "3s"}}, {"setWeight": 100},
    ]
    assert [metric.name for metric in parsed.analysis.metrics] == ["error-rate", "green-answers"]
    [error_rate, probe] = parsed.analysis.metrics
    assert error_rate.prometheus is not None and 'server="{{cluster}}"' in error_rate.prometheus.query
    assert probe.http_probe is not None and probe.http_probe.host == "app.example.com"
    assert parsed.promotion.retain_blue_for == "5s"


def test_production_example_waits_for_a_human() -> None:
    document = yaml.safe_load((REPO / "examples" / "clusterupgrade-capi.yaml").read_text())
    parsed = spec.parse_spec(document["spec"])
    assert any(step.pause is not None and step.pause.duration is None for step in parsed.traffic.steps)
    assert parsed.promotion.retain_blue_for == "24h"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("target.kubernetesVersion", "latest"),
        ("cluster.name", "Prod_Blue"),
        ("cluster.provider", "gke"),
        ("traffic.steps", [{"setWeight": 10, "pause": {}}, {"setWeight": 100}]),
        ("traffic.steps", [{"setWeight": 101}]),
        ("traffic.routers", []),
        ("promotion.retainBlueFor", "a day"),
    ],
)
def test_schema_refuses_what_the_models_refuse(path: str, value: Any) -> None:
    document = yaml.safe_load((REPO / "examples" / "clusterupgrade-demo.yaml").read_text())
    node = document["spec"]
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    with pytest.raises(spec.SpecError):
        spec.parse_spec(document["spec"])
    assert list(jsonschema.Draft4Validator(open_api_schema()).iter_errors(document))


def test_check_reports_drift_and_write_repairs_it(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "charts" / "bluegreen").mkdir(parents=True)
    assert crd.main(["--check", "--root", str(tmp_path)]) == 1
    assert crd.main(["--write", "--root", str(tmp_path)]) == 0
    assert crd.main(["--check", "--root", str(tmp_path)]) == 0
    generated = tmp_path / crd.CRD_PATHS[1]
    generated.write_text(generated.read_text().replace("minItems: 1", "minItems: 2", 1))
    capsys.readouterr()
    assert crd.main(["--check", "--root", str(tmp_path)]) == 1
    diff = capsys.readouterr().out
    removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert [line.strip("-").strip() for line in removed] == ["minItems: 2"]
    assert [line.strip("+").strip() for line in added] == ["minItems: 1"]
    assert str(crd.CRD_PATHS[1]) in diff


def test_a_model_with_a_union_is_refused() -> None:
    class Ambiguous(pydantic.BaseModel):
        value: int | str

    with pytest.raises(crd.SchemaError, match=r"Ambiguous\.value"):
        crd.openapi_schema(Ambiguous)

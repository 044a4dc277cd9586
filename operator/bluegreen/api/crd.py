"""The ``ClusterUpgrade`` CustomResourceDefinition, generated from the API models.

The models in :mod:`bluegreen.api.spec` and :mod:`bluegreen.api.status` are the
only description of the API; this module turns them into the CRD so the API
server checks the same patterns, ranges and enums the operator does, and
``kubectl explain`` shows the same descriptions. ``crds/`` and the Helm chart's
``crds/`` hold the output and a test fails when they drift from the models.

pydantic writes JSON Schema 2020-12; Kubernetes accepts only a *structural*
OpenAPI v3 subset. The conversion:

- every ``$ref`` is inlined (CRDs have no ``$defs``); a field's own description
  wins over its class docstring;
- ``anyOf: [X, {type: null}]`` (an optional field) becomes X: a user leaves a
  field unset by leaving it out, and the API server drops nulls of
  non-nullable fields anyway. ``nullable`` appears only where a model asks for
  it through ``json_schema_extra``;
- ``additionalProperties: false`` (``extra="forbid"``) is dropped: the API
  server prunes unknown fields, and ``parse_spec`` names them;
- a free-form mapping (``dict[str, Any]``, or a field marked so) becomes
  ``x-kubernetes-preserve-unknown-fields: true``; a typed one keeps its
  ``additionalProperties`` schema;
- titles and examples go; descriptions are cut to their first paragraph.

A keyword it does not know (a real union, a tuple, ``const``) is an error
here, so a model the CRD cannot express fails ``make crds``, not ``kubectl
apply`` on someone's management cluster.

``python -m bluegreen.api.crd --write`` writes the files, ``--check`` exits 1
with a diff when they differ from the models, and with neither flag the CRD is
printed (``... | kubectl apply -f -``).
"""

from __future__ import annotations

import argparse
import copy
import difflib
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
import yaml

from bluegreen.api import spec, status

CRD_NAME = f"{spec.PLURAL}.{spec.GROUP}"
CRD_FILE = f"{spec.GROUP}_{spec.PLURAL}.yaml"
CATEGORIES = ("bluegreen",)

# Where the generated files live, relative to the repository root.
CRD_PATHS = (pathlib.PurePosixPath("crds") / CRD_FILE, pathlib.PurePosixPath("charts/bluegreen/crds") / CRD_FILE)
KUSTOMIZATION_PATH = pathlib.PurePosixPath("crds/kustomization.yaml")
# kopf's peering kinds, where operator replicas meet so that only one acts (the chart's peering values).
# kopf uses but never creates them; they go with the ClusterUpgrade CRD so that one apply installs both.
PEERING_GROUP = "kopf.dev"
PEERING_KINDS = (
    ("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
    ("KopfPeering", "kopfpeerings", "Namespaced"),
)
PEERING_FILES = tuple(f"{PEERING_GROUP}_{plural}.yaml" for _, plural, _ in PEERING_KINDS)

PRINTER_COLUMNS: tuple[dict[str, str | int], ...] = (
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where the upgrade is."},
    {"name": "Step", "type": "integer", "jsonPath": ".status.step.index", "description": "Index of the current step."},
    {"name": "Green%", "type": "integer", "jsonPath": ".status.weights.green",
     "description": "Percent of traffic on green."},
    {"name": "Blue", "type": "string", "jsonPath": ".status.blue.name", "description": "The live (blue) cluster."},
    {"name": "Green", "type": "string", "jsonPath": ".status.green.name", "description": "The new (green) cluster."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Drained", "type": "integer", "jsonPath": ".status.nodePools.nodesDrained", "priority": 1,
     "description": "NodePools: old nodes drained so far (of status.nodePools.nodesTotal)."},
)

_HEADER = (
    "# Generated from operator/bluegreen/api/spec.py and status.py by\n"
    "# `python -m bluegreen.api.crd --write` (make crds). Do not edit by hand.\n"
)
_PEERING_HEADER = (
    "# kopf's peering kind (kopf.dev/v1), for operator replicas; written with the ClusterUpgrade CRD by\n"
    "# `python -m bluegreen.api.crd --write` (make crds) from operator/bluegreen/api/crd.py. Do not edit by hand.\n"
)

_PRESERVE = "x-kubernetes-preserve-unknown-fields"

# Keywords that mean the same in pydantic's JSON Schema and in a structural
# CRD schema, copied as they are.
_KEPT = frozenset({
    "type", "format", "enum", "pattern", "minimum", "maximum", "multipleOf",
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
    "required", "nullable", _PRESERVE,
    "x-kubernetes-int-or-string", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type", "x-kubernetes-validations",
})
# Keywords that only document the Python side.
_DROPPED = frozenset({"title", "examples"})
# The order keywords are written in, so a reviewer reads a field's type and
# description before its constraints, and a diff of the CRD stays small.
_ORDER = (
    "description", "type", "format", "enum", "default", "nullable", "pattern",
    "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
    "required", "properties", "additionalProperties", "items",
)


class SchemaError(ValueError):
    """A model uses something a structural OpenAPI schema cannot say."""


def openapi_schema(model: type[pydantic.BaseModel], *, defaults: bool = True) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (camelCase field names).

    ``defaults=False`` leaves out ``default``: the API server would otherwise
    invent values in places only the operator writes.
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions, defaults=defaults, where=model.__name__)


def _convert(node: Mapping[str, Any], definitions: Mapping[str, Any], *, defaults: bool, where: str) -> dict[str, Any]:
    node = _inline(node, definitions, where=where)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {
                name: _convert(child, definitions, defaults=defaults, where=f"{where}.{name}")
                for name, child in value.items()
            }
        elif key == "items":
            if not isinstance(value, Mapping):
                raise SchemaError(f"{where}: tuple items have no structural form; use a list of one type")
            out[key] = _convert(value, definitions, defaults=defaults, where=f"{where}[]")
        elif key == "additionalProperties":
            if value is True or value == {}:
                out[_PRESERVE] = True
            elif value is not False:
                out[key] = _convert(value, definitions, defaults=defaults, where=f"{where}.*")
        elif key == "default":
            if defaults and value is not None:
                out[key] = value
        elif key == "description":
            out[key] = _first_paragraph(value)
        elif key in _KEPT:
            out[key] = copy.deepcopy(value)
        else:
            raise SchemaError(f"{where}: {key!r} has no structural OpenAPI form")
    if "type" not in out and _PRESERVE not in out:
        if node.keys() - _DROPPED - {"description", "default"}:
            raise SchemaError(f"{where}: no type; give the field a concrete type")
        out[_PRESERVE] = True  # Any: whatever the user writes is kept.
    if out.get(_PRESERVE):
        out.pop("additionalProperties", None)
    rank = {key: index for index, key in enumerate(_ORDER)}
    return dict(sorted(out.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def _inline(node: Mapping[str, Any], definitions: Mapping[str, Any], *, where: str) -> Mapping[str, Any]:
    """Replace ``$ref``, single ``allOf`` and ``anyOf`` with null by the schema they stand for.

    Keys beside the reference win: they are the field's own (description, default).
    """
    while True:
        rest = dict(node)
        if "$ref" in rest:
            target = definitions[str(rest.pop("$ref")).rsplit("/", 1)[-1]]
        elif "allOf" in rest and len(rest["allOf"]) == 1:
            target = rest.pop("allOf")[0]
        elif "anyOf" in rest:
            options = [option for option in rest.pop("anyOf") if option != {"type": "null"}]
            if len(options) != 1:
                raise SchemaError(f"{where}: a union of several types has no structural form")
            target = options[0]
        elif "oneOf" in rest or "allOf" in rest:
            raise SchemaError(f"{where}: a union of several types has no structural form")
        else:
            return rest
        node = {**target, **rest}


def _first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n", 1)[0].split())


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition manifest."""
    status_schema = openapi_schema(status.ClusterUpgradeStatus, defaults=False)
    # kopf keeps its own bookkeeping (and handler results) under status; the
    # model ignores those fields, and the API server must not prune them.
    status_schema[_PRESERVE] = True
    status_schema.setdefault("description", "Written by the operator: what it has done and where it is.")
    spec_schema = openapi_schema(spec.ClusterUpgradeSpec)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "bluegreen", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": spec.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": spec.KIND,
                "listKind": f"{spec.KIND}List",
                "plural": spec.PLURAL,
                "singular": spec.SINGULAR,
                "shortNames": list(spec.SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [{
                "name": spec.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [dict(column) for column in PRINTER_COLUMNS],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A ClusterUpgrade upgrades one Kubernetes cluster to a new version "
                                   "by building a green cluster beside it and moving traffic step by step.",
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema,
                        "status": status_schema,
                    },
                    "required": ["spec"],
                }},
            }],
        },
    }


def peering_crds() -> list[dict[str, Any]]:
    """kopf's peering CRDs, as kopf documents them: a free-form status where each replica keeps its keep-alive.

    No status subresource: kopf patches ``status`` through the object itself.
    """
    return [{
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{PEERING_GROUP}"},
        "spec": {
            "group": PEERING_GROUP,
            "scope": scope,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": f"kopf peering: where operator replicas announce themselves so that only "
                                   f"the one with the highest priority acts ({kind}).",
                    "properties": {
                        "status": {"type": "object", _PRESERVE: True},
                    },
                    _PRESERVE: True,
                }},
            }],
        },
    } for kind, plural, scope in PEERING_KINDS]


def kustomization() -> dict[str, Any]:
    """The kustomization that lets Flux (or ``kubectl apply -k``) apply ``crds/``."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [CRD_FILE, *PEERING_FILES],
    }


class _Dumper(yaml.SafeDumper):
    """Writes repeated values out in full: anchors would puzzle a reader of the CRD."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(document: Mapping[str, Any], *, header: str = "") -> str:
    body = yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return (header or _HEADER) + body


def rendered() -> dict[pathlib.PurePosixPath, str]:
    """Every generated file, by path relative to the repository root."""
    crd_text = _dump(crd())
    files = {path: crd_text for path in CRD_PATHS}
    for name, document in zip(PEERING_FILES, peering_crds(), strict=True):
        for folder in (path.parent for path in CRD_PATHS):
            files[folder / name] = _dump(document, header=_PEERING_HEADER)
    files[KUSTOMIZATION_PATH] = _dump(kustomization())
    return files


def drift(root: pathlib.Path) -> list[str]:
    """Unified diffs (file on disk -> generated) for every file under ``root`` that differs."""
    diffs: list[str] = []
    for path, text in rendered().items():
        target = root / path
        current = target.read_text() if target.exists() else ""
        if current != text:
            diffs.append("".join(difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True),
                fromfile=f"{path} (on disk)", tofile=f"{path} (from the models)",
            )))
    return diffs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bluegreen.api.crd", description=(__doc__ or "").split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write crds/ and the chart's crds/")
    action.add_argument("--check", action="store_true", help="exit 1 with a diff when the files drift")
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path.cwd(),
                        help="repository root (default: the current directory)")
    args = parser.parse_args(argv)
    root: pathlib.Path = args.root
    if not args.write and not args.check:
        sys.stdout.write(_dump(crd()))
        return 0
    if not (root / "charts" / "bluegreen").is_dir():
        parser.error(f"{root} has no charts/bluegreen; run from the repository root or pass --root")
    if args.check:
        diffs = drift(root)
        for diff in diffs:
            sys.stdout.write(diff)
        if diffs:
            sys.stderr.write("generated CRD files differ from the models; run `make crds` and commit the result\n")
            return 1
        return 0
    for path, text in rendered().items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Structural-schema handling for custom resources: validation, pruning and defaulting.

The apiserver validates a custom object against its CRD's ``openAPIV3Schema`` on every write
and answers 422 Invalid with one message per field, e.g.
``spec.traffic.steps[0].setWeight: Invalid value: 101: spec.traffic.steps[0].setWeight in body
should be less than or equal to 100``. It also prunes fields the schema does not know (unless
``x-kubernetes-preserve-unknown-fields``) and fills in ``default`` values. Clients and the
operator's own tests react to those messages, so this module reproduces the subset of the
schema language that CRDs use in practice: types (with ``nullable`` and
``x-kubernetes-int-or-string``), properties, additionalProperties, items, required, enum,
pattern, minimum/maximum (and their exclusive forms), minLength/maxLength,
minItems/maxItems, minProperties/maxProperties. ``jsonschema`` is not a dependency: its
messages differ from the apiserver's, and this subset is small.

One walk does all three jobs, so a write costs a single traversal of the object.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from bluegreen.sim import kube_patch


@dataclasses.dataclass(frozen=True)
class FieldError:
    field: str
    message: str  # without the field: "Invalid value: 101: ... should be ..."
    reason: str = "FieldValueInvalid"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclasses.dataclass
class Outcome:
    obj: dict[str, Any]
    errors: list[FieldError]
    unknown_fields: list[str]  # pruned, for fieldValidation=Strict/Warn


def _go_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_matches(expected: str, value: Any) -> bool:
    match expected:
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            return (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and value.is_integer()
            )
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
    return True


_PATTERN_CACHE: dict[str, re.Pattern[str]] = {}


def _pattern(text: str) -> re.Pattern[str]:
    compiled = _PATTERN_CACHE.get(text)
    if compiled is None:
        compiled = _PATTERN_CACHE[text] = re.compile(text)
    return compiled


class _Walker:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.unknown: list[str] = []

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.errors.append(FieldError(path, f"Invalid value: {_go_value(value)}: {detail}"))

    def walk(self, schema: dict[str, Any], value: Any, path: str) -> Any:
        if value is None:
            if schema.get("nullable"):
                return None
            # A null for a non-nullable field is pruned like an absent one by the apiserver
            # when it has a default; otherwise it is a type error.
            if "type" in schema:
                self.errors.append(FieldError(
                    path, f'Invalid value: "null": {path} in body must be of type {schema["type"]}: "null"'
                ))
            return None

        if schema.get("x-kubernetes-int-or-string"):
            if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
                self.errors.append(FieldError(
                    path, f'Invalid value: "{_type_name(value)}": {path} in body must be of type '
                          f'integer or string: "{_type_name(value)}"'
                ))
                return value
        elif (expected := schema.get("type")) and not _type_matches(expected, value):
            self.errors.append(FieldError(
                path, f'Invalid value: "{_type_name(value)}": {path} in body must be of type '
                      f'{expected}: "{_type_name(value)}"'
            ))
            return value

        if "enum" in schema and value not in schema["enum"]:
            supported = ", ".join(_go_value(item) for item in schema["enum"])
            self.errors.append(FieldError(
                path, f"Unsupported value: {_go_value(value)}: supported values: {supported}",
                reason="FieldValueNotSupported",
            ))

        if isinstance(value, str):
            self._check_string(schema, value, path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._check_number(schema, value, path)
        elif isinstance(value, list):
            return self._walk_array(schema, value, path)
        elif isinstance(value, dict):
            return self._walk_object(schema, value, path)
        return value

    def _check_string(self, schema: dict[str, Any], value: str, path: str) -> None:
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            self.errors.append(FieldError(
                path, f"Too long: may not be longer than {schema['maxLength']}", reason="FieldValueTooLong",
            ))
        if "minLength" in schema and len(value) < schema["minLength"]:
            self.invalid(path, value, f"{path} in body should be at least {schema['minLength']} chars long")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            self.invalid(path, value, f"{path} in body should match '{schema['pattern']}'")

    def _check_number(self, schema: dict[str, Any], value: float, path: str) -> None:
        if "maximum" in schema:
            if schema.get("exclusiveMaximum") is True and value >= schema["maximum"]:
                self.invalid(path, value, f"{path} in body should be less than {schema['maximum']}")
            elif value > schema["maximum"]:
                self.invalid(path, value, f"{path} in body should be less than or equal to {schema['maximum']}")
        if "minimum" in schema:
            if schema.get("exclusiveMinimum") is True and value <= schema["minimum"]:
                self.invalid(path, value, f"{path} in body should be greater than {schema['minimum']}")
            elif value < schema["minimum"]:
                self.invalid(
                    path, value, f"{path} in body should be greater than or equal to {schema['minimum']}"
                )

    def _walk_array(self, schema: dict[str, Any], value: list[Any], path: str) -> list[Any]:
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.errors.append(FieldError(
                path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                reason="FieldValueTooMany",
            ))
        if "minItems" in schema and len(value) < schema["minItems"]:
            self.invalid(path, len(value), f"{path} in body should have at least {schema['minItems']} items")
        items = schema.get("items")
        if not isinstance(items, dict):
            return value
        return [self.walk(items, item, f"{path}[{index}]") for index, item in enumerate(value)]

    def _walk_object(self, schema: dict[str, Any], value: dict[str, Any], path: str) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        result: dict[str, Any] = {}
        for key, item in value.items():
            child_path = f"{path}.{key}" if path else key
            if key in properties:
                result[key] = self.walk(properties[key], item, child_path)
            elif isinstance(additional, dict):
                result[key] = self.walk(additional, item, f"{path}[{key}]")
            elif additional is True or preserve or (embedded and key in ("apiVersion", "kind", "metadata")):
                result[key] = item
            else:
                self.unknown.append(child_path)
        for key, sub in properties.items():
            if key not in result and isinstance(sub, dict) and "default" in sub:
                result[key] = self.walk(sub, kube_patch.clone(sub["default"]), f"{path}.{key}" if path else key)
        for key in schema.get("required") or ():
            if key not in result:
                self.errors.append(FieldError(
                    f"{path}.{key}" if path else key, "Required value", reason="FieldValueRequired",
                ))
        if "maxProperties" in schema and len(result) > schema["maxProperties"]:
            self.errors.append(FieldError(
                path, f"Too many: {len(result)}: must have at most {schema['maxProperties']} items",
                reason="FieldValueTooMany",
            ))
        if "minProperties" in schema and len(result) < schema["minProperties"]:
            self.invalid(
                path, len(result), f"{path} in body should have at least {schema['minProperties']} properties"
            )
        return result


_ALWAYS_KEPT = ("apiVersion", "kind", "metadata")


def process(schema: dict[str, Any] | None, obj: dict[str, Any]) -> Outcome:
    """Validate, prune and default a whole custom object against its version's openAPIV3Schema."""
    if not schema:
        return Outcome(obj=obj, errors=[], unknown_fields=[])
    walker = _Walker()
    body = {key: value for key, value in obj.items() if key not in _ALWAYS_KEPT}
    top = {key: value for key, value in schema.items() if key != "required"}
    properties = {key: value for key, value in (schema.get("properties") or {}).items()
                  if key not in _ALWAYS_KEPT}
    top["properties"] = properties
    processed = walker._walk_object(top, body, "")
    for key in schema.get("required") or ():
        if key not in _ALWAYS_KEPT and key not in processed:
            walker.errors.append(FieldError(key, "Required value", reason="FieldValueRequired"))
    result = {key: obj[key] for key in _ALWAYS_KEPT if key in obj}
    result.update(processed)
    return Outcome(obj=result, errors=walker.errors, unknown_fields=walker.unknown)


def invalid_message(*, kind: str, group: str, name: str, errors: list[FieldError]) -> str:
    qualified = f"{kind}.{group}" if group else kind
    rendered = [str(error) for error in errors]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    return f'{qualified} "{name}" is invalid: {joined}'

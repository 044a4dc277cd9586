"""Label and field selectors of the emulated Kubernetes API, parsed once per request.

Selectors are parsed into small matcher objects when a list or watch starts, so that a
watch stream filtering thousands of events never re-parses its query string. The grammar
is the apiserver's: labels support ``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``
(exists) and ``!key`` (does not exist); fields support ``=``, ``==`` and ``!=`` on a small
set of known field paths per resource (anything else is rejected, as the real server does).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from typing import Any

# A label key: optional DNS prefix and a name; values are the same alphabet, possibly empty.
_LABEL_TOKEN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?")


class SelectorError(ValueError):
    """A selector the real apiserver would reject with 400 Bad Request."""


@dataclasses.dataclass(frozen=True)
class _Requirement:
    key: str
    operator: str  # one of: =, !=, in, notin, exists, !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case "exists":
                return self.key in labels
            case "!exists":
                return self.key not in labels
            case "=" | "in":
                return self.key in labels and labels[self.key] in self.values
            case "!=" | "notin":
                # A missing label satisfies an inequality, like in the apiserver.
                return self.key not in labels or labels[self.key] not in self.values
        raise AssertionError(self.operator)


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[_Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        if not self.requirements:
            return True
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    def equalities(self) -> list[tuple[str, str]]:
        """The ``key=value`` requirements: a label index can find their objects without looking at the others."""
        return [(requirement.key, next(iter(requirement.values))) for requirement in self.requirements
                if requirement.operator in {"=", "in"} and len(requirement.values) == 1]


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``in (...)`` value sets."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parentheses in selector {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise SelectorError(f"unbalanced parentheses in selector {text!r}")
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _check_key(key: str, selector: str) -> str:
    if not _LABEL_TOKEN.fullmatch(key):
        raise SelectorError(f"invalid label key {key!r} in selector {selector!r}")
    return key


def _check_value(value: str, selector: str) -> str:
    if value and not _LABEL_TOKEN.fullmatch(value):
        raise SelectorError(f"invalid label value {value!r} in selector {selector!r}")
    return value


_SET_REQUIREMENT = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")


def parse_label_selector(text: str | None) -> LabelSelector:
    if not text or not text.strip():
        return LabelSelector()
    requirements: list[_Requirement] = []
    for part in _split_top_level(text):
        if not part:
            raise SelectorError(f"empty requirement in selector {text!r}")
        if match := _SET_REQUIREMENT.match(part):
            values = frozenset(
                _check_value(value.strip(), text) for value in match["values"].split(",") if value.strip()
            )
            key = _check_key(match["key"], text)
            requirements.append(_Requirement(key=key, operator=match["op"], values=values))
        elif "!=" in part:
            key, value = (piece.strip() for piece in part.split("!=", 1))
            requirements.append(
                _Requirement(key=_check_key(key, text), operator="!=",
                             values=frozenset({_check_value(value, text)}))
            )
        elif "=" in part:
            key, value = (piece.strip() for piece in part.replace("==", "=", 1).split("=", 1))
            requirements.append(
                _Requirement(key=_check_key(key, text), operator="=",
                             values=frozenset({_check_value(value, text)}))
            )
        elif part.startswith("!"):
            requirements.append(_Requirement(key=_check_key(part[1:].strip(), text), operator="!exists"))
        else:
            requirements.append(_Requirement(key=_check_key(part, text), operator="exists"))
    return LabelSelector(tuple(requirements))


def _dig(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(step)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclasses.dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[tuple[str, bool, str], ...] = ()  # (path, equal?, value)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((_dig(obj, path) == value) == equal for path, equal, value in self.requirements)

    def exact_name(self) -> str | None:
        """The one object name this selector pins down, for an O(1) lookup instead of a scan."""
        for path, equal, value in self.requirements:
            if path == "metadata.name" and equal:
                return value
        return None


BASIC_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def parse_field_selector(text: str | None, *, supported: Collection[str] = BASIC_FIELDS) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    requirements: list[tuple[str, bool, str]] = []
    for part in text.split(","):
        part = part.strip()
        if "!=" in part:
            path, value = part.split("!=", 1)
            equal = False
        elif "==" in part:
            path, value = part.split("==", 1)
            equal = True
        elif "=" in part:
            path, value = part.split("=", 1)
            equal = True
        else:
            raise SelectorError(f"invalid field selector: {part!r}: expected an operator (=, ==, !=)")
        path = path.strip()
        if path not in supported and path not in BASIC_FIELDS:
            raise SelectorError(f'field label not supported: {path}')
        requirements.append((path, equal, value.strip()))
    return FieldSelector(tuple(requirements))

"""The removed-API scan of what Flux will apply: the manifests in its source, rendered as Flux renders them.

Live objects cannot tell which version their writer uses (see ``live``); the
source can. A directory with a ``kustomization.yaml`` is rendered with
``kubectl kustomize`` (patches and overlays may change ``apiVersion``, so the
raw files would mislead); any other directory is read file by file and its
subdirectories the same way, which is what Flux's kustomize-controller does
when it generates a kustomization for a plain directory.

This is blocking (file reads and a subprocess with a timeout); the operator
calls it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from bluegreen.preflight.findings import Finding
from bluegreen.preflight.removed_apis import find

__all__ = ["KUSTOMIZATION_FILES", "ManifestError", "scan_manifests"]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_YAML_SUFFIXES = (".yaml", ".yml")
KUSTOMIZE_TIMEOUT = 60.0
_Sourced = tuple[pathlib.Path, dict[str, Any]]  # a document and the file or directory it came from


class ManifestError(Exception):
    """The source cannot be read or rendered; the message names the path (Flux would fail on it too)."""


def scan_manifests(
    paths: Sequence[pathlib.Path],
    *,
    current: str,
    target: str,
    root: pathlib.Path | None = None,
    kubectl: str = "kubectl",
    timeout: float = KUSTOMIZE_TIMEOUT,
) -> list[Finding]:
    """Objects in the files or directories ``paths`` whose apiVersion/kind ``target`` removes.

    ``where`` is ``in <path>``: the file, or for a rendered kustomization its
    directory, relative to ``root`` when given.
    """
    findings: list[Finding] = []
    for source, document in _documents(paths, kubectl=kubectl, timeout=timeout):
        api_version, kind = document.get("apiVersion"), document.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            continue  # not a Kubernetes object (a values file, a kustomize component's config)
        removal = find(api_version, kind, current=current, target=target)
        if removal is None:
            continue
        metadata = document.get("metadata") or {}
        findings.append(Finding.of(removal, namespace=metadata.get("namespace"), name=str(metadata.get("name", "")),
                                   where=f"in {_display(source, root)}"))
    return findings


def _documents(
    paths: Sequence[pathlib.Path], *, kubectl: str, timeout: float
) -> Iterator[_Sourced]:
    for path in paths:
        if path.is_dir():
            yield from _directory(path, kubectl=kubectl, timeout=timeout)
        elif path.is_file():
            yield from ((path, document) for document in _parse(path.read_text(encoding="utf-8"), path))
        else:
            raise ManifestError(f"{path}: no such file or directory")


def _directory(directory: pathlib.Path, *, kubectl: str, timeout: float) -> Iterator[_Sourced]:
    if any((directory / name).is_file() for name in KUSTOMIZATION_FILES):
        rendered = _kustomize(directory, kubectl=kubectl, timeout=timeout)
        yield from ((directory, document) for document in _parse(rendered, directory))
        return
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue  # .git, editor files
        if entry.is_dir():
            yield from _directory(entry, kubectl=kubectl, timeout=timeout)
        elif entry.is_file() and entry.suffix in _YAML_SUFFIXES:
            yield from ((entry, document) for document in _parse(entry.read_text(encoding="utf-8"), entry))


def _kustomize(directory: pathlib.Path, *, kubectl: str, timeout: float) -> str:
    executable = shutil.which(kubectl)
    if executable is None:
        raise ManifestError(f"{directory} holds a kustomization, and rendering it needs kubectl, "
                            f"which is not on PATH ({kubectl!r})")
    try:
        done = subprocess.run([executable, "kustomize", os.fspath(directory)], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ManifestError(f"kubectl kustomize {directory} did not finish within {timeout:g}s") from None
    if done.returncode != 0:
        raise ManifestError(f"kubectl kustomize {directory} failed: {done.stderr.strip()[:500]}")
    return done.stdout


def _parse(text: str, source: pathlib.Path) -> Iterator[dict[str, Any]]:
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {exc}") from None
    for document in documents:
        if not isinstance(document, dict):
            continue
        items = document.get("items")
        if str(document.get("kind", "")).endswith("List") and isinstance(items, list):
            yield from (item for item in items if isinstance(item, dict))
        else:
            yield document


def _display(path: pathlib.Path, root: pathlib.Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix() or "."
        except ValueError:
            pass
    return path.as_posix()

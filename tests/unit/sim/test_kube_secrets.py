"""Secrets on the emulated API server: stringData is written into data, as the apiserver does."""

from __future__ import annotations

import base64

import pytest

from bluegreen.sim.kube import KubeEmulator
from bluegreen.sim.kube_store import KubeApiError


def decoded(secret: dict[str, object]) -> dict[str, str]:
    data = secret["data"]
    assert isinstance(data, dict)
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def test_string_data_is_stored_as_data_and_never_served() -> None:
    emulator = KubeEmulator(name="test")
    created = emulator.create("v1/secrets", {"metadata": {"name": "s", "namespace": "default"},
                                             "data": {"a": base64.b64encode(b"old").decode()},
                                             "stringData": {"a": "new", "b": "two"}})
    assert "stringData" not in created
    assert decoded(created) == {"a": "new", "b": "two"}  # stringData wins over data for the same key
    patched = emulator.patch("v1/secrets", "default", "s", {"stringData": {"c": "three"}})
    assert "stringData" not in patched
    assert decoded(patched) == {"a": "new", "b": "two", "c": "three"}
    stored = emulator.get("v1/secrets", "default", "s")
    assert stored is not None and "stringData" not in stored


def test_string_data_must_be_strings() -> None:
    emulator = KubeEmulator(name="test")
    with pytest.raises(KubeApiError, match="stringData must be a map of strings"):
        emulator.create("v1/secrets", {"metadata": {"name": "s", "namespace": "default"}, "stringData": {"a": 1}})

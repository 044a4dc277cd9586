"""Kubernetes quantities as the apiserver reads them: binary and decimal suffixes, exponents, millis."""

from __future__ import annotations

import pytest

from bluegreen.kube import quantity


@pytest.mark.parametrize(("text", "millis"), [("2", 2000), ("500m", 500), ("0.1", 100), ("1.5", 1500),
                                              ("16000m", 16000), ("1u", 1), (4, 4000)])
def test_cpu_in_millicores(text: str | int, millis: int) -> None:
    assert quantity.to_millis(text) == millis


@pytest.mark.parametrize(("text", "size"), [("8Gi", 8 * 2**30), ("8192Mi", 8 * 2**30), ("128G", 128 * 10**9),
                                            ("1.5Gi", 3 * 2**29), ("1e3", 1000), ("512Ki", 512 * 1024),
                                            ("1E", 10**18)])
def test_memory_in_bytes(text: str, size: int) -> None:
    assert quantity.to_bytes(text) == size


@pytest.mark.parametrize("text", ["8 GB", "Gi", "8gi", "", "1.2.3", "--1"])
def test_what_is_no_quantity_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        quantity.parse_quantity(text)


def test_an_exponent_out_of_range_is_refused_not_computed() -> None:
    with pytest.raises(ValueError, match="exponent 999999999 is out of range"):
        quantity.parse_quantity("1e999999999")
    assert quantity.parse_quantity("5e3") == 5000

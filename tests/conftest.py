"""For the whole suite: one pool of Prometheus spares per pytest process, and where `alone` tests may live."""

import pathlib

import pytest

from tests.fixtures.prometheus import prometheus_spares  # noqa: F401

INTEGRATION = pathlib.Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # make test runs the tests marked `alone` on their own, collecting them from tests/integration only: one
    # anywhere else would run in neither part.
    for item in items:
        if item.get_closest_marker("alone") is not None and INTEGRATION not in item.path.parents:
            raise pytest.UsageError(f"{item.nodeid} is marked alone outside tests/integration: make test would "
                                    "never run it; move it there")

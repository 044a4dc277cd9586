"""Operator settings from the environment, and the peering priority that makes one replica act."""

from __future__ import annotations

import pytest

from bluegreen.settings import OperatorSettings, peering_priority


def test_defaults_are_the_production_ones() -> None:
    settings = OperatorSettings.from_env({})
    assert settings.metrics_port == 8000
    assert settings.peering_lifetime_seconds == 60
    assert settings.retry_max_seconds == 300


def test_values_come_from_the_environment() -> None:
    settings = OperatorSettings.from_env({"BLUEGREEN_PEERING_LIFETIME": "15", "BLUEGREEN_METRICS_PORT": "0",
                                          "BLUEGREEN_RETRY_BASE_SECONDS": "0.5"})
    assert (settings.peering_lifetime_seconds, settings.metrics_port, settings.retry_base_seconds) == (15, 0, 0.5)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("BLUEGREEN_PEERING_LIFETIME", "0", "BLUEGREEN_PEERING_LIFETIME=0.0 must be a whole number of seconds"),
    ("BLUEGREEN_PEERING_LIFETIME", "2.5", "BLUEGREEN_PEERING_LIFETIME=2.5 must be a whole number"),
    ("BLUEGREEN_PEERING_LIFETIME", "soon", "BLUEGREEN_PEERING_LIFETIME='soon' must be a number of seconds"),
    ("BLUEGREEN_METRICS_PORT", "http", "BLUEGREEN_METRICS_PORT='http' must be a port"),
    ("BLUEGREEN_RETRY_MAX_SECONDS", "-1", "BLUEGREEN_RETRY_MAX_SECONDS='-1' must not be negative"),
])
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        OperatorSettings.from_env({name: value})


def test_the_replica_that_started_first_has_the_higher_priority() -> None:
    older, younger = peering_priority(1_800_000_000.000), peering_priority(1_800_000_000.001)
    assert older > younger > 0
    # Distinct to the millisecond: kopf pauses every replica when two share the highest priority.
    assert older - younger == 1
    # Exact in JSON for any reader of the peering object (below 2**53).
    assert peering_priority(0) < 2**53

"""measure_metric: which side is measured, how a comparative metric is judged, what the result says.

The verdict logic runs against an in-memory provider put in the registry; the end-to-end cases run against
real backends, and against a real Prometheus scraping a real HAProxy.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import aiohttp
import pytest

from bluegreen.analysis import runner
from bluegreen.analysis.base import CheckContext, MetricError, MetricProvider
from bluegreen.analysis.placeholders import Placeholders
from bluegreen.api.spec import Metric
from bluegreen.api.status import CheckPhase
from bluegreen.kube import config as kubeconfig
from bluegreen.kube.client import KubeClient
from bluegreen.sim import backends
from bluegreen.sim import haproxy as sim_haproxy
from bluegreen.sim.prometheus import PrometheusServer

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
PROMETHEUS = {"address": "http://prometheus.monitoring:9090", "query": 'x{cluster="{{cluster}}"}'}


def context(*, blue: str = "prod-blue", green: str = "prod-green") -> CheckContext:
    # Nothing here reads Secrets; a client that reaches nothing proves it.
    management = KubeClient(kubeconfig.Connection(server="http://127.0.0.1:9"))
    return CheckContext(upgrade="prod-to-1-31", namespace="fleet", phase="Shifting", blue=blue, green=green,
                        blue_weight=75, green_weight=25, step=3, management=management)


def metric(**fields: Any) -> Metric:
    return Metric.model_validate({"name": "error-rate", "thresholdRange": {"max": 0.01}, "prometheus": PROMETHEUS,
                                  **fields})


class Sides:
    """An in-memory provider: each side's value (or error), and the clusters it was asked about."""

    def __init__(self, values: dict[str, float | MetricError | None]) -> None:
        self.values = values
        self.asked: list[str] = []
        self.placeholders: Placeholders | None = None

    def factory(self, metric: Metric, ctx: CheckContext, placeholders: Placeholders) -> MetricProvider:
        self.placeholders = placeholders
        return self

    async def value(self, *, cluster: str) -> float | None:
        self.asked.append(cluster)
        value = self.values[cluster]
        if isinstance(value, MetricError):
            raise value
        return value


@pytest.fixture
def sides(monkeypatch: pytest.MonkeyPatch) -> Sides:
    fake = Sides({})
    monkeypatch.setitem(runner.PROVIDERS, "prometheus", fake.factory)
    return fake


# --- a plain metric: green only -----------------------------------------------------------------

async def test_a_plain_metric_measures_green_and_judges_its_value(sides: Sides) -> None:
    sides.values = {"prod-green": 0.2}

    result = await runner.measure_metric(metric(), ctx=context(), now=NOW)

    assert sides.asked == ["prod-green"]
    assert sides.placeholders == Placeholders(blue="prod-blue", green="prod-green", namespace="fleet",
                                              name="prod-to-1-31")
    assert result.model_dump() == {
        "name": "error-rate", "kind": "metric", "phase": CheckPhase.FAILED, "time": NOW, "value": 0.2,
        "blue_value": None, "green_value": None, "message": "error-rate 0.2 > max 0.01", "step": 3,
        "green_weight": 25,
    }


@pytest.mark.parametrize(("value", "threshold", "phase", "message"), [
    (0.004, {"max": 0.01}, CheckPhase.SUCCESSFUL, "error-rate 0.004 within max 0.01"),
    (0.01, {"max": 0.01}, CheckPhase.SUCCESSFUL, "error-rate 0.01 within max 0.01"),
    (0.8, {"min": 0.95}, CheckPhase.FAILED, "error-rate 0.8 < min 0.95"),
    (None, {"max": 0.01}, CheckPhase.INCONCLUSIVE,
     "error-rate: no value for green (prod-green): an empty result, NaN or Inf"),
])
async def test_plain_verdicts(sides: Sides, value: float | None, threshold: dict[str, float], phase: CheckPhase,
                              message: str) -> None:
    sides.values = {"prod-green": value}

    result = await runner.measure_metric(metric(thresholdRange=threshold), ctx=context(), now=NOW)

    assert (result.phase, result.message, result.value) == (phase, message, value)


async def test_a_provider_error_is_inconclusive_with_the_error(sides: Sides) -> None:
    sides.values = {"prod-green": MetricError("Prometheus at http://p:9090/api/v1/query: no answer within 10s")}

    result = await runner.measure_metric(metric(), ctx=context(), now=NOW)

    assert result.phase is CheckPhase.INCONCLUSIVE
    assert result.message == "error-rate: Prometheus at http://p:9090/api/v1/query: no answer within 10s"
    assert result.value is None


# --- a comparative metric: both sides, green judged against blue ------------------------------------

@pytest.mark.parametrize(("mode", "green", "blue", "threshold", "phase", "value", "message"), [
    ("Ratio", 0.12, 0.05, {"max": 1.5}, CheckPhase.FAILED, 2.4,
     "error-rate: green 0.12 is 2.4x blue's 0.05, above max 1.5"),
    ("Ratio", 0.05, 0.05, {"max": 1.5}, CheckPhase.SUCCESSFUL, 1.0,
     "error-rate: green 0.05 is 1x blue's 0.05, within max 1.5"),
    ("Ratio", 0.0, 0.0, {"max": 1.5}, CheckPhase.SUCCESSFUL, 1.0,
     "error-rate: green 0 is 1x blue's 0, within max 1.5"),
    ("Ratio", 0.5, 1.0, {"min": 0.9}, CheckPhase.FAILED, 0.5,
     "error-rate: green 0.5 is 0.5x blue's 1, below min 0.9"),
    ("Difference", 0.2, 0.0, {"max": 0.05}, CheckPhase.FAILED, 0.2,
     "error-rate: green 0.2 is 0.2 more than blue's 0, above max 0.05"),
    ("Difference", 0.01, 0.03, {"max": 0.05}, CheckPhase.SUCCESSFUL, -0.02,
     "error-rate: green 0.01 is 0.02 less than blue's 0.03, within max 0.05"),
])
async def test_comparative_verdicts(sides: Sides, mode: str, green: float, blue: float, threshold: dict[str, float],
                                    phase: CheckPhase, value: float, message: str) -> None:
    sides.values = {"prod-green": green, "prod-blue": blue}

    result = await runner.measure_metric(metric(comparative={"mode": mode}, thresholdRange=threshold),
                                         ctx=context(), now=NOW)

    assert sorted(sides.asked) == ["prod-blue", "prod-green"]
    assert (result.phase, result.message) == (phase, message)
    assert result.value == pytest.approx(value)
    assert (result.green_value, result.blue_value) == (green, blue)


async def test_green_against_a_blue_at_zero_has_no_ratio(sides: Sides) -> None:
    sides.values = {"prod-green": 0.3, "prod-blue": 0.0}

    result = await runner.measure_metric(metric(comparative={"mode": "Ratio"}), ctx=context(), now=NOW)

    assert result.phase is CheckPhase.INCONCLUSIVE
    assert result.message == ("error-rate: blue's value is 0 and green's 0.3: green / blue has no value; use "
                              "comparative.mode Difference for a metric that can be 0 on blue")
    assert (result.value, result.green_value, result.blue_value) == (None, 0.3, 0.0)


async def test_one_side_failing_names_that_side_and_keeps_the_other(sides: Sides) -> None:
    sides.values = {"prod-green": 0.3, "prod-blue": MetricError("the query returned 2 series")}

    result = await runner.measure_metric(metric(comparative={}), ctx=context(), now=NOW)

    assert result.phase is CheckPhase.INCONCLUSIVE
    assert result.message == "error-rate: blue (prod-blue): the query returned 2 series"
    assert (result.value, result.green_value, result.blue_value) == (None, 0.3, None)


async def test_the_same_error_on_both_sides_is_said_once(sides: Sides) -> None:
    down = "Prometheus at http://p:9090/api/v1/query: cannot connect: Connection refused"
    sides.values = {"prod-green": MetricError(down), "prod-blue": MetricError(down)}

    result = await runner.measure_metric(metric(comparative={}), ctx=context(), now=NOW)

    assert (result.phase, result.message) == (CheckPhase.INCONCLUSIVE, f"error-rate: {down}")


async def test_no_data_on_one_side_is_inconclusive(sides: Sides) -> None:
    sides.values = {"prod-green": None, "prod-blue": 0.1}

    result = await runner.measure_metric(metric(comparative={}), ctx=context(), now=NOW)

    assert (result.phase, result.message) == (CheckPhase.INCONCLUSIVE, "error-rate: no value for green")


async def test_both_sides_are_measured_at_the_same_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each side's answer waits for the other's question: measured one after the other, this never finishes."""
    asked: list[str] = []
    both = asyncio.Event()

    class Meeting:
        async def value(self, *, cluster: str) -> float | None:
            asked.append(cluster)
            if len(asked) == 2:
                both.set()
            await both.wait()
            return 1.0

    monkeypatch.setitem(runner.PROVIDERS, "prometheus", lambda metric, ctx, placeholders: Meeting())
    async with asyncio.timeout(5):
        result = await runner.measure_metric(metric(comparative={}, thresholdRange={"max": 1.5}), ctx=context(),
                                             now=NOW)

    assert result.phase is CheckPhase.SUCCESSFUL
    assert sorted(asked) == ["prod-blue", "prod-green"]


# --- the registry ---------------------------------------------------------------------------------

def test_each_provider_field_has_a_provider() -> None:
    assert set(runner.PROVIDERS) == {"prometheus", "httpProbe"}
    assert runner.provider_kind(metric()) == "prometheus"
    probe = Metric.model_validate({"name": "up", "thresholdRange": {"min": 1}, "httpProbe": {"url": "http://g/"}})
    assert runner.provider_kind(probe) == "httpProbe"


async def test_a_kind_without_a_provider_is_an_error_not_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(runner.PROVIDERS, "prometheus")

    result = await runner.measure_metric(metric(), ctx=context(), now=NOW)

    assert result.phase is CheckPhase.INCONCLUSIVE
    assert result.message == "error-rate: metric 'error-rate': no provider for 'prometheus'; known: httpProbe"


async def test_a_provider_that_refuses_its_settings_is_inconclusive() -> None:
    probe = Metric.model_validate({"name": "up", "thresholdRange": {"min": 1},
                                   "httpProbe": {"url": "http://g/", "successCodes": "399-200"}})

    result = await runner.measure_metric(probe, ctx=context(), now=NOW)

    assert result.phase is CheckPhase.INCONCLUSIVE
    assert "httpProbe.successCodes: '399-200' is not a range of HTTP codes" in result.message


# --- end to end -----------------------------------------------------------------------------------

async def test_an_http_probe_catches_greens_errors(green_backend: backends.Backend) -> None:
    green_backend.error_rate = 0.2
    availability = Metric.model_validate({
        "name": "availability", "thresholdRange": {"min": 0.95},
        "httpProbe": {"url": green_backend.url + "/", "host": "app.example.com", "requests": 20},
    })

    result = await runner.measure_metric(availability, ctx=context(), now=NOW)

    assert (result.phase, result.value, result.message) == (CheckPhase.FAILED, 0.8, "availability 0.8 < min 0.95")


async def test_a_comparative_probe_catches_a_latency_regression(
    blue_backend: backends.Backend, green_backend: backends.Backend,
) -> None:
    # The side's name is its port here: {{cluster}} in the URL selects the backend.
    ctx = context(blue=str(blue_backend.port), green=str(green_backend.port))
    latency = Metric.model_validate({
        "name": "latency", "thresholdRange": {"max": 1.5}, "comparative": {"mode": "Ratio"},
        "httpProbe": {"url": "http://127.0.0.1:{{cluster}}/", "measure": "latencyP95", "requests": 10},
    })
    blue_backend.latency = green_backend.latency = 0.05

    same = await runner.measure_metric(latency, ctx=ctx, now=NOW)
    green_backend.latency = 0.25
    slower = await runner.measure_metric(latency, ctx=ctx, now=NOW)

    assert same.phase is CheckPhase.SUCCESSFUL, same.message
    assert slower.phase is CheckPhase.FAILED, slower.message
    assert slower.green_value is not None and slower.blue_value is not None and slower.value is not None
    assert slower.green_value >= 0.25 and 0.05 <= slower.blue_value < 0.25
    assert slower.value == pytest.approx(slower.green_value / slower.blue_value)
    assert slower.message.startswith("latency: green 0.2")
    assert f"s is {slower.value:.4g}x blue's 0.0" in slower.message
    assert slower.message.endswith("s, above max 1.5")


@pytest.mark.analysis
async def test_prometheus_over_haproxy_catches_greens_errors_and_latency(
    haproxy: sim_haproxy.HAProxyProcess, blue_backend: backends.Backend, green_backend: backends.Backend,
    haproxy_prometheus: PrometheusServer,
) -> None:
    """Green takes half the traffic behind a real HAProxy, fails a fifth of it and answers slower than blue."""
    await haproxy.command(f"set weight {haproxy.backend}/{haproxy.green_server} 100")
    blue_backend.latency, green_backend.latency, green_backend.error_rate = 0.02, 0.2, 0.2
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.get(haproxy.frontend_url + "/") as response:
                await response.read()
    answered = blue_backend.requests + green_backend.requests
    await haproxy_prometheus.wait_for(f"sum(haproxy_server_http_responses_total) == {answered}")
    ctx = context(blue="blue", green="green")  # the HAProxy servers' names
    address = haproxy_prometheus.url
    failed = 'sum(haproxy_server_http_responses_total{proxy="app", server="{{cluster}}", code="5xx"})'
    answered_by = 'sum(haproxy_server_http_responses_total{proxy="app", server="{{cluster}}"})'
    errors = Metric.model_validate({
        "name": "error-rate", "thresholdRange": {"max": 0.05}, "comparative": {"mode": "Difference"},
        "prometheus": {"address": address, "query": f"{failed} / {answered_by}"},
    })
    latency = Metric.model_validate({
        "name": "latency", "thresholdRange": {"max": 1.5}, "comparative": {"mode": "Ratio"},
        "prometheus": {"address": address,
                       "query": 'haproxy_server_max_response_time_seconds{proxy="app", server="{{cluster}}"}'},
    })

    error_result, latency_result = await asyncio.gather(runner.measure_metric(errors, ctx=ctx, now=NOW),
                                                        runner.measure_metric(latency, ctx=ctx, now=NOW))

    assert green_backend.errors > 0
    assert error_result.phase is CheckPhase.FAILED, error_result.message
    assert error_result.blue_value == 0
    assert error_result.green_value == pytest.approx(green_backend.errors / green_backend.requests)
    assert error_result.value == error_result.green_value
    assert latency_result.phase is CheckPhase.FAILED, latency_result.message
    assert latency_result.green_value is not None and latency_result.blue_value is not None
    assert latency_result.green_value >= 0.2 > latency_result.blue_value >= 0.02
    assert latency_result.message.startswith("latency: green 0.2")
    assert latency_result.message.endswith(", above max 1.5")

"""The HTTP probe against real local servers: the sim's backends (errors spread evenly, added latency) and small
servers that check the Host header, answer chosen codes, or count requests in flight."""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bluegreen.analysis import http
from bluegreen.analysis.base import MetricError
from bluegreen.analysis.placeholders import Placeholders
from bluegreen.api.spec import HTTPProbe, ProbeMeasure
from bluegreen.sim import backends

# The traffic tests' fixture: a server context with a fresh self-signed certificate for 127.0.0.1.
from tests.fixtures.tls import self_signed  # noqa: F401

PLACEHOLDERS = Placeholders(blue="prod-blue", green="prod-green", namespace="fleet", name="prod-to-1-31")


def probe(url: str, **fields: Any) -> http.HTTPProbeProvider:
    """Built from the spec as users write it, so the defaults are the API's."""
    config = HTTPProbe.model_validate({"url": url, **fields})
    return http.HTTPProbeProvider.from_spec(config, placeholders=PLACEHOLDERS)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Serve a handler on every path of a fresh local server; its base URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


# --- against the sim's backends ----------------------------------------------------------------

@pytest.mark.parametrize("error_rate", [0.0, 0.2, 0.5, 1.0])
async def test_success_rate_is_the_share_of_good_answers(green_backend: backends.Backend, error_rate: float) -> None:
    green_backend.error_rate = error_rate

    value = await probe(green_backend.url + "/", requests=20).value(cluster="prod-green")

    assert green_backend.requests == 20
    assert value == pytest.approx(1 - error_rate)
    assert value == 1 - green_backend.errors / green_backend.requests


async def test_latency_percentiles_include_the_backends_delay(green_backend: backends.Backend) -> None:
    green_backend.latency = 0.05
    outcomes = await probe(green_backend.url + "/", requests=10).probe(cluster="prod-green")
    order = [ProbeMeasure.LATENCY_P50, ProbeMeasure.LATENCY_P95, ProbeMeasure.LATENCY_P99, ProbeMeasure.LATENCY_MAX]
    latencies = [http.summarize(outcomes, measure) for measure in order]

    assert all(outcome.success for outcome in outcomes)
    assert latencies[0] >= 0.05
    assert latencies == sorted(latencies)
    assert latencies[-1] == max(outcome.seconds for outcome in outcomes)
    p95 = await probe(green_backend.url + "/", requests=4, measure="latencyP95").value(cluster="prod-green")
    assert p95 is not None and p95 >= 0.05


async def test_a_side_that_is_down_fails_every_request_at_the_timeout(green_backend: backends.Backend) -> None:
    await green_backend.stop()
    url = green_backend.url + "/"

    assert await probe(url, requests=3).value(cluster="prod-green") == 0
    assert await probe(url, requests=3, timeout="250ms", measure="latencyP50").value(cluster="x") == 0.25


async def test_a_request_slower_than_the_timeout_fails_and_counts_the_timeout(
    green_backend: backends.Backend,
) -> None:
    green_backend.latency = 1.0

    outcomes = await probe(green_backend.url + "/", requests=2, timeout="100ms").probe(cluster="prod-green")

    assert [(o.success, o.seconds, o.detail) for o in outcomes] == [(False, 0.1, "no answer within 0.1s")] * 2


async def test_the_url_names_the_side_measured(blue_backend: backends.Backend, green_backend: backends.Backend) -> None:
    green_backend.error_rate = 0.5
    ports = Placeholders(blue=str(blue_backend.port), green=str(green_backend.port), namespace="fleet", name="u")
    provider = http.HTTPProbeProvider(url="http://127.0.0.1:{{cluster}}/", placeholders=ports, requests=4)

    assert await provider.value(cluster=ports.green) == 0.5
    assert await provider.value(cluster=ports.blue) == 1.0
    assert (blue_backend.requests, green_backend.requests) == (4, 4)


# --- Host header, codes, methods, batches, TLS ---------------------------------------------------

async def test_the_host_header_is_sent(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def ingress(request: web.Request) -> web.Response:
        # Like an ingress controller: only the site it serves, 404 for any other name.
        return web.Response(text="shop") if request.host == "app.example.com" else web.Response(status=404)

    url = await serve(ingress)

    assert await probe(url + "/", host="app.example.com", successCodes="200").value(cluster="prod-green") == 1.0
    assert await probe(url + "/", successCodes="200").value(cluster="prod-green") == 0.0


async def test_the_host_may_name_the_side(serve: Callable[[Handler], Awaitable[str]]) -> None:
    hosts: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hosts.append(request.host)
        return web.Response()

    url = await serve(record)
    await probe(url + "/", host="{{cluster}}.app.example.com", requests=2).value(cluster="prod-green")

    assert hosts == ["prod-green.app.example.com"] * 2


@pytest.mark.parametrize(("codes", "status", "success"), [
    ("200-399", 302, True),
    ("200-399", 404, False),
    ("200-299,404", 404, True),
    ("200-299,404", 503, False),
    ("204", 204, True),
])
async def test_success_codes(serve: Callable[[Handler], Awaitable[str]], codes: str, status: int,
                             success: bool) -> None:
    async def answer(request: web.Request) -> web.Response:
        headers = {"Location": "http://elsewhere.invalid/"} if 300 <= status < 400 else {}
        return web.Response(status=status, headers=headers)

    url = await serve(answer)

    assert await probe(url + "/", successCodes=codes, requests=2).value(cluster="x") == (1.0 if success else 0.0)


async def test_method_is_sent(serve: Callable[[Handler], Awaitable[str]]) -> None:
    methods: list[str] = []

    async def record(request: web.Request) -> web.Response:
        methods.append(request.method)
        return web.Response()

    url = await serve(record)
    await probe(url + "/", method="HEAD", requests=1).value(cluster="x")
    await probe(url + "/", method="POST", requests=1).value(cluster="x")

    assert methods == ["HEAD", "POST"]


async def test_requests_go_out_in_small_batches(serve: Callable[[Handler], Awaitable[str]]) -> None:
    in_flight, most = 0, 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.Response()

    url = await serve(slow)

    assert await probe(url + "/", requests=12).value(cluster="x") == 1.0
    assert 1 <= most <= http.BATCH_SIZE


async def test_an_untrusted_certificate_is_inconclusive_not_a_failure(
    serve: Callable[..., Awaitable[str]], self_signed: ssl.SSLContext,  # noqa: F811
) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=request.host)

    url = await serve(hello, ssl_context=self_signed)

    with pytest.raises(MetricError, match=r"GET https://127\.0\.0\.1:\d+/: the server's TLS certificate is not "
                                          r"trusted .*insecureSkipTLSVerify: true"):
        await probe(url + "/").value(cluster="prod-green")
    skipped = probe(url + "/", host="app.example.com", insecureSkipTLSVerify=True, requests=2)
    assert await skipped.value(cluster="prod-green") == 1.0


async def test_an_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(MetricError, match=r"httpProbe.host has unknown placeholder\(s\) \{\{side\}\}"):
        await probe("http://127.0.0.1:9/", host="{{side}}.example.com").value(cluster="prod-green")


# --- the pure parts --------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "inside", "outside"), [
    ("200-399", [200, 302, 399], [199, 400, 500]),
    ("200-299,404", [200, 299, 404], [300, 403, 405]),
    ("204", [204], [200, 205]),
])
def test_status_codes(text: str, inside: list[int], outside: list[int]) -> None:
    codes = http.StatusCodes.parse(text)
    assert all(code in codes for code in inside)
    assert not any(code in codes for code in outside)


@pytest.mark.parametrize(("text", "message"), [
    ("399-200", r"'399-200' is not a range of HTTP codes"),
    ("600", r"'600' is not a range"),
    ("20x", r"'20x' is not a code or a range such as 200-399"),
])
def test_status_codes_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        http.StatusCodes.parse(text)


@pytest.mark.parametrize(("values", "share", "expected"), [
    ([0.1, 0.2, 0.3, 0.4], 0.5, 0.2),
    ([0.1, 0.2, 0.3, 0.4], 0.95, 0.4),
    ([0.4, 0.1, 0.3, 0.2], 1.0, 0.4),
    ([0.7], 0.5, 0.7),
    ([float(n) for n in range(1, 101)], 0.95, 95.0),
    ([float(n) for n in range(1, 101)], 0.99, 99.0),
])
def test_percentile_table(values: list[float], share: float, expected: float) -> None:
    assert http.percentile(values, share) == expected


values = st.lists(st.floats(min_value=0, max_value=60), min_size=1, max_size=200)
shares = st.floats(min_value=0.001, max_value=1.0)


@given(values, shares)
def test_a_percentile_is_a_value_with_at_least_that_share_at_or_below_it(data: list[float], share: float) -> None:
    result = http.percentile(data, share)
    assert result in data
    assert sum(value <= result for value in data) >= math.ceil(share * len(data))
    assert sum(value < result for value in data) < math.ceil(share * len(data))


@given(values, shares, shares)
def test_percentiles_grow_with_the_share(data: list[float], first: float, second: float) -> None:
    low, high = sorted((first, second))
    assert http.percentile(data, low) <= http.percentile(data, high)
    assert http.percentile(data, 1.0) == max(data)


@given(st.lists(st.booleans(), min_size=1, max_size=100))
def test_success_rate_counts_successes(results: list[bool]) -> None:
    outcomes = [http.Outcome(success=ok, seconds=0.1, detail="") for ok in results]
    assert http.summarize(outcomes, ProbeMeasure.SUCCESS_RATE) == sum(results) / len(results)

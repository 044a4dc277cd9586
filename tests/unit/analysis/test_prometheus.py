"""The Prometheus provider: against a real Prometheus (shapes of results, errors, HAProxy's real counters), and
against a local server standing in for an authenticating proxy in front of Prometheus (credentials, TLS,
redirects, timeouts)."""

from __future__ import annotations

import asyncio
import base64
import math
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bluegreen.analysis.base import MetricError
from bluegreen.analysis.placeholders import Placeholders
from bluegreen.analysis.prometheus import PrometheusProvider, SecretCredentials, value_of
from bluegreen.sim import backends
from bluegreen.sim import haproxy as sim_haproxy
from bluegreen.sim.prometheus import PrometheusServer
from tests.fixtures.prometheus import Exporter, Management

# The traffic tests' fixture: a server context with a fresh self-signed certificate for 127.0.0.1.
from tests.fixtures.tls import self_signed  # noqa: F401

PLACEHOLDERS = Placeholders(blue="prod-blue", green="prod-green", namespace="fleet", name="prod-to-1-31")


def provider(address: str, query: str, **options: Any) -> PrometheusProvider:
    return PrometheusProvider(address=address, query=query, placeholders=PLACEHOLDERS, **options)


# --- the reply's data, as Prometheus shapes it ------------------------------------------------

@pytest.mark.parametrize(("data", "expected"), [
    ({"resultType": "vector", "result": [{"metric": {"a": "b"}, "value": [1.5, "0.25"]}]}, 0.25),
    ({"resultType": "scalar", "result": [1.5, "-3"]}, -3.0),
    ({"resultType": "vector", "result": []}, None),
    ({"resultType": "scalar", "result": [1.5, "NaN"]}, None),
    ({"resultType": "vector", "result": [{"metric": {}, "value": [1.5, "+Inf"]}]}, None),
    ({"resultType": "vector", "result": [{"metric": {}, "value": [1.5, "-Inf"]}]}, None),
])
def test_value_of_one_number_or_no_data(data: dict[str, Any], expected: float | None) -> None:
    assert value_of(data) == expected


@pytest.mark.parametrize(("data", "message"), [
    ({"resultType": "vector", "result": [{"metric": {"__name__": "x", "server": "a"}, "value": [1, "1"]},
                                         {"metric": {"__name__": "x", "server": "b"}, "value": [1, "2"]}]},
     r'2 series \(\{server="a"\}, \{server="b"\}\), not one number; .*sum\(\.\.\.\) or max\(\.\.\.\)'),
    ({"resultType": "vector", "result": [{"metric": {"i": str(n)}, "value": [1, "1"]} for n in range(5)]},
     r'5 series \(\{i="0"\}, \{i="1"\}, \{i="2"\} and 2 more\)'),
    ({"resultType": "matrix", "result": []}, r"range vector .* rate\(x\[5m\]\)"),
    ({"resultType": "string", "result": [1, "x"]}, r"returned a string, not a number"),
    ({"resultType": "scalar", "result": [1, "twelve"]}, r"not a number: 'twelve'"),
    (None, r"no data"),
])
def test_value_of_anything_else_is_an_error(data: Any, message: str) -> None:
    with pytest.raises(MetricError, match=message):
        value_of(data)


# --- a real Prometheus scraping an exporter the tests control -----------------------------------

@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
async def test_one_series_per_cluster_gives_that_sides_number(exporter: Exporter, prometheus: PrometheusServer) -> None:
    exporter.set("shop_error_ratio", 0.02, cluster="prod-green")
    exporter.set("shop_error_ratio", 0.005, cluster="prod-blue")
    await prometheus.wait_for('count(shop_error_ratio) == 2')
    metric = provider(prometheus.url, 'shop_error_ratio{cluster="{{cluster}}"}')

    assert await metric.value(cluster="prod-green") == 0.02
    assert await metric.value(cluster="prod-blue") == 0.005


@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
async def test_other_placeholders_are_the_upgrades(exporter: Exporter, prometheus: PrometheusServer) -> None:
    exporter.set("upgrade_info", 7, upgrade="prod-to-1-31", namespace="fleet", blue="prod-blue", green="prod-green")
    await prometheus.wait_for("upgrade_info")
    metric = provider(prometheus.url, 'upgrade_info{upgrade="{{name}}", namespace="{{namespace}}", '
                                      'blue="{{blue}}", green="{{green}}"}')

    assert await metric.value(cluster="prod-green") == 7


@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("timeout", [10.0, 2.5, 0.75])
async def test_the_timeout_is_given_to_prometheus_in_a_form_it_accepts(prometheus: PrometheusServer,
                                                                        timeout: float) -> None:
    assert await provider(prometheus.url, "vector(1)", timeout=timeout).value(cluster="prod-green") == 1


@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
async def test_no_series_is_no_data(prometheus: PrometheusServer) -> None:
    assert await provider(prometheus.url, 'shop_error_ratio{cluster="nowhere"}').value(cluster="x") is None


@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
async def test_nan_and_inf_are_no_data(exporter: Exporter, prometheus: PrometheusServer) -> None:
    exporter.set("shop_ratio_nan", math.nan)
    await prometheus.wait_for("shop_ratio_nan")

    assert await provider(prometheus.url, "shop_ratio_nan").value(cluster="x") is None
    assert await provider(prometheus.url, "1 / 0").value(cluster="x") is None  # a scalar +Inf
    assert await provider(prometheus.url, "sum(shop_ratio_nan) / 0").value(cluster="x") is None


@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
async def test_a_scalar_is_a_number(exporter: Exporter, prometheus: PrometheusServer) -> None:
    exporter.set("shop_latency_seconds", 0.125, cluster="prod-green")
    await prometheus.wait_for("shop_latency_seconds")

    assert await provider(prometheus.url, 'scalar(shop_latency_seconds{cluster="{{cluster}}"}) * 2').value(
        cluster="prod-green") == 0.25


@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
async def test_several_series_name_the_count_and_the_fix(exporter: Exporter, prometheus: PrometheusServer) -> None:
    for pod in ("a", "b", "c"):
        exporter.set("shop_pod_errors", 1, pod=pod)
    await prometheus.wait_for("count(shop_pod_errors) == 3")

    with pytest.raises(MetricError, match=r'returned 3 series \(.*pod="a".*\), not one number; .*sum\(\.\.\.\)'):
        await provider(prometheus.url, "shop_pod_errors").value(cluster="prod-green")
    assert await provider(prometheus.url, "sum(shop_pod_errors)").value(cluster="prod-green") == 3


@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
async def test_prometheus_errors_carry_its_error_type_and_words(prometheus: PrometheusServer) -> None:
    with pytest.raises(MetricError, match=r"refused the query \(bad_data\): .*parse error"):
        await provider(prometheus.url, "sum(rate(x[5m])").value(cluster="prod-green")
    with pytest.raises(MetricError, match=r"range vector"):
        await provider(prometheus.url, "up[1m]").value(cluster="prod-green")


@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
async def test_an_unknown_placeholder_is_refused_before_asking(prometheus: PrometheusServer) -> None:
    with pytest.raises(MetricError, match=r"unknown placeholder\(s\) \{\{clster\}\}; the known ones are "
                                          r"\{\{cluster\}\}, \{\{blue\}\}"):
        await provider(prometheus.url, 'up{job="{{clster}}"}').value(cluster="prod-green")


@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
async def test_an_address_that_is_not_prometheus_says_so(exporter: Exporter, prometheus: PrometheusServer) -> None:
    # The exporter answers 404 on /api/v1/query; aiohttp's plain-text 404 is not Prometheus's JSON.
    with pytest.raises(MetricError, match=r"Prometheus at http://127\.0\.0\.1:\d+/api/v1/query: HTTP 404"):
        await provider(f"http://{exporter.address}", "up").value(cluster="prod-green")


@pytest.mark.analysis
@pytest.mark.asyncio(loop_scope="module")
async def test_a_new_series_becomes_queryable(exporter: Exporter, prometheus: PrometheusServer) -> None:
    """Scraped every second: a new series shows up at the next scrape (the time taken is the bench's business)."""
    metric = provider(prometheus.url, 'shop_fresh{cluster="{{cluster}}"}')
    exporter.set("shop_fresh", 1.5, cluster="prod-green")
    await prometheus.wait_for('shop_fresh{cluster="prod-green"}')

    assert await metric.value(cluster="prod-green") == 1.5


# --- real counters from HAProxy in front of two real backends -----------------------------------

@pytest.mark.analysis
async def test_green_error_rate_through_a_real_haproxy(
    haproxy: sim_haproxy.HAProxyProcess, blue_backend: backends.Backend, green_backend: backends.Backend,
    haproxy_prometheus: PrometheusServer,
) -> None:
    green_backend.error_rate = 0.2
    await haproxy.command(f"set weight {haproxy.backend}/{haproxy.green_server} 100")
    await haproxy.command(f"set weight {haproxy.backend}/{haproxy.blue_server} 100")
    async with aiohttp.ClientSession() as session:
        for _ in range(60):
            async with session.get(haproxy.frontend_url + "/") as response:
                await response.read()
    answered = blue_backend.requests + green_backend.requests
    await haproxy_prometheus.wait_for(f"sum(haproxy_server_http_responses_total) == {answered}")
    errors = 'sum(haproxy_server_http_responses_total{proxy="app", server="{{cluster}}", code="5xx"})'
    total = 'sum(haproxy_server_http_responses_total{proxy="app", server="{{cluster}}"})'
    metric = PrometheusProvider(address=haproxy_prometheus.url, query=f"{errors} / {total}",
                                placeholders=Placeholders(blue="blue", green="green", namespace="fleet", name="up"))

    green = await metric.value(cluster="green")
    blue = await metric.value(cluster="blue")

    assert green_backend.requests > 0 and green_backend.errors > 0
    assert green == pytest.approx(green_backend.errors / green_backend.requests)
    assert green == pytest.approx(0.2, abs=0.05)
    assert blue == 0


# --- credentials, TLS, redirects and timeouts against a local stand-in ---------------------------

QUERY_REPLY = {"status": "success", "data": {"resultType": "vector",
                                              "result": [{"metric": {}, "value": [1.0, "0.5"]}]}}


class Guarded:
    """Answers /api/v1/query like Prometheus when the Authorization header is the expected one, else 401.

    ``echo`` makes a refusal quote the header it got (a careless proxy), ``delay`` holds each answer,
    and ``redirect`` answers 302 to another path it counts the visits of.
    """

    def __init__(self, *, authorization: str | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.authorization = authorization
        self.ssl_context = ssl_context
        self.echo = False
        self.delay = 0.0
        self.redirect = False
        self.seen: list[dict[str, str]] = []
        self.redirected_visits = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/query", self._query)
        app.router.add_get("/elsewhere/api/v1/query", self._elsewhere)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        scheme = "https" if self.ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _query(self, request: web.Request) -> web.Response:
        self.seen.append({"authorization": request.headers.get("Authorization", ""),
                          "query": request.query.get("query", ""), "timeout": request.query.get("timeout", "")})
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.redirect:
            raise web.HTTPFound("/elsewhere/api/v1/query")
        if self.authorization is not None and request.headers.get("Authorization") != self.authorization:
            said = request.headers.get("Authorization", "nothing") if self.echo else "wrong credentials"
            return web.Response(status=401, text=f"unauthorized: got {said}\n")
        return web.json_response(QUERY_REPLY)

    async def _elsewhere(self, request: web.Request) -> web.Response:
        self.redirected_visits += 1
        return web.json_response(QUERY_REPLY)


@pytest.fixture
async def guarded() -> AsyncIterator[Guarded]:
    server = Guarded(authorization="Bearer s3cr3t-t0ken")
    await server.start()
    yield server
    await server.stop()


def with_secret(management: Management, url: str, *, name: str = "prom-auth", **options: Any) -> PrometheusProvider:
    credentials = SecretCredentials(client=management.client, namespace=management.namespace, name=name)
    return provider(url, 'up{cluster="{{cluster}}"}', credentials=credentials, **options)


async def test_a_token_is_sent_as_a_bearer(guarded: Guarded, management: Management) -> None:
    management.secret("prom-auth", {"token": "s3cr3t-t0ken"})

    assert await with_secret(management, guarded.url, timeout=2.5).value(cluster="prod-green") == 0.5
    assert guarded.seen == [{"authorization": "Bearer s3cr3t-t0ken", "query": 'up{cluster="prod-green"}',
                             "timeout": "2.5"}]


async def test_username_and_password_are_sent_as_basic_auth(management: Management) -> None:
    expected = "Basic " + base64.b64encode(b"grafana:pa:ss").decode()
    server = Guarded(authorization=expected)
    await server.start()
    try:
        management.secret("prom-auth", {"username": "grafana", "password": "pa:ss"})
        assert await with_secret(management, server.url).value(cluster="prod-green") == 0.5
    finally:
        await server.stop()


async def test_a_token_wins_over_username_and_password(guarded: Guarded, management: Management) -> None:
    management.secret("prom-auth", {"token": "s3cr3t-t0ken", "username": "u", "password": "p"})

    assert await with_secret(management, guarded.url).value(cluster="prod-green") == 0.5


@pytest.mark.parametrize(("data", "message"), [
    ({"user": "grafana", "pass": "x"}, r"has neither key token nor keys username and password \(its keys: pass, "
                                       r"user\); add token .* or username and password"),
    ({"username": "grafana"}, r"has key username but not password; add password, or key token"),
    ({"password": "x"}, r"has key password but not username; add username"),
    ({"token": ""}, r"key 'token' is empty"),
])
async def test_a_secret_without_usable_keys_names_the_keys_expected(
    guarded: Guarded, management: Management, data: dict[str, str], message: str
) -> None:
    management.secret("prom-auth", data)

    with pytest.raises(MetricError, match=r"Secret fleet/prom-auth \(prometheus.secretRef\):? " + message):
        await with_secret(management, guarded.url).value(cluster="prod-green")
    assert guarded.seen == []


async def test_a_missing_secret_is_named(guarded: Guarded, management: Management) -> None:
    with pytest.raises(MetricError, match=r"Secret fleet/prom-auth \(prometheus.secretRef\) does not exist"):
        await with_secret(management, guarded.url).value(cluster="prod-green")


async def test_refused_credentials_name_the_secret_and_never_show_the_token(
    guarded: Guarded, management: Management
) -> None:
    management.secret("prom-auth", {"token": "an-old-token"})
    guarded.echo = True

    with pytest.raises(MetricError) as refused:
        await with_secret(management, guarded.url).value(cluster="prod-green")
    assert "HTTP 401: the credentials in Secret fleet/prom-auth (prometheus.secretRef) were refused" in str(
        refused.value)
    assert guarded.seen[0]["authorization"] == "Bearer an-old-token"
    assert "an-old-token" not in str(refused.value)
    assert "an-old-token" not in repr(with_secret(management, guarded.url))


async def test_without_credentials_a_401_points_at_secret_ref(guarded: Guarded) -> None:
    with pytest.raises(MetricError, match=r"HTTP 401: Prometheus wants credentials; name a Secret in "
                                          r"prometheus.secretRef"):
        await provider(guarded.url, "up").value(cluster="prod-green")


async def test_a_quoted_body_never_shows_the_token(guarded: Guarded, management: Management) -> None:
    """A proxy that echoes the header in a 5xx body: the message quotes the body with the token blanked out."""
    management.secret("prom-auth", {"token": "s3cr3t-t0ken"})

    async def echo(request: web.Request) -> web.Response:
        return web.Response(status=502, text=f"upstream down for {request.headers['Authorization']}\n")

    app = web.Application()
    app.router.add_get("/api/v1/query", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        with pytest.raises(MetricError) as failed:
            await with_secret(management, f"http://127.0.0.1:{runner.addresses[0][1]}").value(cluster="prod-green")
    finally:
        await runner.cleanup()
    assert "HTTP 502: upstream down for Bearer <redacted>" in str(failed.value)
    assert "s3cr3t" not in str(failed.value)


async def test_a_redirect_is_not_followed(guarded: Guarded, management: Management) -> None:
    management.secret("prom-auth", {"token": "s3cr3t-t0ken"})
    guarded.redirect = True

    with pytest.raises(MetricError, match=r"HTTP 302, a redirect to http://127\.0\.0\.1:\d+/elsewhere/api/v1/query, "
                                          r"which is not followed"):
        await with_secret(management, guarded.url).value(cluster="prod-green")
    assert guarded.redirected_visits == 0


async def test_a_slow_prometheus_times_out(guarded: Guarded) -> None:
    guarded.authorization = None
    guarded.delay = 0.5

    with pytest.raises(MetricError, match=r"no answer within 0\.1s"):
        await provider(guarded.url, "up", timeout=0.1).value(cluster="prod-green")


async def test_an_unreachable_prometheus_says_it_cannot_connect(unused_tcp_port: int) -> None:
    with pytest.raises(MetricError, match=rf"Prometheus at http://127\.0\.0\.1:{unused_tcp_port}/api/v1/query: "
                                          r"cannot connect"):
        await provider(f"http://127.0.0.1:{unused_tcp_port}", "up").value(cluster="prod-green")


async def test_tls_is_verified_unless_told_otherwise(self_signed: ssl.SSLContext) -> None:  # noqa: F811
    server = Guarded(ssl_context=self_signed)
    await server.start()
    try:
        with pytest.raises(MetricError, match=r"TLS certificate is not trusted .*insecureSkipTLSVerify: true"):
            await provider(server.url, "up").value(cluster="prod-green")
        assert await provider(server.url, "up", verify_tls=False).value(cluster="prod-green") == 0.5
    finally:
        await server.stop()


def test_the_address_may_have_a_path_prefix() -> None:
    assert "http://monitoring.example:9090/prometheus/api/v1/query" in repr(
        provider("http://monitoring.example:9090/prometheus/", "up"))

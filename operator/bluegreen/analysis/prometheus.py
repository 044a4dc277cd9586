"""Prometheus as a metric provider: one instant query, one number.

``GET {address}/api/v1/query?query=...&timeout=...`` with the query's
placeholders filled for the side measured. What the answer means:

- a vector with exactly one sample, or a scalar: that number;
- an empty vector: no data (None), e.g. a rate over a series that has not
  been scraped yet; NaN and +/-Inf are no data too (0/0 in an error rate
  before any request, or a division by a zero rate);
- a vector with several samples: an error naming how many and their labels,
  because picking one would judge an arbitrary series; the query should
  aggregate (``sum(...)``, ``max(...)``);
- a range vector or a string: an error saying an instant number is needed;
- ``status: error``: an error carrying Prometheus's ``errorType`` and ``error``
  (a PromQL syntax error is the usual one).

Every failure raises :class:`~bluegreen.analysis.base.MetricError` (the check
is Inconclusive, never Failed: an unreachable Prometheus says nothing about
green). The request is bounded by ``timeout``, which is also passed to
Prometheus so it gives up on the query at the same time (in plain seconds:
Prometheus refuses a fractional duration with a unit, such as ``2.5s``).

Credentials come from ``secretRef``, a Secret in the ClusterUpgrade's
namespace read at every measurement (a rotated token takes effect at once):
key ``token`` for a bearer token, else keys ``username`` and ``password`` for
basic auth. They are never logged nor put in a message, redirects are not
followed (the credentials would go with them), and TLS certificates are
verified unless ``insecureSkipTLSVerify``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import math
import urllib.parse
from typing import Any

import aiohttp

from bluegreen import httptext as transport
from bluegreen.analysis.base import MetricError
from bluegreen.analysis.placeholders import Placeholders
from bluegreen.api import durations, spec
from bluegreen.kube import client as kubeclient

logger = logging.getLogger(__name__)

SECRETS = kubeclient.Resource("", "v1", "secrets")
QUERY_PATH = "/api/v1/query"
_LABELS_SHOWN = 3


@dataclasses.dataclass(frozen=True)
class Authorization:
    """An ``Authorization`` header's value, and the secrets in it, to blank out of anything quoted."""

    header: str = dataclasses.field(repr=False)
    secrets: tuple[str, ...] = dataclasses.field(repr=False)


class SecretCredentials:
    """``Authorization`` for Prometheus from a Secret: key token (Bearer), or keys username and password (Basic)."""

    def __init__(self, *, client: kubeclient.KubeClient, namespace: str, name: str) -> None:
        self._client = client
        self._namespace = namespace
        self._name = name

    def __repr__(self) -> str:
        return f"SecretCredentials(Secret {self._namespace}/{self._name})"

    @property
    def where(self) -> str:
        return f"Secret {self._namespace}/{self._name} (prometheus.secretRef)"

    async def authorization(self) -> Authorization:
        try:
            secret = await self._client.get(SECRETS, namespace=self._namespace, name=self._name)
        except kubeclient.KubeError as exc:
            raise MetricError(f"cannot read {self.where}: {exc}") from None
        if secret is None:
            raise MetricError(f"{self.where} does not exist")
        data = secret.get("data") or {}
        if "token" in data:
            token = self._decode(data, "token")
            return Authorization(header=f"Bearer {token}", secrets=(token,))
        if "username" in data and "password" in data:
            username, password = self._decode(data, "username"), self._decode(data, "password")
            encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
            return Authorization(header=f"Basic {encoded}", secrets=(encoded, password))
        pair = [key for key in ("username", "password") if key in data]
        if len(pair) == 1:
            other = "password" if pair[0] == "username" else "username"
            raise MetricError(f"{self.where} has key {pair[0]} but not {other}; add {other}, or key token for a "
                              "bearer token")
        keys = ", ".join(sorted(data)) or "none"
        raise MetricError(f"{self.where} has neither key token nor keys username and password (its keys: {keys}); "
                          "add token for a bearer token, or username and password for basic auth")

    def _decode(self, data: dict[str, Any], key: str) -> str:
        try:
            text = base64.b64decode(data[key], validate=True).decode().strip()
        except (binascii.Error, ValueError, TypeError):
            raise MetricError(f"{self.where}: key {key!r} is not valid base64") from None
        if not text:
            raise MetricError(f"{self.where}: key {key!r} is empty")
        return text


class PrometheusProvider:
    """One PromQL instant query against one Prometheus server."""

    def __init__(
        self,
        *,
        address: str,
        query: str,
        placeholders: Placeholders,
        timeout: float = 10.0,
        verify_tls: bool = True,
        credentials: SecretCredentials | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"prometheus.timeout must be positive, got {timeout}s")
        self._url = address.rstrip("/") + QUERY_PATH
        self._query = query
        self._placeholders = placeholders
        self._timeout = timeout
        self._verify_tls = verify_tls
        self._credentials = credentials

    @classmethod
    def from_spec(
        cls,
        config: spec.PrometheusQuery,
        *,
        placeholders: Placeholders,
        management: kubeclient.KubeClient,
        namespace: str,
    ) -> PrometheusProvider:
        credentials = None
        if config.secret_ref is not None:
            credentials = SecretCredentials(client=management, namespace=namespace, name=config.secret_ref.name)
        return cls(
            address=config.address,
            query=config.query,
            placeholders=placeholders,
            timeout=durations.parse_duration(config.timeout).total_seconds(),
            verify_tls=not config.insecure_skip_tls_verify,
            credentials=credentials,
        )

    def __repr__(self) -> str:
        return (f"PrometheusProvider({transport.safe_url(self._url)!r}, query={self._query!r}, "
                f"credentials={self._credentials!r}, verify_tls={self._verify_tls})")

    async def value(self, *, cluster: str) -> float | None:
        query = self._placeholders.render(self._query, cluster=cluster, field="prometheus.query")
        authorization = await self._credentials.authorization() if self._credentials is not None else None
        headers = {"Accept": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization.header
        where = f"Prometheus at {transport.safe_url(self._url)}"
        secrets = authorization.secrets if authorization is not None else ()
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout)) as session,
                session.get(self._url, params={"query": query, "timeout": f"{self._timeout:g}"}, headers=headers,
                            allow_redirects=False, ssl=self._verify_tls) as response,
            ):
                status, text = response.status, await response.text(errors="replace")
                location = response.headers.get("Location", "")
        except aiohttp.ClientConnectorCertificateError as exc:
            raise MetricError(f"{where}: {transport.untrusted_certificate(exc)}") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise MetricError(f"{where}: {transport.problem(exc, timeout=self._timeout)}") from None
        reply = _json(text)
        if isinstance(reply, dict) and reply.get("status") == "error":
            raise MetricError(f"{where} refused the query ({reply.get('errorType') or 'error'}): "
                              f"{transport.quote(str(reply.get('error')), secrets=secrets)}")
        if status != 200:
            raise MetricError(f"{where}: {self._status_problem(status, text, location=location, secrets=secrets)}")
        if not isinstance(reply, dict) or reply.get("status") != "success":
            raise MetricError(f"{where} answered with something that is not a Prometheus API reply: "
                              f"{transport.quote(text, secrets=secrets)}; check prometheus.address")
        value = value_of(reply.get("data"))
        logger.debug("%s: %s -> %s", where, query, value)
        return value

    def _status_problem(self, status: int, text: str, *, location: str, secrets: tuple[str, ...]) -> str:
        if 300 <= status < 400:
            target = transport.safe_url(urllib.parse.urljoin(self._url, location)) if location else "(nowhere)"
            return (f"HTTP {status}, a redirect to {target}, "
                    "which is not followed (credentials must not go elsewhere); put that address in "
                    "prometheus.address")
        if status in (401, 403):
            if self._credentials is None:
                return f"HTTP {status}: Prometheus wants credentials; name a Secret in prometheus.secretRef"
            return f"HTTP {status}: the credentials in {self._credentials.where} were refused"
        return f"HTTP {status}: {transport.quote(text, secrets=secrets)}"


def value_of(data: Any) -> float | None:
    """The number in a query reply's ``data``: one sample or a scalar; None for no sample, NaN or Inf."""
    if not isinstance(data, dict):
        raise MetricError("the reply has no data")
    result_type, result = data.get("resultType"), data.get("result")
    if result_type == "scalar":
        return _sample(result)
    if result_type == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            shown = ", ".join(_labels(item) for item in result[:_LABELS_SHOWN])
            more = f" and {len(result) - _LABELS_SHOWN} more" if len(result) > _LABELS_SHOWN else ""
            raise MetricError(f"the query returned {len(result)} series ({shown}{more}), not one number; aggregate "
                              "them into one, e.g. sum(...) or max(...)")
        item = result[0]
        return _sample(item.get("value") if isinstance(item, dict) else None)
    if result_type == "matrix":
        raise MetricError("the query returned a range vector ([...] selects a range); an instant number is needed: "
                          "wrap it, e.g. rate(x[5m]) or avg_over_time(x[5m])")
    raise MetricError(f"the query returned a {result_type or 'reply without resultType'}, not a number")


def _sample(pair: Any) -> float | None:
    # Prometheus sends [<unix time>, "<value>"]; the value is a string so NaN and Inf survive JSON.
    if not isinstance(pair, list) or len(pair) != 2:
        raise MetricError(f"the reply holds a malformed sample: {pair!r}")
    try:
        number = float(pair[1])
    except (TypeError, ValueError):
        raise MetricError(f"the reply holds a sample that is not a number: {pair[1]!r}") from None
    return number if math.isfinite(number) else None


def _labels(item: Any) -> str:
    metric = item.get("metric") if isinstance(item, dict) else None
    if not isinstance(metric, dict):
        return "{}"
    # The metric name is the same in every series the message lists; the labels tell them apart.
    return "{" + ", ".join(f'{key}="{value}"' for key, value in sorted(metric.items()) if key != "__name__") + "}"


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None

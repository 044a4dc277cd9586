"""A webhook as a router: POST the weights as JSON to a URL, optionally GET them back.

For whatever has no router of its own: an F5 BIG-IP behind a small adapter, a
home-made load balancer, a change-management system. The receiver's contract:

- ``POST url`` with ``Content-Type: application/json`` and the body
  ``{"blue": 90, "green": 10, "upgrade": {"namespace": ..., "name": ...}, "router": <name>}``.
  Any 2xx means the weights are in effect (or will be: ``verify`` says when).
  A JSON reply with a ``changeId`` is recorded in the journal with the change.
- ``finalize`` POSTs the same body with ``"finalize": true``, ``"retired"``
  (``"blue"`` after a promotion, ``"green"`` after a rollback) and ``"mode"``
  (``"Remove"`` or ``"Restore"``, the router's ``onFinalize``): the receiver
  may now remove the retired side from its pool, or, for ``Restore``, put its
  pool back as it was before the upgrade. The weights give the kept side 100
  (with ``Restore``, the weights read back before the upgrade), e.g.
  ``{"blue": 0, "green": 100, "finalize": true, "retired": "blue", "mode": "Remove", ...}``.
- ``GET readURL`` (optional) answers ``{"blue": <percent>, "green": <percent>}``
  adding up to 100: the weights in effect; and ``"finalized": true`` once it
  has carried out a finalize and received no weights since.
- ``Authorization: Bearer <token>`` on both when ``bearerTokenSecretRef`` is set.

Invariants:

- Nothing is remembered between calls. With a ``readURL``, ``set_weights``
  reads first and POSTs only when the weights differ; without one it POSTs
  every time and reports a change, because it cannot know, and ``verify``
  returns None (not verifiable). ``save`` returns the weights the
  ``readURL`` reports, or nothing without one (so ``Restore`` cannot be done
  and is refused). ``finalize`` POSTs unless the ``readURL`` reports
  ``finalized: true``; the weights alone cannot tell, since the kept side is
  at 100 before retirement anyway. With a ``readURL`` it refuses while the
  retired side still has a share. A receiver without a ``readURL`` gets a
  finalize at every call, must treat a repeat as a no-op, and must itself
  refuse (4xx) to remove a side that still takes traffic.
- Each request is bounded by ``timeout``. 5xx answers, timeouts and connection
  failures are retried ``retries`` times with doubling backoff; a 4xx is
  final (the request itself is wrong) and its error carries the first line of
  the body. Redirects are not followed: the bearer token must not follow one
  to another host, so a 3xx is final too, naming the address to configure.
- TLS certificates are verified unless ``insecureSkipTLSVerify``; a
  certificate that fails verification is final, never retried.
- The token is read from its Secret at every call (a rotation takes effect at
  once) and never logged or put in an error: URLs in messages are cut to
  scheme, host, port and path (a query or userinfo may hold credentials),
  and the token is blanked out of any body quoted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

import aiohttp

from bluegreen import httptext
from bluegreen.api import durations, spec
from bluegreen.httptext import safe_url
from bluegreen.kube import client as kubeclient
from bluegreen.traffic import base, retiring

logger = logging.getLogger(__name__)

SECRETS = kubeclient.Resource("", "v1", "secrets")
DEFAULT_TOKEN_KEY = "token"
DEFAULT_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0


class BearerToken:
    """A bearer token kept in a Secret key, read at every use."""

    def __init__(self, *, client: kubeclient.KubeClient, namespace: str, name: str, key: str = DEFAULT_TOKEN_KEY):
        self._client = client
        self._namespace = namespace
        self._name = name
        self._key = key

    def __repr__(self) -> str:
        return f"BearerToken(Secret {self._namespace}/{self._name} key {self._key})"

    async def read(self) -> str:
        where = f"Secret {self._namespace}/{self._name} (webhook.bearerTokenSecretRef)"
        try:
            secret = await self._client.get(SECRETS, namespace=self._namespace, name=self._name)
        except kubeclient.KubeError as exc:
            raise base.RouterError(f"cannot read {where}: {exc}") from None
        if secret is None:
            raise base.RouterError(f"{where} does not exist")
        data = secret.get("data") or {}
        if self._key in data:
            try:
                token = base64.b64decode(data[self._key], validate=True).decode().strip()
            except (binascii.Error, ValueError):
                raise base.RouterError(f"{where}: key {self._key!r} is not valid base64") from None
        elif self._key in (secret.get("stringData") or {}):
            token = str(secret["stringData"][self._key]).strip()
        else:
            keys = ", ".join(sorted(data)) or "none"
            raise base.RouterError(f"{where} has no key {self._key!r} (its keys: {keys}); set the key in the ref")
        if not token:
            raise base.RouterError(f"{where}: key {self._key!r} is empty")
        return token


class _Final(Exception):
    """A failure that another attempt cannot fix."""


class WebhookRouter:
    """Send the weights to an HTTP endpoint; read them back from another, if there is one."""

    def __init__(
        self,
        *,
        name: str,
        url: str,
        read_url: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        token: BearerToken | None = None,
        verify_tls: bool = True,
        upgrade: Mapping[str, str | None] | None = None,
        backoff: float = DEFAULT_BACKOFF_SECONDS,
    ) -> None:
        for field, value in (("url", url), ("readURL", read_url)):
            if value is not None and urllib.parse.urlsplit(value).scheme not in ("http", "https"):
                raise ValueError(f"webhook.{field} {safe_url(value)!r} is not an http:// or https:// URL")
        if timeout <= 0:
            raise ValueError(f"webhook.timeout must be positive, got {timeout}s")
        if retries < 0:
            raise ValueError(f"webhook.retries must be 0 or more, got {retries}")
        self._name = name
        self._url = url
        self._read_url = read_url
        self._timeout = timeout
        self._retries = retries
        self._token = token
        self._verify_tls = verify_tls
        self._upgrade = dict(upgrade or {})
        self._backoff = backoff

    @classmethod
    def from_spec(
        cls, *, name: str, config: spec.WebhookRouter, context: base.RouterContext | None
    ) -> WebhookRouter:
        token: BearerToken | None = None
        if config.bearer_token_secret_ref is not None:
            if context is None:
                raise ValueError(f"router {name!r}: webhook.bearerTokenSecretRef needs the operator's context")
            token = BearerToken(client=context.management, namespace=context.namespace,
                                name=config.bearer_token_secret_ref.name,
                                key=config.bearer_token_secret_ref.key or DEFAULT_TOKEN_KEY)
        upgrade = {"namespace": context.namespace, "name": context.upgrade_name} if context is not None else {}
        return cls(
            name=name,
            url=config.url,
            read_url=config.read_url,
            timeout=durations.parse_duration(config.timeout).total_seconds(),
            retries=config.retries,
            token=token,
            verify_tls=not config.insecure_skip_tls_verify,
            upgrade=upgrade,
        )

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        read = safe_url(self._read_url) if self._read_url else None
        return (
            f"WebhookRouter(name={self._name!r}, url={safe_url(self._url)!r}, read_url={read!r}, "
            f"token={'yes' if self._token else 'no'}, verify_tls={self._verify_tls})"
        )

    async def set_weights(self, *, blue: int, green: int) -> base.RouterChange:
        if not (0 <= blue <= 100 and 0 <= green <= 100 and blue + green == 100):
            raise ValueError(f"weights must be percent summing to 100, got blue={blue} green={green}")
        token = await self._token.read() if self._token is not None else None
        async with self._session() as session:
            if self._read_url is not None:
                current, _ = await self._read(session, token)
                if current == base.RouterWeights(blue=blue, green=green):
                    return base.RouterChange(
                        changed=False, detail=f"{safe_url(self._read_url)} reports blue {blue}, green {green}"
                    )
            reply = await self._post(session, token, {"blue": blue, "green": green})
        return base.RouterChange(
            changed=True, detail=f"POST {safe_url(self._url)}: blue {blue}, green {green}",
            change_id=_change_id(reply),
        )

    async def verify(self) -> base.RouterWeights | None:
        if self._read_url is None:
            return None
        token = await self._token.read() if self._token is not None else None
        async with self._session() as session:
            weights, _ = await self._read(session, token)
        return weights

    async def save(self) -> dict[str, Any]:
        """The weights the ``readURL`` reports, or {} without one."""
        weights = await self.verify()
        return {} if weights is None else {"blue": weights.blue, "green": weights.green}

    async def finalize(self, *, retired: str, mode: str, original: dict[str, Any] | None) -> str:
        hint = "" if self._read_url is not None else " (a webhook router without readURL cannot read its weights)"
        retirement = retiring.plan(router=self._name, retired=retired, mode=mode, original=original,
                                   unsaved_hint=hint)
        what = f"the receiver of {safe_url(self._url)}"
        if retirement.restoring:
            weights = {side: retiring.saved(retirement, side, router=self._name, expect=int) for side in retiring.SIDES}
            if _percent(weights["blue"]) is None or _percent(weights["green"]) is None or sum(weights.values()) != 100:
                raise base.RouterError(f"router {self._name!r}: the weights saved in status.routers are {weights}, "
                                       "not percent adding up to 100; set onFinalize: Remove")
            retiring.check_original(retirement, shares=(weights["blue"], weights["green"]), what=what,
                                    state=f"blue {weights['blue']}, green {weights['green']}")
        else:
            weights = {retirement.retired: 0, retirement.kept: 100}
        token = await self._token.read() if self._token is not None else None
        async with self._session() as session:
            if self._read_url is not None:
                current, finalized = await self._read(session, token)
                retiring.check_current(retirement, shares=(current.blue, current.green), what=what,
                                       state=f"{safe_url(self._read_url)} reports blue {current.blue}, "
                                             f"green {current.green}")
                if finalized:
                    return f"{safe_url(self._read_url)} reports finalized: nothing to send"
            # After a promotion Restore is Remove: the receiver is told what is done, not what was asked.
            done = spec.FinalizeMode.RESTORE if retirement.restoring else spec.FinalizeMode.REMOVE
            reply = await self._post(session, token, {**weights, "finalize": True, "retired": retirement.retired,
                                                      "mode": done.value})
        change_id = _change_id(reply)
        return (f"POST {safe_url(self._url)}: finalize, {retirement.retired} retired ({done.value}), "
                f"blue {weights['blue']}, green {weights['green']}" + (f", change {change_id}" if change_id else ""))

    # --- HTTP --------------------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))

    async def _post(self, session: aiohttp.ClientSession, token: str | None, weights: dict[str, Any]) -> str:
        body = {**weights, "upgrade": self._upgrade, "router": self._name}
        return await self._request(session, "POST", self._url, token=token, body=body)

    async def _read(self, session: aiohttp.ClientSession, token: str | None) -> tuple[base.RouterWeights, bool]:
        """The weights the ``readURL`` reports, and whether it says a finalize was carried out."""
        assert self._read_url is not None
        text = await self._request(session, "GET", self._read_url, token=token)
        where = f"GET {safe_url(self._read_url)}"
        try:
            reply = json.loads(text)
        except ValueError:
            raise base.RouterError(f"{where} answered with something that is not JSON: "
                                   f"{_first_line(text, token)}") from None
        blue = _percent(reply.get("blue")) if isinstance(reply, dict) else None
        green = _percent(reply.get("green")) if isinstance(reply, dict) else None
        if blue is None or green is None or blue + green != 100:
            raise base.RouterError(
                f"{where} answered {_first_line(text, token)}; expected "
                '{"blue": <percent>, "green": <percent>} adding up to 100'
            )
        return base.RouterWeights(blue=blue, green=green), reply.get("finalized") is True

    async def _request(
        self, session: aiohttp.ClientSession, method: str, url: str, *, token: str | None,
        body: dict[str, Any] | None = None,
    ) -> str:
        where = f"{method} {safe_url(url)}"
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        attempts = self._retries + 1
        problem = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(min(self._backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))
            try:
                status, text = await self._once(session, method, url, headers=headers, body=body)
            except _Final as exc:
                raise base.RouterError(f"{where}: {exc}") from None
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                problem = httptext.problem(exc, timeout=self._timeout)
                logger.debug("%s attempt %d/%d: %s", where, attempt + 1, attempts, problem)
                continue
            if 200 <= status < 300:
                return text
            if status >= 500:
                problem = f"HTTP {status}: {_first_line(text, token)}"
                logger.debug("%s attempt %d/%d: %s", where, attempt + 1, attempts, problem)
                continue
            if 300 <= status < 400:
                raise base.RouterError(
                    f"{where} answered HTTP {status}, a redirect, which is not followed (the token must not "
                    "go elsewhere); configure the address it points to"
                )
            raise base.RouterError(f"{where} refused the request: HTTP {status}: {_first_line(text, token)}")
        tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
        raise base.RouterError(f"{where} failed after {tries}: {problem}")

    async def _once(
        self, session: aiohttp.ClientSession, method: str, url: str, *, headers: dict[str, str],
        body: dict[str, Any] | None,
    ) -> tuple[int, str]:
        try:
            async with session.request(
                method, url, json=body, headers=headers, allow_redirects=False,
                ssl=self._verify_tls,
            ) as response:
                return response.status, await response.text(errors="replace")
        except aiohttp.ClientConnectorCertificateError as exc:
            raise _Final(httptext.untrusted_certificate(exc)) from None
        except aiohttp.InvalidURL:
            raise _Final("the URL is not valid") from None


def _first_line(text: str, token: str | None) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if token:
        line = line.replace(token, "<token>")
    if not line:
        return "(empty body)"
    return line[:300] + ("..." if len(line) > 300 else "")


def _percent(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100:
        return value
    return None


def _change_id(reply: str) -> str | None:
    try:
        parsed = json.loads(reply)
    except ValueError:
        return None
    if isinstance(parsed, dict) and isinstance(parsed.get("changeId"), str | int) and not isinstance(
        parsed.get("changeId"), bool
    ):
        return str(parsed["changeId"])
    return None

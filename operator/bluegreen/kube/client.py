"""A small asynchronous Kubernetes API client on aiohttp.

Why not the ``kubernetes`` package: it is blocking, so every call would need a
thread, and the operator talks to several API servers at once (management,
blue, green) from kopf's event loop. The operator needs a handful of verbs on
a few resources, which is little code over plain HTTP.

Contract:

* Objects are plain ``dict`` as the API serves them. ``list`` fills in each
  item's ``apiVersion``/``kind``, which list responses may omit.
* Not-found is an answer, not an error, where the caller routinely expects it:
  ``get`` returns None and ``delete`` returns False.
* Every other failure is raised: :class:`ApiError` (and its subclasses) with
  the API's own ``reason`` and ``message``, or :class:`UnreachableError` when
  no answer came. There are no retries here: the reconcile loop retries with
  backoff and shows the error in a condition, where a person can see it.
* Nothing secret is logged or put into an error: requests are logged at debug
  level by method, path and status only.
* With ``field_manager``, creates, replaces and patches name that manager (the
  ``fieldManager`` parameter), so ``metadata.managedFields`` say who wrote what;
  without it the API server names the User-Agent's product.
* Every request names its program in ``User-Agent`` (``bluegreen/<version>`` unless
  told otherwise; never aiohttp's ``Python/...``): API server audit logs, and the test
  world's record of which calls the operator makes (the chart's RBAC is checked against
  it), can then tell the operator from the plugin and from anything else.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib.metadata
import json
import logging
import os
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import aiohttp
import orjson

from bluegreen.kube import config as kubeconfig

logger = logging.getLogger(__name__)

PatchType = Literal["merge", "json", "strategic"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
DEFAULT_TIMEOUT = 30.0


def _version() -> str:
    try:
        return importlib.metadata.version("bluegreen-operator")
    except importlib.metadata.PackageNotFoundError:  # sources on sys.path without an installed distribution
        return "0+unknown"


VERSION = _version()
DEFAULT_USER_AGENT = f"bluegreen/{VERSION}"
# The operator process (its management client and every remote client): what RBAC must allow.
OPERATOR_USER_AGENT = f"bluegreen-operator/{VERSION}"


@dataclasses.dataclass(frozen=True)
class Resource:
    """A served resource: ``Resource("cluster.x-k8s.io", "v1beta2", "clusters")``; core group is ``""``."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, *, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of the collection (no name) or of one object (with name, maybe a subresource)."""
        parts = [self.group_version_path]
        if self.namespaced and namespace is not None:
            parts.append(f"/namespaces/{_quote(namespace)}")
        elif self.namespaced and name is not None:
            raise ValueError(f"{self.plural} is namespaced: a namespace is needed to address {name!r}")
        parts.append(f"/{self.plural}")
        if name is not None:
            parts.append(f"/{_quote(name)}")
            if subresource:
                parts.append(f"/{_quote(subresource)}")
        elif subresource:
            raise ValueError("a subresource needs an object name")
        return "".join(parts)

    def __str__(self) -> str:
        return f"{self.plural}.{self.api_version}"


def _quote(segment: str) -> str:
    if not segment:
        raise ValueError("empty name or namespace in an API path")
    return urllib.parse.quote(segment, safe="")


class KubeError(Exception):
    """Base of every failure this client raises."""


class UnreachableError(KubeError):
    """No answer from the API server (connection refused, TLS failure, timeout)."""


class ApiError(KubeError):
    """The API server answered with an error status; ``message`` is the API's own words."""

    def __init__(self, status: int, reason: str, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(f"{reason} ({status}): {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path
        self.causes: builtins.list[str] = []  # details.causes[].message, when the Status has any
        self.details: dict[str, Any] = {}  # the Status's details, as sent
        self.retry_after: float | None = None  # Retry-After (or details.retryAfterSeconds), when given


class NotFoundError(ApiError):
    """404: the object (or the resource type) does not exist."""


class ConflictError(ApiError):
    """409: AlreadyExists on create, or Conflict on a stale resourceVersion."""


class InvalidError(ApiError):
    """422: the object was refused by validation; ``message`` says which field."""


class EvictionBlockedError(ApiError):
    """429 on an eviction: a PodDisruptionBudget allows no disruption now; ``causes`` name the budget."""

    def __init__(self, status: int, reason: str, message: str, *, causes: builtins.list[str],
                 method: str = "", path: str = "") -> None:
        super().__init__(status, reason, message, method=method, path=path)
        self.causes = causes


_ERRORS: dict[int, type[ApiError]] = {404: NotFoundError, 409: ConflictError, 422: InvalidError}

LabelSelector = str | Mapping[str, str]


def format_label_selector(selector: LabelSelector) -> str:
    """``{"a": "1", "b": "2"}`` -> ``"a=1,b=2"``; a string passes through."""
    if isinstance(selector, str):
        return selector
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


class KubeClient:
    """One API server. Create it anywhere; the HTTP session opens on first use inside the event loop."""

    def __init__(self, connection: kubeconfig.Connection, *, timeout: float = DEFAULT_TIMEOUT,
                 field_manager: str | None = None, user_agent: str | None = None) -> None:
        self.connection = connection
        self.field_manager = field_manager
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = connection.ssl_context() if connection.server.startswith("https://") else None
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(
        cls,
        source: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        field_manager: str | None = None,
        user_agent: str | None = None,
    ) -> KubeClient:
        """From a kubeconfig dict or file, or (None) ``$KUBECONFIG`` / ``~/.kube/config``."""
        return cls(kubeconfig.load_kubeconfig(source, context=context), timeout=timeout, field_manager=field_manager,
                   user_agent=user_agent)

    @classmethod
    def from_env(cls, *, context: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 field_manager: str | None = None, user_agent: str | None = None) -> KubeClient:
        """A kubeconfig if one is present, else the pod's service account."""
        return cls(kubeconfig.load_default(context=context), timeout=timeout, field_manager=field_manager,
                   user_agent=user_agent)

    def __repr__(self) -> str:
        return f"KubeClient({self.connection.server!r})"

    @property
    def server(self) -> str:
        return self.connection.server

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # --- verbs -------------------------------------------------------------------------------

    async def get(self, resource: Resource, *, namespace: str | None = None, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        try:
            return await self._json("GET", resource.path(namespace=namespace, name=name))
        except NotFoundError:
            return None

    async def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: LabelSelector | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of one resource, in one namespace or (None) all; follows ``continue`` tokens."""
        return [item async for page in self.pages(resource, namespace=namespace, label_selector=label_selector)
                for item in page]

    async def pages(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: LabelSelector | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """Like :meth:`list`, one page at a time: with ``limit``, a caller that sums over a big
        cluster's objects holds one page of them, not all."""
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = format_label_selector(label_selector)
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit:
            params["limit"] = str(limit)
        path = resource.path(namespace=namespace)
        while True:
            page = await self._json("GET", path, params=params)
            kind = str(page.get("kind", "")).removesuffix("List")
            items: builtins.list[dict[str, Any]] = page.get("items") or []
            for item in items:
                item.setdefault("apiVersion", resource.api_version)
                if kind:
                    item.setdefault("kind", kind)
            yield items
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            params["continue"] = token

    async def create(
        self, resource: Resource, body: Mapping[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        """Create an object; :class:`ConflictError` when it already exists."""
        if namespace is None and resource.namespaced:
            namespace = (body.get("metadata") or {}).get("namespace")
        return await self._json("POST", resource.path(namespace=namespace), body=body, params=self._write_params())

    async def patch(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        name: str,
        body: Mapping[str, Any] | builtins.list[dict[str, Any]],
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Patch an object (or its ``status``/``scale`` subresource); :class:`NotFoundError` if it is gone."""
        content_type = _PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise ValueError(f"patch_type must be one of {sorted(_PATCH_CONTENT_TYPES)}, not {patch_type!r}")
        path = resource.path(namespace=namespace, name=name, subresource=subresource)
        return await self._json("PATCH", path, body=body, content_type=content_type, params=self._write_params())

    async def apply(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        *,
        namespace: str | None = None,
        force: bool = False,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply ``body`` as this client's ``field_manager`` (required); creates the object if
        absent. Without ``force``, changing a field another manager owns is a :class:`ConflictError`."""
        if not self.field_manager:
            raise ValueError("server-side apply needs a field manager: KubeClient(..., field_manager=...)")
        metadata = body.get("metadata") or {}
        if namespace is None and resource.namespaced:
            namespace = metadata.get("namespace")
        path = resource.path(namespace=namespace, name=metadata["name"], subresource=subresource)
        params = {"fieldManager": self.field_manager, **({"force": "true"} if force else {})}
        return await self._json("PATCH", path, body=body, content_type="application/apply-patch+yaml", params=params)

    async def replace(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PUT the whole object; with ``metadata.resourceVersion`` set, a stale write is a ConflictError."""
        metadata = body.get("metadata") or {}
        name = name or metadata.get("name")
        if not name:
            raise ValueError("replace needs a name (argument or metadata.name)")
        if namespace is None and resource.namespaced:
            namespace = metadata.get("namespace")
        path = resource.path(namespace=namespace, name=name, subresource=subresource)
        return await self._json("PUT", path, body=body, params=self._write_params())

    def _write_params(self) -> dict[str, str] | None:
        return {"fieldManager": self.field_manager} if self.field_manager else None

    async def delete(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        name: str,
        propagation_policy: Literal["Foreground", "Background", "Orphan"] | None = None,
    ) -> bool:
        """Ask for deletion; True when accepted, False when the object was already gone."""
        params = {"propagationPolicy": propagation_policy} if propagation_policy else None
        try:
            await self._json("DELETE", resource.path(namespace=namespace, name=name), params=params)
        except NotFoundError:
            return False
        return True

    async def evict(self, namespace: str, name: str, *, uid: str | None = None,
                    grace_period_seconds: int | None = None) -> None:
        """Evict a pod through the Eviction API (``policy/v1``), which honours PodDisruptionBudgets.

        ``uid``: evict only that pod (a StatefulSet's replacement of the same name is not touched; the
        apiserver answers 409). Returns once the apiserver accepted it (201; the pod is then terminating
        or gone). Raises :class:`EvictionBlockedError` on 429 (a budget blocks: retry later; ``details``
        and ``retry_after`` as sent), :class:`NotFoundError` when the pod does not exist,
        :class:`ConflictError` when ``uid`` no longer matches, :class:`ApiError` otherwise (500 when
        several budgets select the pod).
        """
        path = Resource("", "v1", "pods").path(namespace=namespace, name=name, subresource="eviction")
        body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                                "metadata": {"name": name, "namespace": namespace}}
        options: dict[str, Any] = {}
        if uid:
            options["preconditions"] = {"uid": uid}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if options:
            body["deleteOptions"] = options
        try:
            await self._send("POST", path, body=body)
        except ApiError as exc:
            if exc.status != 429:
                raise
            blocked = EvictionBlockedError(exc.status, exc.reason, exc.message, causes=exc.causes,
                                           method=exc.method, path=exc.path)
            blocked.details, blocked.retry_after = exc.details, exc.retry_after
            raise blocked from None

    async def get_text(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        name: str,
        subresource: str,
        params: Mapping[str, str] | None = None,
    ) -> str | None:
        """A subresource served as text, such as a pod's ``log``; None when the object does not exist."""
        path = resource.path(namespace=namespace, name=name, subresource=subresource)
        try:
            _, text = await self._send("GET", path, params=params, accept="text/plain, */*")
        except NotFoundError:
            return None
        return text

    async def server_version(self) -> dict[str, Any]:
        """``/version``: gitVersion, major, minor, platform."""
        return await self._json("GET", "/version")

    async def resources(self, group_version: str) -> builtins.list[dict[str, Any]] | None:
        """Discovery: the resources served under ``group/version`` (``v1`` for core), None if not served."""
        path = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        try:
            found = await self._json("GET", path)
        except NotFoundError:
            return None
        return list(found.get("resources") or [])

    async def watch(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: LabelSelector | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch events ``(type, object)`` until the server ends the stream (``timeout_seconds``).

        Without ``resource_version`` the server first sends the current objects as ADDED.
        An ERROR event (e.g. 410 Expired) is raised as :class:`ApiError`; the caller re-lists.
        """
        params = {"watch": "true", "timeoutSeconds": str(timeout_seconds), "allowWatchBookmarks": "true"}
        if label_selector:
            params["labelSelector"] = format_label_selector(label_selector)
        if resource_version:
            params["resourceVersion"] = resource_version
        path = resource.path(namespace=namespace)
        extra: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)}
        if self._ssl is not None:
            extra["ssl"] = self._ssl
        try:
            async with self._session_now().get(
                self.connection.server + path, params=params, headers=self._headers(), **extra
            ) as response:
                if response.status >= 400:
                    raise _api_error(response.status, await response.text(), method="WATCH", path=path)
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = orjson.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise _api_error(int(status.get("code") or 500), json.dumps(status), method="WATCH", path=path)
                    yield str(event.get("type")), dict(event.get("object") or {})
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise UnreachableError(f"WATCH {self.connection.server}{path}: {str(exc) or type(exc).__name__}") from None

    # --- transport ---------------------------------------------------------------------------

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _headers(self, *, accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": self.user_agent}
        token = self.connection.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif self.connection.username is not None:
            basic = aiohttp.BasicAuth(self.connection.username, self.connection.password or "")
            headers["Authorization"] = basic.encode()
        return headers

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        status, text = await self._send(method, path, params=params, body=body, content_type=content_type)
        if not text:
            return {}
        try:
            parsed = orjson.loads(text)
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            raise ApiError(status, "InvalidResponse", "the API server answered with something that is not JSON",
                           method=method, path=path) from None
        return parsed if isinstance(parsed, dict) else {"items": parsed}

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[int, str]:
        """The status and body of one request; an error status is raised as :class:`ApiError`."""
        headers = self._headers(accept=accept)
        data: bytes | None = None
        if body is not None:
            data = _encode(body)
            headers["Content-Type"] = content_type
        url = self.connection.server + path
        extra: dict[str, Any] = {}
        if self._ssl is not None:
            extra["ssl"] = self._ssl
            if self.connection.tls_server_name:
                extra["server_hostname"] = self.connection.tls_server_name
        try:
            async with self._session_now().request(
                method, url, params=params, data=data, headers=headers, **extra
            ) as response:
                text = await response.text()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            raise UnreachableError(f"{method} {self.connection.server}{path}: {detail}") from None
        logger.debug("%s %s%s -> %s", method, self.connection.server, path, status)
        if status >= 400:
            raise _api_error(status, text, method=method, path=path, retry_after=retry_after)
        return status, text


def _encode(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # what orjson refuses (an integer beyond 64 bits) is the stdlib's to encode, or to refuse
        return json.dumps(body).encode()


def _api_error(status: int, text: str, *, method: str, path: str, retry_after: str | None = None) -> ApiError:
    reason = ""
    message = ""
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    causes: list[str] = []
    details: dict[str, Any] = {}
    if isinstance(payload, dict):
        reason = str(payload.get("reason") or "")
        message = str(payload.get("message") or "")
        if isinstance(payload.get("details"), dict):
            details = payload["details"]
            causes = [str(cause.get("message") or "") for cause in details.get("causes") or ()
                      if isinstance(cause, dict)]
    if not message:
        message = text.strip()[:300] or f"HTTP {status}"
    error_type = _ERRORS.get(status, ApiError)
    error = error_type(status, reason or _default_reason(status), message, method=method, path=path)
    error.causes = causes
    error.details = details
    seconds = details.get("retryAfterSeconds")
    if retry_after is not None and retry_after.strip().isdigit():
        error.retry_after = float(retry_after.strip())
    elif isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        error.retry_after = float(seconds)
    return error


def _default_reason(status: int) -> str:
    return {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable"}.get(status, "Error")

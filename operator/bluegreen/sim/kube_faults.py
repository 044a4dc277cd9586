"""Faults an emulated API server answers for a while: 500s, 409s and stalls, N requests at a time.

Tests of the operator's error handling need an API server that misbehaves for a
few requests and then recovers, from another process (the world runs apart
from the tests and the operator). kmock's request DSL (``KubeEmulator.faults``)
serves in-process tests; this is the same idea reduced to what a control
endpoint can say in JSON: which requests (verb, resource, namespace, name),
what to do to them (answer a status, or hold them for a while first), and how
many times. A rule is used up after ``count`` matching requests, so a fault
always ends by itself and the test then sees recovery.

The answer is a Kubernetes ``Status`` with the reason the apiserver gives for
that code (409 Conflict, 500 InternalError, 429 TooManyRequests...), so clients
parse it exactly as a real one. A stalled request without a status is served
normally once the stall is over: a client that gave up by then saw a timeout,
while the change may well have been made, as with a real apiserver.

This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import threading
from collections.abc import Mapping
from typing import Any

import aiohttp.web

VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*"})
_REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 410: "Expired",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}


@dataclasses.dataclass
class KubeFault:
    """One rule: requests that match answer ``status`` (after ``stall`` seconds) ``count`` more times."""

    id: int
    verb: str
    resource: str  # plural, or plural/subresource ("clusterupgrades/status"); "*" for any
    namespace: str | None
    name: str | None
    status: int | None
    stall: float
    count: int
    hits: int = 0

    def matches(self, *, verb: str, resource: str, namespace: str | None, name: str | None) -> bool:
        return (self.verb in ("*", verb) and self.resource in ("*", resource)
                and self.namespace in (None, namespace) and self.name in (None, name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RequestKey:
    """What a rule matches on, read from the request line alone."""

    verb: str
    resource: str
    namespace: str | None
    name: str | None


def request_key(method: str, path: str, query: Mapping[str, str]) -> RequestKey | None:
    """The verb and resource of a resource request; None for discovery, version and the like."""
    segments = [segment for segment in path.split("/") if segment]
    if segments[:1] == ["api"] and len(segments) >= 3:
        rest = segments[2:]
    elif segments[:1] == ["apis"] and len(segments) >= 4:
        rest = segments[3:]
    else:
        return None
    watching = rest[0] == "watch"
    if watching:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    plural, name = rest[0], rest[1] if len(rest) > 1 else None
    resource = plural + (f"/{rest[2]}" if len(rest) > 2 else "")
    watching = watching or query.get("watch") in ("1", "true")
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if verb is None and method == "DELETE":
        verb = "delete" if name is not None else "deletecollection"
    if verb is None:
        verb = "watch" if watching else ("get" if name is not None else "list")
    return RequestKey(verb=verb, resource=resource, namespace=namespace, name=name)


class KubeFaults:
    """The rules of one emulator; safe to change from any thread while it serves."""

    def __init__(self) -> None:
        self._rules: list[KubeFault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.served: list[dict[str, Any]] = []  # every fault served: rule id, verb, resource, status, stall

    def add(self, *, verb: str = "*", resource: str = "*", namespace: str | None = None, name: str | None = None,
            status: int | None = None, stall: float = 0.0, count: int = 1) -> KubeFault:
        if verb not in VERBS:
            raise ValueError(f"verb must be one of {', '.join(sorted(VERBS))}, got {verb!r}")
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        if status is None and stall <= 0:
            raise ValueError("a fault needs a status to answer, a stall in seconds, or both")
        if stall < 0 or count < 1:
            raise ValueError(f"stall must not be negative and count at least 1, got stall={stall} count={count}")
        with self._lock:
            rule = KubeFault(id=next(self._ids), verb=verb, resource=resource, namespace=namespace, name=name,
                             status=status, stall=stall, count=count)
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[KubeFault]:
        with self._lock:
            return list(self._rules)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def take(self, key: RequestKey) -> KubeFault | None:
        """The first rule ``key`` matches, counted as used (and dropped once used up)."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(verb=key.verb, resource=key.resource, namespace=key.namespace, name=key.name):
                    rule.count -= 1
                    rule.hits += 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                    self.served.append({"rule": rule.id, "verb": key.verb, "resource": key.resource,
                                        "namespace": key.namespace, "name": key.name, "status": rule.status,
                                        "stall": rule.stall})
                    return dataclasses.replace(rule)
        return None

    async def answer(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.Response | None:
        """The faulty answer to ``request``, or None to serve it (after its stall, if a rule said so)."""
        key = request_key(request.method, request.path, request.query)
        if key is None:
            return None
        rule = self.take(key)
        if rule is None:
            return None
        if rule.stall:
            await asyncio.sleep(rule.stall)
        if rule.status is None:
            return None
        reason = _REASONS.get(rule.status, "InternalError" if rule.status >= 500 else "BadRequest")
        message = f"injected fault {rule.id}: {key.verb} {key.resource} answered {rule.status} {reason}"
        if rule.status == 409:
            message = (f"Operation cannot be fulfilled on {key.resource} {key.name or ''!s}: the object has been "
                       "modified; please apply your changes to the latest version and try again "
                       f"(injected fault {rule.id})")
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                "reason": "Conflict" if rule.status == 409 else reason, "code": rule.status}
        return aiohttp.web.Response(body=json.dumps(body).encode(), status=rule.status,
                                    content_type="application/json")

"""The HTTP face of an emulated API server: routing, discovery, lists, watches, errors.

Requests are routed by splitting the path once (``/api/v1/namespaces/ns/pods/name/status``)
and dispatched to ``kube_store.Store``; nothing here depends on how many requests came
before, so a request costs the same at the millionth as at the first. kmock's DSL is kept
only as an opt-in fault-injection layer in front (see ``kube.KubeEmulator.faults``).

Wire details that real clients depend on, and why they are here:

- create answers 201 (the official client returns None on 200 for some calls);
- ``watch`` is accepted as ``true``, ``True`` and ``1`` (the official client sends ``True``),
  and also through the legacy ``/watch/`` path prefix;
- every error is a ``v1 Status`` body with ``reason`` and ``code`` (kopf and the official
  client map those to their exception classes);
- discovery is the legacy (unaggregated) form, answered as plain ``application/json``, which
  client-go and kubectl fall back to; trailing slashes are accepted;
- Tables for ``kubectl get``, including watch streams of Tables for ``kubectl get -w``;
- writes name their manager for ``metadata.managedFields`` as the apiserver does: the
  ``fieldManager`` query parameter, else the User-Agent up to its first ``/``;
- every resource request is counted by the RBAC verb an apiserver would authorize it as
  (``watch`` and ``list`` apart, an eviction as ``create`` on ``pods/eviction``) and by the
  User-Agent's product, so the chart's roles can be checked against what the operator used;
- discovery, lists, gets and watches show only the group/versions the emulator's Kubernetes
  version serves, each object with the ``apiVersion`` it was read through.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import json
import re
from typing import TYPE_CHECKING, Any

import aiohttp.web
import yaml

from bluegreen.sim import eviction, kube_fields, kube_logs, kube_patch, kube_selectors, kube_store, kube_tables
from bluegreen.sim.kube_resources import ResourceInfo
from bluegreen.sim.kube_store import KubeApiError, bad_request

if TYPE_CHECKING:
    from bluegreen.sim.kube import KubeEmulator

_TRUE = frozenset({"true", "True", "TRUE", "1"})
_SUBRESOURCE_VERBS = ["get", "patch", "update"]
_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first, others last."""
    match = _VERSION_RE.match(version)
    if match is None:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[match[2]]
    return (stage, -int(match[1]), -int(match[3] or 0), version)


def _json(payload: Any, *, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        body=kube_patch.encode(payload), status=status, content_type="application/json",
    )


def error_response(exc: KubeApiError) -> aiohttp.web.Response:
    return _json(exc.to_status(), status=exc.status)


def _serves_logs(info: ResourceInfo) -> bool:
    return info.group == "" and info.plural == "pods"


def _waiting_reason(pod: dict[str, Any], container: str) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == container:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason"):
                return str(waiting["reason"])
    return "ContainerCreating"


def _grace_period(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f'gracePeriodSeconds: Invalid value: "{value}": must be an integer') from None


def _not_found() -> KubeApiError:
    return KubeApiError(404, "NotFound", "the server could not find the requested resource")


def _manager(request: aiohttp.web.BaseRequest) -> str:
    manager = request.query.get("fieldManager")
    if manager is None:
        return kube_fields.manager_from_user_agent(request.headers.get("User-Agent", ""))
    if len(manager.encode()) > kube_fields.MAX_MANAGER_LENGTH:
        raise KubeApiError(422, "Invalid", f"fieldManager: Too long: must have at most "
                                           f"{kube_fields.MAX_MANAGER_LENGTH} bytes")
    return manager


class _Target:
    __slots__ = ("info", "name", "namespace", "subresource", "watch_prefix")

    def __init__(self, info: ResourceInfo, namespace: str | None, name: str | None,
                 subresource: str | None, watch_prefix: bool) -> None:
        self.info = info
        self.namespace = namespace
        self.name = name
        self.subresource = subresource
        self.watch_prefix = watch_prefix


class HttpApi:
    """Serves one emulator's API. Holds no per-request history."""

    def __init__(self, emulator: KubeEmulator) -> None:
        self.emulator = emulator
        self.store = emulator.store

    # --- entry ------------------------------------------------------------------------------------

    async def handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            self._authenticate(request)
            return await self._route(request)
        except KubeApiError as exc:
            return error_response(exc)
        except kube_selectors.SelectorError as exc:
            return error_response(bad_request(str(exc)))

    def _authenticate(self, request: aiohttp.web.BaseRequest) -> None:
        token = self.emulator.token
        if token is None:
            return
        if request.headers.get("Authorization", "") != f"Bearer {token}":
            raise KubeApiError(401, "Unauthorized", "Unauthorized")

    async def _route(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        segments = [segment for segment in request.path.split("/") if segment]
        method = request.method
        if not segments:
            return _json({"paths": self._paths()})
        head = segments[0]
        if head in ("healthz", "livez", "readyz") and method == "GET":
            return aiohttp.web.Response(text="ok", content_type="text/plain")
        if segments == ["version"]:
            return _json(self._version())
        if segments[:2] == ["openapi", "v3"] and method == "GET":
            return _json(self._openapi_v3(segments[2:]))
        if head == "api":
            if len(segments) == 1:
                return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{request.host}"}]})
            group, version, rest = "", segments[1], segments[2:]
        elif head == "apis":
            if len(segments) == 1:
                return _json(self._group_list())
            if len(segments) == 2:
                return _json(self._group(segments[1]))
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise _not_found()
        if not rest:
            return _json(self._resource_list(group, version))
        target = self._target(group, version, rest)
        return await self._dispatch(request, target)

    def _target(self, group: str, version: str, rest: list[str]) -> _Target:
        watch_prefix = False
        if rest[0] == "watch":
            watch_prefix, rest = True, rest[1:]
            if not rest:
                raise _not_found()
        namespace: str | None = None
        is_namespace_subresource = group == "" and len(rest) == 3 and rest[0] == "namespaces" and rest[2] in (
            "status", "finalize")
        if rest[0] == "namespaces" and len(rest) >= 3 and not is_namespace_subresource:
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise _not_found()
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        info = self.store.resolve(group, version, plural)
        if info is None or (namespace is not None and not info.namespaced):
            raise _not_found()
        if subresource is not None and not (
                (subresource == "status" and info.status_subresource) or (subresource == "scale" and info.scale)
                or (subresource in ("log", "eviction") and _serves_logs(info))):
            raise _not_found()
        return _Target(info, namespace, name, subresource, watch_prefix)

    def _count(self, request: aiohttp.web.BaseRequest, verb: str, target: _Target) -> None:
        plural = target.info.plural + (f"/{target.subresource}" if target.subresource else "")
        self.emulator.request_counts[(verb, target.info.group, plural)] += 1
        agent = request.headers.get("User-Agent", "").split("/", 1)[0]
        self.emulator.usage[(agent, verb, target.info.group, plural)] += 1

    async def _dispatch(self, request: aiohttp.web.BaseRequest, target: _Target) -> aiohttp.web.StreamResponse:
        query = request.query
        method = request.method
        info = target.info
        dry_run = query.get("dryRun") == "All"
        field_validation = query.get("fieldValidation")
        if target.subresource == "eviction":
            if method != "POST" or target.name is None or target.namespace is None:
                raise KubeApiError(405, "MethodNotAllowed",
                                   "the server does not allow this method on the requested resource")
            self._count(request, "create", target)
            body = await self._body(request)
            return _json(eviction.evict(self.store, target.namespace, target.name, body, dry_run=dry_run,
                                        manager=_manager(request)), status=201)
        if target.subresource == "log":
            if method != "GET" or target.name is None:
                raise KubeApiError(405, "MethodNotAllowed",
                                   "the server does not allow this method on the requested resource")
            self._count(request, "get", target)
            return await self._pod_log(request, target)
        if method == "GET":
            if target.watch_prefix or query.get("watch") in _TRUE:
                self._count(request, "watch", target)
                return await self._watch(request, target)
            if target.name is None:
                self._count(request, "list", target)
                return self._list(request, target)
            self._count(request, "get", target)
            if target.subresource == "scale":
                return _json(self.store.get_scale(info, target.namespace, target.name))
            obj = self.store.get(info, target.namespace, target.name)
            return self._object_response(request, info, obj)
        if method == "POST":
            if target.name is not None:
                raise KubeApiError(405, "MethodNotAllowed", "the server does not allow this method on the "
                                                            "requested resource")
            if info.namespaced and target.namespace is None:
                raise KubeApiError(405, "MethodNotAllowed", "the server does not allow this method on the "
                                                            "requested resource")
            self._count(request, "create", target)
            body = await self._body(request)
            created = self.store.create(info, target.namespace, body, dry_run=dry_run,
                                        field_validation=field_validation, manager=_manager(request))
            return self._object_response(request, info, created, status=201)
        if method == "PUT" and target.name is not None:
            self._count(request, "update", target)
            body = await self._body(request)
            if target.subresource == "scale":
                return _json(self.store.update_scale(info, target.namespace, target.name, body, dry_run=dry_run,
                                                     manager=_manager(request)))
            updated = self.store.update(info, target.namespace, target.name, body,
                                        subresource=target.subresource, dry_run=dry_run,
                                        field_validation=field_validation, manager=_manager(request))
            return self._object_response(request, info, updated)
        if method == "PATCH" and target.name is not None:
            self._count(request, "patch", target)
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type == kube_store.APPLY_PATCH:
                patch: Any = await self._body(request, yaml_allowed=True)
            elif content_type in (kube_store.MERGE_PATCH, kube_store.JSON_PATCH, kube_store.STRATEGIC_MERGE_PATCH):
                patch = await self._body(request)
            else:
                raise KubeApiError(
                    415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{kube_store.JSON_PATCH}, {kube_store.MERGE_PATCH}, {kube_store.APPLY_PATCH}"
                    + (f", {kube_store.STRATEGIC_MERGE_PATCH}" if info.builtin else ""),
                )
            if target.subresource == "scale":
                return _json(self.store.patch_scale(info, target.namespace, target.name, patch,
                                                    patch_type=content_type, dry_run=dry_run,
                                                    manager=_manager(request)))
            if content_type == kube_store.APPLY_PATCH:
                applied, was_created = self.store.apply(
                    info, target.namespace, target.name, patch, manager=request.query.get("fieldManager"),
                    force=request.query.get("force") in _TRUE, subresource=target.subresource, dry_run=dry_run,
                    field_validation=field_validation)
                return self._object_response(request, info, applied, status=201 if was_created else 200)
            patched = self.store.patch(info, target.namespace, target.name, patch, patch_type=content_type,
                                       subresource=target.subresource, dry_run=dry_run,
                                       field_validation=field_validation, manager=_manager(request))
            return self._object_response(request, info, patched)
        if method == "DELETE":
            options = await self._body(request, optional=True) or {}
            if not isinstance(options, dict):
                raise bad_request("DeleteOptions must be a JSON object")
            propagation = options.get("propagationPolicy") or query.get("propagationPolicy")
            if options.get("orphanDependents") is True or query.get("orphanDependents") == "true":
                propagation = "Orphan"
            dry_run = dry_run or "All" in (options.get("dryRun") or ())
            if target.name is None:
                self._count(request, "deletecollection", target)
                labels = kube_selectors.parse_label_selector(query.get("labelSelector"))
                fields = kube_selectors.parse_field_selector(query.get("fieldSelector"),
                                                             supported=info.field_selectors)
                deleted = [] if dry_run else self.store.delete_collection(
                    info, target.namespace, labels=labels, fields=fields)
                return _json(self._list_body(info, deleted, str(self.store.resource_version)))
            self._count(request, "delete", target)
            grace = options.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
            deleted_obj = self.store.delete(info, target.namespace, target.name, propagation=propagation,
                                            preconditions=options.get("preconditions"), dry_run=dry_run,
                                            grace_period=_grace_period(grace))
            return self._object_response(request, info, deleted_obj)
        raise KubeApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    async def _body(self, request: aiohttp.web.BaseRequest, *, optional: bool = False,
                    yaml_allowed: bool = False) -> Any:
        raw = await request.read()
        if not raw.strip():
            if optional:
                return None
            raise bad_request("the request body is empty")
        content_type = request.headers.get("Content-Type", "")
        try:
            if yaml_allowed or "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the request body is not valid JSON: {exc}") from None

    # --- rendering --------------------------------------------------------------------------------

    @staticmethod
    def _wants_table(request: aiohttp.web.BaseRequest) -> bool:
        accept = request.headers.get("Accept", "")
        for option in accept.split(","):
            params = {part.split("=", 1)[0].strip(): part.split("=", 1)[1].strip()
                      for part in option.split(";")[1:] if "=" in part}
            if params.get("as") == "Table" and params.get("g", "meta.k8s.io") == "meta.k8s.io":
                return True
        return False

    def _object_response(self, request: aiohttp.web.BaseRequest, info: ResourceInfo, obj: dict[str, Any],
                         *, status: int = 200) -> aiohttp.web.Response:
        obj = self._at_version(info, obj)
        if self._wants_table(request):
            return _json(kube_tables.table(
                info, [obj], resource_version=str(obj.get("metadata", {}).get("resourceVersion", "")),
                include_object=request.query.get("includeObject", "Metadata"),
            ), status=status)
        return _json(obj, status=status)

    @staticmethod
    def _at_version(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        if obj.get("apiVersion") == info.api_version:
            return obj
        return dict(obj, apiVersion=info.api_version)

    def _list_body(self, info: ResourceInfo, items: list[dict[str, Any]], resource_version: str,
                   continue_token: str | None = None, remaining: int | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"resourceVersion": resource_version}
        if continue_token:
            metadata["continue"] = continue_token
            if remaining is not None:
                metadata["remainingItemCount"] = remaining
        return {
            "kind": f"{info.kind}List",
            "apiVersion": info.api_version,
            "metadata": metadata,
            "items": [self._at_version(info, item) for item in items],
        }

    def _list(self, request: aiohttp.web.BaseRequest, target: _Target) -> aiohttp.web.Response:
        query = request.query
        info = target.info
        labels = kube_selectors.parse_label_selector(query.get("labelSelector"))
        fields = kube_selectors.parse_field_selector(query.get("fieldSelector"), supported=info.field_selectors)
        items, rv = self.store.list(info, target.namespace, labels=labels, fields=fields)
        continue_token: str | None = None
        remaining: int | None = None
        start = 0
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                start, rv = int(token["start"]), int(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
        limit = int(query.get("limit") or 0)
        if limit > 0 and start + limit < len(items):
            continue_token = base64.urlsafe_b64encode(
                json.dumps({"start": start + limit, "rv": rv}).encode()).decode()
            remaining = len(items) - start - limit
            items = items[start:start + limit]
        else:
            items = items[start:]
        if self._wants_table(request):
            return _json(kube_tables.table(info, [self._at_version(info, item) for item in items],
                                           resource_version=str(rv),
                                           include_object=query.get("includeObject", "Metadata"),
                                           continue_token=continue_token))
        return _json(self._list_body(info, items, str(rv), continue_token, remaining))

    # --- pod logs ---------------------------------------------------------------------------------
    # A real API server proxies these to the kubelet; here the simulated kubelet's
    # output is kept in ``emulator.logs`` and read with the same options and errors.

    async def _pod_log(self, request: aiohttp.web.BaseRequest, target: _Target) -> aiohttp.web.StreamResponse:
        assert target.name is not None
        pod = self.store.get(target.info, target.namespace, target.name)
        name = target.name
        spec = pod.get("spec") or {}
        containers = [str(c.get("name")) for c in spec.get("containers") or ()]
        init_containers = [str(c.get("name")) for c in spec.get("initContainers") or ()]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise bad_request(f"a container name must be specified for pod {name}, "
                                  f"choose one of: [{' '.join(containers)}]")
            container = containers[0]
        elif container not in containers and container not in init_containers:
            raise bad_request(f"container {container} is not valid for pod {name}")
        options = self._log_options(request, name)
        previous = request.query.get("previous") in _TRUE
        logs = self.emulator.logs
        uid = str(pod["metadata"].get("uid", ""))
        if not logs.started(uid=uid, container=container, previous=previous):
            if previous:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            reason = _waiting_reason(pod, container)
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        if previous or request.query.get("follow") not in _TRUE:
            body = logs.read(uid=uid, container=container, options=options, previous=previous)
            return aiohttp.web.Response(body=body, content_type="text/plain")
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        async for chunk in logs.follow(uid=uid, container=container, options=options):
            await response.write(chunk)
        await response.write_eof()
        return response

    @staticmethod
    def _log_options(request: aiohttp.web.BaseRequest, name: str) -> kube_logs.LogOptions:
        query = request.query

        def number(key: str, minimum: int) -> int | None:
            text = query.get(key)
            if text is None or text == "":
                return None
            try:
                value = int(text)
            except ValueError:
                raise bad_request(f'{key}: Invalid value: "{text}": must be an integer') from None
            if value < minimum:
                raise KubeApiError(422, "Invalid", f'PodLogOptions "{name}" is invalid: {key}: Invalid value: '
                                                   f"{value}: must be greater than or equal to {minimum}")
            return value

        since_seconds = number("sinceSeconds", 1)
        since_time = query.get("sinceTime")
        if since_seconds is not None and since_time:
            raise KubeApiError(422, "Invalid", f'PodLogOptions "{name}" is invalid: []: Forbidden: '
                                               "at most one of `sinceTime` or `sinceSeconds` may be specified")
        since: datetime.datetime | None = None
        if since_seconds is not None:
            since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=since_seconds)
        elif since_time:
            try:
                since = datetime.datetime.fromisoformat(since_time.replace("Z", "+00:00"))
            except ValueError:
                raise bad_request(f'sinceTime: Invalid value: "{since_time}": not an RFC 3339 time') from None
        return kube_logs.LogOptions(
            tail_lines=number("tailLines", 0), limit_bytes=number("limitBytes", 1),
            timestamps=query.get("timestamps") in _TRUE, since=since,
        )

    # --- watching ---------------------------------------------------------------------------------

    async def _watch(self, request: aiohttp.web.BaseRequest, target: _Target) -> aiohttp.web.StreamResponse:
        query = request.query
        info = target.info
        labels = kube_selectors.parse_label_selector(query.get("labelSelector"))
        field_text = query.get("fieldSelector")
        if target.name is not None:
            field_text = ",".join(filter(None, [field_text, f"metadata.name={target.name}"]))
        fields = kube_selectors.parse_field_selector(field_text, supported=info.field_selectors)
        timeout_text = query.get("timeoutSeconds")
        timeout = float(timeout_text) if timeout_text else None
        bookmarks = query.get("allowWatchBookmarks") in _TRUE
        send_initial = query.get("sendInitialEvents") in _TRUE
        as_table = self._wants_table(request)
        watcher = self.store.watch(
            info, target.namespace, labels=labels, fields=fields,
            resource_version=query.get("resourceVersion"), send_initial_events=send_initial,
        )
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        bookmark_interval = self.emulator.bookmark_interval
        next_bookmark = loop.time() + bookmark_interval
        api_version = info.api_version  # stored objects carry the version they were created through
        try:
            await response.prepare(request)
            while True:
                if watcher.items:
                    lines = [self._line(info, type, event, as_table, api_version)
                             for type, event in watcher.drain()]
                    await response.write(b"".join(lines))
                if watcher.initial_events_end_rv is not None and bookmarks:
                    await response.write(self._bookmark(info, watcher.initial_events_end_rv, initial_end=True))
                    watcher.initial_events_end_rv = None
                if watcher.closed and not watcher.items:
                    if watcher.error is not None:
                        await response.write(json.dumps({"type": "ERROR", "object": watcher.error}).encode() + b"\n")
                    break
                now = loop.time()
                if deadline is not None and now >= deadline:
                    break
                if bookmarks and now >= next_bookmark:
                    await response.write(self._bookmark(info, self.store.delivered_resource_version))
                    next_bookmark = now + bookmark_interval
                waits = [next_bookmark - now] if bookmarks else []
                if deadline is not None:
                    waits.append(deadline - now)
                await watcher.wait(max(min(waits), 0.0) if waits else None)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            watcher.close()
            raise
        finally:
            watcher.close()
        return response

    @staticmethod
    def _line(info: ResourceInfo, type: str, event: kube_store.Event, as_table: bool,
              api_version: str | None) -> bytes:
        if not as_table:
            return event.line(type, api_version)
        table = kube_tables.table(info, [event.obj], resource_version=str(event.rv))
        return kube_patch.encode({"type": type, "object": table}) + b"\n"

    @staticmethod
    def _bookmark(info: ResourceInfo, rv: int, *, initial_end: bool = False) -> bytes:
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": info.kind, "apiVersion": info.api_version, "metadata": metadata}
        return kube_patch.encode({"type": "BOOKMARK", "object": obj}) + b"\n"

    # --- discovery --------------------------------------------------------------------------------

    def _version(self) -> dict[str, Any]:
        version = self.emulator.kubernetes_version.lstrip("v")
        parts = version.split(".")
        full = version if len(parts) >= 3 else f"{version}.0"
        return {
            "major": parts[0], "minor": parts[1] if len(parts) > 1 else "0",
            "gitVersion": f"v{full}", "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.22.0",
            "compiler": "gc", "platform": "linux/amd64",
        }

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, set[str]] = collections.defaultdict(set)
        for info in self.store.resources():
            if info.group:
                groups[info.group].add(info.version)
        return {group: sorted(versions, key=_version_priority) for group, versions in groups.items()}

    def _group_body(self, group: str, versions: list[str]) -> dict[str, Any]:
        entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def _group_list(self) -> dict[str, Any]:
        builtin_order = {info.group: index for index, info in enumerate(self._builtin_infos())}
        groups = sorted(self._groups().items(), key=lambda item: (builtin_order.get(item[0], 1000), item[0]))
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self._group_body(group, versions) for group, versions in groups]}

    @staticmethod
    def _builtin_infos() -> list[ResourceInfo]:
        from bluegreen.sim.kube_resources import BUILTIN_RESOURCES
        return list(BUILTIN_RESOURCES)

    def _group(self, group: str) -> dict[str, Any]:
        versions = self._groups().get(group)
        if not versions:
            raise _not_found()
        return dict(self._group_body(group, versions), kind="APIGroup", apiVersion="v1")

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        infos = [info for info in self.store.resources() if info.group == group and info.version == version]
        if not infos:
            raise _not_found()
        resources: list[dict[str, Any]] = []
        for info in sorted(infos, key=lambda item: item.plural):
            entry: dict[str, Any] = {
                "name": info.plural, "singularName": info.singular_name, "namespaced": info.namespaced,
                "kind": info.kind, "verbs": list(info.verbs),
            }
            if info.short_names:
                entry["shortNames"] = list(info.short_names)
            if info.categories:
                entry["categories"] = list(info.categories)
            resources.append(entry)
            if info.status_subresource:
                resources.append({"name": f"{info.plural}/status", "singularName": "",
                                  "namespaced": info.namespaced, "kind": info.kind, "verbs": _SUBRESOURCE_VERBS})
            if _serves_logs(info):
                resources.append({"name": f"{info.plural}/log", "singularName": "", "namespaced": True,
                                  "kind": info.kind, "verbs": ["get"]})
                # kubectl drain looks for this entry to decide it may evict (and through which version).
                resources.append({"name": f"{info.plural}/eviction", "singularName": "", "namespaced": True,
                                  "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
            if info.scale:
                resources.append({"name": f"{info.plural}/scale", "singularName": "", "namespaced": info.namespaced,
                                  "group": "autoscaling", "version": "v1", "kind": "Scale",
                                  "verbs": _SUBRESOURCE_VERBS})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    # --- OpenAPI v3 -------------------------------------------------------------------------------
    # kubectl (apply, create, patch) asks OpenAPI v3 whether PATCH of a kind takes the
    # ``fieldValidation`` parameter; if it does, validation is left to the server (ours),
    # otherwise kubectl insists on downloading schemas for client-side validation.

    def _openapi_hash(self) -> str:
        keys = sorted(f"{info.api_version}/{info.plural}" for info in self.store.resources())
        return format(abs(hash(tuple(keys))), "x")

    def _openapi_v3(self, rest: list[str]) -> dict[str, Any]:
        group_versions = {(info.group, info.version) for info in self.store.resources()}
        if not rest:
            digest = self._openapi_hash()
            paths = {}
            for group, version in sorted(group_versions):
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
            return {"paths": paths}
        if rest[0] == "api" and len(rest) == 2:
            group, version = "", rest[1]
        elif rest[0] == "apis" and len(rest) == 3:
            group, version = rest[1], rest[2]
        else:
            raise _not_found()
        if (group, version) not in group_versions:
            raise _not_found()
        return self._openapi_document(group, version)

    def _openapi_document(self, group: str, version: str) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        schemas: dict[str, Any] = {}
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        parameters = [{"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
                      for name in ("dryRun", "fieldManager", "fieldValidation", "pretty")]
        for info in self.store.resources():
            if info.group != group or info.version != version:
                continue
            gvk = {"group": group, "version": version, "kind": info.kind}
            scope = f"{prefix}/namespaces/{{namespace}}/{info.plural}" if info.namespaced else f"{prefix}/{info.plural}"
            operation = {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "patch",
                         "parameters": parameters, "responses": {"200": {"description": "OK"}}}
            paths[f"{scope}/{{name}}"] = {"parameters": parameters, "patch": operation}
            reversed_group = ".".join(reversed(group.split("."))) if group else "io.k8s.api.core"
            schema = dict(info.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
            schema["x-kubernetes-group-version-kind"] = [gvk]
            schemas[f"{reversed_group}.{version}.{info.kind}"] = schema
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": self._version()["gitVersion"]},
            "paths": paths,
            "components": {"schemas": schemas},
        }

    def _paths(self) -> list[str]:
        paths = {"/api", "/api/v1", "/apis", "/version", "/healthz", "/livez", "/readyz"}
        for group, versions in self._groups().items():
            paths.add(f"/apis/{group}")
            paths.update(f"/apis/{group}/{version}" for version in versions)
        return sorted(paths)

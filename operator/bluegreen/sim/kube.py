"""A strict Kubernetes API emulator for the test world, the demo and the benchmarks.

No real kube-apiserver can run on the project's machines, so the operator (``kopf run``, a
real process), kubectl, the official ``kubernetes`` client and pykube-ng talk to these
emulators over HTTP instead: one for the management cluster and one per workload cluster,
all served from one "world" process. They must not be able to tell the difference for what
bluegreen uses, so the semantics follow the apiserver closely (201 on create, 409 on stale
``resourceVersion``, watch resumption and 410 Expired, status-subresource rules, generation,
finalizers, CRDs with schema validation, server-side Tables, ...).

What is kmock's and what is ours, and why:

- kmock (0.8) provides the HTTP serving: ``KubeEmulator`` runs a ``kmock.Server`` (aiohttp)
  around a ``kmock.KubernetesEmulator`` subclass, and kmock's request DSL stays available as
  an **optional fault-injection layer**: ``emulator.faults['patch', kmock.resource(...)] << 500``
  answers matching requests with whatever the reaction says. Only when such reactions exist is
  the DSL consulted, against a bounded recent-request log.
- Everything else is ours (``kube_store``, ``kube_http``, ``kube_schema``, ``kube_patch``,
  ``kube_selectors``, ``kube_tables``, ``kube_resources``). kmock 0.8 matches every request
  against its whole request log (linear: at 100 objects and 20 changes/s it saturates a
  core), keeps that log forever, answers 200 on create, ignores selectors and
  ``resourceVersion``, loses watch events between listing and streaming, merges whole bodies
  into ``/status`` and has no PUT, no CRDs and no Tables. So Kubernetes requests take our own
  path (``__call__`` is overridden) where each request costs O(1) in the history of requests.
  kmock's server also installs a process-wide aiohttp DNS interceptor that must be exited in
  LIFO order; several emulators start and stop in any order here, so ours is left out.

Instead of a request log, ``request_counts`` counts (verb, group, plural[/subresource]), and
``usage`` the same by User-Agent product too; with ``BLUEGREEN_API_USAGE_DIR`` set, ``stop()``
writes the operator's share of ``usage`` there for the RBAC check (see ``sim.api_usage``).
The in-process API (get/list/create/patch/delete/watch) has the same semantics as HTTP and
delivers events to HTTP watchers; it is meant for simulated controllers in the same process,
which write as field manager ``IN_PROCESS_MANAGER`` unless they name their own.

``kubernetes_version`` decides which built-in group/versions are served (``policy/v1beta1``
up to 1.24, ...; see ``kube_resources.SERVED_RANGES``); the simulated CAPI and EKS-A
controllers change it on in-place upgrades and discovery follows at once.
It is thread-safe for writes, but ``watch`` must be iterated on the emulator's event loop.
This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import asyncio
import collections
import os
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from bluegreen.api import spec as api
from bluegreen.sim import api_usage, eviction, kube_faults, kube_logs, kube_patch, kube_selectors, kube_store
from bluegreen.sim.kube_http import HttpApi
from bluegreen.sim.kube_resources import ResourceInfo
from bluegreen.sim.kube_store import KubeApiError, Store

__all__ = ["IN_PROCESS_MANAGER", "KubeApiError", "KubeEmulator", "ResourceInfo"]

# What in-process writers are called in managedFields: simulated controllers stand in for the
# control plane's own, which a real apiserver records as kube-controller-manager and the like.
IN_PROCESS_MANAGER = "bluegreen-sim"

_FAULT_LOG_LIMIT = 1000
_BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@attrs.define(kw_only=True)
class _Front(kmock.KubernetesEmulator):
    """kmock's handler with the emulation replaced by ours; kmock reactions act as faults."""

    api: HttpApi | None = None
    injected: kube_faults.KubeFaults | None = None  # faults set from outside the process (the world's control)

    def __attrs_post_init__(self) -> None:
        # Deliberately no super(): kmock's fallback reactions would serve its own (lax)
        # emulation. With no reactions registered, every request goes straight to our API.
        pass

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        assert self.api is not None
        if self.injected:
            answer = await self.injected.answer(raw_request)
            if answer is not None:
                return answer
        if self._payloads:
            response = await self._inject_fault(raw_request)
            if response is not None:
                return response
        return await self.api.handle(raw_request)

    async def _inject_fault(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse | None:
        await raw_request.read()
        request = await rendering.Request._parse(raw_request, id=len(self._requests))
        self._requests.append(request)
        if len(self._requests) > _FAULT_LOG_LIMIT:
            del self._requests[: len(self._requests) - _FAULT_LOG_LIMIT]
        try:
            response: aiohttp.web.StreamResponse = await kmock.RawHandler._handle(self, request)
            return response
        except NotImplementedError:
            return None  # no reaction matched: serve normally
        except kmock.KubernetesError as exc:
            return await self._render_error(exc)


@attrs.mutable
class _Server(kmock.Server):
    """kmock's server without its process-wide DNS interceptor and client session."""

    async def __aenter__(self) -> _Server:
        server = aiohttp.test_utils.RawTestServer(self.handler, host=self._host, port=self._port)
        await server.start_server()
        self._managed_server = server
        self.handler.servers.append(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self in self.handler.servers:
            self.handler.servers.remove(self)
        if self._managed_server is not None:
            await self._managed_server.close()
            self._managed_server = None


class _LiveWatch:
    """An in-process watch: registered at creation, so "from now on" means from the call."""

    def __init__(self, watcher: kube_store.Watcher) -> None:
        self._watcher = watcher
        self._api_version = watcher.info.api_version
        self._buffer: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()

    def __aiter__(self) -> _LiveWatch:
        return self

    async def __anext__(self) -> tuple[str, dict[str, Any]]:
        while not self._buffer:
            if not await self._watcher.wait():
                raise StopAsyncIteration
            for type, event in self._watcher.drain():
                self._buffer.append((type, dict(kube_patch.clone(event.obj), apiVersion=self._api_version)))
        return self._buffer.popleft()

    async def aclose(self) -> None:
        self._watcher.close()

    def __del__(self) -> None:
        self._watcher.close()


class KubeEmulator:
    """One emulated API server (a cluster), served over HTTP and usable in-process."""

    def __init__(self, *, name: str, kubernetes_version: str = "1.30", token: str | None = None) -> None:
        self.name = name
        self.token = token
        self.bookmark_interval: float = 30.0  # seconds between BOOKMARK events when allowed
        self.request_counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.usage: api_usage.Usage = collections.Counter()  # (agent, verb, group, plural[/sub]) -> requests
        self._usage_file = api_usage.new_file_name(name)
        self.store = Store(kubernetes_version=kubernetes_version)
        self.logs = kube_logs.PodLogs()  # what containers print; written by a simulated kubelet (sim.jobs)
        self._api = HttpApi(self)
        # Counted faults a test sets through the world's control API (``POST /kube/fault``).
        self.injected = kube_faults.KubeFaults()
        self._front = _Front(api=self._api, injected=self.injected)
        self._server: _Server | None = None
        self.serving = False  # between start() and stop(): in-process observers stop watching when it ends
        self._stop_callbacks: list[Callable[[], Awaitable[None]]] = []
        for namespace in _BOOTSTRAP_NAMESPACES:
            self.create("v1/namespaces", {"metadata": {"name": namespace}})

    @property
    def kubernetes_version(self) -> str:
        return self.store.kubernetes_version

    @kubernetes_version.setter
    def kubernetes_version(self, value: str) -> None:
        self.store.set_kubernetes_version(value)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._server is not None:
            raise RuntimeError(f"emulator {self.name!r} is already started")
        self.store.attach_loop(asyncio.get_running_loop())
        await self._front.__aenter__()
        server = _Server(self._front, host=host, port=port)
        await server.__aenter__()
        self._server = server
        self.serving = True

    async def stop(self) -> None:
        self.serving = False
        # Watch streams are ended first, or the server would wait for them on shutdown.
        self.store.close_watchers()
        self.logs.end_streams()
        for callback in self._stop_callbacks:
            await callback()
        if self._server is not None:
            await self._server.__aexit__(None, None, None)
            self._server = None
            await self._front.__aexit__(None, None, None)
        self._write_usage()

    @property
    def role(self) -> api_usage.Role:
        """``management`` when this cluster serves ClusterUpgrades, else ``remote`` (blue, green, a router's)."""
        serves_upgrades = any(info.group == api.GROUP and info.plural == api.PLURAL for info in self.store.resources())
        return "management" if serves_upgrades else "remote"

    def _write_usage(self) -> None:
        directory = os.environ.get(api_usage.ENV)
        if directory:
            api_usage.write(pathlib.Path(directory), self._usage_file, cluster=self.name, role=self.role,
                            usage=self.usage)

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback`` in :meth:`stop`, once watches have ended (for controllers attached to this cluster)."""
        self._stop_callbacks.append(callback)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"emulator {self.name!r} is not started")
        return f"http://{self._server.host}:{self._server.port}"

    @property
    def faults(self) -> kmock.KubernetesEmulator:
        """kmock's DSL for fault injection: ``emulator.faults['get', kmock.resource(...)] << 503``."""
        return self._front

    def kubeconfig(self, *, user: str = "admin") -> dict[str, Any]:
        credentials: dict[str, Any] = {"token": self.token} if self.token is not None else {}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": self.name, "cluster": {"server": self.url}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": user,
                                                         "namespace": "default"}}],
            "current-context": self.name,
        }

    # --- resources --------------------------------------------------------------------------------

    def add_resource(
            self, *, group: str, version: str, plural: str, kind: str, namespaced: bool = True,
            status_subresource: bool = True, short_names: tuple[str, ...] = (),
            printer_columns: tuple[dict[str, Any], ...] = (),
    ) -> None:
        self.store.register(ResourceInfo(
            group=group, version=version, plural=plural, kind=kind, namespaced=namespaced,
            status_subresource=status_subresource, short_names=tuple(short_names),
            printer_columns=tuple(printer_columns),
        ))

    def install_crd(self, crd: dict[str, Any]) -> None:
        info = self.store.resolve_path("apiextensions.k8s.io/v1/customresourcedefinitions")
        name = crd.get("metadata", {}).get("name", "")
        try:
            existing = self.store.get(info, None, name)
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            self.store.create(info, None, crd, manager=IN_PROCESS_MANAGER)
        else:
            body = kube_patch.clone(crd)
            body.setdefault("metadata", {})["resourceVersion"] = existing["metadata"]["resourceVersion"]
            self.store.update(info, None, name, body, manager=IN_PROCESS_MANAGER)

    # --- in-process API ---------------------------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        info = self.store.resolve_path(resource)
        try:
            obj = self.store.get(info, namespace, name)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(kube_patch.clone(obj), apiVersion=info.api_version)

    def list(self, resource: str, namespace: str | None = None, *,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        info = self.store.resolve_path(resource)
        labels = kube_selectors.parse_label_selector(label_selector)
        items, _ = self.store.list(info, namespace, labels=labels)
        return [dict(kube_patch.clone(item), apiVersion=info.api_version) for item in items]

    def create(self, resource: str, obj: dict[str, Any], *, field_manager: str = IN_PROCESS_MANAGER) -> dict[str, Any]:
        info = self.store.resolve_path(resource)
        namespace = (obj.get("metadata") or {}).get("namespace") or ("default" if info.namespaced else None)
        return kube_patch.clone(  # type: ignore[no-any-return]
            self.store.create(info, namespace, obj, manager=field_manager))

    def patch(self, resource: str, namespace: str | None, name: str, patch: dict[str, Any], *,
              subresource: str | None = None, field_manager: str = IN_PROCESS_MANAGER) -> dict[str, Any]:
        info = self.store.resolve_path(resource)
        return kube_patch.clone(  # type: ignore[no-any-return]
            self.store.patch(info, namespace, name, patch, subresource=subresource, manager=field_manager)
        )

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        info = self.store.resolve_path(resource)
        self.store.delete(info, namespace, name)

    def evict(self, namespace: str, name: str, *, dry_run: bool = False) -> dict[str, Any]:
        """Evict a pod through the Eviction API's rules (PodDisruptionBudgets); ``KubeApiError`` when refused."""
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        return eviction.evict(self.store, namespace, name, body, dry_run=dry_run, manager=IN_PROCESS_MANAGER)

    def watch(self, resource: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        info = self.store.resolve_path(resource)
        return _LiveWatch(self.store.watch(info, None, replay=False))

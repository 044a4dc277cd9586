"""The object store behind an emulated API server: the semantics, without HTTP.

Everything a client can observe about state lives here, so that the HTTP API and the
in-process API of ``KubeEmulator`` behave identically:

- One monotonic ``resourceVersion`` counter per emulator; every committed change takes the
  next value. A write that changes nothing is a no-op and takes no version (as on a real
  server, so no-op patches produce no watch events).
- Stored objects are immutable snapshots: a write builds a new dict and swaps it in. Watch
  events can therefore share snapshots (and their JSON encoding) with any number of streams.
- Each resource (group + plural, shared by all served versions) keeps its objects in a dict
  keyed by (namespace, name), so get/create/patch/delete are O(1) and list is O(objects of
  that resource); a bounded history of events lets a watch resume from a resourceVersion and
  answers 410 Expired when asked for something older than the history holds.
- Watchers are registered under the store lock in the same step that takes the snapshot or
  replays history, so no event falls between the initial state and the live stream.
- Status subresource rules, ``metadata.generation``, optimistic concurrency (409 Conflict),
  finalizers and ``deletionTimestamp``, background garbage collection by owner uid,
  namespace termination and CRD registration are enforced here.
- Writes that name a manager record ``metadata.managedFields`` (see ``kube_fields``), with the
  request's group/version; writes the store makes itself (garbage collection, finalizing) do not.
  Server-side apply (``apply``) merges, prunes and reports conflicts on the same field sets.
- Which built-in group/versions are served follows ``kubernetes_version`` (see
  ``kube_resources.SERVED_RANGES``); storage is shared, so a version that stops being served
  hides nothing: the same objects stay readable through the versions still served.

Thread-safety: the mutating methods take a lock, and watch fan-out always runs on the event
loop thread (events from other threads are queued and flushed there in commit order), so a
test may drive blocking clients from a thread while the emulator serves from its loop.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import collections
import dataclasses
import datetime
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from bluegreen.sim import kube_fields, kube_patch, kube_resources, kube_schema, kube_selectors, kube_tables
from bluegreen.sim.kube_resources import ResourceInfo

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
BOOKMARK = "BOOKMARK"
ERROR = "ERROR"

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's generateName alphabet
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL_NAMED = frozenset({"namespaces", "services"})
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


class KubeApiError(Exception):
    """An API error as the apiserver reports it: an HTTP status, a reason and a message."""

    def __init__(self, status: int, reason: str, message: str, *, details: dict[str, Any] | None = None):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details

    def to_status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.status,
        }
        if self.details:
            body["details"] = self.details
        return body


def webhook_denied(webhook: str, kind: str, name: str, problem: str) -> KubeApiError:
    """A validating admission webhook's refusal, in the words the API server relays it: a 422 Invalid."""
    return KubeApiError(422, "Invalid", f'admission webhook "{webhook}" denied the request: {kind} "{name}" '
                                        f"is invalid: {problem}")


def _not_found(info: ResourceInfo, name: str) -> KubeApiError:
    return KubeApiError(404, "NotFound", f'{info.qualified} "{name}" not found',
                        details={"name": name, "group": info.group, "kind": info.plural})


def _conflict(info: ResourceInfo, name: str) -> KubeApiError:
    return KubeApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {info.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details={"name": name, "group": info.group, "kind": info.plural},
    )


def _invalid(info: ResourceInfo, name: str, errors: list[kube_schema.FieldError]) -> KubeApiError:
    return KubeApiError(
        422, "Invalid", kube_schema.invalid_message(kind=info.kind, group=info.group, name=name, errors=errors),
        details={"name": name, "group": info.group, "kind": info.kind,
                 "causes": [{"reason": error.reason, "message": error.message, "field": error.field}
                            for error in errors]},
    )


def _invalid_options(message: str) -> KubeApiError:
    return KubeApiError(422, "Invalid", f'PatchOptions.meta.k8s.io "" is invalid: {message}')


def bad_request(message: str) -> KubeApiError:
    return KubeApiError(400, "BadRequest", message)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_in(seconds: int) -> str:
    # A graceful deletion's deletionTimestamp is when the grace period ends, not when it began.
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_pod(info: ResourceInfo) -> bool:
    return info.group == "" and info.plural == "pods"


class Event:
    """One committed change, shared by all watchers; encoded to JSON at most once per shape."""

    __slots__ = ("_lines", "obj", "old", "rv", "type")

    def __init__(self, type: str, obj: dict[str, Any], old: dict[str, Any] | None, rv: int) -> None:
        self.type = type
        self.obj = obj
        self.old = old
        self.rv = rv
        self._lines: dict[tuple[str, str | None], bytes] = {}

    def line(self, type: str, api_version: str | None = None) -> bytes:
        if api_version == self.obj.get("apiVersion"):
            api_version = None  # the stored form: one encoding shared with other versions' streams
        key = (type, api_version)
        encoded = self._lines.get(key)
        if encoded is None:
            obj = self.obj if api_version is None else dict(self.obj, apiVersion=api_version)
            encoded = kube_patch.encode({"type": type, "object": obj}) + b"\n"
            self._lines[key] = encoded
        return encoded


class Watcher:
    """One watch stream's queue. Filled synchronously on the loop thread, drained by a coroutine."""

    def __init__(
            self, *, store: Store, collection: _Collection, info: ResourceInfo, namespace: str | None,
            labels: kube_selectors.LabelSelector, fields: kube_selectors.FieldSelector, max_queue: int,
    ) -> None:
        self.store = store
        self.info = info
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.items: collections.deque[tuple[str, Event]] = collections.deque()
        self.closed = False
        self.error: dict[str, Any] | None = None  # an ERROR event object ends the stream after it
        self.initial_events_end_rv: int | None = None  # sendInitialEvents: bookmark owed
        self._collection = collection
        self._max_queue = max_queue
        self.filter_id = store._filter_id(self.namespace, labels, fields)
        self._waiter: asyncio.Future[None] | None = None

    def _selects(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj.get("metadata", {}).get("namespace") != self.namespace:
            return False
        return self.labels.matches(obj) and self.fields.matches(obj)

    def classify(self, event: Event) -> str | None:
        """The event type this watcher's view sees, or None when the event is not in its view."""
        now_matches = self._selects(event.obj)
        if event.type == MODIFIED:
            before = self._selects(event.old)
            if now_matches and before:
                return MODIFIED
            if now_matches:
                return ADDED
            if before:
                return DELETED  # stopped matching the selector: gone from this view
            return None
        return event.type if now_matches else None

    def offer(self, event: Event, type: str | None = "") -> None:
        """Queue an event; ``type`` is a precomputed ``classify()`` result shared by same-filter watchers."""
        if self.closed:
            return
        if type == "":
            type = self.classify(event)
        if type is not None:
            self._push(type, event)

    def _push(self, type: str, event: Event) -> None:
        if len(self.items) >= self._max_queue:
            # A consumer this slow is cut off, as the apiserver does; it re-lists and re-watches.
            self.close()
            return
        self.items.append((type, event))
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def fail(self, status: dict[str, Any]) -> None:
        self.error = status
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store._unregister(self._collection, self)
            self._wake()

    async def wait(self, max_wait: float | None = None) -> bool:
        """Wait for items; False when the stream is closed and drained or ``max_wait`` passed."""
        while not self.items:
            if self.closed:
                return False
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                if max_wait is None:
                    await self._waiter
                else:
                    try:
                        await asyncio.wait_for(asyncio.shield(self._waiter), max_wait)
                    except TimeoutError:
                        return bool(self.items)
            finally:
                self._waiter = None
        return True

    def drain(self) -> list[tuple[str, Event]]:
        items = list(self.items)
        self.items.clear()
        return items


@dataclasses.dataclass(eq=False)
class _Collection:
    """Storage for one resource (group + plural), shared by all its served versions."""

    info: ResourceInfo
    floor_rv: int  # events after this resourceVersion are all in the history
    objects: dict[tuple[str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Synthetic ADDED events of current snapshots, reused (with their JSON) by every new watch.
    initial: dict[tuple[str, str], Event] = dataclasses.field(default_factory=dict)
    history: collections.deque[Event] = dataclasses.field(default_factory=collections.deque)
    watchers: set[Watcher] = dataclasses.field(default_factory=set)
    # Indexes for lists (a fleet keeps thousands of objects in one namespace): names by namespace, and keys by
    # label; labels_of says under which labels a key is filed.
    by_namespace: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    by_label: dict[tuple[str, str], set[tuple[str, str]]] = dataclasses.field(default_factory=dict)
    labels_of: dict[tuple[str, str], frozenset[tuple[str, str]]] = dataclasses.field(default_factory=dict)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _owner_uids(obj: dict[str, Any] | None) -> set[str]:
    if obj is None:
        return set()
    return {str(ref["uid"]) for ref in _meta(obj).get("ownerReferences") or () if isinstance(ref, dict)
            and ref.get("uid")}


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key not in keys}


def fold_string_data(secret: dict[str, Any]) -> None:
    """What the apiserver does with a Secret's ``stringData``: written into ``data`` (base64, winning over a
    key of the same name), never stored or served itself."""
    string_data = secret.pop("stringData", None)
    if not string_data:
        return
    if not isinstance(string_data, dict) or not all(isinstance(v, str) for v in string_data.values()):
        raise bad_request("stringData must be a map of strings")
    data = secret.get("data") or {}
    secret["data"] = {**data, **{key: base64.b64encode(value.encode()).decode() for key, value in string_data.items()}}


class Store:
    def __init__(self, *, history_limit: int = 5000, max_watch_queue: int = 50_000,
                 kubernetes_version: str = "1.30") -> None:
        self.history_limit = history_limit
        self.kubernetes_version = kubernetes_version
        self.max_watch_queue = max_watch_queue
        self._lock = threading.RLock()
        self._rv = 0
        self._delivered_rv = 0
        self._pending: collections.deque[tuple[_Collection, Event]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._resources: dict[tuple[str, str, str], ResourceInfo] = {}  # (group, version, plural)
        self._collections: dict[tuple[str, str], _Collection] = {}
        self._dependents: dict[str, set[tuple[tuple[str, str], str, str]]] = collections.defaultdict(set)
        self._namespace_counts: collections.Counter[str] = collections.Counter()
        self._filters: dict[tuple[Any, ...], int] = {}
        # Validating admission, as a simulated controller's webhook: called with (resource, old or None, new)
        # on every create and update of an object (not of its status); a KubeApiError it raises refuses the write.
        self.admission: list[Callable[[ResourceInfo, dict[str, Any] | None, dict[str, Any]], None]] = []
        # Nodes a simulated kubelet runs (sim.nodes): their pods are deleted gracefully, as on a real
        # cluster (deletionTimestamp, then gone once the kubelet confirms with a grace period of 0).
        # Pods elsewhere have no kubelet to confirm, so they go at once as before.
        self.kubelet_nodes: set[str] = set()
        for info in kube_resources.BUILTIN_RESOURCES:
            self.register(info)

    # --- resources --------------------------------------------------------------------------------

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def delivered_resource_version(self) -> int:
        return self._delivered_rv

    def register(self, info: ResourceInfo) -> None:
        with self._lock:
            self._resources[(info.group, info.version, info.plural)] = info
            if info.storage_key not in self._collections:
                self._collections[info.storage_key] = _Collection(info=info, floor_rv=self._rv)

    def unregister_crd(self, crd_name: str) -> None:
        with self._lock:
            infos = [info for info in self._resources.values() if info.crd_name == crd_name]
            for info in infos:
                del self._resources[(info.group, info.version, info.plural)]
            for key in {info.storage_key for info in infos}:
                collection = self._collections.pop(key, None)
                if collection is not None:
                    for watcher in list(collection.watchers):
                        watcher.close()

    def set_kubernetes_version(self, kubernetes_version: str) -> None:
        """Serve what ``kubernetes_version`` serves; watches through versions no longer served end."""
        with self._lock:
            self.kubernetes_version = kubernetes_version
            for collection in self._collections.values():
                for watcher in list(collection.watchers):
                    if not watcher.info.served_at(kubernetes_version):
                        watcher.close()

    def resources(self) -> list[ResourceInfo]:
        """The resources served at the store's Kubernetes version."""
        with self._lock:
            return [info for info in self._resources.values() if info.served_at(self.kubernetes_version)]

    def resolve(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        info = self._resources.get((group, version, plural))
        return info if info is not None and info.served_at(self.kubernetes_version) else None

    def resolve_path(self, resource: str) -> ResourceInfo:
        """``group/version/plural`` or ``v1/plural`` (core) to a served resource."""
        parts = resource.strip("/").split("/")
        if len(parts) == 2:
            group, version, plural = "", parts[0], parts[1]
        elif len(parts) == 3:
            group, version, plural = parts
        else:
            raise ValueError(f"resource must be 'group/version/plural' or 'v1/plural', got {resource!r}")
        info = self.resolve(group, version, plural)
        if info is None:
            raise KubeApiError(404, "NotFound", f"the server could not find the requested resource ({resource})")
        return info

    def _collection(self, info: ResourceInfo) -> _Collection:
        # Registered is enough here: requests resolve only served versions, and the store's own
        # writes (garbage collection) go through a collection's storage version whatever is served.
        collection = self._collections.get(info.storage_key)
        if collection is None or (info.group, info.version, info.plural) not in self._resources:
            raise KubeApiError(404, "NotFound", "the server could not find the requested resource")
        return collection

    # --- reading ----------------------------------------------------------------------------------

    def get(self, info: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self._collection(info).objects.get(((namespace or "") if info.namespaced else "", name))
            if obj is None:
                raise _not_found(info, name)
            return obj

    def list(
            self, info: ResourceInfo, namespace: str | None, *,
            labels: kube_selectors.LabelSelector | None = None,
            fields: kube_selectors.FieldSelector | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            collection = self._collection(info)
            exact = fields.exact_name() if fields is not None else None
            if exact is not None and (namespace is not None or not info.namespaced):
                found = collection.objects.get((namespace or "", exact))
                candidates: list[dict[str, Any]] = [found] if found is not None else []
            else:
                keys: Iterable[tuple[str, str]]
                equalities = labels.equalities() if labels is not None else []
                if equalities:
                    keys = set.intersection(*(collection.by_label.get(label, set()) for label in equalities))
                elif namespace is not None and info.namespaced:
                    keys = [(namespace, name) for name in collection.by_namespace.get(namespace, ())]
                else:
                    keys = collection.objects.keys()
                candidates = [collection.objects[key] for key in sorted(keys)
                              if namespace is None or not info.namespaced or key[0] == namespace]
            items = [obj for obj in candidates
                     if (labels is None or labels.matches(obj)) and (fields is None or fields.matches(obj))]
            return items, self._rv

    # --- watching ---------------------------------------------------------------------------------

    def watch(
            self, info: ResourceInfo, namespace: str | None, *,
            labels: kube_selectors.LabelSelector | None = None,
            fields: kube_selectors.FieldSelector | None = None,
            resource_version: str | None = None,
            send_initial_events: bool | None = None,
            replay: bool = True,
    ) -> Watcher:
        """Register a watch: replay from ``resource_version``, or current state as ADDED first.

        ``replay=False`` is for in-process observers that want live events only.
        """
        with self._lock:
            self._flush()
            collection = self._collection(info)
            watcher = Watcher(
                store=self, collection=collection, info=info,
                namespace=namespace if info.namespaced else None,
                labels=labels or kube_selectors.LabelSelector(),
                fields=fields or kube_selectors.FieldSelector(), max_queue=self.max_watch_queue,
            )
            from_scratch = resource_version in (None, "", "0") or bool(send_initial_events)
            if not replay:
                pass
            elif from_scratch:
                for key, obj in sorted(collection.objects.items()):
                    event = collection.initial.get(key)
                    if event is None or event.obj is not obj:
                        event = Event(ADDED, obj, None, int(_meta(obj).get("resourceVersion") or 0))
                        collection.initial[key] = event
                    watcher.offer(event)
                if send_initial_events:
                    watcher.initial_events_end_rv = self._rv
            else:
                assert resource_version is not None
                try:
                    since = int(resource_version)
                except ValueError:
                    raise bad_request(f'resourceVersion: Invalid value: "{resource_version}": '
                                      "must be a non-negative integer") from None
                if since < collection.floor_rv:
                    watcher.fail(KubeApiError(
                        410, "Expired", f"too old resource version: {since} ({collection.floor_rv})"
                    ).to_status())
                    return watcher
                for event in collection.history:
                    if event.rv > since:
                        watcher.offer(event)
            collection.watchers.add(watcher)
            return watcher

    def _filter_id(self, namespace: str | None, labels: kube_selectors.LabelSelector,
                   fields: kube_selectors.FieldSelector) -> int:
        """A small integer per distinct watch filter, so fan-out groups streams without rehashing."""
        return self._filters.setdefault((namespace, labels, fields), len(self._filters))

    def _unregister(self, collection: _Collection, watcher: Watcher) -> None:
        collection.watchers.discard(watcher)

    def close_watchers(self) -> None:
        with self._lock:
            for collection in self._collections.values():
                for watcher in list(collection.watchers):
                    watcher.close()

    def _emit(self, collection: _Collection, event: Event) -> None:
        collection.history.append(event)
        while len(collection.history) > self.history_limit:
            collection.floor_rv = collection.history.popleft().rv
        self._pending.append((collection, event))
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._flush()
        else:
            self._loop.call_soon_threadsafe(self._flush_locked)

    def _flush_locked(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        while self._pending:
            collection, event = self._pending.popleft()
            # Many streams share one filter (kopf, informers): decide once per distinct filter.
            decisions: dict[int, str | None] = {}
            for watcher in list(collection.watchers):
                key = watcher.filter_id
                if key not in decisions:
                    decisions[key] = watcher.classify(event)
                watcher.offer(event, decisions[key])
            self._delivered_rv = max(self._delivered_rv, event.rv)

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    # --- writing ----------------------------------------------------------------------------------

    def create(
            self, info: ResourceInfo, namespace: str | None, body: Any, *,
            dry_run: bool = False, field_validation: str | None = None, manager: str | None = None,
            applied: set[kube_fields.Path] | None = None,
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        with self._lock:
            collection = self._collection(info)
            obj: dict[str, Any] = kube_patch.clone(body)
            self._check_type(info, obj)
            meta = obj.setdefault("metadata", {})
            if not isinstance(meta, dict):
                raise bad_request("metadata must be an object")
            namespace = self._creation_namespace(info, namespace, meta)
            name = meta.get("name") or ""
            if not name:
                prefix = meta.get("generateName")
                if not prefix:
                    raise _invalid(info, "", [kube_schema.FieldError(
                        "metadata.name", "Required value: name or generateName is required",
                        reason="FieldValueRequired")])
                name = self._generate_name(collection, namespace, prefix)
            self._check_name(info, name)
            key = (namespace or "", name)
            if key in collection.objects:
                raise KubeApiError(409, "AlreadyExists", f'{info.qualified} "{name}" already exists',
                                   details={"name": name, "group": info.group, "kind": info.plural})
            meta["name"] = name
            for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
                meta.pop(field, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            meta["generation"] = 1
            if info.status_subresource and not info.keep_status_on_create:
                obj.pop("status", None)
            self._check_labels(info, obj, name)
            obj = self._validate(info, obj, name=name, field_validation=field_validation)
            for admit in self.admission:
                admit(info, None, obj)
            obj = self._on_create(info, obj)
            if manager is not None:
                managed = kube_fields.record([], None, obj, manager=manager, api_version=info.api_version,
                                             subresource=None, status_subresource=info.status_subresource,
                                             now=now_rfc3339(), applied=applied)
                if managed:
                    obj["metadata"]["managedFields"] = managed
            if dry_run:
                return obj
            meta = obj["metadata"]
            meta["resourceVersion"] = str(self._next_rv())
            collection.objects[key] = obj
            self._index(collection, key, None, obj)
            self._emit(collection, Event(ADDED, obj, None, self._rv))
            self._after_commit(info, None, obj)
            return obj

    def _check_type(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        api_version = obj.get("apiVersion")
        if api_version and api_version != info.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected "
                              f"API version ({info.api_version})")
        kind = obj.get("kind")
        if kind and kind != info.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({info.kind})")
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind

    def _creation_namespace(self, info: ResourceInfo, namespace: str | None, meta: dict[str, Any]) -> str | None:
        if not info.namespaced:
            meta.pop("namespace", None)
            return None
        in_body = meta.get("namespace")
        if namespace and in_body and namespace != in_body:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        namespace = namespace or in_body
        if not namespace:
            raise bad_request("the namespace of the object is required for a namespaced resource")
        namespaces = self._collections[("", "namespaces")]
        ns_obj = namespaces.objects.get(("", namespace))
        if ns_obj is None:
            raise KubeApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                               details={"name": namespace, "kind": "namespaces"})
        if _meta(ns_obj).get("deletionTimestamp"):
            raise KubeApiError(
                403, "Forbidden",
                f'{info.plural} "{meta.get("name") or meta.get("generateName", "")}" is forbidden: '
                f"unable to create new content in namespace {namespace} because it is being terminated",
                details={"name": meta.get("name", ""), "group": info.group, "kind": info.plural,
                         "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]},
            )
        meta["namespace"] = namespace
        return str(namespace)

    @staticmethod
    def _check_name(info: ResourceInfo, name: str) -> None:
        if info.group == "" and info.plural in _DNS_LABEL_NAMED:
            if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
                raise _invalid(info, name, [kube_schema.FieldError("metadata.name", (
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case alphanumeric '
                    "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
                    f"or '123-abc', regex used for validation is '{_DNS_LABEL.pattern}')"))])
        elif len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
            raise _invalid(info, name, [kube_schema.FieldError("metadata.name", (
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
                "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
                f"'example.com', regex used for validation is '{_DNS_SUBDOMAIN.pattern}')"))])

    @staticmethod
    def _check_labels(info: ResourceInfo, obj: dict[str, Any], name: str) -> None:
        labels = _meta(obj).get("labels") or {}
        if not isinstance(labels, dict):
            raise bad_request("metadata.labels must be a map of strings")
        errors: list[kube_schema.FieldError] = []
        for key, value in labels.items():
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
                errors.append(kube_schema.FieldError("metadata.labels", (
                    f"Invalid value: {json.dumps(value)}: a valid label must be an empty string or consist of "
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    f"character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                    f"'{_LABEL_VALUE.pattern}')")))
            prefix, _, label_name = key.rpartition("/")
            if (not label_name or len(label_name) > 63 or not _LABEL_NAME.fullmatch(label_name)
                    or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)))):
                errors.append(kube_schema.FieldError("metadata.labels", (
                    f'Invalid value: "{key}": name part must consist of alphanumeric characters, \'-\', \'_\' or '
                    "'.', and must start and end with an alphanumeric character")))
        if errors:
            raise _invalid(info, name, errors)

    def _generate_name(self, collection: _Collection, namespace: str | None, prefix: str) -> str:
        for _ in range(100):
            name = prefix + "".join(random.choices(_NAME_ALPHABET, k=5))
            if (namespace or "", name) not in collection.objects:
                return name
        raise KubeApiError(500, "InternalError", "could not generate a unique name")

    def _validate(
            self, info: ResourceInfo, obj: dict[str, Any], *, name: str, field_validation: str | None,
    ) -> dict[str, Any]:
        if info.schema is None:
            return obj
        outcome = kube_schema.process(info.schema, obj)
        if outcome.errors:
            raise _invalid(info, name, outcome.errors)
        if outcome.unknown_fields and (field_validation or "").lower() == "strict":
            unknown = ", ".join(f'unknown field "{field}"' for field in outcome.unknown_fields)
            raise bad_request(f"strict decoding error: {unknown}")
        return outcome.obj

    def _on_create(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        if info.group == "" and info.plural == "secrets":
            fold_string_data(obj)
        if info.group == "" and info.plural == "namespaces":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            labels = _meta(obj).setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = _meta(obj)["name"]
        elif info.group == "apiextensions.k8s.io" and info.plural == "customresourcedefinitions":
            try:
                crd_infos = kube_resources.resources_from_crd(obj)
            except kube_resources.CrdError as exc:
                raise KubeApiError(
                    422, "Invalid",
                    f'CustomResourceDefinition.apiextensions.k8s.io "{_meta(obj).get("name")}" is invalid: {exc}',
                ) from None
            for crd_info in crd_infos:
                existing = self._collections.get(crd_info.storage_key)
                if existing is not None and existing.info.crd_name != crd_info.crd_name:
                    raise KubeApiError(
                        422, "Invalid", f"the resource {crd_info.qualified} is already served by the server"
                    )
            finalizers = _meta(obj).setdefault("finalizers", [])
            if kube_resources.CRD_CLEANUP_FINALIZER not in finalizers:
                finalizers.append(kube_resources.CRD_CLEANUP_FINALIZER)
            obj["status"] = kube_resources.crd_status(obj, now=now_rfc3339())
        elif info.group == "batch" and info.plural == "jobs":
            errors = kube_resources.prepare_job(obj)
            if errors:
                raise _invalid(info, _meta(obj)["name"], errors)
        return obj

    def _after_commit(self, info: ResourceInfo, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Side effects of a committed change: CRD (un)registration."""
        if info.group == "apiextensions.k8s.io" and info.plural == "customresourcedefinitions":
            crd_name = _meta(new or old or {}).get("name", "")
            if new is None:
                self.unregister_crd(crd_name)
                return
            served = kube_resources.resources_from_crd(new)
            stale = [known for known in self._resources.values()
                     if known.crd_name == crd_name and known not in served]
            for known in stale:
                del self._resources[(known.group, known.version, known.plural)]
            for crd_info in served:
                self.register(crd_info)
                self._collections[crd_info.storage_key].info = crd_info

    def update(
            self, info: ResourceInfo, namespace: str | None, name: str, body: Any, *,
            subresource: str | None = None, dry_run: bool = False, field_validation: str | None = None,
            manager: str | None = None,
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        with self._lock:
            collection = self._collection(info)
            old = self.get(info, namespace, name)
            candidate: dict[str, Any] = kube_patch.clone(body)
            body_meta = _meta(candidate)
            if body_meta.get("name") and body_meta["name"] != name:
                raise bad_request(f"the name of the object ({body_meta['name']}) does not match "
                                  f"the name on the URL ({name})")
            if info.namespaced and body_meta.get("namespace") and body_meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match "
                                  "the namespace sent on the request")
            self._check_type(info, candidate)
            return self._write(info, collection, old, candidate, subresource=subresource,
                               dry_run=dry_run, field_validation=field_validation, manager=manager)

    def apply(
            self, info: ResourceInfo, namespace: str | None, name: str, config: Any, *,
            manager: str | None, force: bool = False, subresource: str | None = None,
            dry_run: bool = False, field_validation: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Server-side apply (see ``kube_fields``): the object, and whether the apply created it."""
        if not manager:
            raise _invalid_options("fieldManager: Required value: is required for apply patch")
        if not isinstance(config, dict):
            raise bad_request("the applied configuration must be an object")
        config = kube_patch.clone(config)
        meta = config.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if meta.pop("managedFields", None):
            raise bad_request("metadata.managedFields must be nil")
        if meta.get("name", name) != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        meta["name"] = name
        with self._lock:
            collection = self._collection(info)
            self._check_type(info, config)
            applied = kube_fields.applied_paths(config, subresource, status_subresource=info.status_subresource)
            old = collection.objects.get(((namespace or "") if info.namespaced else "", name))
            if old is None:
                if subresource is not None:
                    raise _not_found(info, name)
                return self.create(info, namespace, config, dry_run=dry_run, field_validation=field_validation,
                                   manager=manager, applied=applied), True
            seen = old if old.get("apiVersion") == info.api_version else dict(old, apiVersion=info.api_version)
            entries = list(_meta(old).get("managedFields") or ())
            found = kube_fields.conflicts(entries, seen, config, applied, manager=manager, subresource=subresource)
            if found and not force:
                count = f"{len(found)} conflict" + ("s" if len(found) > 1 else "")
                raise KubeApiError(409, "Conflict", f"Apply failed with {count}: " + "\n".join(found), details={
                    "causes": [{"reason": "FieldManagerConflict", "message": line, "field": line.rpartition(": ")[2]}
                               for line in found]})
            candidate = kube_patch.merge_patch(kube_patch.clone(seen), config)
            kube_fields.prune(candidate, entries, applied, manager=manager, subresource=subresource)
            return self._write(info, collection, old, candidate, subresource=subresource, dry_run=dry_run,
                               field_validation=field_validation, manager=manager, applied=applied), False

    def patch(
            self, info: ResourceInfo, namespace: str | None, name: str, patch: Any, *,
            patch_type: str = MERGE_PATCH, subresource: str | None = None,
            dry_run: bool = False, field_validation: str | None = None, manager: str | None = None,
    ) -> dict[str, Any]:
        if patch_type == APPLY_PATCH:
            return self.apply(info, namespace, name, patch, manager=manager, subresource=subresource,
                              dry_run=dry_run, field_validation=field_validation)[0]
        with self._lock:
            collection = self._collection(info)
            old = self.get(info, namespace, name)
            # The patch applies to the object as read through the request's version.
            seen = old if old.get("apiVersion") == info.api_version else dict(old, apiVersion=info.api_version)
            try:
                if patch_type == MERGE_PATCH:
                    if not isinstance(patch, dict):
                        raise kube_patch.PatchFormatError("a merge patch must be a JSON object")
                    candidate = kube_patch.merge_patch(kube_patch.clone(seen), patch)
                elif patch_type == JSON_PATCH:
                    candidate = kube_patch.json_patch(seen, patch)
                elif patch_type == STRATEGIC_MERGE_PATCH:
                    if not info.builtin:
                        raise KubeApiError(
                            415, "UnsupportedMediaType",
                            f"the body of the request was in an unknown format - accepted media types include: "
                            f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}",
                        )
                    if not isinstance(patch, dict):
                        raise kube_patch.PatchFormatError("a strategic merge patch must be a JSON object")
                    candidate = kube_patch.strategic_merge_patch(kube_patch.clone(seen), patch)
                else:
                    raise KubeApiError(
                        415, "UnsupportedMediaType",
                        f"the body of the request was in an unknown format - accepted media types include: "
                        f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}"
                        + (f", {STRATEGIC_MERGE_PATCH}" if info.builtin else ""),
                    )
            except kube_patch.PatchFormatError as exc:
                raise bad_request(str(exc)) from None
            except kube_patch.PatchError as exc:
                raise KubeApiError(422, "Invalid", str(exc)) from None
            if not isinstance(candidate, dict):
                raise KubeApiError(422, "Invalid", "the patched object is not a JSON object")
            candidate.setdefault("apiVersion", info.api_version)
            candidate.setdefault("kind", info.kind)
            self._check_type(info, candidate)
            if _meta(candidate).get("name", name) != name:
                raise _invalid(info, name, [kube_schema.FieldError(
                    "metadata.name", f'Invalid value: "{_meta(candidate).get("name")}": field is immutable')])
            return self._write(info, collection, old, candidate, subresource=subresource,
                               dry_run=dry_run, field_validation=field_validation, manager=manager)

    def _write(
            self, info: ResourceInfo, collection: _Collection, old: dict[str, Any], candidate: dict[str, Any], *,
            subresource: str | None, dry_run: bool, field_validation: str | None, manager: str | None = None,
            managed_as: str | None = None, applied: set[kube_fields.Path] | None = None,
    ) -> dict[str, Any]:
        """Commit ``candidate`` over ``old``; ``managed_as`` names the subresource recorded in
        managedFields when it differs from ``subresource`` (scale writes go through the main object)."""
        old_meta = _meta(old)
        name = old_meta["name"]
        if subresource not in (None, "status") or (subresource == "status" and not info.status_subresource):
            raise KubeApiError(404, "NotFound", "the server could not find the requested resource")
        if not isinstance(candidate.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        requested_rv = _meta(candidate).get("resourceVersion")
        if requested_rv not in (None, "") and str(requested_rv) != old_meta.get("resourceVersion"):
            raise _conflict(info, name)

        new: dict[str, Any]
        if subresource == "status":
            new = kube_patch.clone(old)
            if "status" in candidate and candidate["status"] is not None:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
        else:
            new = candidate
            if info.status_subresource:
                if "status" in old:
                    new["status"] = kube_patch.clone(old["status"])
                else:
                    new.pop("status", None)
            new_meta = new.setdefault("metadata", {})
            for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "generation", "namespace", "name"):
                if field in old_meta:
                    new_meta[field] = old_meta[field]
                else:
                    new_meta.pop(field, None)
            sent = new_meta.pop("managedFields", None)
            if sent == [{}]:
                manager = None  # the documented reset: strip them all, record nothing for this write
            elif isinstance(sent, list) and sent:
                new_meta["managedFields"] = sent
            elif old_meta.get("managedFields"):
                new_meta["managedFields"] = old_meta["managedFields"]
            if old_meta.get("deletionTimestamp"):
                added = [item for item in new_meta.get("finalizers") or ()
                         if item not in (old_meta.get("finalizers") or ())]
                if added:
                    raise _invalid(info, name, [kube_schema.FieldError(
                        "metadata.finalizers",
                        f"Forbidden: no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {json.dumps(added)}", reason="FieldValueForbidden")])
            if info.group == "" and info.plural == "secrets":
                fold_string_data(new)
            if info.group == "" and info.plural == "namespaces":
                new["spec"] = old.get("spec", {})  # spec.finalizers change only through /finalize
        new["metadata"]["resourceVersion"] = old_meta.get("resourceVersion")
        new["apiVersion"], new["kind"] = old.get("apiVersion", info.api_version), info.kind
        if info.crd_name is None and info.plural == "customresourcedefinitions":
            try:
                kube_resources.resources_from_crd(new)
            except kube_resources.CrdError as exc:
                raise KubeApiError(422, "Invalid", f'CustomResourceDefinition.apiextensions.k8s.io "{name}" '
                                                   f"is invalid: {exc}") from None
        self._check_labels(info, new, name)
        new = self._validate(info, new, name=name, field_validation=field_validation)
        if subresource is None:
            for admit in self.admission:
                admit(info, old, new)

        if new == old and applied is None:
            return old  # a no-op: no new resourceVersion, no event, no managedFields time moved
        if manager is not None:
            managed = kube_fields.record(
                list(_meta(new).get("managedFields") or ()), old, new, manager=manager,
                api_version=info.api_version, subresource=managed_as or subresource,
                status_subresource=info.status_subresource, now=now_rfc3339(), applied=applied)
            if managed:
                new["metadata"]["managedFields"] = managed
            else:
                new["metadata"].pop("managedFields", None)
            if kube_fields.same_but_times(old, new):
                return old  # only timestamps would move: the apiserver drops such a write
        excluded = ("metadata", "status") if info.status_subresource else ("metadata",)
        if subresource is None and _without(new, *excluded) != _without(old, *excluded):
            new["metadata"]["generation"] = int(old_meta.get("generation") or 0) + 1
        if dry_run:
            return new
        return self._commit_modified(info, collection, old, new)

    def _commit_modified(
            self, info: ResourceInfo, collection: _Collection, old: dict[str, Any], new: dict[str, Any],
    ) -> dict[str, Any]:
        meta = new["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        meta["resourceVersion"] = str(self._next_rv())
        collection.objects[key] = new
        self._index(collection, key, old, new)
        self._emit(collection, Event(MODIFIED, new, old, self._rv))
        self._after_commit(info, old, new)
        if meta.get("deletionTimestamp") and not self._held(info, new):
            self._remove(info, collection, key)
        return new

    @staticmethod
    def _held(info: ResourceInfo, obj: dict[str, Any]) -> bool:
        """Whether finalizers keep a deleted object: its own, or a namespace's spec.finalizers."""
        if _meta(obj).get("finalizers"):
            return True
        if _is_pod(info) and _meta(obj).get("deletionGracePeriodSeconds"):
            return True  # the kubelet has not confirmed the pod's end yet
        return info.group == "" and info.plural == "namespaces" and bool((obj.get("spec") or {}).get("finalizers"))

    def _index(
            self, collection: _Collection, key: tuple[str, str],
            old: dict[str, Any] | None, new: dict[str, Any] | None,
    ) -> None:
        ref = (collection.info.storage_key, key[0], key[1])
        old_uids, new_uids = _owner_uids(old), _owner_uids(new)
        for uid in old_uids - new_uids:
            self._dependents[uid].discard(ref)
            if not self._dependents[uid]:
                del self._dependents[uid]
        for uid in new_uids - old_uids:
            self._dependents[uid].add(ref)
        if collection.info.namespaced:
            if old is None and new is not None:
                self._namespace_counts[key[0]] += 1
            elif old is not None and new is None:
                self._namespace_counts[key[0]] -= 1
        filed = collection.labels_of.pop(key, frozenset())
        labels = frozenset((_meta(new).get("labels") or {}).items()) if new is not None else frozenset()
        for label in filed - labels:
            keys = collection.by_label[label]
            keys.discard(key)
            if not keys:
                del collection.by_label[label]
        for label in labels - filed:
            collection.by_label.setdefault(label, set()).add(key)
        names = collection.by_namespace.setdefault(key[0], set())
        if new is None:
            names.discard(key[1])
            if not names:
                del collection.by_namespace[key[0]]
        else:
            names.add(key[1])
            collection.labels_of[key] = labels

    # --- deleting ---------------------------------------------------------------------------------

    def delete(
            self, info: ResourceInfo, namespace: str | None, name: str, *,
            propagation: str | None = None, preconditions: dict[str, Any] | None = None,
            dry_run: bool = False, grace_period: int | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            collection = self._collection(info)
            old = self.get(info, namespace, name)
            meta = _meta(old)
            preconditions = preconditions or {}
            if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
                raise KubeApiError(
                    409, "Conflict",
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {meta.get('uid')}",
                )
            if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta.get("resourceVersion"):
                raise KubeApiError(
                    409, "Conflict",
                    f"Precondition failed: ResourceVersion in precondition: {preconditions['resourceVersion']}, "
                    f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
                )
            grace = self._pod_grace(info, old, grace_period)
            if meta.get("deletionTimestamp"):
                if grace == 0 and meta.get("deletionGracePeriodSeconds") and not dry_run:
                    return self._shorten_grace(info, collection, old)  # the kubelet confirms: gone now
                return old  # already being deleted: nothing changes
            if dry_run:
                return old
            key = (meta.get("namespace") or "", name)
            is_namespace = info.group == "" and info.plural == "namespaces"
            is_crd = info.group == "apiextensions.k8s.io" and info.plural == "customresourcedefinitions"
            if propagation == "Orphan":
                self._orphan(meta.get("uid"))
            if meta.get("finalizers") or is_namespace or grace:
                new = kube_patch.clone(old)
                new_meta = new["metadata"]
                new_meta["deletionTimestamp"] = _rfc3339_in(grace)
                new_meta["deletionGracePeriodSeconds"] = grace
                if new_meta.get("generation"):
                    new_meta["generation"] = int(new_meta["generation"]) + 1
                if is_namespace:
                    new["status"] = {"phase": "Terminating"}
                new = self._commit_modified(info, collection, old, new)
                if is_namespace:
                    self._terminate_namespace(name)
                elif is_crd:
                    self._cleanup_crd(new)
                return new
            return self._remove(info, collection, key)

    def _pod_grace(self, info: ResourceInfo, pod: dict[str, Any], requested: int | None) -> int:
        """The grace period a pod's deletion gets: 0 unless a simulated kubelet runs its node."""
        if not _is_pod(info):
            return 0
        spec = pod.get("spec") or {}
        if spec.get("nodeName") not in self.kubelet_nodes:
            return 0
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return 0  # nothing left to stop, as the apiserver's pod strategy decides
        if requested is not None:
            return max(int(requested), 0)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        return grace if isinstance(grace, int) and grace >= 0 else 30

    def _shorten_grace(self, info: ResourceInfo, collection: _Collection, old: dict[str, Any]) -> dict[str, Any]:
        new = kube_patch.clone(old)
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["metadata"]["deletionTimestamp"] = now_rfc3339()
        return self._commit_modified(info, collection, old, new)

    def _remove(self, info: ResourceInfo, collection: _Collection, key: tuple[str, str]) -> dict[str, Any]:
        old = collection.objects.pop(key)
        collection.initial.pop(key, None)
        final = dict(old, metadata=dict(_meta(old), resourceVersion=str(self._next_rv())))
        self._index(collection, key, old, None)
        self._emit(collection, Event(DELETED, final, None, self._rv))
        self._after_commit(info, old, None)
        self._collect_dependents(str(_meta(old).get("uid", "")))
        if info.namespaced:
            self._maybe_finish_namespace(key[0])
        elif info.crd_name is None and info.plural == "customresourcedefinitions":
            pass
        if info.crd_name is not None:
            self._maybe_finish_crd(info.crd_name)
        return final

    def _collect_dependents(self, owner_uid: str) -> None:
        """Background cascading deletion: what the garbage collector does after an owner goes."""
        for storage_key, namespace, name in sorted(self._dependents.pop(owner_uid, set())):
            collection = self._collections.get(storage_key)
            if collection is None or (namespace, name) not in collection.objects:
                continue
            dependent = collection.objects[(namespace, name)]
            remaining = [ref for ref in _meta(dependent).get("ownerReferences") or ()
                         if str(ref.get("uid")) != owner_uid]
            if remaining:
                continue  # other owners still hold it
            self.delete(collection.info, namespace or None, name)

    def _orphan(self, owner_uid: str | None) -> None:
        if not owner_uid:
            return
        for storage_key, namespace, name in sorted(self._dependents.get(owner_uid, set())):
            collection = self._collections.get(storage_key)
            if collection is None or (namespace, name) not in collection.objects:
                continue
            old = collection.objects[(namespace, name)]
            new = kube_patch.clone(old)
            new["metadata"]["ownerReferences"] = [
                ref for ref in new["metadata"].get("ownerReferences") or () if ref.get("uid") != owner_uid
            ] or None
            if new["metadata"]["ownerReferences"] is None:
                del new["metadata"]["ownerReferences"]
            self._commit_modified(collection.info, collection, old, new)

    def _terminate_namespace(self, namespace: str) -> None:
        for collection in list(self._collections.values()):
            if not collection.info.namespaced:
                continue
            for (ns, name) in [key for key in collection.objects if key[0] == namespace]:
                if (ns, name) in collection.objects:
                    self.delete(collection.info, ns, name)
        self._maybe_finish_namespace(namespace)

    def _maybe_finish_namespace(self, namespace: str) -> None:
        if self._namespace_counts.get(namespace, 0) > 0:
            return
        namespaces = self._collections[("", "namespaces")]
        ns_obj = namespaces.objects.get(("", namespace))
        if ns_obj is None or not _meta(ns_obj).get("deletionTimestamp"):
            return
        new = kube_patch.clone(ns_obj)
        new["spec"] = {}
        if _meta(new).get("finalizers"):
            self._commit_modified(namespaces.info, namespaces, ns_obj, new)  # waits for its own finalizers
        else:
            namespaces.objects[("", namespace)] = new
            self._remove(namespaces.info, namespaces, ("", namespace))

    def _cleanup_crd(self, crd: dict[str, Any]) -> None:
        crd_name = _meta(crd)["name"]
        for collection in list(self._collections.values()):
            if collection.info.crd_name != crd_name:
                continue
            for ns, name in list(collection.objects):
                if (ns, name) in collection.objects:
                    self.delete(collection.info, ns or None, name)
        self._maybe_finish_crd(crd_name)

    def _maybe_finish_crd(self, crd_name: str) -> None:
        crds = self._collections[("apiextensions.k8s.io", "customresourcedefinitions")]
        crd = crds.objects.get(("", crd_name))
        if crd is None or not _meta(crd).get("deletionTimestamp"):
            return
        if any(collection.objects for collection in self._collections.values()
               if collection.info.crd_name == crd_name):
            return
        finalizers = [item for item in _meta(crd).get("finalizers") or ()
                      if item != kube_resources.CRD_CLEANUP_FINALIZER]
        if finalizers == list(_meta(crd).get("finalizers") or ()):
            return
        new = kube_patch.clone(crd)
        new["metadata"]["finalizers"] = finalizers
        if not finalizers:
            del new["metadata"]["finalizers"]
        self._commit_modified(crds.info, crds, crd, new)

    # --- scale subresource ------------------------------------------------------------------------

    def _scale_paths(self, info: ResourceInfo) -> tuple[str, str, str]:
        if info.scale is None:
            raise KubeApiError(404, "NotFound", "the server could not find the requested resource")
        return info.scale

    def scale_of(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        spec_path, status_path, selector_path = self._scale_paths(info)
        meta = _meta(obj)
        replicas = next(iter(kube_tables.jsonpath(obj, spec_path)), 0)
        current = next(iter(kube_tables.jsonpath(obj, status_path)), 0) if status_path else 0
        selector: Any = next(iter(kube_tables.jsonpath(obj, selector_path)), "") if selector_path else ""
        if isinstance(selector, dict):  # a LabelSelector object, as on built-in workloads
            selector = ",".join(f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items())
        status: dict[str, Any] = {"replicas": current}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion",
                                                     "creationTimestamp") if key in meta},
            "spec": {"replicas": replicas},
            "status": status,
        }

    def get_scale(self, info: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any]:
        with self._lock:
            return self.scale_of(info, self.get(info, namespace, name))

    def update_scale(self, info: ResourceInfo, namespace: str | None, name: str, scale: Any, *,
                     dry_run: bool = False, manager: str | None = None) -> dict[str, Any]:
        spec_path, _, _ = self._scale_paths(info)
        replicas = (scale.get("spec") or {}).get("replicas") if isinstance(scale, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise KubeApiError(
                422, "Invalid",
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: {json.dumps(replicas)}: '
                "must be greater than or equal to 0",
            )
        with self._lock:
            collection = self._collection(info)
            old = self.get(info, namespace, name)
            candidate: dict[str, Any] = kube_patch.clone(old)
            candidate["metadata"]["resourceVersion"] = _meta(scale).get("resourceVersion") or None
            node = candidate
            steps = spec_path.lstrip(".").split(".")
            for step in steps[:-1]:
                node = node.setdefault(step, {})
            node[steps[-1]] = replicas
            new = self._write(info, collection, old, candidate, subresource=None, dry_run=dry_run,
                              field_validation=None, manager=manager, managed_as="scale")
            return self.scale_of(info, new)

    def patch_scale(self, info: ResourceInfo, namespace: str | None, name: str, patch: Any, *,
                    patch_type: str, dry_run: bool = False, manager: str | None = None) -> dict[str, Any]:
        with self._lock:
            current = self.get_scale(info, namespace, name)
            current["metadata"].pop("resourceVersion", None)  # only the patch's own version is a precondition
            try:
                if patch_type == JSON_PATCH:
                    patched = kube_patch.json_patch(current, patch)
                elif patch_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH) and isinstance(patch, dict):
                    patched = kube_patch.merge_patch(current, patch)
                else:
                    raise KubeApiError(415, "UnsupportedMediaType",
                                       f"the body of the request was in an unknown format - accepted media types "
                                       f"include: {JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}")
            except kube_patch.PatchFormatError as exc:
                raise bad_request(str(exc)) from None
            except kube_patch.PatchError as exc:
                raise KubeApiError(422, "Invalid", str(exc)) from None
            return self.update_scale(info, namespace, name, patched, dry_run=dry_run, manager=manager)

    def delete_collection(
            self, info: ResourceInfo, namespace: str | None, *,
            labels: kube_selectors.LabelSelector | None = None,
            fields: kube_selectors.FieldSelector | None = None,
    ) -> builtins.list[dict[str, Any]]:
        with self._lock:
            items, _ = self.list(info, namespace, labels=labels, fields=fields)
            deleted = []
            for obj in items:
                meta = _meta(obj)
                try:
                    deleted.append(self.delete(info, meta.get("namespace"), meta["name"]))
                except KubeApiError as exc:
                    if exc.status != 404:
                        raise
            return deleted

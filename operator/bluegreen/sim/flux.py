"""A simulated Flux (source- and kustomize-controller) for the test world.

It watches ``Kustomization`` and ``GitRepository`` objects on the management
emulator and behaves like Flux where bluegreen can tell:

* a Kustomization is reconciled ``delay`` seconds after it (or its source, or
  ``reconcile.fluxcd.io/requestedAt``) changes: it becomes ``Ready=True``
  (``ReconciliationSucceeded``) with ``lastAppliedRevision`` = its
  GitRepository's ``status.artifact.revision``, ``observedGeneration`` current
  and ``lastHandledReconcileAt`` echoing the annotation;
* with ``kubeConfig.secretRef`` it reads the Secret from the Kustomization's
  own namespace (keys tried: the given one, ``value``, ``value.yaml``; exec
  plugins refused) and really connects to that cluster over HTTP; a missing
  Secret, a missing source or an unreachable cluster gives ``Ready=False``
  with Flux-like reasons, retried every ``retry_interval``;
* it applies what ``render`` returns (by default one ConfigMap named after the
  Kustomization, carrying the revision) to the target cluster, so a test sees
  workloads land, records them in ``status.inventory``, and prunes them when a
  Kustomization with ``prune: true`` is deleted (finalizer ``finalizers.fluxcd.io``);
* ``spec.patches`` (``{patch, target}``) change what ``render`` returns before it is
  applied, as kustomize-controller's do: the target selects by group, version,
  kind and by name and namespace as anchored regular expressions; a patch text
  holding a mapping is a strategic merge patch (without the target, its own kind,
  name and namespace select), one holding a list is a JSON6902 patch. Label and
  annotation selectors are not simulated (the Kustomization fails with
  ``BuildFailed`` saying so), and neither is anything else kustomize does;
* :meth:`FluxController.set_failing` makes health checks of a Kustomization,
  or of every Kustomization applying to one cluster, fail
  (``HealthCheckFailed``; ``lastAppliedRevision`` stays where it was) until cleared;
* :func:`set_revision` is the world's "new commit": the GitRepository's
  artifact changes and its Kustomizations reconcile again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import yaml

from bluegreen.kube import client as kubeclient
from bluegreen.kube import config as kubeconfig
from bluegreen.kube import remote
from bluegreen.sim import kube_patch, kube_store
from bluegreen.sim.controllers import KeyedWorkers
from bluegreen.sim.kube import KubeEmulator

logger = logging.getLogger(__name__)

KUSTOMIZE_GROUP = "kustomize.toolkit.fluxcd.io"
SOURCE_GROUP = "source.toolkit.fluxcd.io"
KUSTOMIZATIONS = f"{KUSTOMIZE_GROUP}/v1/kustomizations"
GIT_REPOSITORIES = f"{SOURCE_GROUP}/v1/gitrepositories"
SECRETS = "v1/secrets"
FINALIZER = "finalizers.fluxcd.io"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
NAME_LABEL = f"{KUSTOMIZE_GROUP}/name"
NAMESPACE_LABEL = f"{KUSTOMIZE_GROUP}/namespace"

Render = Callable[[Mapping[str, Any], str], list[dict[str, Any]]]


class HasClusters(Protocol):
    @property
    def clusters(self) -> Mapping[str, KubeEmulator]: ...


def install(management: KubeEmulator) -> None:
    """Declare Flux's Kustomization and GitRepository resources."""
    ready_columns = (
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Status", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].message'},
    )
    management.add_resource(group=KUSTOMIZE_GROUP, version="v1", plural="kustomizations", kind="Kustomization",
                            short_names=("ks",), printer_columns=ready_columns)
    management.add_resource(group=SOURCE_GROUP, version="v1", plural="gitrepositories", kind="GitRepository",
                            short_names=("gitrepo",), printer_columns=ready_columns)


def _artifact_status(
    repository: Mapping[str, Any], revision: str, *, url: str | None = None, digest: str | None = None
) -> dict[str, Any]:
    # Without url/digest nothing serves the artifact; sim.artifacts passes those of one it serves.
    hexdigest = (digest or "").removeprefix("sha256:") or hashlib.sha256(revision.encode()).hexdigest()
    meta = repository["metadata"]
    path = f"gitrepository/{meta['namespace']}/{meta['name']}/{hexdigest[:12]}.tar.gz"
    return {
        "observedGeneration": meta.get("generation", 1),
        "artifact": {
            "revision": revision,
            "digest": digest or f"sha256:{hexdigest}",
            "path": path,
            "url": url or f"http://source-controller.flux-system.svc.cluster.local./{path}",
            "lastUpdateTime": kube_store.now_rfc3339(),
        },
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Succeeded",
            "message": f"stored artifact for revision '{revision}'",
            "observedGeneration": meta.get("generation", 1), "lastTransitionTime": kube_store.now_rfc3339(),
        }],
    }


def seed_source(
    management: KubeEmulator,
    *,
    namespace: str,
    name: str,
    revision: str,
    url: str = "https://git.example.com/fleet-infra.git",
    branch: str = "main",
) -> dict[str, Any]:
    """A GitRepository whose artifact is at ``revision`` (``main@sha1:...``)."""
    repository = management.create(GIT_REPOSITORIES, {
        "apiVersion": f"{SOURCE_GROUP}/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "1m", "url": url, "ref": {"branch": branch}},
    })
    return set_revision(management, namespace=namespace, name=name, revision=revision, repository=repository)


def set_revision(
    management: KubeEmulator,
    *,
    namespace: str,
    name: str,
    revision: str,
    repository: Mapping[str, Any] | None = None,
    url: str | None = None,
    digest: str | None = None,
) -> dict[str, Any]:
    """The world's new commit: the GitRepository's artifact moves to ``revision`` (as source-controller does).

    ``url`` and ``digest`` are those of an artifact really served (see ``sim.artifacts``).
    """
    current = repository or management.get(GIT_REPOSITORIES, namespace, name)
    if current is None:
        raise LookupError(f"GitRepository {namespace}/{name} does not exist")
    status = _artifact_status(current, revision, url=url, digest=digest)
    return management.patch(GIT_REPOSITORIES, namespace, name, {"status": status}, subresource="status")


def kustomization_manifest(
    *,
    namespace: str,
    name: str,
    source: str,
    path: str,
    cluster: str | None = None,
    labels: Mapping[str, str] | None = None,
    substitute: Mapping[str, str] | None = None,
    depends_on: tuple[str, ...] = (),
    target_namespace: str | None = None,
    prune: bool = True,
) -> dict[str, Any]:
    """A Kustomization that applies ``path`` of GitRepository ``source``, to ``cluster`` when given."""
    spec: dict[str, Any] = {
        "interval": "10m",
        "path": path,
        "prune": prune,
        "sourceRef": {"kind": "GitRepository", "name": source},
        "timeout": "5m",
        "wait": True,
    }
    if cluster is not None:
        spec["kubeConfig"] = {"secretRef": {"name": f"{cluster}-kubeconfig", "key": "value"}}
        spec["postBuild"] = {"substitute": {"cluster_name": cluster, **(substitute or {})}}
    elif substitute:
        spec["postBuild"] = {"substitute": dict(substitute)}
    if depends_on:
        spec["dependsOn"] = [{"name": dependency} for dependency in depends_on]
    if target_namespace:
        spec["targetNamespace"] = target_namespace
    return {
        "apiVersion": f"{KUSTOMIZE_GROUP}/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": spec,
    }


def seed_kustomization(management: KubeEmulator, **kwargs: Any) -> dict[str, Any]:
    """Create a Kustomization (arguments as :func:`kustomization_manifest`)."""
    return management.create(KUSTOMIZATIONS, kustomization_manifest(**kwargs))


def default_render(kustomization: Mapping[str, Any], revision: str) -> list[dict[str, Any]]:
    """One ConfigMap named after the Kustomization, in its targetNamespace (or ``default``)."""
    meta = kustomization["metadata"]
    spec = kustomization.get("spec") or {}
    namespace = spec.get("targetNamespace") or "default"
    objects: list[dict[str, Any]] = []
    if namespace != "default":
        objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    substitute = (spec.get("postBuild") or {}).get("substitute") or {}
    objects.append({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": meta["name"], "namespace": namespace},
        "data": {"revision": revision, "path": str(spec.get("path", "")), **{
            f"substitute.{key}": str(value) for key, value in substitute.items()}},
    })
    return objects


def _selects(target: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    meta = obj.get("metadata") or {}
    wanted = {"group": group, "version": version, "kind": str(obj.get("kind", ""))}
    for field, actual in wanted.items():
        if target.get(field) not in (None, "", actual):
            return False
    for field in ("name", "namespace"):
        pattern = target.get(field)
        if pattern and not re.fullmatch(str(pattern), str(meta.get(field) or "")):
            return False
    return True


def apply_patches(rendered: list[dict[str, Any]], patches: Any) -> list[dict[str, Any]]:
    """``rendered`` with a Kustomization's ``spec.patches`` applied in order (see the module docstring)."""
    result = [kube_patch.clone(obj) for obj in rendered]
    for index, entry in enumerate(patches or []):
        where = f"spec.patches[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("patch"), str):
            raise _NotReady("BuildFailed", f"{where}: an inline patch (a string) is needed")
        target = entry.get("target")
        if isinstance(target, dict) and (target.get("labelSelector") or target.get("annotationSelector")):
            raise _NotReady("BuildFailed", f"{where}: label and annotation selectors are not simulated")
        try:
            document = yaml.safe_load(entry["patch"])
        except yaml.YAMLError as exc:
            raise _NotReady("BuildFailed", f"{where}: the patch is not YAML: {exc}") from None
        if isinstance(document, dict) and not isinstance(target, dict):
            meta = document.get("metadata") or {}
            target = {"kind": document.get("kind"), "name": re.escape(str(meta.get("name", ""))),
                      "namespace": re.escape(str(meta["namespace"])) if meta.get("namespace") else None}
        if not isinstance(target, dict):
            raise _NotReady("BuildFailed", f"{where}: a JSON6902 patch needs a target")
        for position, obj in enumerate(result):
            if not _selects(target, obj):
                continue
            try:
                if isinstance(document, list):
                    result[position] = kube_patch.json_patch(obj, document)
                elif isinstance(document, dict):
                    body = {key: value for key, value in document.items() if key not in ("apiVersion", "kind")}
                    body["metadata"] = {key: value for key, value in (body.get("metadata") or {}).items()
                                        if key not in ("name", "namespace")}
                    result[position] = kube_patch.strategic_merge_patch(obj, body)
                else:
                    raise _NotReady("BuildFailed", f"{where}: a patch is a mapping or a list of operations")
            except (kube_patch.PatchError, kube_patch.PatchFormatError) as exc:
                raise _NotReady("BuildFailed", f"{where}: {exc}") from None
    return result


@dataclasses.dataclass(frozen=True)
class _Target:
    client: kubeclient.KubeClient
    cluster: str  # name used by set_failing
    fingerprint: str  # changes when the credentials change


class _NotReady(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class FluxController:
    """The simulated kustomize-controller (and the part of source-controller the world needs)."""

    def __init__(
        self,
        *,
        management: KubeEmulator,
        clusters: HasClusters | None = None,
        delay: float = 0.5,
        retry_interval: float = 1.0,
        render: Render = default_render,
        management_name: str = "management",
    ) -> None:
        self.management = management
        self.delay = delay
        self.retry_interval = retry_interval
        self.render = render
        self._clusters = clusters
        self._management_name = management_name
        self._failing: set[str] = set()
        self._handled: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._seen: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._clients: dict[str, kubeclient.KubeClient] = {}
        self._names: dict[str, tuple[str, KubeEmulator]] = {}  # API server URL -> the cluster serving it
        self._workers: KeyedWorkers[tuple[str, str]] = KeyedWorkers(self._reconcile, name="flux",
                                                                    error_retry=retry_interval)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        kustomizations = self.management.watch(KUSTOMIZATIONS)
        sources = self.management.watch(GIT_REPOSITORIES)
        for item in self.management.list(KUSTOMIZATIONS):
            self._workers.enqueue(_key(item))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow(kustomizations, self._on_kustomization), name="flux-ks-watch"),
            loop.create_task(self._follow(sources, self._on_source), name="flux-source-watch"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._workers.close()
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.close()

    async def idle(self) -> None:
        """Wait until no reconcile is running."""
        await self._workers.idle()

    def set_failing(self, target: str, failing: bool = True) -> None:
        """Fail health checks of Kustomization ``target``, or of all applying to cluster ``target``."""
        if failing:
            self._failing.add(target)
        else:
            self._failing.discard(target)
        for item in self.management.list(KUSTOMIZATIONS):
            self._workers.enqueue(_key(item))

    async def _follow(self, watch: Any, handler: Callable[[str, dict[str, Any]], None]) -> None:
        try:
            async for event_type, obj in watch:
                handler(event_type, obj)
        finally:
            await watch.aclose()

    def _on_kustomization(self, event_type: str, kustomization: dict[str, Any]) -> None:
        # Status-only changes (our own writes) are not a reason to reconcile,
        # as in kustomize-controller's generation/annotation predicates.
        key = _key(kustomization)
        meta = kustomization.get("metadata") or {}
        trigger = (meta.get("generation"), (meta.get("annotations") or {}).get(REQUESTED_AT),
                   bool(meta.get("deletionTimestamp")), tuple(meta.get("finalizers") or ()))
        if event_type == "DELETED":
            self._seen.pop(key, None)
            self._handled.pop(key, None)
            return
        if self._seen.get(key) != trigger:
            self._seen[key] = trigger
            self._workers.enqueue(key)

    def _on_source(self, event_type: str, repository: dict[str, Any]) -> None:
        namespace, name = _key(repository)
        for item in self.management.list(KUSTOMIZATIONS):
            source = (item.get("spec") or {}).get("sourceRef") or {}
            if source.get("name") == name and source.get("namespace", item["metadata"]["namespace"]) == namespace:
                self._workers.enqueue(_key(item))

    # --- reconcile ---------------------------------------------------------------------------

    async def _reconcile(self, key: tuple[str, str]) -> None:
        kustomization = self.management.get(KUSTOMIZATIONS, *key)
        if kustomization is None:
            self._handled.pop(key, None)
            return
        meta = kustomization["metadata"]
        if meta.get("deletionTimestamp"):
            await self._finalize(kustomization)
            return
        if FINALIZER not in (meta.get("finalizers") or []):
            kustomization = self.management.patch(
                KUSTOMIZATIONS, *key, {"metadata": {"finalizers": [*(meta.get("finalizers") or []), FINALIZER]}}
            )
        spec = kustomization.get("spec") or {}
        if spec.get("suspend"):
            return
        try:
            revision = self._source_revision(kustomization)
            self._check_dependencies(kustomization)
            target = await self._target(kustomization)
        except _NotReady as exc:
            self._handled.pop(key, None)
            self._write(kustomization, ready=False, reason=exc.reason, message=exc.message)
            self._workers.enqueue_later(key, self.retry_interval)
            return
        failing = key[1] in self._failing or target.cluster in self._failing
        fingerprint = (meta.get("generation"), revision, meta.get("annotations", {}).get(REQUESTED_AT),
                       target.fingerprint, failing)
        if self._handled.get(key) == fingerprint:
            return

        self._write(kustomization, ready=None, reason="Progressing", message="Reconciliation in progress",
                    attempted=revision)
        await asyncio.sleep(self.delay)
        latest = self.management.get(KUSTOMIZATIONS, *key)
        if latest is None or latest["metadata"].get("generation") != meta.get("generation") or \
                latest["metadata"].get("deletionTimestamp"):
            return  # changed meanwhile: the watch queued another pass
        kustomization = latest
        try:
            inventory = await self._apply(kustomization, target=target, revision=revision)
        except _NotReady as exc:
            self._handled.pop(key, None)
            self._write(kustomization, ready=False, reason=exc.reason, message=exc.message, attempted=revision)
            self._workers.enqueue_later(key, self.retry_interval)
            return
        if failing:
            first = inventory[-1]["id"] if inventory else key[1]
            self._write(kustomization, ready=False, reason="HealthCheckFailed",
                        message=f"health check failed after 0s: timeout waiting for: [{_describe(first)} "
                                "status: 'InProgress']",
                        attempted=revision, inventory=inventory, healthy=False)
        else:
            self._write(kustomization, ready=True, reason="ReconciliationSucceeded",
                        message=f"Applied revision: {revision}", attempted=revision, applied=revision,
                        inventory=inventory, healthy=True)
        self._handled[key] = fingerprint

    def _source_revision(self, kustomization: Mapping[str, Any]) -> str:
        namespace = kustomization["metadata"]["namespace"]
        source = (kustomization.get("spec") or {}).get("sourceRef") or {}
        kind, name = source.get("kind"), source.get("name")
        source_namespace = source.get("namespace") or namespace
        if kind != "GitRepository":
            raise _NotReady("ArtifactFailed", f"source kind '{kind}' is not served by the simulated source-controller")
        repository = self.management.get(GIT_REPOSITORIES, source_namespace, str(name))
        if repository is None:
            raise _NotReady("ArtifactFailed", f"Source '{kind}/{source_namespace}/{name}' not found")
        revision = ((repository.get("status") or {}).get("artifact") or {}).get("revision")
        if not revision:
            raise _NotReady("ArtifactFailed", "Source artifact not found, retrying in 30s")
        return str(revision)

    def _check_dependencies(self, kustomization: Mapping[str, Any]) -> None:
        namespace = kustomization["metadata"]["namespace"]
        for dependency in (kustomization.get("spec") or {}).get("dependsOn") or []:
            dep_namespace = dependency.get("namespace") or namespace
            other = self.management.get(KUSTOMIZATIONS, dep_namespace, str(dependency.get("name")))
            ready = other is not None and any(
                condition.get("type") == "Ready" and condition.get("status") == "True"
                for condition in (other.get("status") or {}).get("conditions") or []
            ) and (other.get("status") or {}).get("observedGeneration") == other["metadata"].get("generation")
            if not ready:
                raise _NotReady("DependencyNotReady",
                                f"dependency '{dep_namespace}/{dependency.get('name')}' is not ready")

    async def _target(self, kustomization: Mapping[str, Any]) -> _Target:
        namespace = kustomization["metadata"]["namespace"]
        ref = ((kustomization.get("spec") or {}).get("kubeConfig") or {}).get("secretRef")
        if not ref:
            return _Target(self._client(self.management.kubeconfig(), "management"), self._management_name, "")
        name, key = str(ref.get("name")), str(ref.get("key") or "value")
        secret = self.management.get(SECRETS, namespace, name)
        if secret is None:
            raise _NotReady("ReconciliationFailed",
                            f"failed to get kubeconfig secret '{namespace}/{name}': secrets \"{name}\" not found")
        fingerprint = f"{secret['metadata'].get('uid')}/{secret['metadata'].get('resourceVersion')}/{key}"
        client = self._clients.get(fingerprint)
        if client is None:  # parsed once per version of the Secret: a fleet's reconciles would parse YAML all day
            try:
                text, _ = remote.kubeconfig_from_secret(secret, key=key)
                connection = kubeconfig.load_kubeconfig_text(text, source=f"Secret {namespace}/{name}")
            except (remote.KubeconfigSecretError, kubeconfig.KubeConfigError) as exc:
                raise _NotReady("ReconciliationFailed", f"failed to load kubeconfig: {exc}") from None
            client = self._client_for(connection, fingerprint)
        connection = client.connection
        try:
            await client.server_version()
        except kubeclient.KubeError as exc:
            raise _NotReady("ReconciliationFailed", f"failed to reach the target cluster: {exc}") from None
        return _Target(client, self._cluster_name(connection), fingerprint)

    def _client(self, document: dict[str, Any], cache_key: str) -> kubeclient.KubeClient:
        client = self._clients.get(cache_key)
        if client is None:
            client = self._clients[cache_key] = kubeclient.KubeClient.from_kubeconfig(
                document, timeout=5, field_manager="kustomize-controller")
        return client

    def _client_for(self, connection: kubeconfig.Connection, fingerprint: str) -> kubeclient.KubeClient:
        client = self._clients.get(fingerprint)
        if client is None:
            client = self._clients[fingerprint] = kubeclient.KubeClient(
                connection, timeout=5, field_manager="kustomize-controller")
        return client

    def _cluster_name(self, connection: kubeconfig.Connection) -> str:
        if self._clusters is None:
            return connection.server
        known = self._names.get(connection.server)
        if known is not None:
            name, emulator = known
            with contextlib.suppress(RuntimeError):  # stopped
                if emulator.url == connection.server:
                    return name
        for name, emulator in self._clusters.clusters.items():
            try:
                if emulator.url == connection.server:
                    self._names[connection.server] = (name, emulator)
                    return name
            except RuntimeError:
                continue  # stopped
        return connection.server

    async def _apply(self, kustomization: Mapping[str, Any], *, target: _Target,
                     revision: str) -> list[dict[str, str]]:
        meta = kustomization["metadata"]
        inventory: list[dict[str, str]] = []
        try:
            rendered = apply_patches(self.render(kustomization, revision),
                                     (kustomization.get("spec") or {}).get("patches"))
            for obj in rendered:
                obj_meta = obj.setdefault("metadata", {})
                obj_meta.setdefault("labels", {}).update({NAME_LABEL: meta["name"], NAMESPACE_LABEL: meta["namespace"]})
                resource = await _resource_for(target.client, obj)
                namespace = obj_meta.get("namespace") if resource.namespaced else None
                # As kustomize-controller: server-side apply, forcing ownership of what it applies.
                await target.client.apply(resource, obj, namespace=namespace, force=True)
                group = resource.group
                inventory.append({"id": f"{namespace or ''}_{obj_meta['name']}_{group}_{obj['kind']}",
                                  "v": resource.version})
        except kubeclient.UnreachableError as exc:
            raise _NotReady("ReconciliationFailed", f"failed to reach the target cluster: {exc}") from None
        except kubeclient.ApiError as exc:
            raise _NotReady("ReconciliationFailed", f"apply failed: {exc}") from None
        return inventory

    async def _finalize(self, kustomization: dict[str, Any]) -> None:
        meta = kustomization["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            return
        spec = kustomization.get("spec") or {}
        if spec.get("prune") and not spec.get("suspend"):
            entries = ((kustomization.get("status") or {}).get("inventory") or {}).get("entries") or []
            try:
                target = await self._target(kustomization)
                for entry in reversed(entries):
                    await _prune(target.client, entry)
            except (_NotReady, kubeclient.KubeError) as exc:
                # Flux skips garbage collection when the cluster cannot be reached.
                logger.info("Kustomization %s/%s: not pruned (%s)", meta["namespace"], meta["name"], exc)
        remaining = [finalizer for finalizer in finalizers if finalizer != FINALIZER]
        try:
            self.management.patch(KUSTOMIZATIONS, meta["namespace"], meta["name"],
                                  {"metadata": {"finalizers": remaining or None}})
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise
        self._handled.pop(_key(kustomization), None)

    def _write(
        self,
        kustomization: Mapping[str, Any],
        *,
        ready: bool | None,
        reason: str,
        message: str,
        attempted: str | None = None,
        applied: str | None = None,
        inventory: list[dict[str, str]] | None = None,
        healthy: bool | None = None,
    ) -> None:
        meta = kustomization["metadata"]
        old = dict(kustomization.get("status") or {})
        previous = {item["type"]: item for item in old.get("conditions") or []}
        now = kube_store.now_rfc3339()
        generation = meta.get("generation")

        def condition(type_: str, status: str, condition_reason: str, text: str) -> dict[str, Any]:
            before = previous.get(type_)
            since = before.get("lastTransitionTime") if before and before.get("status") == status else now
            return {"type": type_, "status": status, "reason": condition_reason, "message": text,
                    "observedGeneration": generation, "lastTransitionTime": since}

        ready_status = "Unknown" if ready is None else ("True" if ready else "False")
        conditions = [condition("Ready", ready_status, reason, message)]
        if ready is None:
            conditions.append(condition("Reconciling", "True", "Progressing", message))
        if healthy is not None:
            conditions.append(condition("Healthy", "True" if healthy else "False",
                                        "Succeeded" if healthy else "HealthCheckFailed",
                                        "Health check passed" if healthy else message))
        status: dict[str, Any] = {key: value for key, value in old.items() if key != "conditions"}
        status["conditions"] = conditions
        if ready is not None:
            # Flux records the generation it acted on once it has a verdict.
            status["observedGeneration"] = generation
            requested = (meta.get("annotations") or {}).get(REQUESTED_AT)
            if requested:
                status["lastHandledReconcileAt"] = requested
        if attempted is not None:
            status["lastAttemptedRevision"] = attempted
        if applied is not None:
            status["lastAppliedRevision"] = applied
        if inventory is not None:
            status["inventory"] = {"entries": inventory}
        if status == old:
            return
        try:
            self.management.patch(KUSTOMIZATIONS, meta["namespace"], meta["name"], {"status": status},
                                  subresource="status")
        except kube_store.KubeApiError as exc:
            if exc.status != 404:
                raise


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def _split_id(inventory_id: str) -> tuple[str, str, str, str]:
    """Flux's inventory id ``<namespace>_<name>_<group>_<kind>`` (names cannot hold ``_``)."""
    parts = [*inventory_id.split("_"), "", "", "", ""]
    return parts[0], parts[1], parts[2], parts[3]


def _describe(inventory_id: str) -> str:
    namespace, name, _, kind = _split_id(inventory_id)
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


_KNOWN_RESOURCES: dict[tuple[str, str], kubeclient.Resource] = {
    ("v1", "Namespace"): kubeclient.Resource("", "v1", "namespaces", namespaced=False),
    ("v1", "ConfigMap"): kubeclient.Resource("", "v1", "configmaps"),
    ("v1", "Secret"): kubeclient.Resource("", "v1", "secrets"),
    ("v1", "Service"): kubeclient.Resource("", "v1", "services"),
    ("apps/v1", "Deployment"): kubeclient.Resource("apps", "v1", "deployments"),
    ("apps/v1", "StatefulSet"): kubeclient.Resource("apps", "v1", "statefulsets"),
}


async def _resource_for(client: kubeclient.KubeClient, obj: Mapping[str, Any]) -> kubeclient.Resource:
    api_version, kind = str(obj.get("apiVersion")), str(obj.get("kind"))
    known = _KNOWN_RESOURCES.get((api_version, kind))
    if known is not None:
        return known
    served = await client.resources(api_version) or []
    for entry in served:
        if entry.get("kind") == kind and "/" not in str(entry.get("name")):
            group, _, version = api_version.rpartition("/")
            return kubeclient.Resource(group, version, str(entry["name"]), namespaced=bool(entry.get("namespaced")))
    raise _NotReady("ReconciliationFailed", f"no matches for kind \"{kind}\" in version \"{api_version}\"")


async def _prune(client: kubeclient.KubeClient, entry: Mapping[str, Any]) -> None:
    namespace, name, group, kind = _split_id(str(entry.get("id", "")))
    api_version = f"{group}/{entry.get('v')}" if group else str(entry.get("v"))
    resource = await _resource_for(client, {"apiVersion": api_version, "kind": kind})
    if kind == "Namespace":
        return  # Flux never prunes namespaces it did not create alone; keeping them is the safe side
    await client.delete(resource, namespace=namespace or None, name=name)

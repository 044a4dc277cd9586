"""A simulated Flux running INSIDE a workload cluster, as EKS Anywhere installs it (``gitOpsRef``).

EKS Anywhere bootstraps Flux in each cluster and points it at
``<root>/<cluster-name>/`` of the environment repository. This plays that
Flux against the cluster's own :class:`KubeEmulator`, in process, with a real
git repository (see :mod:`bluegreen.sim.gitserver`):

* :meth:`InClusterFlux.start` declares Flux's resources on the emulator,
  creates namespace ``flux-system`` and the ``GitRepository`` named
  ``flux-system`` (``source.toolkit.fluxcd.io/v1``);
* every ``interval`` seconds (or at once when the GitRepository's
  ``reconcile.fluxcd.io/requestedAt`` changes, like ``flux reconcile source
  git``) it fetches the branch; the GitRepository's artifact revision becomes
  ``<branch>@sha1:<commit>``;
* the ``Kustomization`` (``kustomize.toolkit.fluxcd.io/v1``) named
  ``flux-system`` that bootstrap creates always exists, with ``path``
  ``./<root>/<cluster>``; while that directory is missing from the branch it
  is ``Ready=False`` (``BuildFailed``, path not found), as Flux reports it;
* each other subdirectory of ``<root>/<cluster>/`` has one Kustomization of
  the same name with ``path`` ``./<root>/<cluster>/<dir>`` (this simulation
  splits the directory so each part has its own status; ``flux-system``
  applies only ``flux-system/``). When the commit changes, it applies the YAML
  documents of that directory (Namespaces first; generic create or merge
  patch for any kind the emulator serves; Flux's own kinds and kustomize's
  ``kustomization.yaml`` are what this simulator itself stands for, so they
  are skipped), prunes what it applied before and no longer finds, and sets
  ``Ready=True`` (``ReconciliationSucceeded``), ``lastAppliedRevision`` and
  ``observedGeneration``;
* a directory that disappears takes its Kustomization and the objects it
  applied with it (``prune: true``);
* :meth:`InClusterFlux.set_failing` makes health checks fail
  (``Ready=False``, ``HealthCheckFailed``; ``lastAppliedRevision`` stays).

Git runs as asyncio subprocesses, so a repository served over HTTP from the
same event loop works. This module belongs to the test world.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import yaml

from bluegreen.kube import mergepatch
from bluegreen.sim import flux, kube_store
from bluegreen.sim.kube import KubeEmulator

logger = logging.getLogger(__name__)

SOURCE_NAME = "flux-system"
MANAGED_LABEL = "bluegreen.io/sim-flux"  # marks the Kustomizations this simulator owns
_SKIPPED_GROUPS = ("kustomize.config.k8s.io/", f"{flux.KUSTOMIZE_GROUP}/", f"{flux.SOURCE_GROUP}/")


class _Failed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InClusterFlux:
    """Flux's source- and kustomize-controller inside one cluster, syncing ``<root>/<cluster>/``."""

    def __init__(
        self,
        *,
        emulator: KubeEmulator,
        cluster: str,
        repo_url: str,
        branch: str = "main",
        root: str = "clusters",
        interval: float = 1.0,
        namespace: str = "flux-system",
        git_env: Mapping[str, str] | None = None,
    ) -> None:
        self.emulator = emulator
        self.cluster = cluster
        self.repo_url = repo_url
        self.branch = branch
        self.root = root.strip("/")
        self.interval = interval
        self.namespace = namespace
        self.revision: str | None = None  # the last fetched revision, <branch>@sha1:<commit>
        self.passes = 0  # completed reconcile passes (for tests that wait for "one more")
        self._git_env = dict(git_env or {})
        self._failing = False
        self._handled: dict[str, tuple[Any, ...]] = {}
        self._workdir: pathlib.Path | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._requested: str | None = None
        self._source_state: tuple[Any, ...] | None = None

    @property
    def directory(self) -> str:
        return f"{self.root}/{self.cluster}" if self.root else self.cluster

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.emulator.store.resolve(flux.KUSTOMIZE_GROUP, "v1", "kustomizations") is None:
            flux.install(self.emulator)
        if self.emulator.get("v1/namespaces", None, self.namespace) is None:
            self.emulator.create("v1/namespaces", {"metadata": {"name": self.namespace}})
        if self.emulator.get(flux.GIT_REPOSITORIES, self.namespace, SOURCE_NAME) is None:
            self.emulator.create(flux.GIT_REPOSITORIES, {
                "apiVersion": f"{flux.SOURCE_GROUP}/v1",
                "kind": "GitRepository",
                "metadata": {"name": SOURCE_NAME, "namespace": self.namespace},
                "spec": {"interval": f"{self.interval:g}s", "url": self.repo_url, "ref": {"branch": self.branch}},
            })
        self._workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"sim-flux-{self.cluster}-"))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._poll(), name=f"sim-flux-{self.cluster}"),
            loop.create_task(self._watch_requests(), name=f"sim-flux-{self.cluster}-requests"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def set_failing(self, failing: bool = True) -> None:
        """Make health checks of every Kustomization fail (or pass again) from the next pass on."""
        self._failing = failing
        self._wake.set()

    def poke(self) -> None:
        """Reconcile now rather than at the next interval."""
        self._wake.set()

    async def reconcile(self) -> None:
        """One pass: fetch, then bring every Kustomization to the fetched commit."""
        async with self._lock:
            await self._reconcile()
            self.passes += 1

    # --- loops -----------------------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("in-cluster Flux of %s: reconcile failed", self.cluster)
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that arrives as
            # the event is set (set_failing during stop), and the loop would never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()

    async def _watch_requests(self) -> None:
        watch: Any = self.emulator.watch(flux.GIT_REPOSITORIES)
        try:
            async for _, repository in watch:
                meta = repository.get("metadata") or {}
                requested = (meta.get("annotations") or {}).get(flux.REQUESTED_AT)
                if meta.get("name") == SOURCE_NAME and requested and requested != self._requested:
                    self._requested = requested
                    self._wake.set()
        finally:
            await watch.aclose()

    # --- one pass --------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        try:
            commit = await self._fetch()
        except _Failed as exc:
            self._source_status(ready=False, reason=exc.reason, message=exc.message)
            return
        self.revision = f"{self.branch}@sha1:{commit}"
        self._source_status(ready=True, reason="Succeeded", message=f"stored artifact for revision '{self.revision}'")
        present, directories = await self._listing(commit)
        existing = {item["metadata"]["name"]: item for item in self.emulator.list(flux.KUSTOMIZATIONS, self.namespace)
                    if (item["metadata"].get("labels") or {}).get(MANAGED_LABEL) == "true"}
        # The bootstrap Kustomization exists whether or not the cluster's directory does.
        for name in sorted({*directories, SOURCE_NAME}):
            kustomization = existing.pop(name, None) or self._create_kustomization(name)
            key = (commit, self._failing, kustomization["metadata"].get("generation"), present)
            if self._handled.get(name) != key:
                await self._apply(kustomization, commit=commit, cluster_directory=present)
                self._handled[name] = key
        for name, kustomization in existing.items():
            self._prune(_inventory(kustomization))
            with contextlib.suppress(kube_store.KubeApiError):
                self.emulator.delete(flux.KUSTOMIZATIONS, self.namespace, name)
            self._handled.pop(name, None)

    def _create_kustomization(self, name: str) -> dict[str, Any]:
        # Bootstrap's own Kustomization points at the whole cluster directory, as EKS-A's does.
        path = f"./{self.directory}" if name == SOURCE_NAME else f"./{self.directory}/{name}"
        return self.emulator.create(flux.KUSTOMIZATIONS, {
            "apiVersion": f"{flux.KUSTOMIZE_GROUP}/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {MANAGED_LABEL: "true"}},
            "spec": {"interval": "10m0s", "path": path, "prune": True,
                     "sourceRef": {"kind": "GitRepository", "name": SOURCE_NAME}, "timeout": "5m"},
        })

    async def _apply(self, kustomization: dict[str, Any], *, commit: str, cluster_directory: bool) -> None:
        name = kustomization["metadata"]["name"]
        revision = f"{self.branch}@sha1:{commit}"
        if not cluster_directory:
            self._prune(_inventory(kustomization))
            self._status(kustomization, ready=False, reason="BuildFailed", attempted=revision, inventory=[],
                         message=f"kustomization path not found: stat ./{self.directory}: no such file or directory")
            return
        try:
            documents = await self._documents(commit, f"{self.directory}/{name}")
            inventory = [self._apply_one(document, owner=name) for document in documents]
        except _Failed as exc:
            self._status(kustomization, ready=False, reason=exc.reason, message=exc.message, attempted=revision)
            return
        kept = {entry["id"] for entry in inventory}
        self._prune([entry for entry in _inventory(kustomization) if entry["id"] not in kept])
        if self._failing:
            self._status(kustomization, ready=False, reason="HealthCheckFailed", attempted=revision,
                         message="health check failed after 5m0s: timeout waiting for: "
                                 f"[Deployment/{self.cluster}/podinfo status: 'InProgress']", inventory=inventory)
            return
        self._status(kustomization, ready=True, reason="ReconciliationSucceeded",
                     message=f"Applied revision: {revision}", attempted=revision, applied=revision,
                     inventory=inventory)

    def _apply_one(self, document: dict[str, Any], *, owner: str) -> dict[str, str]:
        api_version, kind = str(document.get("apiVersion")), str(document.get("kind"))
        info = next((item for item in self.emulator.store.resources()
                     if item.api_version == api_version and item.kind == kind), None)
        if info is None:
            raise _Failed("ReconciliationFailed", f'no matches for kind "{kind}" in version "{api_version}"')
        resource = f"{info.group}/{info.version}/{info.plural}" if info.group else f"{info.version}/{info.plural}"
        meta = document.setdefault("metadata", {})
        meta.setdefault("labels", {}).update({flux.NAME_LABEL: owner, flux.NAMESPACE_LABEL: self.namespace})
        namespace = (meta.get("namespace") or "default") if info.namespaced else None
        if namespace is not None:
            meta["namespace"] = namespace
        try:
            current = self.emulator.get(resource, namespace, str(meta.get("name")))
            if current is None:
                self.emulator.create(resource, document)
            else:
                patch: dict[str, Any] = {"metadata": {"labels": meta["labels"]}}
                for key in (document.keys() | current.keys()) - {"apiVersion", "kind", "metadata", "status"}:
                    if key in document:
                        difference = mergepatch.merge_diff(current.get(key), document[key])
                        if difference != {}:
                            patch[key] = difference
                    else:
                        patch[key] = None
                self.emulator.patch(resource, namespace, str(meta.get("name")), patch)
        except kube_store.KubeApiError as exc:
            raise _Failed("ReconciliationFailed", f"{kind}/{meta.get('name')} apply failed: {exc}") from None
        return {"id": f"{namespace or ''}_{meta.get('name')}_{info.group}_{kind}", "v": info.version}

    def _prune(self, entries: list[dict[str, str]]) -> None:
        for entry in reversed(entries):
            namespace, name, group, kind = [*str(entry["id"]).split("_"), "", "", ""][:4]
            if kind == "Namespace":
                continue  # kept, as flux.py does: other objects may live there
            info = next((item for item in self.emulator.store.resources()
                         if item.group == group and item.kind == kind and item.version == entry.get("v")), None)
            if info is None:
                continue
            resource = f"{info.group}/{info.version}/{info.plural}" if info.group else f"{info.version}/{info.plural}"
            with contextlib.suppress(kube_store.KubeApiError):
                self.emulator.delete(resource, namespace or None, name)

    # --- status ----------------------------------------------------------------------------

    def _source_status(self, *, ready: bool, reason: str, message: str) -> None:
        repository = self.emulator.get(flux.GIT_REPOSITORIES, self.namespace, SOURCE_NAME)
        if repository is None:
            return
        generation = repository["metadata"].get("generation")
        requested = (repository["metadata"].get("annotations") or {}).get(flux.REQUESTED_AT)
        state = (ready, reason, message, self.revision, generation, requested)
        if state == self._source_state:
            return
        now = kube_store.now_rfc3339()
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": reason,
                            "message": message, "observedGeneration": generation, "lastTransitionTime": now}],
        }
        if ready and self.revision is not None:
            status["artifact"] = {"revision": self.revision, "lastUpdateTime": now,
                                  "path": f"gitrepository/{self.namespace}/{SOURCE_NAME}/{self.revision[-40:]}.tar.gz"}
        if requested:
            status["lastHandledReconcileAt"] = requested
        self.emulator.patch(flux.GIT_REPOSITORIES, self.namespace, SOURCE_NAME, {"status": status},
                            subresource="status")
        self._source_state = state

    def _status(
        self,
        kustomization: Mapping[str, Any],
        *,
        ready: bool,
        reason: str,
        message: str,
        attempted: str,
        applied: str | None = None,
        inventory: list[dict[str, str]] | None = None,
    ) -> None:
        meta = kustomization["metadata"]
        latest = self.emulator.get(flux.KUSTOMIZATIONS, self.namespace, meta["name"]) or kustomization
        old = dict(latest.get("status") or {})
        now = kube_store.now_rfc3339()
        before = next((item for item in old.get("conditions") or [] if item.get("type") == "Ready"), None)
        value = "True" if ready else "False"
        since = before["lastTransitionTime"] if before and before.get("status") == value else now
        status = {
            **old,
            "observedGeneration": latest["metadata"].get("generation"),
            "lastAttemptedRevision": attempted,
            "conditions": [{"type": "Ready", "status": value, "reason": reason, "message": message,
                            "observedGeneration": latest["metadata"].get("generation"),
                            "lastTransitionTime": since}],
        }
        if applied is not None:
            status["lastAppliedRevision"] = applied
        if inventory is not None:
            status["inventory"] = {"entries": inventory}
        with contextlib.suppress(kube_store.KubeApiError):
            self.emulator.patch(flux.KUSTOMIZATIONS, self.namespace, meta["name"], {"status": status},
                                subresource="status")

    # --- git -------------------------------------------------------------------------------

    async def _fetch(self) -> str:
        assert self._workdir is not None
        repository = self._workdir / "source.git"
        if not (repository / "HEAD").exists():
            await self._git("init", "--quiet", "--bare", str(repository), git_dir=None)
        await self._git("fetch", "--quiet", "--no-tags", self.repo_url,
                        f"+refs/heads/{self.branch}:refs/heads/{self.branch}", git_dir=repository)
        return (await self._git("rev-parse", f"refs/heads/{self.branch}", git_dir=repository)).decode().strip()

    async def _listing(self, commit: str) -> tuple[bool, list[str]]:
        """Whether the cluster's directory exists at ``commit``, and its subdirectories."""
        assert self._workdir is not None
        output = await self._git("ls-tree", "-z", commit, "--", f"{self.directory}/",
                                 git_dir=self._workdir / "source.git")
        entries = [record.split("\t", 1) for record in output.decode().split("\0") if record]
        return bool(entries), sorted(path.rsplit("/", 1)[-1] for meta, path in entries if meta.split()[1] == "tree")

    async def _documents(self, commit: str, directory: str) -> list[dict[str, Any]]:
        assert self._workdir is not None
        repository = self._workdir / "source.git"
        names = (await self._git("ls-tree", "-r", "-z", "--name-only", commit, "--", f"{directory}/",
                                 git_dir=repository)).decode().split("\0")
        documents: list[dict[str, Any]] = []
        for path in sorted(name for name in names if name.endswith((".yaml", ".yml"))):
            text = (await self._git("show", f"{commit}:{path}", git_dir=repository)).decode()
            try:
                loaded = [item for item in yaml.safe_load_all(text) if isinstance(item, dict)]
            except yaml.YAMLError as exc:
                raise _Failed("BuildFailed", f"{path}: {exc}") from None
            documents.extend(item for item in loaded
                             if item.get("kind") and not str(item.get("apiVersion", "")).startswith(_SKIPPED_GROUPS))
        # Namespaces first, as kustomize-controller applies them before what lives in them.
        return sorted(documents, key=lambda item: 0 if item.get("kind") == "Namespace" else 1)

    async def _git(self, *args: str, git_dir: pathlib.Path | None) -> bytes:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self._workdir), "LC_ALL": "C",
               "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", **self._git_env}
        if git_dir is not None:
            env["GIT_DIR"] = str(git_dir)
        process = await asyncio.create_subprocess_exec(
            "git", *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env)
        try:
            async with asyncio.timeout(30):
                stdout, stderr = await process.communicate()
        except BaseException as exc:  # a timeout, or stop() cancelling the pass: leave no git behind
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            if isinstance(exc, TimeoutError):
                raise _Failed("GitOperationFailed", f"git {args[0]} timed out") from None
            raise
        if process.returncode != 0:
            raise _Failed("GitOperationFailed", f"git {args[0]} failed: {stderr.decode(errors='replace').strip()}")
        return stdout


def _inventory(kustomization: Mapping[str, Any]) -> list[dict[str, str]]:
    entries = ((kustomization.get("status") or {}).get("inventory") or {}).get("entries") or []
    return [dict(entry) for entry in entries if isinstance(entry, dict)]



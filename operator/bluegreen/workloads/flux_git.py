"""Flux git mode: green's workloads are a commit to the environment repository.

This is how EKS Anywhere runs Flux (``gitOpsRef``): each workload cluster runs
its own Flux, which syncs ``<root>/<cluster-name>/`` of one environment
repository. Blue's workloads are the directories under ``<root>/<blue>/``;
for green to run the same, the operator commits copies of them under
``<root>/<green>/`` and green's Flux applies them. The git work itself is in
:mod:`.gitrepo` (the git command line, and why).

Rules this module keeps:

* **What is copied**: ``git.paths`` (subdirectories of ``<root>/<blue>/``),
  or when empty every subdirectory except ``flux-system``, which EKS Anywhere
  writes for each cluster itself. Each ``<root>/<green>/<path>`` becomes an
  exact copy of blue's (files only blue's copy lacks are removed), with the
  declared substitutions applied to the contents of text files.
* **Idempotent, one commit**: the new tree is built on the branch head; when
  it equals the head's tree nothing is committed. Otherwise one commit (the
  spec's author, a message naming the ClusterUpgrade and the paths) is
  pushed fast-forward only. A rejected push means someone pushed meanwhile
  (EKS-A writing green's ``flux-system``, a person): fetch, rebuild on the new
  head, push again, a few times. There is no force push anywhere.
* **Parity**: blue's and green's Flux ``Kustomization`` objects are read
  *inside* each cluster (namespace ``flux.namespace``, default
  ``flux-system``; ``flux.selector`` when it has labels) through the
  cluster's kubeconfig Secret. Green's are paired to blue's by name and
  judged with remote mode's rules (generation observed, ``Ready=True``,
  ``lastAppliedRevision``), and one more: green's copy counts only once the
  revision it applied contains the last commit that changed green's copied
  directories (ancestry checked in the local clone).
* **Retirement**: ``delete(side="blue")`` removes ``<root>/<blue>`` in one
  commit, and refuses while green lacks a copy of a path (blue's directory
  would be the only copy). Once ``<root>/<blue>`` is gone from the branch,
  blue's workloads are reported empty without contacting blue's cluster,
  which is about to be deleted.
* **Nothing blocks the observation**: the repository being unreachable is a
  preflight problem (before anything is created) or an error of the action
  that needs it, never an exception from :meth:`observe`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime
import logging
import pathlib
import posixpath
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from bluegreen.api import durations
from bluegreen.api.spec import FluxMode, FluxWorkloads, GitRepository, Substitution
from bluegreen.engine.types import LABEL_UPGRADE, KustomizationObservation, WorkloadsObservation
from bluegreen.kube import client as kubeclient
from bluegreen.kube import objects
from bluegreen.kube.remote import KubeconfigSecretError, RemoteClients
from bluegreen.workloads import gitrepo
from bluegreen.workloads.base import RemoteWatch
from bluegreen.workloads.flux_remote import KUSTOMIZATIONS, SECRETS, observe_kustomization

logger = logging.getLogger(__name__)

GIT_REPOSITORIES = kubeclient.Resource("source.toolkit.fluxcd.io", "v1", "gitrepositories")
EKSA_MANAGED_DIRECTORY = "flux-system"
DEFAULT_FLUX_NAMESPACE = "flux-system"
PUSH_ATTEMPTS = 5
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
SECRET_FIELD = "spec.workloads.flux.git.secretRef"

# The keys of a Flux git Secret each transport needs, and what each is, for messages.
_NEEDED_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "ssh": (("identity", "the private SSH key whose public key the git server accepts (a deploy key with "
                         "write access)"),
            ("known_hosts", "add the host's key as Flux expects (a known_hosts line for {host})")),
    "https": (("username", "the HTTPS username (any name when the password is a token)"),
              ("password", "the HTTPS password, or a token with write access")),
    "http": (("username", "the HTTP username"), ("password", "the HTTP password, or a token with write access")),
}
_NEEDS_SECRET = frozenset({"ssh", "https"})

KubeconfigRef = Callable[[str], tuple[str, str, str]]
_Planned = tuple[str, str, str]  # (tree, commit message, what it does in words)


class FluxGitError(Exception):
    """Green's copies cannot be committed as asked; the message names what to fix."""


@dataclasses.dataclass(frozen=True)
class _Copy:
    """Green's directories as they should be at one head of the branch."""

    paths: tuple[str, ...]  # relative to <root>/<blue>/ and <root>/<green>/
    entries: tuple[gitrepo.TreeEntry, ...]  # green's files
    substituted: int  # files whose content changed by a substitution


@dataclasses.dataclass(frozen=True)
class BlueFiles:
    """Blue's workload directories at the branch head, as read for preflight's manifest scan."""

    head: str | None = None
    directories: tuple[str, ...] = ()  # repository paths, e.g. clusters/prod-blue/apps
    files: Mapping[str, bytes] = dataclasses.field(default_factory=dict)  # repository path -> content
    problems: tuple[str, ...] = ()  # each names what to fix; nothing else is set when there are any


@dataclasses.dataclass(frozen=True)
class _RepoView:
    """What the branch says about this upgrade, for one observation."""

    blue_present: bool = True
    green_missing: tuple[str, ...] = ()
    sync_commit: str | None = None  # last commit that changed green's copied directories


class FluxGitWorkloads:
    """WorkloadSync through commits to the environment repository (``workloads.flux.mode: git``)."""

    def __init__(
        self,
        *,
        management: kubeclient.KubeClient,
        remote_clients: RemoteClients,
        flux: FluxWorkloads,
        upgrade_namespace: str,
        kubeconfig_ref: KubeconfigRef,
        workdir: pathlib.Path | str,
        labels: Mapping[str, str],
        fetch_interval: float = 10.0,
    ) -> None:
        if flux.mode != FluxMode.GIT or flux.git is None:
            raise ValueError(f"FluxGitWorkloads handles workloads.flux.mode git, not {flux.mode.value}")
        self._management = management
        self._remote = remote_clients
        self._git: GitRepository = flux.git
        self._flux_namespace = flux.namespace or DEFAULT_FLUX_NAMESPACE
        self._selector = dict(flux.selector.match_labels)
        self._upgrade_namespace = upgrade_namespace
        self._kubeconfig_ref = kubeconfig_ref
        self._labels = dict(labels)
        self._fetch_interval = fetch_interval
        self._root = _clean_path(self._git.root)
        self._repo = gitrepo.Repository(
            url=self._git.url,
            branch=self._git.branch,
            directory=pathlib.Path(workdir) / "repository.git",
            timeout=durations.parse_duration(self._git.timeout).total_seconds(),
            author=(self._git.author.name, self._git.author.email),
        )
        self._lock = asyncio.Lock()  # one git operation on the clone at a time
        self._fetched_at: float | None = None
        self._transport = gitrepo.scheme(self._git.url)

    # --- WorkloadSync ------------------------------------------------------------------------

    async def preflight(self, *, blue_name: str, green_name: str) -> list[str]:
        credentials, problems = await self._credentials()
        if problems:
            return problems
        url = self._repo.shown_url
        async with self._lock:
            try:
                head = await self._repo.remote_head(credentials)
                if head is None:
                    branches = await self._repo.remote_branches(credentials)
                    listed = ", ".join(branches[:10]) or "none"
                    return [f"branch {self._git.branch!r} does not exist in {url} (branches: {listed}); "
                            "set spec.workloads.flux.git.branch to the branch Flux syncs"]
                head = await self._fetch(credentials)
            except gitrepo.GitError as exc:
                return [self._explain(exc)]
            try:
                await self._repo.push_allowed(head, credentials)
            except gitrepo.GitError as exc:
                if exc.kind not in (gitrepo.Failure.AUTH, gitrepo.Failure.OTHER):
                    return [self._explain(exc)]
                # The same credentials just read the branch: what is refused is writing.
                return [f"the credentials in {self._secret_name()} can read {url} but cannot push to branch "
                        f"{self._git.branch}; give them write access ({exc.detail or exc})"]
            problems = await self._tree_problems(head, blue_name=blue_name)
        if not problems:
            problems = await self._blue_flux_problems(blue_name)
        return problems

    async def sync_green(
        self, *, blue_name: str, green_name: str, kubeconfig_secret: tuple[str, str, str]
    ) -> list[str]:
        credentials = await self._required_credentials()
        async with self._lock:
            commit = await self._commit_until_pushed(
                credentials,
                build=lambda head: self._build_copy(head, blue_name=blue_name, green_name=green_name),
            )
        if commit is None:
            return []
        sha, described = commit
        journal = [f"committed {sha} to {self._repo.shown_url} {self._git.branch}: {described}"]
        nudged = await self._nudge(kubeconfig_secret)
        if nudged:
            journal.append(nudged)
        return journal

    async def delete(self, *, side: str, blue_name: str, green_name: str) -> list[str]:
        if side not in ("blue", "green"):
            raise ValueError(f"side must be 'blue' or 'green', not {side!r}")
        credentials = await self._required_credentials()
        async with self._lock:
            commit = await self._commit_until_pushed(
                credentials,
                build=lambda head: self._build_removal(head, side=side, blue_name=blue_name, green_name=green_name),
            )
        if commit is None:
            return []
        sha, described = commit
        return [f"committed {sha} to {self._repo.shown_url} {self._git.branch}: {described}"]

    async def read_blue(self, *, blue_name: str) -> BlueFiles:
        """Blue's workload directories (``git.paths``, or all but flux-system) at the branch head, fetched now.

        Reads only: unlike :meth:`preflight` it does not ask for write access.
        Regular files only (symlinks and submodules are left out). Problems with
        the credentials, the repository or blue's directory come back as lines
        naming the fix, never as exceptions.
        """
        credentials, problems = await self._credentials()
        if problems:
            return BlueFiles(problems=tuple(problems))
        async with self._lock:
            try:
                head = await self._fetch(credentials)
                problems = await self._tree_problems(head, blue_name=blue_name)
                if problems:
                    return BlueFiles(problems=tuple(problems))
                directories = tuple(self._dir(blue_name, path) for path in await self._paths(head, blue_name=blue_name))
                entries = [entry for directory in directories for entry in await self._repo.list_files(head, directory)
                           if entry.type == "blob" and entry.mode in ("100644", "100755")]
                contents = await self._repo.read_blobs([entry.oid for entry in entries])
            except gitrepo.GitError as exc:
                return BlueFiles(problems=(self._explain(exc),))
        return BlueFiles(head=head, directories=directories,
                         files={entry.path: contents[entry.oid] for entry in entries})

    async def observe(self, *, blue_name: str, green_name: str) -> WorkloadsObservation:
        view = await self._view(blue_name=blue_name, green_name=green_name)
        blue = await self._kustomizations(blue_name, required=True) if view.blue_present else []
        green = await self._kustomizations(green_name, required=False)
        blue_names = {objects.name_of(item) for item in blue}
        green_seen = [
            dataclasses.replace(seen, copy_of=seen.name if seen.name in blue_names else None)
            for seen in map(observe_kustomization, green)
        ]
        containing: set[str] = set()
        if view.sync_commit is not None:
            applied = {gitrepo.revision_commit(seen.revision) for seen in green_seen if seen.ready}
            containing = await self._containing(view.sync_commit, {commit for commit in applied if commit})
        return WorkloadsObservation(
            blue=tuple(observe_kustomization(item) for item in blue),
            green=tuple(self._gate(seen, sync_commit=view.sync_commit, containing=containing) for seen in green_seen),
            green_missing=view.green_missing,
        )

    def remote_watches(self, *, blue_name: str, green_name: str) -> list[RemoteWatch]:
        # Green's Flux applying the commit, and blue's moving to the same head, happen inside the
        # clusters, where no kopf watch reaches.
        return [RemoteWatch(kubeconfig=self._kubeconfig_ref(name), resource=KUSTOMIZATIONS,
                            namespace=self._flux_namespace) for name in (blue_name, green_name)]

    # --- building commits ----------------------------------------------------------------------

    async def _commit_until_pushed(
        self, credentials: gitrepo.Credentials, *, build: Callable[[str], Awaitable[_Planned | None]]
    ) -> tuple[str, str] | None:
        """Build on the head, commit if different, push; rebuild on a moved head. Returns (commit, what)."""
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            try:
                head = await self._fetch(credentials)
                planned = await build(head)
                if planned is None:
                    return None
                tree, message, described = planned
                commit = await self._repo.commit_tree(tree, parent=head, message=message)
                pushed = await self._repo.push(commit, credentials)
            except gitrepo.GitError as exc:
                raise FluxGitError(self._explain(exc)) from None
            if pushed:
                logger.info("pushed %s to %s %s: %s", commit, self._repo.shown_url, self._git.branch, described)
                return commit, described
            logger.info("push to %s %s rejected: the branch moved since %s; rebuilding on the new head "
                        "(attempt %d of %d)", self._repo.shown_url, self._git.branch, head, attempt, PUSH_ATTEMPTS)
        raise FluxGitError(
            f"{self._repo.shown_url} branch {self._git.branch} kept moving: {PUSH_ATTEMPTS} pushes were rejected "
            "because others pushed first; retrying on the next pass (nothing is force-pushed)"
        )

    async def _build_copy(self, head: str, *, blue_name: str, green_name: str) -> _Planned | None:
        copy = await self._plan_copy(head, blue_name=blue_name, green_name=green_name)
        green_dirs = [self._dir(green_name, path) for path in copy.paths]
        tree = await self._repo.write_tree(base=head, remove=green_dirs, add=copy.entries)
        if tree == await self._repo.tree_of(head):
            return None
        pairs = [f"{self._dir(blue_name, path)} -> {self._dir(green_name, path)}" for path in copy.paths]
        substitutions = ", ".join(f"{item.from_!r} -> {item.to!r}" for item in self._git.substitutions)
        message = "\n".join([
            f"bluegreen: copy {blue_name}'s workloads to {green_name}",
            "",
            f"ClusterUpgrade {self._upgrade_name()} copies blue's directories for green's Flux:",
            *(f"  {pair}" for pair in pairs),
            *([f"Substitutions: {substitutions} ({copy.substituted} file(s) changed)."] if substitutions else []),
            "",
            f"Bluegreen-Upgrade: {self._upgrade_name()}",
        ]) + "\n"
        described = f"copied {', '.join(pairs)}"
        if self._git.substitutions:
            described += f" with {len(self._git.substitutions)} substitution(s) in {copy.substituted} file(s)"
        return tree, message, described

    async def _build_removal(
        self, head: str, *, side: str, blue_name: str, green_name: str
    ) -> _Planned | None:
        name = blue_name if side == "blue" else green_name
        directory = self._dir(name)
        if not await self._repo.exists(head, directory):
            return None
        if side == "blue":
            await self._refuse_losing_the_only_copy(head, blue_name=blue_name, green_name=green_name)
        tree = await self._repo.write_tree(base=head, remove=[directory], add=())
        why = (f"blue {blue_name} is retired; green {green_name} serves" if side == "blue"
               else f"green {green_name} is abandoned; blue {blue_name} serves")
        message = (f"bluegreen: remove {directory}\n\n{why} (ClusterUpgrade {self._upgrade_name()}).\n\n"
                   f"Bluegreen-Upgrade: {self._upgrade_name()}\n")
        return tree, message, f"removed {directory} ({side})"

    async def _refuse_losing_the_only_copy(self, head: str, *, blue_name: str, green_name: str) -> None:
        paths = await self._paths(head, blue_name=blue_name)
        missing = [path for path in paths if not await self._repo.exists(head, self._dir(green_name, path))]
        if missing:
            raise FluxGitError(
                f"not removing {self._dir(blue_name)}: green has no copy of "
                f"{', '.join(self._dir(blue_name, path) for path in missing)} in {self._repo.shown_url}, so "
                "blue's directory is the only copy of those workloads; sync green again or copy them by hand"
            )

    async def _plan_copy(self, head: str, *, blue_name: str, green_name: str) -> _Copy:
        problems = self._spec_problems()
        if problems:
            raise FluxGitError("; ".join(problems))
        if not await self._repo.exists(head, self._dir(blue_name)):
            raise FluxGitError(f"{self._dir(blue_name)}/ does not exist on branch {self._git.branch} of "
                               f"{self._repo.shown_url}; blue's workloads must be there to be copied")
        paths = await self._paths(head, blue_name=blue_name)
        if not paths:
            raise FluxGitError(f"{self._dir(blue_name)}/ has no workload directory to copy (only "
                               f"{EKSA_MANAGED_DIRECTORY}); list them in spec.workloads.flux.git.paths")
        sources: list[tuple[str, gitrepo.TreeEntry]] = []
        for path in paths:
            blue_dir = self._dir(blue_name, path)
            found = await self._repo.list_files(head, blue_dir)
            if not found:
                raise FluxGitError(f"{blue_dir}/ does not exist on branch {self._git.branch}; "
                                   "fix spec.workloads.flux.git.paths")
            sources.extend((self._dir(green_name, path) + entry.path[len(blue_dir):], entry) for entry in found)
        texts = [entry for _, entry in sources if entry.type == "blob" and entry.mode in ("100644", "100755")]
        contents = await self._repo.read_blobs([entry.oid for entry in texts]) if self._git.substitutions else {}
        changed: dict[str, bytes] = {}
        for entry in texts:
            content = contents.get(entry.oid)
            if content is None:
                continue
            replaced = _substitute(content, self._git.substitutions)
            if replaced != content:
                changed[entry.oid] = replaced
        new_oids = dict(zip(changed, await self._repo.write_blobs(list(changed.values())), strict=True))
        entries = tuple(
            gitrepo.TreeEntry(mode=entry.mode, type=entry.type, oid=new_oids.get(entry.oid, entry.oid), path=target)
            for target, entry in sources
        )
        substituted = sum(1 for _, entry in sources if entry.oid in new_oids)
        return _Copy(paths=tuple(paths), entries=entries, substituted=substituted)

    async def _paths(self, head: str, *, blue_name: str) -> list[str]:
        if self._git.paths:
            return [_clean_path(path) for path in self._git.paths]
        return sorted(entry.path.rsplit("/", 1)[-1] for entry in await self._repo.list_dir(head, self._dir(blue_name))
                      if entry.type == "tree" and not entry.path.endswith(f"/{EKSA_MANAGED_DIRECTORY}"))

    # --- observing -----------------------------------------------------------------------------

    async def _view(self, *, blue_name: str, green_name: str) -> _RepoView:
        """The branch as last fetched (fetching when older than ``fetch_interval``).

        A failed fetch leaves the last fetched state: what it says about commits
        stays true, and the failure is the business of preflight and the actions.
        """
        async with self._lock:
            stale = self._fetched_at is None or time.monotonic() - self._fetched_at >= self._fetch_interval
            if stale:
                try:
                    await self._fetch(await self._required_credentials())
                except (gitrepo.GitError, FluxGitError) as exc:
                    problem = self._explain(exc) if isinstance(exc, gitrepo.GitError) else str(exc)
                    logger.info("observing %s: %s", self._repo.shown_url, problem)
            head = await self._repo.local_head()
            if head is None:
                # Never read: assume blue is there (its cluster is asked) and green's copies are not.
                return _RepoView(green_missing=(self._dir(green_name),))
            if not await self._repo.exists(head, self._dir(blue_name)):
                return _RepoView(blue_present=False)
            paths = await self._paths(head, blue_name=blue_name)
            green_dirs = [self._dir(green_name, path) for path in paths]
            missing = tuple([directory for directory in green_dirs if not await self._repo.exists(head, directory)])
            sync_commit = await self._repo.last_change(head, green_dirs) if not missing else None
            return _RepoView(green_missing=missing, sync_commit=sync_commit)

    async def _containing(self, sync_commit: str, applied: set[str]) -> set[str]:
        """Which of the ``applied`` commits contain ``sync_commit``; fetches once if one is not known yet."""
        async with self._lock:
            known = {commit for commit in applied if await self._repo.has_commit(commit)}
            if known != applied:
                # A cluster's Flux saw a newer head than the clone has: catch up, once per observation.
                try:
                    await self._fetch(await self._required_credentials())
                except (gitrepo.GitError, FluxGitError) as exc:
                    logger.info("cannot fetch %s to check %s: %s", self._repo.shown_url,
                                ", ".join(sorted(applied - known)), exc)
                known = {commit for commit in applied if await self._repo.has_commit(commit)}
            return {commit for commit in known if await self._repo.is_ancestor(sync_commit, commit)}

    def _gate(self, seen: KustomizationObservation, *, sync_commit: str | None,
              containing: set[str]) -> KustomizationObservation:
        """Green's Kustomization counts only once the revision it applied contains the sync commit."""
        if not seen.ready or sync_commit is None:
            return seen
        applied = gitrepo.revision_commit(seen.revision)
        if applied is not None and applied in containing:
            return seen
        return dataclasses.replace(seen, ready=False, reason="WaitingForCommit",
                                   message=f"waiting for Flux to apply commit {sync_commit[:7]} (green's copy); "
                                           f"applied {seen.revision}")

    async def _kustomizations(self, cluster: str, *, required: bool) -> list[dict[str, Any]]:
        namespace, secret, key = self._kubeconfig_ref(cluster)
        try:
            client = await self._remote.client(namespace=namespace, name=secret, key=key)
            found = await client.list(KUSTOMIZATIONS, namespace=self._flux_namespace,
                                      label_selector=self._selector or None)
        except kubeclient.NotFoundError:
            return []  # Flux is not installed there (yet); preflight says so for blue
        except (KubeconfigSecretError, kubeclient.UnreachableError):
            if required:
                raise
            # Green may not exist yet, or its API server is still coming up.
            return []
        return sorted(found, key=objects.name_of)

    # --- credentials and checks ----------------------------------------------------------------

    def _spec_problems(self) -> list[str]:
        problems = []
        if gitrepo.url_has_password(self._git.url):
            problems.append(
                f"spec.workloads.flux.git.url {self._repo.shown_url} carries a password; remove it from the URL and "
                f"put username and password in the Secret named by {SECRET_FIELD}"
            )
        if ".." in self._git.root.split("/"):
            problems.append(f"spec.workloads.flux.git.root: {self._git.root!r} leaves the repository; "
                            "give a directory inside it, e.g. clusters")
        for path in self._git.paths:
            if _clean_path(path) in ("", EKSA_MANAGED_DIRECTORY) or ".." in path.split("/"):
                problems.append(
                    f"spec.workloads.flux.git.paths: {path!r} is not a workload directory under <root>/<blue>/; "
                    f"list subdirectories such as apps or infra ({EKSA_MANAGED_DIRECTORY} is EKS Anywhere's)"
                )
        return problems

    async def _credentials(self) -> tuple[gitrepo.Credentials, list[str]]:
        """The Secret's credentials, or the problems with it or the spec (each naming the fix)."""
        spec_problems = self._spec_problems()
        if spec_problems:
            return gitrepo.NO_CREDENTIALS, spec_problems  # before git sees a URL with a password in it
        transport = self._transport
        ref = self._git.secret_ref
        if ref is None:
            if transport in _NEEDS_SECRET:
                keys = " and ".join(key for key, _ in _NEEDED_KEYS[transport])
                return gitrepo.NO_CREDENTIALS, [
                    f"{SECRET_FIELD} is required for {transport} URLs; create a Secret in namespace "
                    f"{self._upgrade_namespace} with {keys} (Flux's keys) and name it there"
                ]
            return gitrepo.NO_CREDENTIALS, []
        if transport in ("file", "git"):
            return gitrepo.NO_CREDENTIALS, []  # nothing to authenticate; the Secret is not read
        where = f"Secret {self._upgrade_namespace}/{ref.name}"
        secret = await self._management.get(SECRETS, namespace=self._upgrade_namespace, name=ref.name)
        if secret is None:
            keys = " and ".join(key for key, _ in _NEEDED_KEYS[transport])
            return gitrepo.NO_CREDENTIALS, [
                f"{where} ({SECRET_FIELD}) does not exist; create it with {keys} as Flux expects for {transport}"
            ]
        values, problems = _secret_values(secret, where=where)
        for key, meaning in _NEEDED_KEYS[transport]:
            if not values.get(key):
                problems.append(f"{where} has no `{key}`; {meaning.format(host=_host(self._git.url))}")
        if problems:
            return gitrepo.NO_CREDENTIALS, problems
        return gitrepo.Credentials(
            identity=values.get("identity"),
            known_hosts=values.get("known_hosts"),
            username=_text(values.get("username")),
            password=_text(values.get("password")),
            ca_file=values.get("ca.crt") or values.get("caFile"),
        ), []

    async def _required_credentials(self) -> gitrepo.Credentials:
        credentials, problems = await self._credentials()
        if problems:
            raise FluxGitError("; ".join(problems))
        return credentials

    async def _fetch(self, credentials: gitrepo.Credentials) -> str:
        head = await self._repo.fetch(credentials)
        self._fetched_at = time.monotonic()
        return head

    async def _tree_problems(self, head: str, *, blue_name: str) -> list[str]:
        blue_dir = self._dir(blue_name)
        where = f"branch {self._git.branch} of {self._repo.shown_url}"
        if not await self._repo.exists(head, blue_dir):
            clusters = [entry.path.rsplit("/", 1)[-1] for entry in await self._repo.list_dir(head, self._root)
                        if entry.type == "tree"] if self._root else []
            listed = f" ({self._root}/ has: {', '.join(clusters) or 'nothing'})" if self._root else ""
            return [f"{blue_dir}/ does not exist on {where}{listed}; set spec.workloads.flux.git.root to the "
                    "directory holding one directory per cluster, or check spec.cluster.name"]
        problems = [f"{self._dir(blue_name, path)}/ does not exist on {where}; fix spec.workloads.flux.git.paths"
                    for path in self._git.paths
                    if not await self._repo.exists(head, self._dir(blue_name, _clean_path(path)))]
        if not problems and not await self._paths(head, blue_name=blue_name):
            problems.append(f"{blue_dir}/ holds no workload directory besides {EKSA_MANAGED_DIRECTORY}; "
                            "list what to copy in spec.workloads.flux.git.paths")
        return problems

    async def _blue_flux_problems(self, blue_name: str) -> list[str]:
        """Flux missing from blue is a problem; blue's API being unreadable is not (it may pass, and is shown
        by the observation, which needs blue's Kustomizations anyway)."""
        namespace, secret, key = self._kubeconfig_ref(blue_name)
        try:
            client = await self._remote.client(namespace=namespace, name=secret, key=key)
            served = await client.resources("kustomize.toolkit.fluxcd.io/v1")
        except kubeclient.KubeError as exc:
            logger.info("preflight: cannot read blue's Flux through Secret %s/%s: %s", namespace, secret, exc)
            return []
        if served is None:
            return [f"blue's cluster {blue_name} does not serve kustomize.toolkit.fluxcd.io/v1; git mode needs "
                    "Flux running in each cluster (EKS Anywhere's gitOpsRef) or use workloads.flux.mode remote"]
        return []

    def _explain(self, error: gitrepo.GitError) -> str:
        """One line naming what went wrong with the repository and how to fix it."""
        url = self._repo.shown_url
        where = self._secret_name()
        detail = error.detail or str(error)
        match error.kind:
            case gitrepo.Failure.HOST_KEY:
                return (f"the SSH host key of {_host(self._git.url)} is not in `known_hosts` of {where} (or does not "
                        "match it); add the host's key as Flux expects, checked against the key your git host "
                        f"publishes ({detail})")
            case gitrepo.Failure.BAD_KEY:
                return f"`identity` in {where} is not a usable private SSH key; store the key unencrypted ({detail})"
            case gitrepo.Failure.AUTH:
                fix = ("check `identity` (its public key must be a deploy key with write access)"
                       if self._transport == "ssh" else "check `username` and `password` (a token needs write access)")
                return f"{url} refused the credentials in {where}; {fix} ({detail})"
            case gitrepo.Failure.NOT_FOUND:
                return f"no git repository at {url}; fix spec.workloads.flux.git.url ({detail})"
            case gitrepo.Failure.UNREACHABLE | gitrepo.Failure.TIMEOUT:
                return (f"cannot reach {url}; check spec.workloads.flux.git.url and that the operator can connect "
                        f"to the git host ({detail})")
        return f"{error}; check spec.workloads.flux.git"

    # --- small helpers -------------------------------------------------------------------------

    def _dir(self, cluster: str, path: str = "") -> str:
        return posixpath.join(*(part for part in (self._root, cluster, path) if part))

    def _secret_name(self) -> str:
        ref = self._git.secret_ref
        return f"Secret {self._upgrade_namespace}/{ref.name}" if ref else SECRET_FIELD

    def _upgrade_name(self) -> str:
        owner = self._labels.get(LABEL_UPGRADE, "")
        namespace, _, name = owner.partition(".")
        return f"{namespace}/{name}" if name else (owner or "(unnamed)")

    async def _nudge(self, kubeconfig_secret: tuple[str, str, str]) -> str | None:
        """Ask green's Flux to fetch now rather than at its next interval (``flux reconcile source git``).

        Only an acceleration: the commit is pushed and Flux finds it on its own,
        so a failure here is logged, not raised.
        """
        namespace, secret, key = kubeconfig_secret
        try:
            client = await self._remote.client(namespace=namespace, name=secret, key=key)
            found = await client.list(KUSTOMIZATIONS, namespace=self._flux_namespace)
            sources = sorted({
                (str(ref.get("namespace") or objects.metadata(item).get("namespace")), str(ref.get("name")))
                for item in found
                if (ref := (item.get("spec") or {}).get("sourceRef") or {}).get("kind") == "GitRepository"
            })
            now = datetime.datetime.now(tz=datetime.UTC).isoformat()
            for source_namespace, name in sources:
                await client.patch(GIT_REPOSITORIES, namespace=source_namespace, name=name,
                                   body={"metadata": {"annotations": {REQUESTED_AT: now}}})
        except kubeclient.KubeError as exc:
            logger.info("could not ask green's Flux to fetch now (it will at its interval): %s", exc)
            return None
        if not sources:
            return None
        names = ", ".join(f"{ns}/{name}" for ns, name in sources)
        return f"asked green's Flux to fetch now (annotated GitRepository {names} with {REQUESTED_AT})"


def _substitute(content: bytes, substitutions: Sequence[Substitution]) -> bytes:
    if b"\0" in content:
        return content  # binary: substitutions are for manifests
    try:
        text = content.decode()
    except UnicodeDecodeError:
        return content
    for item in substitutions:
        text = text.replace(item.from_, item.to)
    return text.encode()


def _secret_values(secret: Mapping[str, Any], *, where: str) -> tuple[dict[str, bytes], list[str]]:
    values: dict[str, bytes] = {}
    problems: list[str] = []
    for key, encoded in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{where}: key `{key}` is not valid base64; store the value with `kubectl create secret`")
    for key, text in (secret.get("stringData") or {}).items():
        values.setdefault(key, str(text).encode())
    return values, problems


def _text(value: bytes | None) -> str | None:
    return value.decode(errors="replace").strip("\r\n") if value is not None else None


def _clean_path(path: str) -> str:
    return posixpath.normpath(path.strip()).strip("/").removeprefix("./") if path.strip() not in ("", ".", "./") else ""


def _host(url: str) -> str:
    if gitrepo.scheme(url) == "ssh" and "://" not in url:
        return url.split("@", 1)[-1].split(":", 1)[0]
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    return netloc.rsplit("@", 1)[-1]

"""The removed-API scan of the manifests Flux applies to blue, read where Flux reads them.

The live scan cannot tell which version a writer uses (see ``live``); the
source can, and it is what Flux applies again to green. Where that source is:

* **remote mode**: blue's Kustomizations are the ones the workload sync copies
  (``workloads.flux.selector`` in ``flux_namespace``, found through
  :class:`~bluegreen.workloads.flux_remote.FluxRemoteWorkloads`, so both pick
  the same). Each names a ``sourceRef`` (GitRepository, OCIRepository or
  Bucket) whose ``status.artifact`` is the tar.gz source-controller serves:
  ``url``, ``digest`` and ``revision``. The operator downloads it as
  kustomize-controller does, checks the digest, unpacks it and scans the
  Kustomization's ``spec.path`` in it. An artifact is downloaded once however
  many Kustomizations use it, and one path of it is scanned once.
* **git mode**: the environment repository at the branch head, through the
  workload sync's own git code (:meth:`FluxGitWorkloads.read_blue`: same
  credentials, same rules for which directories are blue's), scanned under
  ``<root>/<blue>/<paths>``.

Unpacking treats the archive as untrusted: no absolute names, no ``..``, no
link pointing outside (links inside are skipped: source-controller's own
archives hold none), only files and directories, and a size limit, checked
before anything is written. Everything goes into a fresh directory under the
upgrade's workdir, removed afterwards.

Nothing here raises for the world's sake but the management API server
failing for now (5xx, 429, no answer: ``transient``), which is raised so the
pass is retried rather than blocked. A source that cannot be read (its
artifact unreachable, a digest mismatch, a path Flux could not build either)
is a line in ``problems`` naming it and what to do, and whatever did not finish
within ``timeout`` is a problem too, so a Block policy never passes on a scan
that silently saw nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import pathlib
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from bluegreen import httptext
from bluegreen.api import spec as api
from bluegreen.kube import client as kubeclient
from bluegreen.kube import objects
from bluegreen.kube.client import KubeClient
from bluegreen.kube.remote import RemoteClients
from bluegreen.preflight.findings import Finding
from bluegreen.preflight.manifests import KUSTOMIZE_TIMEOUT, ManifestError, scan_manifests
from bluegreen.preflight.removed_apis import removals_up_to
from bluegreen.preflight.transient import is_transient
from bluegreen.workloads import gitrepo
from bluegreen.workloads.flux_git import FluxGitWorkloads
from bluegreen.workloads.flux_remote import KUSTOMIZATIONS, FluxRemoteWorkloads

__all__ = ["MAX_ARTIFACT_BYTES", "ArtifactError", "extract", "scan_sources", "verify_digest"]

MAX_ARTIFACT_BYTES = 256 * 1024 * 1024  # downloaded, and again unpacked
MAX_ARTIFACT_ENTRIES = 50_000
DOWNLOADS_AT_ONCE = 4
CONNECT_TIMEOUT = 30.0
SOURCE_GROUP = "source.toolkit.fluxcd.io"
# Newest first: OCIRepository and Bucket were served as v1beta2 before Flux made them v1.
SOURCE_VERSIONS = ("v1", "v1beta2")
SOURCE_PLURALS = {"GitRepository": "gitrepositories", "OCIRepository": "ocirepositories", "Bucket": "buckets"}
_DIGESTS = ("sha256", "sha384", "sha512")
_SKIP_FIX = "or set spec.preflight.scanSources: false to rely on the live scan alone"

_Scan = tuple[list[Finding], list[str]]


class ArtifactError(Exception):
    """An artifact cannot be used as it is; the message says what is wrong with it."""


# --- the archive ----------------------------------------------------------------------------------


def verify_digest(archive: pathlib.Path, digest: str) -> None:
    """Raise ArtifactError unless ``archive``'s bytes have ``digest`` (``sha256:<hex>``, as Flux writes it)."""
    algorithm, _, expected = digest.partition(":")
    if algorithm not in _DIGESTS or not expected:
        raise ArtifactError(f"its digest {digest!r} is not one the scan can check ({', '.join(_DIGESTS)})")
    hasher = hashlib.new(algorithm)
    with archive.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    if hasher.hexdigest() != expected.lower():
        raise ArtifactError(f"the downloaded archive has digest {algorithm}:{hasher.hexdigest()}, not {digest} "
                            "as the source's status says")


def extract(
    archive: pathlib.Path,
    *,
    into: pathlib.Path,
    max_bytes: int = MAX_ARTIFACT_BYTES,
    max_entries: int = MAX_ARTIFACT_ENTRIES,
) -> None:
    """Unpack the tar.gz ``archive`` into ``into``; ArtifactError for anything that could land outside it.

    Every entry is checked before the first is written. Links inside the
    archive are skipped, devices and FIFOs too: a manifest scan needs files.
    """
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members: list[tarfile.TarInfo] = []
            total = 0
            for count, member in enumerate(tar, start=1):
                if count > max_entries:
                    raise ArtifactError(f"it holds more than {max_entries} entries")
                _check_name(member.name)
                if member.issym() or member.islnk():
                    _check_link(member)
                    continue
                if not (member.isfile() or member.isdir()):
                    continue
                total += member.size
                if total > max_bytes:
                    raise ArtifactError(f"it unpacks to more than {max_bytes} bytes")
                members.append(member)
            # The data filter repeats the name checks inside tarfile (and drops modes we do not want).
            tar.extractall(into, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArtifactError(f"it is not a readable tar.gz ({exc})") from None


def _check_name(name: str) -> None:
    if name.startswith("/") or _escapes(name):
        raise ArtifactError(f"entry {name!r} would be written outside the directory it is unpacked into")


def _check_link(member: tarfile.TarInfo) -> None:
    # A hard link names another entry; a symbolic link is relative to its own directory.
    target = member.linkname if member.islnk() else posixpath.join(posixpath.dirname(member.name), member.linkname)
    if member.linkname.startswith("/") or _escapes(target):
        raise ArtifactError(f"link {member.name!r} -> {member.linkname!r} points outside the artifact")


def _escapes(name: str) -> bool:
    return posixpath.normpath(name or ".").split("/")[0] == ".."


def _clean(path: str) -> str:
    """``path`` as Flux joins it to the source's root (``..`` stops at the root), written ``./<path>``."""
    return "./" + posixpath.normpath("/" + path.strip()).lstrip("/")


async def _download(session: aiohttp.ClientSession, url: str, *, into: pathlib.Path, max_bytes: int) -> None:
    async with session.get(url) as response:
        if response.status != 200:
            body = httptext.quote(await response.text(errors="replace"))
            raise ArtifactError(f"{httptext.safe_url(url)} answered HTTP {response.status}: {body}")
        size = 0
        with into.open("wb") as handle:
            async for chunk in response.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise ArtifactError(f"{httptext.safe_url(url)} sends more than {max_bytes} bytes")
                handle.write(chunk)


# --- where a finding was seen ---------------------------------------------------------------------


class _Missing(Exception):
    pass


def _scan_tree(root: pathlib.Path, relative: str, *, source: str, path: str, current: str, target: str,
               timeout: float) -> list[Finding]:
    """Scan ``root/relative``, ``where`` naming the source and the path, then the file (or rendered directory)."""
    directory = root / relative
    if not directory.is_dir():
        raise _Missing
    located = []
    for finding in scan_manifests([directory], current=current, target=target, root=root, timeout=timeout):
        seen_in = finding.where.removeprefix("in ")  # relative to root: a file, or a rendered kustomization
        what = "kustomization" if (root / seen_in).is_dir() else "file"
        located.append(dataclasses.replace(finding, where=f"in {source} at {path}, {what} {seen_in}"))
    return located


async def _scan_directory(root: pathlib.Path, relative: str, *, source: str, path: str, current: str, target: str,
                          deadline: float) -> list[Finding]:
    # Blocking (files, kubectl kustomize): in a thread, kustomize bounded by what is left of the scan's time.
    remaining = deadline - asyncio.get_running_loop().time()
    return await asyncio.to_thread(_scan_tree, root, relative, source=source, path=path, current=current, target=target,
                                   timeout=max(1.0, min(KUSTOMIZE_TIMEOUT, remaining)))


def _manifest_problem(exc: Exception, *, root: pathlib.Path) -> str:
    # The message names the scratch directory; the source's own paths are what a person can look up.
    return str(exc).replace(f"{root}/", "").replace(str(root), ".")


# --- remote mode ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SourceRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclasses.dataclass
class _Artifact:
    """One artifact to download, and the paths in it that blue's Kustomizations apply."""

    source: _SourceRef
    url: str
    digest: str
    revision: str
    paths: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # ./<path> -> Kustomizations applying it

    def users(self) -> str:
        names = sorted({name for names in self.paths.values() for name in names})
        return f"Kustomization{'s' if len(names) > 1 else ''} {', '.join(names)}"


async def _remote_artifacts(spec: api.ClusterUpgradeSpec, management: KubeClient) -> tuple[list[_Artifact], list[str]]:
    """Blue's Kustomizations' sources, one entry per distinct artifact; what cannot be resolved is a problem."""
    namespace = spec.flux_namespace
    sync = FluxRemoteWorkloads(client=management, flux=spec.workloads.flux, namespace=namespace, labels={})
    seen = await sync.observe(blue_name=spec.cluster.name, green_name=spec.green_name)
    if not seen.blue:
        return [], [f"no Kustomization in namespace {namespace} matches spec.workloads.flux.selector, so no Flux "
                    f"source was scanned; fix the selector {_SKIP_FIX}"]
    problems: list[str] = []
    artifacts: dict[tuple[str, str], _Artifact] = {}
    served: dict[str, kubeclient.Resource | None] = {}
    for kustomization_seen in seen.blue:
        kustomization = await management.get(KUSTOMIZATIONS, namespace=namespace, name=kustomization_seen.name)
        if kustomization is None:
            continue  # deleted since it was listed: Flux no longer applies it
        name = f"{namespace}/{kustomization_seen.name}"
        spec_ = kustomization.get("spec") or {}
        ref = spec_.get("sourceRef") or {}
        source = _SourceRef(kind=str(ref.get("kind", "")), namespace=str(ref.get("namespace") or namespace),
                            name=str(ref.get("name", "")))
        resolved = await _source_artifact(management, source, served=served)
        if isinstance(resolved, str):
            problems.append(f"Kustomization {name}: {resolved}")
            continue
        url, digest, revision = resolved
        artifact = artifacts.setdefault((url, digest), _Artifact(source=source, url=url, digest=digest,
                                                                revision=revision))
        artifact.paths.setdefault(_clean(str(spec_.get("path") or "")), []).append(name)
    return list(artifacts.values()), problems


async def _source_artifact(
    management: KubeClient, source: _SourceRef, *, served: dict[str, kubeclient.Resource | None]
) -> tuple[str, str, str] | str:
    """(url, digest, revision) of the source's artifact, or why there is none (with what to do)."""
    plural = SOURCE_PLURALS.get(source.kind)
    if plural is None:
        return (f"its sourceRef kind {source.kind or '(none)'} is not one the scan reads "
                f"({', '.join(SOURCE_PLURALS)}); {_SKIP_FIX}")
    if source.kind not in served:
        served[source.kind] = await _served(management, plural)
    resource = served[source.kind]
    if resource is None:
        return (f"the management cluster does not serve {source.kind} ({SOURCE_GROUP}); install Flux's "
                f"source-controller there, {_SKIP_FIX}")
    obj = await management.get(resource, namespace=source.namespace, name=source.name)
    if obj is None:
        return f"its source {source} does not exist; create it or fix spec.sourceRef"
    artifact = (obj.get("status") or {}).get("artifact") or {}
    url = artifact.get("url")
    digest = artifact.get("digest") or (f"sha256:{artifact['checksum']}" if artifact.get("checksum") else None)
    if not url or not digest:
        ready = objects.condition_text(objects.condition(obj, "Ready"), "Ready")
        return (f"its source {source} has no artifact yet ({ready}); wait until source-controller has fetched it, "
                f"then retry the upgrade")
    return str(url), str(digest), str(artifact.get("revision") or "")


async def _served(management: KubeClient, plural: str) -> kubeclient.Resource | None:
    for version in SOURCE_VERSIONS:
        resources = await management.resources(f"{SOURCE_GROUP}/{version}")
        if resources and any(entry.get("name") == plural for entry in resources):
            return kubeclient.Resource(SOURCE_GROUP, version, plural)
    return None


async def _scan_artifact(
    artifact: _Artifact,
    *,
    session: aiohttp.ClientSession,
    downloads: asyncio.Semaphore,
    scratch: pathlib.Path,
    current: str,
    target: str,
    deadline: float,
) -> _Scan:
    where = f"the artifact of {artifact.source}"
    if artifact.revision:
        where += f" (revision {artifact.revision})"
    directory = pathlib.Path(tempfile.mkdtemp(prefix="artifact-", dir=scratch))
    archive, root = directory / "artifact.tar.gz", directory / "tree"
    try:
        async with downloads:
            await _download(session, artifact.url, into=archive, max_bytes=MAX_ARTIFACT_BYTES)
    except ArtifactError as exc:
        return [], [f"{artifact.users()}: cannot download {where}: {exc}; {_SKIP_FIX}"]
    except (aiohttp.ClientError, OSError) as exc:
        return [], [f"{artifact.users()}: cannot download {where} from {httptext.safe_url(artifact.url)}: "
                    f"{httptext.problem(exc, timeout=CONNECT_TIMEOUT)}; the operator must reach source-controller's "
                    f"artifact address (it does from inside the management cluster), {_SKIP_FIX}"]
    try:
        await asyncio.to_thread(verify_digest, archive, artifact.digest)
        await asyncio.to_thread(extract, archive, into=root)
    except ArtifactError as exc:
        return [], [f"{artifact.users()}: {where} cannot be used: {exc}; if source-controller replaced it meanwhile "
                    f"a retry scans the new one, otherwise something between alters it ({_SKIP_FIX})"]
    findings: list[Finding] = []
    problems: list[str] = []
    for path, users in sorted(artifact.paths.items()):
        label = f"Kustomization{'s' if len(users) > 1 else ''} {', '.join(sorted(users))}"
        try:
            findings += await _scan_directory(root, path, source=str(artifact.source), path=path,
                                              current=current, target=target, deadline=deadline)
        except _Missing:
            problems.append(f"{label}: spec.path {path} is not a directory in {where}; Flux cannot build it "
                            "either: fix spec.path or the source")
        except ManifestError as exc:
            problems.append(f"{label}: {path} in {where} cannot be read as Flux would build it: "
                            f"{_manifest_problem(exc, root=root)}")
    return findings, problems


# --- git mode -------------------------------------------------------------------------------------


def _no_kubeconfig(cluster: str) -> tuple[str, str, str]:
    raise RuntimeError("the source scan reads the environment repository only, never a cluster")


async def _scan_repository(
    spec: api.ClusterUpgradeSpec,
    *,
    management: KubeClient,
    upgrade_namespace: str,
    workdir: pathlib.Path,
    scratch: pathlib.Path,
    current: str,
    target: str,
    deadline: float,
) -> _Scan:
    git = spec.workloads.flux.git
    assert git is not None  # the model requires it in git mode
    sync = FluxGitWorkloads(management=management, remote_clients=RemoteClients(management),
                            flux=spec.workloads.flux, upgrade_namespace=upgrade_namespace,
                            kubeconfig_ref=_no_kubeconfig, workdir=workdir / "sources-repository", labels={})
    read = await sync.read_blue(blue_name=spec.cluster.name)
    if read.problems:
        return [], [f"environment repository: {problem}" for problem in read.problems]
    root = scratch / "repository"
    await asyncio.to_thread(_write_files, root, read.files)
    source = f"{gitrepo.display_url(git.url)} (branch {git.branch} at {(read.head or '')[:12]})"
    findings: list[Finding] = []
    problems: list[str] = []
    for directory in read.directories:
        try:
            findings += await _scan_directory(root, directory, source=source, path=directory, current=current,
                                              target=target, deadline=deadline)
        except (_Missing, ManifestError) as exc:
            problems.append(f"environment repository {source}: {directory} cannot be read as Flux would build it: "
                            f"{_manifest_problem(exc, root=root) or 'not a directory'}")
    return findings, problems


def _write_files(root: pathlib.Path, files: Mapping[str, bytes]) -> None:
    for name, content in files.items():
        if name.startswith("/") or _escapes(name):
            continue  # git refuses such trees; never written whatever a server sends
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


# --- the scan -------------------------------------------------------------------------------------


async def scan_sources(
    spec: api.ClusterUpgradeSpec,
    *,
    management: KubeClient,
    current: str,
    target: str,
    workdir: pathlib.Path,
    timeout: float,
    upgrade_namespace: str | None = None,
) -> tuple[list[Finding], list[str]]:
    """(findings, problems) of the manifests Flux applies to blue, for an upgrade from ``current`` to ``target``.

    ``upgrade_namespace`` is where the git credentials Secret is (the
    ClusterUpgrade's namespace); without it, ``spec.cluster.namespace``.
    Everything is bounded by ``timeout`` seconds; what did not finish is a problem.
    """
    if not removals_up_to(current=current, target=target):
        return [], []  # nothing between the two versions is removed: no source can break
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        scratch = await asyncio.to_thread(_scratch, workdir)
    except OSError as exc:
        return [], [f"the source scan has no room to unpack sources in the operator's workdir {workdir}: {exc}"]
    late = f"not scanned within {timeout:g}s (spec.preflight.timeout); raise the timeout or retry"
    try:
        if spec.workloads.flux.mode == api.FluxMode.GIT:
            git = spec.workloads.flux.git
            assert git is not None
            jobs: dict[str, Callable[[], Awaitable[_Scan]]] = {
                f"environment repository {gitrepo.display_url(git.url)}": lambda: _scan_repository(
                    spec, management=management, upgrade_namespace=upgrade_namespace or spec.cluster.namespace,
                    workdir=workdir, scratch=scratch, current=current, target=target, deadline=deadline),
            }
            return await _run(jobs, deadline=deadline, late=late)
        try:
            async with asyncio.timeout(timeout):
                artifacts, problems = await _remote_artifacts(spec, management)
        except TimeoutError:
            return [], [f"blue's Kustomizations and their sources in {spec.flux_namespace}: {late}"]
        except kubeclient.KubeError as exc:
            if is_transient(exc):
                raise
            return [], [f"cannot read blue's Kustomizations and their sources in {spec.flux_namespace} on the "
                        f"management cluster: {exc}"]
        session_timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=session_timeout) as session:
            downloads = asyncio.Semaphore(DOWNLOADS_AT_ONCE)
            jobs = {
                f"{artifact.users()} ({artifact.source})": _bind(
                    _scan_artifact, artifact, session=session, downloads=downloads, scratch=scratch,
                    current=current, target=target, deadline=deadline)
                for artifact in artifacts
            }
            findings, more = await _run(jobs, deadline=deadline, late=late)
        return findings, problems + more
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)


def _scratch(workdir: pathlib.Path) -> pathlib.Path:
    workdir.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(prefix="sources-", dir=workdir))


def _bind(function: Callable[..., Awaitable[_Scan]], *args: Any, **kwargs: Any) -> Callable[[], Awaitable[_Scan]]:
    return lambda: function(*args, **kwargs)


async def _run(jobs: Mapping[str, Callable[[], Awaitable[_Scan]]], *, deadline: float, late: str) -> _Scan:
    """Run the jobs together until ``deadline``; findings and problems in the jobs' order, unfinished ones named."""
    tasks = {name: asyncio.ensure_future(job()) for name, job in jobs.items()}
    try:
        if tasks:
            await asyncio.wait(tasks.values(), timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
    finally:
        for task in tasks.values():
            task.cancel()  # no-op for the finished ones
        for task in tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
    findings: list[Finding] = []
    problems: list[str] = []
    for name, task in tasks.items():
        if task.cancelled():
            problems.append(f"{name}: {late}")
            continue
        error = task.exception()
        if error is not None and is_transient(error):
            raise error  # the management API failing for now (git mode's Secret read): the pass is retried
        if error is not None:
            # The world failing in a way no branch above names (the API server, git, a thread):
            # still a line naming the source, never an exception out of the preflight.
            problems.append(f"{name}: the scan failed: {type(error).__name__}: {error}")
            continue
        found, trouble = task.result()
        findings.extend(found)
        problems.extend(trouble)
    return findings, problems

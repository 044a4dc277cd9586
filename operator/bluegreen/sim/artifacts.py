"""Flux source artifacts for the test world: a directory served as a tar.gz the way source-controller serves it.

source-controller packs what it fetched (a git commit, an OCI layer, a bucket)
into ``<kind>/<namespace>/<name>/<digest>.tar.gz`` under its storage and
serves it over plain HTTP; the source's ``status.artifact`` gives that ``url``,
the archive's ``digest`` (``sha256:<hex>``) and the ``revision`` it holds.
Consumers (kustomize-controller, and the operator's preflight scan) download
the URL and check the digest. The simulated Flux in :mod:`.flux` only sets
the status; :class:`ArtifactServer` makes the URL real, and
:func:`publish_source` points a GitRepository at what it serves.

Archives are deterministic (sorted entries, owner 0, times 0, no ``.git``), so
the same directory always gives the same digest and revision, as the same
commit does in Flux. :meth:`ArtifactServer.publish_archive` serves any bytes,
for tests of what a consumer does with a broken or hostile archive.

This module belongs to the test world: product code must not import it.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pathlib
import tarfile
from collections.abc import Mapping
from typing import Any

import aiohttp.web

from bluegreen.sim import flux
from bluegreen.sim.faulty_http import FaultyHTTPServer
from bluegreen.sim.kube import KubeEmulator


@dataclasses.dataclass(frozen=True)
class Artifact:
    url: str
    digest: str  # sha256:<hex> of the archive's bytes
    revision: str  # <branch>@sha1:<hex>, as a GitRepository's artifact names its commit


def pack(directory: pathlib.Path) -> bytes:
    """``directory``'s files as a gzipped tar with paths relative to it, byte for byte reproducible."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if ".git" in relative.parts:
                continue
            info = tarfile.TarInfo(relative.as_posix())
            info.mtime = 0
            if path.is_symlink():
                info.type = tarfile.SYMTYPE
                info.linkname = str(path.readlink())
                archive.addfile(info)
            elif path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            elif path.is_file():
                content = path.read_bytes()
                info.size = len(content)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(content))
    return gzip.compress(buffer.getvalue(), mtime=0)


class ArtifactServer(FaultyHTTPServer):
    """Serves published archives at ``/<kind>/<namespace>/<name>/<digest>.tar.gz`` on 127.0.0.1."""

    NAME = "the artifact server"

    def __init__(self) -> None:
        super().__init__()
        self._archives: dict[str, bytes] = {}
        self.downloads: list[str] = []  # paths asked for, in order

    def routes(self, app: aiohttp.web.Application) -> None:
        app.router.add_get("/{path:.+}", self._serve)

    def publish(self, namespace: str, name: str, directory: pathlib.Path, *, kind: str = "gitrepository",
                branch: str = "main", revision: str | None = None) -> Artifact:
        """Serve ``directory`` as the artifact of source ``kind`` ``namespace/name``.

        Without ``revision`` the artifact names a stand-in commit derived from
        its content, so the same content always has the same revision.
        """
        return self.publish_archive(namespace, name, pack(directory), kind=kind, branch=branch, revision=revision)

    def publish_archive(self, namespace: str, name: str, archive: bytes, *, kind: str = "gitrepository",
                        branch: str = "main", revision: str | None = None) -> Artifact:
        """Serve ``archive`` as it is (any bytes) as the artifact of ``namespace/name``."""
        digest = hashlib.sha256(archive).hexdigest()
        path = f"{kind}/{namespace}/{name}/{digest[:12]}.tar.gz"
        self._archives[path] = archive
        revision = revision or f"{branch}@sha1:{hashlib.sha1(archive).hexdigest()}"
        return Artifact(url=f"{self.base_url}/{path}", digest=f"sha256:{digest}", revision=revision)

    async def _serve(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        injected = await self.injected()
        if injected is not None:
            return injected
        path = request.match_info["path"]
        self.downloads.append(path)
        archive = self._archives.get(path)
        if archive is None:
            return aiohttp.web.Response(status=404, text=f"artifact {path} not found")
        return aiohttp.web.Response(body=archive, content_type="application/x-gzip")


def publish_source(
    management: KubeEmulator,
    server: ArtifactServer,
    *,
    namespace: str,
    name: str,
    directory: pathlib.Path,
    branch: str = "main",
    revision: str | None = None,
) -> dict[str, Any]:
    """Serve ``directory`` and move GitRepository ``namespace/name``'s artifact to it (a new commit)."""
    artifact = server.publish(namespace, name, directory, branch=branch, revision=revision)
    return flux.set_revision(management, namespace=namespace, name=name, revision=artifact.revision,
                             url=artifact.url, digest=artifact.digest)


def write_tree(directory: pathlib.Path, files: Mapping[str, str | None]) -> None:
    """Write ``files`` (path -> text) under ``directory``; None removes a file (a commit, on disk)."""
    for path, text in files.items():
        target = directory / path
        if text is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

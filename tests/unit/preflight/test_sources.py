"""Unpacking a Flux artifact as untrusted input, and checking its digest, before any manifest is scanned."""

from __future__ import annotations

import hashlib
import io
import pathlib
import tarfile

import pytest

from bluegreen.preflight.sources import ArtifactError, extract, verify_digest

MANIFEST = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"


def archive(tmp_path: pathlib.Path, *members: tarfile.TarInfo | tuple[str, bytes]) -> pathlib.Path:
    """A tar.gz of ``(name, content)`` files and hand-made entries (links, devices), in that order."""
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, mode="w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return path


def entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def written(root: pathlib.Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*")) if root.exists() else []


def test_files_and_directories_are_unpacked_under_their_relative_names(tmp_path: pathlib.Path) -> None:
    source = archive(tmp_path, entry("apps", tarfile.DIRTYPE), ("apps/kustomization.yaml", b"resources: []\n"),
                     ("./infra/settings.yaml", MANIFEST))

    extract(source, into=tmp_path / "tree")

    assert written(tmp_path / "tree") == ["apps", "apps/kustomization.yaml", "infra", "infra/settings.yaml"]
    assert (tmp_path / "tree" / "infra" / "settings.yaml").read_bytes() == MANIFEST


@pytest.mark.parametrize("name", ["/etc/cron.d/evil", "../evil.yaml", "apps/../../evil.yaml", ".."])
def test_an_entry_that_would_land_outside_is_refused_before_anything_is_written(
    tmp_path: pathlib.Path, name: str
) -> None:
    source = archive(tmp_path, ("apps/first.yaml", MANIFEST), (name, MANIFEST))

    with pytest.raises(ArtifactError, match="outside"):
        extract(source, into=tmp_path / "tree")

    assert written(tmp_path / "tree") == []
    assert not (tmp_path / "evil.yaml").exists()


@pytest.mark.parametrize(("kind", "name", "target"), [
    (tarfile.SYMTYPE, "apps/passwd", "/etc/passwd"),
    (tarfile.SYMTYPE, "apps/up", "../../outside"),
    (tarfile.LNKTYPE, "apps/hard", "../outside.yaml"),
    (tarfile.LNKTYPE, "apps/hard", "/etc/passwd"),
])
def test_a_link_pointing_outside_is_refused(tmp_path: pathlib.Path, kind: bytes, name: str, target: str) -> None:
    source = archive(tmp_path, ("apps/first.yaml", MANIFEST), entry(name, kind, target))

    with pytest.raises(ArtifactError, match="points outside"):
        extract(source, into=tmp_path / "tree")

    assert written(tmp_path / "tree") == []


def test_links_inside_and_special_files_are_left_out(tmp_path: pathlib.Path) -> None:
    source = archive(tmp_path, ("apps/first.yaml", MANIFEST), entry("apps/again.yaml", tarfile.SYMTYPE, "first.yaml"),
                     entry("apps/loop", tarfile.SYMTYPE, ".."), entry("apps/fifo", tarfile.FIFOTYPE),
                     entry("apps/hard.yaml", tarfile.LNKTYPE, "apps/first.yaml"))

    extract(source, into=tmp_path / "tree")

    assert written(tmp_path / "tree") == ["apps", "apps/first.yaml"]


def test_an_archive_larger_than_the_limit_is_refused(tmp_path: pathlib.Path) -> None:
    source = archive(tmp_path, ("a.yaml", b"x" * 600), ("b.yaml", b"x" * 600))

    with pytest.raises(ArtifactError, match="more than 1000 bytes"):
        extract(source, into=tmp_path / "tree", max_bytes=1000)
    extract(source, into=tmp_path / "roomy", max_bytes=1200)

    assert written(tmp_path / "tree") == []
    assert written(tmp_path / "roomy") == ["a.yaml", "b.yaml"]


def test_an_archive_with_too_many_entries_is_refused(tmp_path: pathlib.Path) -> None:
    source = archive(tmp_path, *[(f"{index}.yaml", MANIFEST) for index in range(5)])

    with pytest.raises(ArtifactError, match="more than 4 entries"):
        extract(source, into=tmp_path / "tree", max_entries=4)


@pytest.mark.parametrize("content", [b"not an archive at all", b"\x1f\x8b\x08\x00garbled gzip"])
def test_bytes_that_are_not_a_tar_gz_are_an_artifact_error(tmp_path: pathlib.Path, content: bytes) -> None:
    source = tmp_path / "a.tar.gz"
    source.write_bytes(content)

    with pytest.raises(ArtifactError, match=r"not a readable tar\.gz"):
        extract(source, into=tmp_path / "tree")


def test_a_truncated_archive_is_an_artifact_error(tmp_path: pathlib.Path) -> None:
    source = archive(tmp_path, ("a.yaml", MANIFEST * 100))
    source.write_bytes(source.read_bytes()[:60])

    with pytest.raises(ArtifactError, match=r"not a readable tar\.gz"):
        extract(source, into=tmp_path / "tree")


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_the_digest_flux_reports_is_checked_against_the_bytes(tmp_path: pathlib.Path, algorithm: str) -> None:
    source = archive(tmp_path, ("a.yaml", MANIFEST))
    actual = hashlib.new(algorithm, source.read_bytes()).hexdigest()

    verify_digest(source, f"{algorithm}:{actual}")
    verify_digest(source, f"{algorithm}:{actual.upper()}")
    with pytest.raises(ArtifactError, match=f"has digest {algorithm}:{actual}, not {algorithm}:0"):
        verify_digest(source, f"{algorithm}:{'0' * len(actual)}")


def test_one_changed_byte_fails_the_digest(tmp_path: pathlib.Path) -> None:
    source = archive(tmp_path, ("a.yaml", MANIFEST))
    digest = f"sha256:{hashlib.sha256(source.read_bytes()).hexdigest()}"
    content = bytearray(source.read_bytes())
    content[-1] ^= 1
    source.write_bytes(bytes(content))

    with pytest.raises(ArtifactError, match="not sha256:"):
        verify_digest(source, digest)


@pytest.mark.parametrize("digest", ["md5:0123", "sha256", "sha256:", "blake3:abcd"])
def test_a_digest_that_cannot_be_checked_is_an_artifact_error(tmp_path: pathlib.Path, digest: str) -> None:
    source = archive(tmp_path, ("a.yaml", MANIFEST))

    with pytest.raises(ArtifactError, match="not one the scan can check"):
        verify_digest(source, digest)

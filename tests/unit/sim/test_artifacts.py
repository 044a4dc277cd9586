"""The test world's artifacts are reproducible tar.gz archives of a directory, as source-controller makes them."""

from __future__ import annotations

import pathlib

from bluegreen.preflight.sources import extract
from bluegreen.sim import artifacts

FILES = {"apps/kustomization.yaml": "resources: [pdb.yaml]\n", "apps/pdb.yaml": "kind: PodDisruptionBudget\n",
         "README.md": "fleet\n"}


def test_the_same_directory_packs_to_the_same_bytes_and_unpacks_to_the_same_files(tmp_path: pathlib.Path) -> None:
    artifacts.write_tree(tmp_path / "one", FILES)
    artifacts.write_tree(tmp_path / "two", {**FILES, ".git/HEAD": "ref: refs/heads/main\n"})
    (tmp_path / "one" / "apps" / "pdb.yaml").touch()  # another mtime, same content

    packed = artifacts.pack(tmp_path / "one")
    (tmp_path / "one.tar.gz").write_bytes(packed)
    extract(tmp_path / "one.tar.gz", into=tmp_path / "unpacked")

    assert packed == artifacts.pack(tmp_path / "two")  # .git is left out, as Flux leaves it out
    assert {path.relative_to(tmp_path / "unpacked").as_posix(): path.read_text()
            for path in (tmp_path / "unpacked").rglob("*") if path.is_file()} == FILES


def test_a_removed_file_changes_the_archive(tmp_path: pathlib.Path) -> None:
    artifacts.write_tree(tmp_path / "tree", FILES)
    before = artifacts.pack(tmp_path / "tree")

    artifacts.write_tree(tmp_path / "tree", {"README.md": None})

    assert artifacts.pack(tmp_path / "tree") != before
    assert not (tmp_path / "tree" / "README.md").exists()

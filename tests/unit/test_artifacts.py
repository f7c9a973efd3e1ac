"""Artifact save -> load round trip and model training on tiny synthetic data."""

import json

import numpy as np
import pytest

from ml.train_content_model import fit_tfidf, similar_products
from services import artifacts
from services.artifacts import (
    current_version_folder,
    load_version,
    publish,
    verify_checksums,
    write_version,
)
from services.popularity import popularity_prior


def test_save_load_round_trip(tmp_path):
    arrays = {
        "product_ids": np.array(["A000000001", "B000000002"]),
        "scores": np.array([0.5, 0.25], dtype=np.float32),
        "indptr": np.array([0, 1, 2], dtype=np.int64),
    }
    folder = write_version(tmp_path, arrays, inputs={"products": 2})
    manifest, loaded = load_version(folder)
    assert manifest["inputs"] == {"products": 2} and manifest["version"] == folder.name
    assert set(manifest["files"]) == {"product_ids.npy", "scores.npy", "indptr.npy"}
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert isinstance(loaded[key].base, np.memmap)  # a view of the mapped file, not a copy
    verify_checksums(folder)
    assert current_version_folder(tmp_path) is None
    publish(tmp_path, folder)
    assert current_version_folder(tmp_path) == folder.resolve()
    (folder / "scores.npy").write_bytes(b"corrupt")
    with pytest.raises(ValueError):
        verify_checksums(folder)


def test_files_verified_once_are_hashed_again_only_when_changed(tmp_path, monkeypatch):
    arrays = {"a": np.arange(10), "b": np.ones(5, dtype=np.float32)}
    folder = write_version(tmp_path, arrays, inputs={"products": 10})
    hashed = []
    real_sha256 = artifacts._sha256
    monkeypatch.setattr(
        artifacts, "_sha256", lambda path: hashed.append(path.name) or real_sha256(path)
    )
    verify_checksums(folder)
    assert sorted(hashed) == ["a.npy", "b.npy"] and (folder / artifacts.VERIFIED).is_file()
    hashed.clear()
    verify_checksums(folder)  # a second worker, a restart: nothing changed, nothing hashed
    assert hashed == []
    array = folder / "b.npy"  # same size, other bytes, a newer mtime
    array.write_bytes(array.read_bytes()[:-4] + b"\xff\xff\xff\xff")
    with pytest.raises(ValueError, match="checksum mismatch"):
        verify_checksums(folder)
    assert hashed == ["b.npy"]
    np.save(array, arrays["b"])  # restored: verified again, and remembered
    verify_checksums(folder)
    hashed.clear()
    verify_checksums(folder)
    assert hashed == []
    assert "manifest.json" not in json.loads((folder / artifacts.VERIFIED).read_text())


def test_content_neighbours_prefer_same_kind():
    names = [
        "Samsung 5G Smartphone",
        "Redmi 5G Smartphone",
        "Nike Running Shoes",
        "Puma Running Shoes",
        "Samsung Smart TV",
    ]
    subs = ["Smartphones", "Smartphones", "Sports Shoes", "Sports Shoes", "Televisions"]
    mains = ["mobiles", "mobiles", "shoes", "shoes", "tv"]
    matrix, vocabulary, idf = fit_tfidf(names, subs)
    triplet = similar_products(matrix, subs, mains, k=2)
    first = triplet["indices"][triplet["indptr"][0] : triplet["indptr"][1]]
    third = triplet["indices"][triplet["indptr"][2] : triplet["indptr"][3]]
    assert first[0] == 1 and 0 not in first
    assert third[0] == 3
    tv = triplet["indices"][triplet["indptr"][4] : triplet["indptr"][5]]
    assert len(tv) == 0  # alone in its category
    # A sub-category with no more than k products borrows candidates from its main category.
    small = similar_products(matrix, subs, ["all"] * 5, k=2)
    assert small["indices"][small["indptr"][0]] == 1
    assert small["indices"][small["indptr"][4]] == 0  # the TV finds the other Samsung
    assert len(vocabulary) == len(idf)


def test_popularity_prior():
    prior = popularity_prior(np.array([5.0, 4.4, np.nan]), np.array([1.0, 5000.0, np.nan]))
    assert prior[1] == 1.0 and prior[0] < prior[1] and prior[2] == 0.0


def test_work_folders_of_dead_trainings_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    from ml.train import WORK_PREFIX, remove_abandoned_work

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / f"{WORK_PREFIX}{finished.stdout.strip()}-abc"
    alive = tmp_path / f"{WORK_PREFIX}{os.getpid()}-def"
    version = tmp_path / "20261202T000000000000Z"
    for folder in (dead, alive, version):
        folder.mkdir()
        (folder / "part.npy").write_bytes(b"x")
    assert remove_abandoned_work(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and version.exists()

"""Versioned artifact folders: data/artifacts/<version>/ with arrays (.npy) and manifest.json.

A `current` symlink names the serving version; it is switched atomically, and only after the new
version loads and validates.
"""

import hashlib
import json
import os
import platform
import shutil
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

CURRENT = "current"
MANIFEST = "manifest.json"
# Files whose checksum matched, with the size and mtime they had then (see verify_checksums).
VERIFIED = ".verified.json"
SYNONYMS_FILE = "synonyms.txt"


def _sha256(path: Path) -> str:
    with path.open("rb") as file:  # streamed: the embeddings are GBs at a large catalog
        return hashlib.file_digest(file, "sha256").hexdigest()


def new_version_name() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def write_version(
    root: Path,
    arrays: dict[str, np.ndarray],
    *,
    inputs: dict[str, int],
    extra: dict | None = None,
    files: dict[str, Path] | None = None,
) -> Path:
    """Write arrays, other files (copied in under the given names) and a manifest into a new
    version folder (not yet current)."""
    name = new_version_name()
    folder = root / name
    folder.mkdir(parents=True)
    for key, array in arrays.items():
        np.save(folder / f"{key}.npy", np.ascontiguousarray(array), allow_pickle=False)
    for file_name, source in (files or {}).items():
        shutil.copyfile(source, folder / file_name)
    manifest = {
        "version": name,
        "created_at": datetime.now(UTC).isoformat(),
        "inputs": inputs,
        "libraries": {
            "python": platform.python_version(),
            **{
                pkg: package_version(pkg)
                for pkg in (
                    "numpy",
                    "scipy",
                    "scikit-learn",
                    "lightgbm",
                    "sentence-transformers",
                    "torch",
                    "usearch",
                )
            },
        },
        "files": {p.name: _sha256(p) for p in sorted(folder.iterdir())},
        **(extra or {}),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return folder


def load_version(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Manifest and memory-mapped arrays of a version (several workers share the pages)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    # np.asarray: a plain ndarray view of the mapping. Slices of an np.memmap are memmaps
    # again, and creating those cost 5 % of the serving CPU (py-spy) for nothing.
    arrays = {
        name.removesuffix(".npy"): np.asarray(
            np.load(folder / name, mmap_mode="r", allow_pickle=False)
        )
        for name in manifest["files"]
        if name.endswith(".npy")
    }
    return manifest, arrays


def verify_checksums(folder: Path) -> None:
    """ValueError unless every file the manifest lists is there with its recorded SHA-256 (a
    truncated copy, a disk error, a hand edit). A file hashed before and unchanged since (same
    size and modification time, recorded in VERIFIED) is not hashed again: at 550k products the
    version is 1.6 GB, seconds of a worker's start-up, and every worker starts on the same files."""
    manifest = json.loads((folder / MANIFEST).read_text())
    checked = _verified_files(folder)
    stats = {}
    for name, digest in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path}: missing")
        stat = path.stat()
        stats[name] = [digest, stat.st_size, stat.st_mtime_ns]
        if checked.get(name) != stats[name] and _sha256(path) != digest:
            raise ValueError(f"{path}: checksum mismatch")
    if stats != checked:
        _remember_verified(folder, stats)


def _verified_files(folder: Path) -> dict:
    try:
        return json.loads((folder / VERIFIED).read_text())
    except (OSError, ValueError):
        return {}


def _remember_verified(folder: Path, stats: dict) -> None:
    """Written whole and renamed into place (workers verify at once); a read-only artifacts
    volume simply means hashing at every start."""
    temporary = folder / f"{VERIFIED}.{os.getpid()}"
    try:
        temporary.write_text(json.dumps(stats))
        os.replace(temporary, folder / VERIFIED)
    except OSError:
        temporary.unlink(missing_ok=True)


def earlier_versions(root: Path, folder: Path) -> list[Path]:
    """Version folders older than `folder`, newest first (names are UTC timestamps)."""
    return sorted(
        (
            path
            for path in root.iterdir()
            if path.is_dir()
            and not path.is_symlink()
            and path.name < folder.name
            and (path / MANIFEST).is_file()
        ),
        reverse=True,
    )


def publish(root: Path, folder: Path) -> None:
    """Point `current` at `folder` atomically (rename of a fresh symlink over the old one)."""
    temporary = root / f".{CURRENT}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(folder.name)
    temporary.replace(root / CURRENT)


def current_version_folder(root: Path) -> Path | None:
    link = root / CURRENT
    return link.resolve() if link.exists() else None


def packed_strings(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one UTF-8 byte array and offsets (string i is bytes[offsets[i]:offsets[i + 1]]):
    memory-mapped like any array, where a numpy str array would pad every value to the
    longest."""
    encoded = [value.encode() for value in values]
    offsets = np.r_[0, np.cumsum([len(e) for e in encoded])].astype(np.int64)
    return np.frombuffer(b"".join(encoded), np.uint8), offsets


def packed_string(data: np.ndarray, offsets: np.ndarray, i: int) -> str:
    """String i of `packed_strings`' arrays."""
    first, last = offsets[i : i + 2].tolist()
    return data[first:last].tobytes().decode()

"""Embeddings kept by content, so that each text, image or slide is embedded once.

An entry's key is the SHA-256 of the input itself (a text's UTF-8 bytes, an array's bytes,
dtype and shape, a file's bytes), inside a folder named by the encoder's fingerprint (its name,
weights and options): an edited report or a re-scanned slide is embedded again, anything
unchanged is read back, and two encoders never mix. Every entry is written to a temporary
name and renamed, so an interrupted run leaves only whole entries and simply resumes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.io import atomic_write

__all__ = ["EmbeddingCache", "cache_root", "content_key", "file_key"]


def cache_root(configured: Path | None) -> Path:
    """The cache folder: the config's, else `$POLYFUSE_CACHE`, else the user's cache dir."""
    if configured is not None:
        return Path(configured)
    if os.environ.get("POLYFUSE_CACHE"):
        return Path(os.environ["POLYFUSE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "polyfuse"


def content_key(item: str | np.ndarray) -> str:
    """The key of a text or an array (its shape and dtype included: same bytes, other image)."""
    h = hashlib.sha256()
    if isinstance(item, str):
        h.update(b"text\0" + item.encode("utf-8"))
    else:
        array = np.ascontiguousarray(item)
        h.update(f"array\0{array.dtype.str}\0{array.shape}\0".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def file_key(path: Path) -> str:
    """The key of a file: the SHA-256 of its bytes, read in blocks (slides run to gigabytes).

    Remembered in this process for the file's path, size and modification time, so that a
    server answering request after request hashes its backbone's weights once, not each time.
    """
    stat = os.stat(path)
    return _file_key(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _file_key(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256(b"file\0")
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


class EmbeddingCache:
    """The entries of one encoder (`fingerprint`) under `root`."""

    def __init__(self, root: Path, fingerprint: dict[str, Any]) -> None:
        text = json.dumps(fingerprint, sort_keys=True, default=str)
        self.root = Path(root)
        self.directory = self.root / "embeddings" / hashlib.sha256(text.encode()).hexdigest()[:16]
        self.directory.mkdir(parents=True, exist_ok=True)
        about = self.directory / "encoder.json"
        if not about.exists():
            atomic_write(about, lambda p: p.write_text(text + "\n"))

    def file_key(self, path: Path) -> str:
        """`file_key` of a file, remembered across processes under the cache root for the
        file's path, size and modification time: a cohort of gigabyte slides is hashed once,
        not at every run that reads it."""
        stat = os.stat(path)
        where = f"{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
        memo = self.root / "file-keys" / hashlib.sha256(where.encode()).hexdigest()
        if memo.is_file():
            return memo.read_text().strip()
        key = file_key(path)
        atomic_write(memo, lambda p: p.write_text(key + "\n"))
        return key

    def path(self, key: str, suffix: str) -> Path:
        """Where the entry `key` lives (two-letter subfolders keep folders small)."""
        return self.directory / key[:2] / f"{key}{suffix}"

    def get(self, key: str) -> np.ndarray | None:
        """The vector stored under `key`, or None."""
        path = self.path(key, ".npy")
        return np.load(path) if path.exists() else None

    def put(self, key: str, vector: np.ndarray) -> None:
        """Store a vector (atomically: a stopped run leaves whole entries only)."""
        vector = np.asarray(vector, dtype=np.float32)
        atomic_write(self.path(key, ".npy"), lambda p: _save(p, vector))


def _save(path: Path, vector: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to a path
        np.save(f, vector)

"""Writing outputs safely: atomic file writes and run directories that are never clobbered."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from polyfuse.errors import ConfigError


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place.

    A crash leaves either the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared and read
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_PARTIAL = re.compile(r"^\.(.+)\.[a-z0-9_]{8}$")  # atomic_write's temporary names


def remove_partial_writes(directory: Path) -> list[Path]:
    """Delete the temporary files a killed `atomic_write` left below `directory` (named
    `.<target>.<8 random chars>`); the files they were meant to replace are intact."""
    removed = []
    for path in Path(directory).rglob(".*"):
        if path.is_file() and _PARTIAL.match(path.name):
            path.unlink()
            removed.append(path)
    return removed


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def prepare_run_dir(path: Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create a run directory; refuse an existing non-empty one unless asked.

    `overwrite` replaces polyfuse's own files in place (atomically, one by one); it never
    deletes anything else the directory holds.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path} exists and is a file")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise ConfigError(
            f"run directory {path} already exists; pass --overwrite to replace its results, "
            "--resume to continue it, or choose another name"
        )
    path.mkdir(parents=True, exist_ok=True)
    if resume:
        remove_partial_writes(path)
    return path

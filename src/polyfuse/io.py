"""Writing outputs safely: atomic file writes and run directories that are never clobbered."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def check_run_dir(path: Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Everything `prepare_run_dir` would refuse, checked without creating anything: an
    existing non-empty run directory (unless `overwrite` or `resume`), a file in its place or
    in the place of a folder above it, and a location this process cannot write to."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path} exists and is a file")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise ConfigError(
            f"run directory {path} already exists; pass --overwrite to replace its results, "
            "--resume to continue it, or choose another name"
        )
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise ConfigError(
            f"cannot create the run directory {path}: {existing} is a file, not a folder; "
            "set `output` (or --out) to a folder"
        )
    try:  # os.access is not enough: root passes it on read-only file systems
        # named like atomic_write's temporary files, so a resume removes one a kill left
        fd, probe = tempfile.mkstemp(prefix=".polyfuse-probe.", dir=existing)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the run directory {path}: {existing} is not writable "
            f"({exc.strerror or exc}); set `output` (or --out) to a folder you can write to"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return path


def prepare_run_dir(path: Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create a run directory; refuse an existing non-empty one unless asked.

    `overwrite` replaces polyfuse's own files in place (atomically, one by one); it never
    deletes anything else the directory holds.
    """
    check_run_dir(path, overwrite=overwrite, resume=resume)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the run directory {path}: {exc.strerror or exc}"
        ) from None
    if resume:
        remove_partial_writes(path)
    return path


@contextmanager
def undo_on_failure(
    path: Path, keep: Callable[[BaseException], bool] = lambda exc: False
) -> Iterator[None]:
    """Run the body; when it raises (a failure or an interruption) and `keep(exception)` is
    false (nothing worth resuming was finished), remove what this call created of `path`: the
    run directory and the folders above it that did not exist before (only if they are empty
    by then). A directory that held files before is never touched."""
    path = Path(path)
    held = path.is_dir() and any(path.iterdir())
    created = [p for p in (path, *path.parents) if not p.exists() and p != p.parent]
    try:
        yield
    except BaseException as exc:
        if not held and path.is_dir() and not keep(exc):
            if created and created[0] == path:
                shutil.rmtree(path, ignore_errors=True)
                for parent in created[1:]:
                    try:
                        parent.rmdir()  # only when empty: another run may live there now
                    except OSError:
                        break
            else:  # an empty folder that was there before: keep it, empty
                for child in path.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        raise

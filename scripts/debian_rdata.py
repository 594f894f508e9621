"""What the cohort conversion scripts share: fetching and unpacking a Debian package of R data,
checksums, and reading the serialised R tree that `rdata.parser` gives (the scripts walk it
themselves: `rdata`'s converter handles neither S4 objects nor every attribute, and NA must
stay missing).

Imported by `convert_tcga_acc.py` and `convert_glaucoma_mvf.py`, which run as scripts from the
repository root (`python scripts/convert_....py`), so this folder is on `sys.path`.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rdata.parser import RObject
from rdata.parser import RObjectType as RT


def fetch_deb(package: str, workdir: Path, skip_update: bool) -> Path:
    """Download a Debian package with apt (no root needed for download, no R installed)."""
    if not skip_update:
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "download", package], check=True, cwd=workdir)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise SystemExit(f"expected one {package} .deb in {workdir}, found {debs}")
    return debs[0]


def deb_field(deb: Path, field: str) -> str:
    """One control field of a .deb (Version, Package), for the provenance record."""
    out = subprocess.run(["dpkg-deb", "-f", str(deb), field], check=True, capture_output=True)
    return out.stdout.decode().strip()


def extract_rdata(deb: Path, workdir: Path, member: str) -> Path:
    """Unpack the .deb and return the path of its R data file `member` inside it."""
    root = workdir / "extracted"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    path = root / member
    if not path.is_file():
        raise SystemExit(f"{member} not found in {deb.name}")
    return path


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_version(dist: str) -> str:
    """Installed version of a distribution, for the provenance record."""
    from importlib.metadata import version

    return version(dist)


def deref(obj: RObject) -> RObject:
    """Follow REF nodes: R serialises repeated symbols/environments as back-references."""
    while obj.info.type == RT.REF:
        obj = obj.referenced_object
    return obj


def symbol_name(tag: RObject) -> str:
    """Text of a pairlist tag (a SYM wrapping a CHAR)."""
    tag = deref(tag)
    if tag.info.type == RT.SYM:
        tag = deref(tag.value)
    return tag.value.decode()


def pairlist(obj: RObject | None) -> Iterator[tuple[str | None, RObject]]:
    """Iterate (tag, value) over an R pairlist (attributes, S4 slots, environment frames)."""
    node = deref(obj) if obj is not None else None
    while node is not None and node.info.type in (RT.LIST, RT.ATTRLIST):
        car, cdr = node.value
        yield (symbol_name(node.tag) if node.tag is not None else None), deref(car)
        node = deref(cdr) if cdr is not None else None


def attrs(obj: RObject) -> dict[str, RObject]:
    """Attributes of an object; for S4 objects these are its slots."""
    return {name: value for name, value in pairlist(deref(obj).attributes) if name is not None}


def strings(obj: RObject) -> list[str | None]:
    """A character vector; NA_character_ becomes None."""
    obj = deref(obj)
    if obj.info.type != RT.STR:
        raise TypeError(f"expected a character vector, got {obj.info.type.name}")
    return [None if deref(c).value is None else deref(c).value.decode() for c in obj.value]


def numbers(obj: RObject) -> np.ndarray:
    """An integer/logical/double vector as float64 with NaN for NA (the mask is honoured)."""
    obj = deref(obj)
    if obj.info.type not in (RT.INT, RT.LGL, RT.REAL):
        raise TypeError(f"expected a numeric vector, got {obj.info.type.name}")
    value = obj.value
    if np.ma.isMaskedArray(value):
        return np.ma.filled(value.astype(np.float64), np.nan)
    # an unmasked integer/logical array must not hide R's NA sentinel (INT_MIN)
    is_int = obj.info.type in (RT.INT, RT.LGL)
    if is_int and np.any(np.asarray(value) == np.iinfo(np.int32).min):
        raise ValueError("integer vector holds NA_integer_ but came back unmasked")
    return np.asarray(value, dtype=np.float64)

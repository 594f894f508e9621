"""The checksums of a shipped cohort's files against its `PROVENANCE.json`.

A corrupted install or a hand-edited table would otherwise change results silently.
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources.abc import Traversable

from polyfuse.errors import DataError

PROVENANCE_FILE = "PROVENANCE.json"


def verify_provenance(directory: Traversable, cohort: str, script: str) -> list[str]:
    """Check every file `PROVENANCE.json` lists against its sha256; return their names.

    Raises DataError naming the cohort and the first file that is missing or differs, and the
    conversion `script` that rebuilds it.
    """
    try:
        provenance = json.loads((directory / PROVENANCE_FILE).read_text(encoding="utf-8"))
        expected = {name: info["sha256"] for name, info in provenance["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"cannot read {cohort} {PROVENANCE_FILE}: {exc}") from exc
    for name, want in sorted(expected.items()):
        try:
            got = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        except OSError as exc:
            raise DataError(f"{cohort} file {name} is missing or unreadable: {exc}") from exc
        if got != want:
            raise DataError(
                f"{cohort} file {name} does not match {PROVENANCE_FILE} (sha256 {got}, "
                f"expected {want}); reinstall polyfuse or rerun {script}"
            )
    return sorted(expected)

#!/usr/bin/env python
"""Convert ipred's ``GlaucomaMVF`` (glaucoma diagnosis, 170 eyes) into the CSV that polyfuse
ships in ``src/polyfuse/datasets/data/glaucoma_mvf/``.

Why a script: the shipped table must be reproducible from a public, versioned source, with
checksums, so anyone can re-derive it. The source is the Debian package ``r-cran-ipred``
(0.9-13-1), whose ``data/GlaucomaMVF.rda`` holds a plain R data.frame. R is not needed, nor is
the package installed::

    apt-get download r-cran-ipred          # no root needed to download
    dpkg-deb -x r-cran-ipred_*.deb x/      # what this script does in a temporary directory

``rdata.parser`` gives the raw serialised tree and this script reads the data.frame's columns
itself. Integer and factor vectors come back as numpy *masked* arrays; the mask is kept so that
R's NA stays missing (an empty CSV cell) instead of becoming a number.

Usage (from the repository root, dev extra installed)::

    python scripts/convert_glaucoma_mvf.py             # apt-get update + download, then convert
    python scripts/convert_glaucoma_mvf.py --deb X.deb   # convert a .deb fetched earlier

Choices (also recorded in PROVENANCE.json):

* one row per eye in the R row order; ``id`` = ``GMVF-001`` … ``GMVF-170`` (the R row names,
  which are not unique-looking patient ids, are listed in PROVENANCE.json in the same order);
* every column keeps its R name and its values are unchanged: doubles are written with the
  shortest text that reads back to the same float64 (checked), ``tension`` (an R integer) as
  an integer, the factor ``Class`` as its labels ``glaucoma`` / ``normal``, NA as an empty cell;
* the data stay GPL-2+: the NOTICE says so and the GPL-2 text (``/usr/share/common-licenses``,
  Debian's base-files) is copied next to the CSV, as GPL-2 section 1 asks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from debian_rdata import (
    attrs,
    deb_field,
    deref,
    extract_rdata,
    fetch_deb,
    numbers,
    package_version,
    pairlist,
    sha256,
    strings,
)
from rdata import parser
from rdata.parser import RObject
from rdata.parser import RObjectType as RT

DEB_PACKAGE = "r-cran-ipred"
RDATA_PATH = "usr/lib/R/site-library/ipred/data/GlaucomaMVF.rda"
OBJECT = "GlaucomaMVF"
OUT_DIR = Path(__file__).resolve().parents[1] / "src/polyfuse/datasets/data/glaucoma_mvf"
CSV_FILE = "glaucoma_mvf.csv"
ID_PREFIX = "GMVF-"
N_EYES = 170
N_HRT = 62  # columns 1-62 of the data frame: Heidelberg Retina Tomograph features
LAST_COLUMNS = ["tension", "clv", "cs", "lora", "Class"]
CLASSES = {"glaucoma", "normal"}
MAX_BYTES = 100_000
# GPL-2 section 1: recipients get a copy of the licence along with the data. Debian and Ubuntu
# carry its text in base-files; it is copied next to the CSV.
GPL_TEXT = Path("/usr/share/common-licenses/GPL-2")
GPL_FILE = "GPL-2"


# --------------------------------------------------------------------------- fetching the source
# --------------------------------------------------------------------------- reading the R tree
def column(obj: RObject) -> pd.Series:
    """One data-frame column: a factor as its labels (None for NA), an integer as nullable
    Int64, a double as float64 (NaN for NA)."""
    obj = deref(obj)
    found = attrs(obj)
    if "levels" in found:
        levels = strings(found["levels"])
        codes = numbers(obj)
        return pd.Series([None if np.isnan(c) else levels[int(c) - 1] for c in codes], dtype=object)
    values = numbers(obj)
    if obj.info.type == RT.INT:
        return pd.Series(values).astype("Int64")  # NaN -> <NA>; written without ".0"
    if obj.info.type != RT.REAL:
        raise TypeError(f"unexpected column type {obj.info.type.name}")
    return pd.Series(values, dtype=np.float64)


def row_names(obj: RObject, n: int) -> list[str]:
    """A data.frame's row names: strings, or R's compact form c(NA, -n) for 1..n."""
    names = deref(obj)
    if names.info.type == RT.STR:
        return [str(s) for s in strings(names)]
    return [str(i) for i in range(1, n + 1)]


def read_data_frame(rdata_file: Path) -> tuple[pd.DataFrame, list[str]]:
    """The GlaucomaMVF data.frame (R column names and order) and its R row names."""
    parsed = parser.parse_file(rdata_file)
    objects = dict(pairlist(parsed.object))
    if set(objects) != {OBJECT}:
        raise SystemExit(f"expected only {OBJECT} in {rdata_file.name}, found {sorted(objects)}")
    frame_obj = objects[OBJECT]
    found = attrs(frame_obj)
    if strings(found["class"]) != ["data.frame"]:
        raise SystemExit(f"{OBJECT} is not a plain data.frame: {strings(found['class'])}")
    names = [str(n) for n in strings(found["names"])]
    columns = [column(c) for c in deref(frame_obj).value]
    frame = pd.DataFrame(dict(zip(names, columns, strict=True)))
    return frame, row_names(found["row.names"], len(frame))


# --------------------------------------------------------------------------- checks and writing
def check_frame(frame: pd.DataFrame) -> None:
    """The source matches datasets.md section 3; a new upstream version must be looked at."""
    if frame.shape != (N_EYES, N_HRT + len(LAST_COLUMNS)):
        raise SystemExit(f"unexpected shape {frame.shape}")
    if list(frame.columns[N_HRT:]) != LAST_COLUMNS:
        raise SystemExit(f"unexpected trailing columns {list(frame.columns[N_HRT:])}")
    counts = frame["Class"].value_counts(dropna=False).to_dict()
    if counts != {c: N_EYES // 2 for c in CLASSES}:
        raise SystemExit(f"unexpected classes {counts}")
    if frame.iloc[:, :N_HRT].isna().any().any():
        raise SystemExit("HRT features hold NA: the loader's presence rules need a look")


def csv_text(frame: pd.DataFrame) -> str:
    """The table as CSV: ``id`` first, NA as an empty cell, shortest round-trip floats."""
    out = frame.copy()
    out.insert(0, "id", [f"{ID_PREFIX}{i:03d}" for i in range(1, len(out) + 1)])
    return out.to_csv(index=False, lineterminator="\n", na_rep="")


def check_round_trip(text: str, frame: pd.DataFrame) -> None:
    """Reading the CSV back gives exactly the source's values (bit for bit, NA where NA)."""
    back = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    for name in frame.columns:
        want, got = frame[name], back[name]
        if name == "Class":
            same = want.tolist() == got.where(got.notna(), None).tolist()
        else:
            a, b = want.astype(np.float64).to_numpy(), got.astype(np.float64).to_numpy()
            same = np.array_equal(a, b, equal_nan=True)
        if not same:
            raise SystemExit(f"column {name} does not read back unchanged")


NOTICE_TEXT = """\
GlaucomaMVF data shipped with polyfuse
======================================

{csv} in this directory was derived by scripts/convert_glaucoma_mvf.py from the
data set `GlaucomaMVF` of the R package ipred {upstream}, as packaged by Debian in
{package} {version} (file {rdata_path}).

ipred: Improved Predictors
Authors: Andrea Peters, Torsten Hothorn (maintainer: Torsten.Hothorn@R-project.org);
         contributors Brian D. Ripley, Terry Therneau, Beth Atkinson
Copyright: 2002-2012 Andrea Peters and Torsten Hothorn (ipred's COPYRIGHTS file);
           2016-2017 Andrea Peters, Torsten Hothorn, Brian D. Ripley, Terry Therneau,
           Beth Atkinson (Debian copyright file of {package})
Upstream: https://cran.r-project.org/package=ipred
License: GPL-2+

  This program is free software; you can redistribute it and/or modify it under the terms of
  the GNU General Public License as published by the Free Software Foundation; either version
  2 of the License, or (at your option) any later version.

  This program is distributed in the hope that it will be useful, but WITHOUT ANY WARRANTY;
  without even the implied warranty of MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.
  See the GNU General Public License for more details.

The full text of the GNU General Public License version 2 is in the file {gpl_file} next to
this NOTICE (also at https://www.gnu.org/licenses/old-licenses/gpl-2.0.html; on Debian
systems /usr/share/common-licenses/GPL-2). {csv} is covered by the GPL-2+, not by
polyfuse's Apache-2.0 licence: it is a separate work shipped alongside polyfuse's code.

Changes: none to the values. Only the format was converted, from R's .rda to CSV: every
column keeps its R name, a column `id` (GMVF-001 ... GMVF-170, in the R row order) was added,
the factor `Class` is written as its labels and R's NA as an empty cell. The original data
are available unmodified from CRAN and from Debian; scripts/convert_glaucoma_mvf.py
re-derives this file and PROVENANCE.json records the checksums of the source and the result.

Data source (as documented in ipred): confocal laser scanning images of the optic nerve head
(Heidelberg Retina Tomograph, variables 1-62), visual field (Octopus perimeter: clv, cs),
fundus photography (lora) and intra-ocular pressure (tension) of 85 glaucomatous and 85
normal eyes, matched by age and sex. Reference: Andrea Peters, Berthold Lausen, Georg
Michelson and Olaf Gefeller (2003), Diagnosis of glaucoma by indirect classifiers. Methods
of Information in Medicine 42(1), 99-103.
"""


def convert(
    deb: Path, rdata_file: Path, out_dir: Path, gpl_text: Path = GPL_TEXT
) -> dict[str, Any]:
    """Write the CSV, NOTICE, the GPL-2 text and PROVENANCE.json; return the provenance."""
    if not gpl_text.is_file():
        raise SystemExit(f"GPL-2 text not found at {gpl_text}; pass --gpl-text")
    frame, r_rows = read_data_frame(rdata_file)
    check_frame(frame)
    text = csv_text(frame)
    check_round_trip(text, frame)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CSV_FILE
    path.write_text(text, encoding="utf-8", newline="\n")
    if path.stat().st_size >= MAX_BYTES:
        raise SystemExit(f"{CSV_FILE} is {path.stat().st_size} bytes, over {MAX_BYTES}")
    version = deb_field(deb, "Version")
    upstream = version.rsplit("-", 1)[0]
    (out_dir / "NOTICE").write_text(
        NOTICE_TEXT.format(
            csv=CSV_FILE,
            upstream=upstream,
            package=DEB_PACKAGE,
            version=version,
            rdata_path=RDATA_PATH,
            gpl_file=GPL_FILE,
        ),
        encoding="utf-8",
    )
    shutil.copyfile(gpl_text, out_dir / GPL_FILE)
    na = frame.isna().sum()
    provenance: dict[str, Any] = {
        "dataset": "GlaucomaMVF (R package ipred)",
        "source": {
            "debian_package": DEB_PACKAGE,
            "debian_version": version,
            "deb_file": deb.name,
            "deb_sha256": sha256(deb),
            "path_in_deb": RDATA_PATH,
            "rdata_sha256": sha256(rdata_file),
            "license": "GPL-2+",
        },
        "converted_on": dt.date.today().isoformat(),
        "converter": "scripts/convert_glaucoma_mvf.py",
        "software": {
            "python": sys.version.split()[0],
            "rdata": package_version("rdata"),
            "pandas": pd.__version__,
            "numpy": np.__version__,
        },
        "files": {
            CSV_FILE: {
                "sha256": sha256(path),
                "bytes": path.stat().st_size,
                "rows": int(frame.shape[0]),
                "columns": int(frame.shape[1]) + 1,
            }
        },
        "license_text": {
            "file": GPL_FILE,
            "copied_from": str(gpl_text),
            "sha256": sha256(out_dir / GPL_FILE),
        },
        "summary": {
            "eyes": int(frame.shape[0]),
            "classes": {str(k): int(v) for k, v in frame["Class"].value_counts().items()},
            "hrt_features": N_HRT,
            "na_cells": {str(k): int(v) for k, v in na[na > 0].items()},
        },
        "choices": {
            "id": f"{ID_PREFIX}NNN, NNN = 1-based position in the R row order",
            "values": "unchanged; doubles as shortest round-trip text (checked), tension "
            "(R integer) as integer, Class (factor) as its label, NA as an empty cell",
            "columns": "R names and order, after id",
        },
        "r_row_names": r_rows,
    }
    (out_dir / "PROVENANCE.json").write_text(
        json.dumps(provenance, indent=2) + "\n", encoding="utf-8"
    )
    return provenance


def main(argv: list[str] | None = None) -> int:
    """Fetch (or take) the .deb, convert, and print a short summary."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--deb", type=Path, help="use this .deb instead of running apt-get download")
    args.add_argument("--skip-update", action="store_true", help="do not run apt-get update")
    args.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args.add_argument("--gpl-text", type=Path, default=GPL_TEXT, help="GPL-2 text to copy")
    opts = args.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="glaucoma_mvf_"))
    try:
        deb = opts.deb.resolve() if opts.deb else fetch_deb(DEB_PACKAGE, workdir, opts.skip_update)
        rdata_file = extract_rdata(deb, workdir, RDATA_PATH)
        provenance = convert(deb, rdata_file, opts.out, opts.gpl_text)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    info = provenance["files"][CSV_FILE]
    print(f"{CSV_FILE}: {info['rows']} x {info['columns']}, {info['bytes']} B")
    print(f"summary: {provenance['summary']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

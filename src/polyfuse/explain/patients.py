"""One page per patient: what the model predicts for them, how sure it is, and why.

A clinician reviewing one case wants it on one page, not spread over cohort-level tables: each
task's prediction with its conformal set, interval or bound (where the run is calibrated),
how much each of the patient's modalities moved the prediction (removing it), and the features
that pushed the score up or down most (integrated gradients, `features.py`), beside the
patient's own values as the model read them. Plain self-contained HTML, no script.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.errors import ConfigError, did_you_mean
from polyfuse.io import write_text
from polyfuse.training.fit import FittedModel

TOP = 10
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #bbb;"
    "padding:.2em .5em;text-align:left}td.num{text-align:right}.note{color:#444}"
)


def write_patient_pages(
    fitted: FittedModel,
    dataset: MultimodalDataset,
    changes: pd.DataFrame,
    attributions: dict[str, pd.DataFrame],
    out: Path,
    ids: Sequence[str],
) -> list[Path]:
    """`out/<id>.html` for each patient of `ids`: `changes` are `modality_changes` rows,
    `attributions` each task's `patient_rows`. Unknown ids are refused with a did-you-mean."""
    for pid in ids:
        if pid not in dataset.ids:
            raise ConfigError(f"patient '{pid}' is not in the data{did_you_mean(pid, dataset.ids)}")
    if not ids:
        return []
    rows = [dataset.ids.index(pid) for pid in ids]
    subset = dataset.subset(np.asarray(rows, dtype=int))
    from polyfuse.inference.predictor import Predictor

    predictions = Predictor(fitted).predict(subset)
    written = []
    for pid in ids:
        body = [
            f"<h1>Patient {html.escape(pid)}</h1>",
            _predictions(predictions.loc[pid], fitted),
            _modalities(changes[changes["id"] == pid], dataset, pid),
            *(_features(task, a[a["id"] == pid]) for task, a in attributions.items()),
        ]
        path = out / f"{_safe(pid)}.html"
        write_text(path, _page(f"Patient {pid}", body))
        written.append(path)
    return written


def _safe(pid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in pid)


def _page(title: str, body: list[str]) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
        f"{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


def _table(header: Sequence[str], rows: list[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    cells = "".join(
        "<tr>"
        + "".join(
            f"<td class=num>{v:.3f}</td>"
            if isinstance(v, float)
            else f"<td>{html.escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{cells}</table>"


def _predictions(row: pd.Series, fitted: FittedModel) -> str:
    """Every prediction column of the patient, with what the uncertainty columns mean."""
    items = [
        (name, float(v) if isinstance(v, int | float | np.floating) else v)
        for name, v in row.items()
    ]
    levels = {t: f"{1 - c.alpha:.0%}" for t, c in fitted.conformal.items()}
    note = (
        "Sets, intervals and time bounds are split-conformal: they hold the truth for "
        + ", ".join(f"{level} of patients ({t})" for t, level in levels.items())
        + " like those the model was calibrated on."
        if levels
        else "This run has no conformal calibration (training.conformal: null)."
    )
    return "<h2>Predictions</h2>" + _table(("output", "value"), items) + f"<p class=note>{note}</p>"


def _modalities(changes: pd.DataFrame, dataset: MultimodalDataset, pid: str) -> str:
    """How far each of the patient's modalities moved each task's score when removed."""
    row = dataset.ids.index(pid)
    absent = [m for m, s in dataset.sources.items() if not s.present[row]]
    table = changes.pivot_table(index="modality", columns="task", values="change")
    rows = [(m, *(float(v) for v in table.loc[m])) for m in table.index]
    note = f"Absent for this patient: {', '.join(absent)}." if absent else ""
    return (
        "<h2>What each modality contributed</h2>"
        + _table(("modality", *[f"|Δ {t}| without it" for t in table.columns]), rows)
        + (f"<p class=note>{html.escape(note)}</p>" if note else "")
    )


def _features(task: str, rows: pd.DataFrame) -> str:
    """The patient's features that pushed `task`'s score most, up and down."""
    if rows.empty:
        return ""
    top = rows.reindex(rows["attribution"].abs().sort_values(ascending=False).index).head(TOP)
    lines = [
        (r.modality, r.feature, float(r.attribution), "raises" if r.attribution > 0 else "lowers")
        for r in top.itertuples()
    ]
    return (
        f"<h2>{html.escape(task)}: the features that moved the score most</h2>"
        + _table(("modality", "feature", "attribution", "effect on the score"), lines)
        + "<p class=note>Integrated gradients from the training mean of every feature: a "
        "patient's attributions add up to their score minus the score of an average patient."
        "</p>"
    )

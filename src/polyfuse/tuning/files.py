"""What a tuning run writes to its directory, and reads back on resume.

`settings.json` holds what a resumed run must share with the run it continues; each finished
study leaves `parts/<study>.*` (the `.chosen.json` marker last); the chosen configurations
become ready-to-use experiment YAMLs (`best.yaml`, `best_r<r>f<f>.yaml`); a finished run adds
its tables and figures.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import ExperimentConfig, dump_config
from polyfuse.data.splits import Split
from polyfuse.errors import ConfigError
from polyfuse.io import atomic_write, prepare_run_dir, write_text
from polyfuse.tuning.search import Chosen
from polyfuse.tuning.storage import STUDY_FILE
from polyfuse.tuning.target import Target

log = logging.getLogger(__name__)


def open_run(
    out: Path,
    settings: dict[str, Any],
    template: ExperimentConfig | None,
    *,
    resume: bool,
    overwrite: bool,
) -> Path:
    """The run directory, made ready: a resumed run must have the same `settings` (JSON values);
    a fresh one (`overwrite`) starts with no study and no parts."""
    run = prepare_run_dir(out, overwrite=overwrite, resume=resume)
    if resume:
        _check_resume(run, settings)
    else:
        for suffix in ("", "-wal", "-shm"):  # --overwrite: a fresh study
            (run / f"{STUDY_FILE}{suffix}").unlink(missing_ok=True)
        for old in (run / "parts").glob("*") if (run / "parts").is_dir() else []:
            old.unlink()
    write_text(run / "settings.json", json.dumps(settings, indent=2))
    if template is not None:
        write_text(run / "config.yaml", dump_config(template))
    return run


def _check_resume(out: Path, settings: dict[str, Any]) -> None:
    path = out / "settings.json"
    if not path.is_file():
        return
    changed = differences(json.loads(path.read_text()), settings)
    if changed:
        raise ConfigError(
            f"{out} holds a search with different settings ({', '.join(changed)}); resume it "
            "with the same settings (only --trials and --timeout may change), or pass "
            "--overwrite to start again"
        )


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The settings whose values differ between two runs' records."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _part(run: Path, study: str, table: str) -> Path:
    return run / "parts" / f"{study}.{table}"


def read_study(run: Path, study: str, trials: int) -> dict[str, Any] | None:
    """A study finished with at least `trials` trials by an earlier run: its chosen row and,
    for an outer fold, its folds and predictions tables (for the final search, `best`)."""
    marker = _part(run, study, "chosen.json")
    saved = json.loads(marker.read_text()) if marker.is_file() else {}
    if saved.get("row", {}).get("trials", 0) < trials:
        return None
    if "best" not in saved:
        saved["folds"] = pd.read_csv(_part(run, study, "folds.csv"))
        saved["predictions"] = pd.read_csv(_part(run, study, "predictions.csv"))
    log.info("study '%s' read back from %s", study, run / "parts")
    return saved


def write_final_study(
    run: Path,
    model: str,
    chosen: Chosen,
    target: Target,
    template: ExperimentConfig | None,
    row: dict[str, Any],
    best: dict[str, Any],
) -> None:
    """best.yaml, then the study's marker."""
    text = config_yaml(model, chosen, template, _final_header(chosen, target))
    write_text(run / "best.yaml", text)
    write_text(
        _part(run, row["study"], "chosen.json"), json.dumps(dict(row=row, best=best), indent=2)
    )
    log.info("the configuration chosen on all samples is in %s", run / "best.yaml")


def write_outer_study(
    run: Path,
    model: str,
    chosen: Chosen,
    target: Target,
    template: ExperimentConfig | None,
    split: Split,
    row: dict[str, Any],
    tables: dict[str, pd.DataFrame],
) -> None:
    """best_<study>.yaml and the fold's tables, then the study's marker."""
    name = row["study"]
    header = _fold_header(chosen, target, split, row["outer"])
    write_text(run / f"best_{name}.yaml", config_yaml(model, chosen, template, header))
    for table, frame in tables.items():
        atomic_write(_part(run, name, f"{table}.csv"), lambda p, f=frame: f.to_csv(p, index=False))
    write_text(_part(run, name, "chosen.json"), json.dumps(dict(row=row), indent=2))  # last
    log.debug("study '%s' written to %s", name, run / "parts")


def config_yaml(model: str, chosen: Chosen, template: ExperimentConfig | None, header: str) -> str:
    """A ready-to-use experiment YAML of a chosen configuration (model + full training).

    Training is written as the search used it, the model's recommended settings included
    (`training_defaults`), so loading the file trains exactly that configuration. Without a
    template config only the model and training sections are written.
    """
    import yaml

    from polyfuse.training.fit import with_model_defaults

    hparams = dict(chosen.settings.hparams)
    training = with_model_defaults(model, hparams, chosen.settings.training)
    progress = template.training.progress if template is not None else True
    training_dict = training.model_dump(mode="json") | {"progress": progress}
    model_dict = {"name": model, "params": plain(hparams)}
    if template is None:
        raw: dict[str, Any] = {"model": model_dict, "training": training_dict}
    else:
        raw = template.model_dump(mode="json")
        raw["name"] = f"{template.name}-tuned"
        raw["model"] = model_dict
        raw["training"] = training_dict
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + yaml.safe_dump(raw, sort_keys=False)


def plain(value: Any) -> Any:
    """YAML-safe: tuples to lists, numpy scalars to Python numbers."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fold_header(chosen: Chosen, target: Target, split: Split, outer: float) -> str:
    return (
        f"chosen by `polyfuse tune` inside outer fold {split.fold} of repeat {split.repeat}\n"
        f"({chosen.finished} trials on its {len(split.train)} training samples).\n"
        f"outer-fold {target.metric} of this configuration: {outer:.4f}\n"
        f"best inner {target.metric}: {chosen.value:.4f} (selection-biased; not a performance)"
    )


def _final_header(chosen: Chosen, target: Target) -> str:
    return (
        "chosen by `polyfuse tune` on all samples "
        f"({chosen.finished} trials, inner cross-validation).\n"
        "Its expected performance is the nested-CV estimate in summary.csv (outer folds),\n"
        f"not the search's own best inner {target.metric} ({chosen.value:.4f}), which the\n"
        "selection biases upwards."
    )


def save_tables(run: Path, tables: dict[str, tuple[pd.DataFrame, bool]]) -> None:
    """A finished run's tables (name → (frame, with its index)), each written atomically."""
    for name, (frame, index) in tables.items():
        atomic_write(run / name, lambda p, f=frame, i=index: f.to_csv(p, index=i))
    log.info("tuning tables written to %s", run)


__all__ = [
    "config_yaml",
    "differences",
    "open_run",
    "plain",
    "read_study",
    "save_tables",
    "write_final_study",
    "write_outer_study",
]

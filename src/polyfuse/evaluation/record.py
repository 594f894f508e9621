"""How a benchmark was made, so that its report can be trusted and repeated.

A reader of a report, or a reviewer of the paper built on it, needs to know what produced the
numbers: the package versions, the date, the command, the seed, the folds, every setting that
shapes a fit (and one hash of them, to tell two runs apart at a glance), and which data, by a
fingerprint of what the models saw (`MultimodalDataset.fingerprint`). `run_record` gathers it;
the benchmark writes it to `run_record.json` and the report shows it, beside the TRIPOD+AI
reporting items the report covers and those left to its author.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from polyfuse.data.contract import installed_versions
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.training.settings import FitSettings

PACKAGES = (
    "polyfuse",
    "torch",
    "lightning",
    "numpy",
    "pandas",
    "scikit-learn",
    "scikit-survival",
    "optuna",
)
"""The packages whose versions a record names (those not installed are left out)."""


def run_record(
    datasets: Sequence[MultimodalDataset],
    *,
    models: Sequence[str] | None,
    hparams: dict[str, dict[str, Any]],
    folds: int,
    repeats: int,
    settings: FitSettings,
    tune: Any = None,
    resumed: bool = False,
    subgroups: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Everything that made a benchmark's numbers, as JSON-ready values (`subgroups`: those
    reported, per dataset)."""
    setup = {
        "models": list(models) if models else "every registered model and stack",
        "hparams": hparams,
        "folds": folds,
        "repeats": repeats,
        "seed": settings.seed,
        "training": settings.training.model_dump(mode="json"),
        "preprocess": settings.preprocess.model_dump(mode="json"),
        "task_weights": settings.task_weights,
        "tune": tune.model_dump(mode="json") if tune is not None else None,
        "subgroups": subgroups or {},
    }
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "resumed": resumed,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": installed_versions(PACKAGES),
        "settings_sha256": _sha256(setup),
        "settings": setup,
        "datasets": [_dataset(data) for data in datasets],
    }


def _sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _dataset(data: MultimodalDataset) -> dict[str, Any]:
    """A dataset's size, modalities (with how many samples have each), tasks (type and time
    unit), fingerprint."""
    return {
        "name": data.name,
        "samples": len(data),
        "modalities": {m: int(src.present.sum()) for m, src in data.sources.items()},
        "tasks": {
            t: {"type": spec.type, "time_unit": spec.time_unit} for t, spec in data.tasks.items()
        },
        "fingerprint_sha256": data.fingerprint(),
    }


TRIPOD_AI: tuple[tuple[str, str, str], ...] = (
    ("5a, 6", "Data sources, setting, eligibility", "the author's to report"),
    ("8", "Outcome", "the task definitions of the data, named in 'How this report was made'"),
    ("10, 21", "Sample size; participants and events", "'How this report was made' (samples)"),
    ("11", "Missing data", "'How this report was made' (samples with each modality); the "
     "robustness section; imputation settings under preprocess"),
    ("12c", "Model building, hyper-parameters, internal validation",
     "'How this report was made' (folds × repeats, settings, tuning)"),
    ("12e", "Performance measures", "the leaderboard and its notes"),
    ("13", "Class imbalance", "training settings (class_weights)"),
    ("18e, 18f", "Data and code availability", "package versions and data fingerprints here"),
    ("22", "Model specification", "model names and hyper-parameters here; weights are in "
     "each fit's run directory"),
    ("23a", "Performance with confidence intervals", "the leaderboard: mean ± sd over folds, "
     "corrected intervals of the differences against the best floor"),
    ("14, 23b", "Fairness; performance in subgroups", "'Performance in subgroups' (the "
     "columns chosen, bootstrap intervals, levels too small flagged)"),
    ("12e, 23a", "Calibration and clinical utility", "'Calibration and decision curves': "
     "binary tasks (reliability, Brier, intercept and slope, net benefit), survival tasks "
     "(predicted against Kaplan–Meier survival at a horizon, net benefit there)"),
)  # fmt: skip
"""TRIPOD+AI items (Collins et al., BMJ 2024;385:e078378) and where this report covers each;
items about the study's design, ethics and interpretation are the author's."""
